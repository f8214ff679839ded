package shard

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// usage is what one process asked of the registry.
type usage struct {
	Requests int
	ByKind   map[string]int
	// Up and Down are the body bytes sent to and received from the
	// registry.
	Up, Down int64
}

// attributing is a loopback reverse proxy that counts requests by the
// process that sent them: it finds the process that owns a connection's
// client socket in /proc (Linux), among the processes registered with
// track. Requests of processes not tracked count under "other".
type attributing struct {
	Host string

	upstream string
	port     int
	mu       sync.Mutex
	pids     map[int]string    // pid: label
	conns    map[string]string // client address: label
	use      map[string]*usage // label: usage
}

func newAttributing(t testing.TB, upstream string) *attributing {
	t.Helper()
	target := &url.URL{Scheme: "http", Host: upstream}
	a := &attributing{upstream: upstream, pids: map[int]string{}, conns: map[string]string{}, use: map[string]*usage{}}
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport: tr,
		ErrorLog:  log.New(io.Discard, "", 0),
		ModifyResponse: func(resp *http.Response) error {
			if u, err := url.Parse(resp.Header.Get("Location")); err == nil && u.Host == upstream {
				u.Host = a.Host
				resp.Header.Set("Location", u.String())
			}
			return nil
		},
	}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		label := a.label(r.RemoteAddr)
		up := &countingReader{r: r.Body}
		r.Body = up
		cw := &countingWriter{ResponseWriter: w}
		rp.ServeHTTP(cw, r)
		a.add(label, kind(r), up.n, cw.n)
	}))
	// A client port is used again once its connection closed, by any
	// process: forget the connection's owner then.
	s.Config.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateClosed || st == http.StateHijacked {
			a.mu.Lock()
			delete(a.conns, c.RemoteAddr().String())
			a.mu.Unlock()
		}
	}
	s.Start()
	t.Cleanup(func() { s.Close(); tr.CloseIdleConnections() })
	a.Host = strings.TrimPrefix(s.URL, "http://")
	_, port, _ := net.SplitHostPort(a.Host)
	a.port, _ = strconv.Atoi(port)
	return a
}

// track attributes pid's requests to label.
func (a *attributing) track(pid int, label string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pids[pid] = label
}

// usage returns what label's processes asked.
func (a *attributing) usage(label string) usage {
	a.mu.Lock()
	defer a.mu.Unlock()
	u, ok := a.use[label]
	if !ok {
		return usage{ByKind: map[string]int{}}
	}
	c := *u
	c.ByKind = map[string]int{}
	for k, v := range u.ByKind {
		c.ByKind[k] = v
	}
	return c
}

func (a *attributing) add(label, kind string, up, down int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u, ok := a.use[label]
	if !ok {
		u = &usage{ByKind: map[string]int{}}
		a.use[label] = u
	}
	u.Requests++
	u.ByKind[kind]++
	u.Up += up
	u.Down += down
}

// label finds the tracked process whose socket is the client end of
// remote, once per connection. A process may connect a moment before it
// is tracked: it is looked for again for up to a second.
func (a *attributing) label(remote string) string {
	a.mu.Lock()
	l, ok := a.conns[remote]
	a.mu.Unlock()
	if ok {
		return l
	}
	_, p, _ := net.SplitHostPort(remote)
	port, _ := strconv.Atoi(p)
	l = "other"
	for range 100 {
		if found, ok := a.owner(socketInode(port, a.port)); ok {
			l = found
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.mu.Lock()
	a.conns[remote] = l
	a.mu.Unlock()
	return l
}

// owner is the label of the tracked process holding socket inode.
func (a *attributing) owner(inode string) (string, bool) {
	if inode == "" {
		return "", false
	}
	a.mu.Lock()
	pids := make(map[int]string, len(a.pids))
	for p, l := range a.pids {
		pids[p] = l
	}
	a.mu.Unlock()
	want := "socket:[" + inode + "]"
	for pid, l := range pids {
		fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
		for _, fd := range fds {
			if target, err := os.Readlink(fd); err == nil && target == want {
				return l, true
			}
		}
	}
	return "", false
}

// socketInode finds in /proc/net/tcp the inode of the socket whose local
// port is port and remote port is peer.
func socketInode(port, peer int) string {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return ""
	}
	defer f.Close()
	local, remote := fmt.Sprintf(":%04X", port), fmt.Sprintf(":%04X", peer)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 9 && strings.HasSuffix(fs[1], local) && strings.HasSuffix(fs[2], remote) {
			return fs[9]
		}
	}
	return ""
}

var route = regexp.MustCompile(`^/v2/(.+)/(manifests|blobs|tags|referrers)/(.*)$`)

// kind names a request as the harness's proxy does: "manifest GET",
// "upload PUT", "ping GET", …
func kind(r *http.Request) string {
	k := "other"
	switch m := route.FindStringSubmatch(r.URL.Path); {
	case r.URL.Path == "/v2/" || r.URL.Path == "/v2":
		k = "ping"
	case m == nil:
	case m[2] == "manifests":
		k = "manifest"
	case m[2] == "blobs" && strings.HasPrefix(m[3], "uploads"):
		k = "upload"
	case m[2] == "blobs":
		k = "blob"
	case m[2] == "referrers":
		k = "referrers"
	case m[2] == "tags":
		k = "tags"
	}
	return k + " " + r.Method
}

type countingReader struct {
	r io.ReadCloser
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.r == nil {
		return 0, io.EOF
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) Close() error {
	if c.r == nil {
		return nil
	}
	return c.r.Close()
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the writer's Flush.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
