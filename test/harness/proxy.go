package harness

import (
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// FaultKind is a way a proxied request can go wrong.
type FaultKind string

// The faults the proxy injects.
const (
	Fault500       FaultKind = "500"
	Fault502       FaultKind = "502"
	Fault503       FaultKind = "503"
	Fault429       FaultKind = "429"       // with Retry-After: 1
	FaultReset     FaultKind = "reset"     // the request reaches the registry; the connection is reset mid-body
	FaultSlow      FaultKind = "slow"      // served after a pause
	FaultTruncated FaultKind = "truncated" // the request reaches the registry; the body ends early
)

// AllFaults lists every kind.
var AllFaults = []FaultKind{Fault500, Fault502, Fault503, Fault429, FaultReset, FaultSlow, FaultTruncated}

// Faults configure seeded, bounded fault injection: each request (but the
// /v2/ ping) draws from a generator seeded with Seed; with probability Rate
// it gets one of Kinds, until Max faults have been injected.
type Faults struct {
	Seed  int64
	Rate  float64
	Kinds []FaultKind
	Max   int
	// Slow is the pause of FaultSlow; 300ms when zero.
	Slow time.Duration
}

// ProxyOptions configure a Proxy.
type ProxyOptions struct {
	// Refuse, if set, decides per request whether to answer with an error
	// status instead of forwarding.
	Refuse func(r *http.Request) (status int, refuse bool)
	// Faults, if set, injects faults.
	Faults *Faults
}

// Proxy is a loopback reverse proxy in front of a registry that counts
// requests, can refuse some and can inject faults.
type Proxy struct {
	// Host is the proxy's host:port; use it in place of the registry's.
	Host     string
	upstream string
	rp       *httputil.ReverseProxy

	mu       sync.Mutex
	refuse   func(*http.Request) (int, bool)
	faults   *Faults
	rng      *rand.Rand
	injected map[FaultKind]int
	counts   Counts
	requests []string
}

// Counts are the requests a proxy has seen.
type Counts struct {
	// ByKind counts requests by "<what> <METHOD>": "manifest GET",
	// "blob HEAD", "upload POST", "catalog GET", "tags GET", "ping GET",
	// "referrers GET", "other …".
	ByKind map[string]int
	// Total counts every request.
	Total int
	// UploadBytes counts request-body bytes sent to blob uploads.
	UploadBytes int64
}

// Writes counts the requests that change the registry: every method but
// GET and HEAD.
func (c Counts) Writes() int {
	n := 0
	for k, v := range c.ByKind {
		if !strings.HasSuffix(k, " GET") && !strings.HasSuffix(k, " HEAD") {
			n += v
		}
	}
	return n
}

// NewProxy starts a proxy in front of upstream (host:port).
func NewProxy(t testing.TB, upstream string, opts ProxyOptions) *Proxy {
	t.Helper()
	u, err := url.Parse("http://" + upstream)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{upstream: upstream, refuse: opts.Refuse, faults: opts.Faults, injected: map[FaultKind]int{}}
	p.counts.ByKind = map[string]int{}
	if opts.Faults != nil {
		p.rng = rand.New(rand.NewSource(opts.Faults.Seed))
	}
	p.rp = httputil.NewSingleHostReverseProxy(u)
	p.rp.ModifyResponse = p.rewriteLocation
	s := httptest.NewServer(p)
	t.Cleanup(s.Close)
	p.Host = strings.TrimPrefix(s.URL, "http://")
	return p
}

// SetRefuse replaces the refusal hook; nil forwards everything.
func (p *Proxy) SetRefuse(f func(*http.Request) (int, bool)) {
	p.mu.Lock()
	p.refuse = f
	p.mu.Unlock()
}

// RefuseWritesTo refuses, with 403 DENIED, every write (POST, PUT, PATCH,
// DELETE) to one repository (such as "org/ko-build/app3"), not to the
// repositories below it.
func RefuseWritesTo(repo string) func(*http.Request) (int, bool) {
	return func(r *http.Request) (int, bool) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			return 0, false
		}
		rest, ok := strings.CutPrefix(r.URL.Path, "/v2/"+repo+"/")
		return http.StatusForbidden, ok && (strings.HasPrefix(rest, "blobs/") || strings.HasPrefix(rest, "manifests/"))
	}
}

// Counts returns the counts so far.
func (p *Proxy) Counts() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := Counts{ByKind: map[string]int{}, Total: p.counts.Total, UploadBytes: p.counts.UploadBytes}
	for k, v := range p.counts.ByKind {
		c.ByKind[k] = v
	}
	return c
}

// Requests returns every request so far as "METHOD path?query".
func (p *Proxy) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.requests...)
}

