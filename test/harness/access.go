package harness

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"sync"
	"testing"
	"time"
)

// accessLog is a registry's own record of the requests it answered: the
// access log distribution writes into its log file (path), or, for the
// in-memory registry, the lines its logger writes (kept in lines).
type accessLog struct {
	path string

	mu    sync.Mutex
	lines bytes.Buffer
}

// Write keeps what the in-memory registry's logger writes.
func (a *accessLog) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lines.Write(p)
}

func (a *accessLog) read() ([]byte, error) {
	if a.path != "" {
		return os.ReadFile(a.path)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return bytes.Clone(a.lines.Bytes()), nil
}

// accessLine finds a request in an access-log line: distribution's
// combined format (`"GET /v2/org/app/manifests/v1 HTTP/1.1" 200 ...`) or
// go-containerregistry's registry (`GET /v2/org/app/manifests/v1`, with
// the error's status and code after it when it answered one).
var accessLine = regexp.MustCompile(`(?m)^(?:.*?"([A-Z]+) (/v2/\S*) HTTP/[0-9.]+" [0-9]{3}.*|([A-Z]+) (/v2/\S*)(?: .*)?)$`)

// AccessMark is a place in a registry's access log: Requests counts what
// it logged after it.
type AccessMark int

// Mark returns the end of the registry's access log so far. It fails the
// test for a registry that keeps no access log (see
// DistributionOptions.AccessLog).
func (r *Registry) Mark(t testing.TB) AccessMark {
	t.Helper()
	b := r.accessBytes(t)
	return AccessMark(len(b))
}

// Requests counts the requests the registry's access log records after
// mark, by method and kind as a Proxy counts them. The registry logs a
// request once it has answered it, so a client can see the answer before
// the line is written: Requests waits until the log holds at least want
// requests (up to 5 s; 0 waits for nothing).
func (r *Registry) Requests(t testing.TB, mark AccessMark, want int) Counts {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := countAccess(r.accessBytes(t)[mark:])
		if c.Total >= want || time.Now().After(deadline) {
			return c
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *Registry) accessBytes(t testing.TB) []byte {
	t.Helper()
	if r.access == nil {
		t.Fatalf("%s at %s keeps no access log", r.Name, r.Host)
	}
	b, err := r.access.read()
	if err != nil {
		t.Fatalf("the access log of %s: %v", r.Name, err)
	}
	return b
}

// countAccess counts the requests of access-log lines.
func countAccess(b []byte) Counts {
	c := newCounts()
	for _, m := range accessLine.FindAllSubmatch(b, -1) {
		method, path := string(m[1]), string(m[2])
		if method == "" {
			method, path = string(m[3]), string(m[4])
		}
		if i := bytes.IndexByte([]byte(path), '?'); i >= 0 {
			path = path[:i]
		}
		c.Total++
		c.ByMethod[method]++
		c.ByKind[parseRoute(path).kind+" "+method]++
	}
	return c
}

// String prints counts as "total (kind METHOD n, ...)".
func (c Counts) String() string {
	return fmt.Sprintf("%d %v", c.Total, c.ByKind)
}