// Injected returns how many faults of each kind were injected.
func (p *Proxy) Injected() map[FaultKind]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[FaultKind]int{}
	for k, v := range p.injected {
		out[k] = v
	}
	return out
}

// Reset forgets the counts and requests.
func (p *Proxy) Reset() {
	p.mu.Lock()
	p.counts = Counts{ByKind: map[string]int{}}
	p.requests = nil
	p.mu.Unlock()
}

// ServeHTTP counts, refuses, injects faults or forwards.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if isUpload(r) && r.Body != nil {
		r.Body = &countingBody{ReadCloser: r.Body, p: p}
	}
	status, refused, fault := p.admit(r)
	switch {
	case refused:
		writeError(w, status, "DENIED", "refused by the test proxy")
	case fault == Fault500 || fault == Fault502 || fault == Fault503:
		code := map[FaultKind]int{Fault500: 500, Fault502: 502, Fault503: 503}[fault]
		writeError(w, code, "UNAVAILABLE", "injected fault")
	case fault == Fault429:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", "injected fault")
	case fault == FaultSlow:
		time.Sleep(p.slow())
		p.rp.ServeHTTP(w, r)
	case fault == FaultReset || fault == FaultTruncated:
		p.breakResponse(w, r, fault == FaultReset)
	default:
		p.rp.ServeHTTP(w, r)
	}
}

// admit records a request and decides its fate.
func (p *Proxy) admit(r *http.Request) (status int, refused bool, fault FaultKind) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts.Total++
	p.counts.ByKind[kind(r)+" "+r.Method]++
	p.requests = append(p.requests, r.Method+" "+r.URL.RequestURI())
	if p.refuse != nil {
		if status, refused = p.refuse(r); refused {
			return status, true, ""
		}
	}
	f := p.faults
	if f == nil || r.URL.Path == "/v2/" || (f.Max > 0 && total(p.injected) >= f.Max) || len(f.Kinds) == 0 {
		return 0, false, ""
	}
	if p.rng.Float64() >= f.Rate {
		return 0, false, ""
	}
	fault = f.Kinds[p.rng.Intn(len(f.Kinds))]
	p.injected[fault]++
	return 0, false, fault
}

func (p *Proxy) slow() time.Duration {
	if p.faults.Slow > 0 {
		return p.faults.Slow
	}
	return 300 * time.Millisecond
}

// breakResponse forwards the request, then sends the status, the headers
// and half the body, and ends the connection: with a reset (RST), or with
// a plain close that leaves the body short of its Content-Length.
func (p *Proxy) breakResponse(w http.ResponseWriter, r *http.Request, reset bool) {
	out := r.Clone(r.Context())
	out.URL.Scheme, out.URL.Host, out.RequestURI = "http", p.upstream, ""
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		writeError(w, http.StatusBadGateway, "UNAVAILABLE", err.Error())
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	_ = p.rewriteLocation(resp)
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(buf, "HTTP/1.1 %s\r\n", resp.Status)
	resp.Header.Set("Content-Length", fmt.Sprint(max(len(body), 2)))
	_ = resp.Header.Write(buf)
	buf.WriteString("\r\n")
	buf.Write(body[:len(body)/2])
	_ = buf.Flush()
	if tcp, ok := conn.(*net.TCPConn); ok && reset {
		_ = tcp.SetLinger(0)
	}
}

func (p *Proxy) rewriteLocation(resp *http.Response) error {
	if loc := resp.Header.Get("Location"); loc != "" {
		resp.Header.Set("Location", strings.Replace(loc, "://"+p.upstream, "://"+p.Host, 1))
	}
	return nil
}

// kind names what a request is for.
func kind(r *http.Request) string {
	path := r.URL.Path
	switch {
	case path == "/v2/":
		return "ping"
	case path == "/v2/_catalog":
		return "catalog"
	case strings.Contains(path, "/blobs/uploads"):
		return "upload"
	case strings.Contains(path, "/blobs/"):
		return "blob"
	case strings.Contains(path, "/manifests/"):
		return "manifest"
	case strings.HasSuffix(path, "/tags/list"):
		return "tags"
	case strings.Contains(path, "/referrers/"):
		return "referrers"
	}
	return "other"
}

func isUpload(r *http.Request) bool { return strings.Contains(r.URL.Path, "/blobs/uploads") }

func total(m map[FaultKind]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// countingBody counts upload bytes as the registry reads them.
type countingBody struct {
	io.ReadCloser
	p *Proxy
}

func (b *countingBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	b.p.mu.Lock()
	b.p.counts.UploadBytes += int64(n)
	b.p.mu.Unlock()
	return n, err
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, code, msg)
}
