package harness

import (
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Proxy is a loopback reverse proxy in front of a registry: it counts and
// records the requests it receives, can refuse some, and can inject faults.
// Tests point clients at Host instead of the registry's.
type Proxy struct {
	// Host is the proxy's "127.0.0.1:PORT".
	Host string

	upstream  string
	transport *http.Transport
	forward   *httputil.ReverseProxy

	latency time.Duration

	mu       sync.Mutex
	refuse   func(*http.Request) (int, bool)
	faults   *injector
	counts   Counts
	requests []string
	spans    []Span
}

// Span is one request the proxy answered: when it arrived, when its
// answer was written, and what it was ("METHOD /path?query").
type Span struct {
	Start, End time.Time
	Request    string
}

// ProxyOptions configure a Proxy. The zero value forwards everything.
type ProxyOptions struct {
	// Refuse, if set, is asked about each request; when it refuses, the
	// proxy answers with its status and a distribution-style DENIED error
	// instead of forwarding. See RefuseWritesTo.
	Refuse func(r *http.Request) (status int, refuse bool)
	// Faults, if set, injects faults.
	Faults *Faults
	// Latency is added before every request is answered, as a registry
	// across a network would take: a benchmark's remote-like registry.
	Latency time.Duration
}

// Counts are the requests a proxy has received, refused and faulted ones
// included.
type Counts struct {
	// Total counts every request.
	Total int
	// ByMethod counts requests by method: "GET", "HEAD", "PUT", ...
	ByMethod map[string]int
	// ByKind counts requests by "<kind> <METHOD>", where kind is one of
	// ping (GET /v2/), catalog, tags (tags/list), manifest, blob, upload
	// (blobs/uploads/, including cross-repository mounts), referrers and
	// other: "manifest PUT", "blob HEAD", "upload PATCH", "catalog GET".
	ByKind map[string]int
	// UploadBytes counts the request-body bytes the registry read from
	// blob uploads (POST, PATCH and PUT to blobs/uploads/).
	UploadBytes int64
}

// Writes counts the requests that may change the registry: every method
// but GET and HEAD.
func (c Counts) Writes() int {
	return c.Total - c.ByMethod[http.MethodGet] - c.ByMethod[http.MethodHead]
}

// NewProxy starts a proxy in front of upstream ("host:port"), stopped when
// the test ends.
func NewProxy(t testing.TB, upstream string, opts ProxyOptions) *Proxy {
	t.Helper()
	target, err := url.Parse("http://" + upstream)
	if err != nil {
		t.Fatalf("proxy upstream %q: %v", upstream, err)
	}
	p := &Proxy{upstream: upstream, refuse: opts.Refuse, faults: newInjector(opts.Faults), latency: opts.Latency}
	p.counts = newCounts()
	p.transport = &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64}
	p.forward = &httputil.ReverseProxy{
		Rewrite:        func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:      p.transport,
		ModifyResponse: p.rewriteLocation,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeError(w, http.StatusBadGateway, "UNAVAILABLE", "test proxy: "+err.Error())
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	s := httptest.NewServer(p)
	t.Cleanup(func() {
		s.Close()
		p.transport.CloseIdleConnections()
	})
	p.Host = strings.TrimPrefix(s.URL, "http://")
	return p
}

func newCounts() Counts {
	return Counts{ByMethod: map[string]int{}, ByKind: map[string]int{}}
}

// SetRefuse replaces the refusal hook; nil forwards everything. It is safe
// to call while requests are in flight.
func (p *Proxy) SetRefuse(refuse func(r *http.Request) (status int, refuse bool)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = refuse
}

// RefuseWritesTo returns a refusal hook that answers 403 DENIED to every
// write (POST, PUT, PATCH, DELETE) to the repository repo ("org/ko-build/app3"),
// and lets through reads and writes to any other repository, those below
// repo included.
func RefuseWritesTo(repo string) func(r *http.Request) (status int, refuse bool) {
	return func(r *http.Request) (int, bool) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			return 0, false
		}
		if parseRoute(r.URL.Path).repo != repo {
			return 0, false
		}
		return http.StatusForbidden, true
	}
}

// Counts returns the counts since the proxy started or was last Reset.
func (p *Proxy) Counts() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts
	c.ByMethod = maps.Clone(c.ByMethod)
	c.ByKind = maps.Clone(c.ByKind)
	return c
}

// Requests returns the requests since the proxy started or was last Reset,
// in the order they arrived, as "METHOD /path?query".
func (p *Proxy) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.requests...)
}

// Reset forgets the counts and requests; injected faults are kept.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts = newCounts()
	p.requests = nil
	p.spans = nil
}

// Spans returns the requests answered since the proxy started or was last
// Reset, in the order their answers were written.
func (p *Proxy) Spans() []Span {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Span(nil), p.spans...)
}

// ServeHTTP records a request, then refuses it, injects a fault or
// forwards it to the registry.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.spans = append(p.spans, Span{Start: start, End: time.Now(), Request: r.Method + " " + r.URL.RequestURI()})
	}()
	if p.latency > 0 {
		select {
		case <-time.After(p.latency):
		case <-r.Context().Done():
			return
		}
	}
	rt := parseRoute(r.URL.Path)
	if rt.kind == kindUpload {
		r.Body = &countingBody{ReadCloser: r.Body, p: p}
	}
	status, refused, fault := p.admit(r, rt)
	switch {
	case refused:
		writeError(w, status, "DENIED", "requested access to the resource is denied (test proxy)")
	case fault != "":
		p.inject(w, r, fault)
	default:
		p.forward.ServeHTTP(w, r)
	}
}

// admit records a request and decides its fate, all under the lock so
// refusals and faults follow the order requests arrive in.
func (p *Proxy) admit(r *http.Request, rt route) (status int, refused bool, fault FaultKind) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts.Total++
	p.counts.ByMethod[r.Method]++
	p.counts.ByKind[rt.kind+" "+r.Method]++
	request := r.Method + " " + r.URL.RequestURI()
	p.requests = append(p.requests, request)
	if p.refuse != nil {
		if status, refused = p.refuse(r); refused {
			return status, true, ""
		}
	}
	return 0, false, p.faults.draw(request, rt.kind == kindPing)
}

// rewriteLocation points an absolute Location at the registry back at the
// proxy, so clients following it (upload sessions) keep going through the
// proxy. Relative locations and every other header pass untouched.
func (p *Proxy) rewriteLocation(resp *http.Response) error {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil
	}
	u, err := url.Parse(loc)
	if err != nil || u.Host != p.upstream {
		return nil
	}
	u.Host = p.Host
	resp.Header.Set("Location", u.String())
	return nil
}

// Request kinds, as Counts.ByKind names them.
const (
	kindPing      = "ping"
	kindCatalog   = "catalog"
	kindTags      = "tags"
	kindManifest  = "manifest"
	kindBlob      = "blob"
	kindUpload    = "upload"
	kindReferrers = "referrers"
	kindOther     = "other"
)

// route is what a registry API request addresses.
type route struct {
	repo string // empty for the ping and the catalog
	kind string
}

// endpoint splits /v2/<name>/<endpoint>/<rest>. The greedy name takes the
// last endpoint word, which is right since a reference or an upload ID
// holds no slash, even for repositories named like ".../blobs".
var endpoint = regexp.MustCompile(`^/v2/(.+)/(manifests|blobs|tags|referrers)/(.*)$`)

// parseRoute classifies a request path.
func parseRoute(path string) route {
	switch path {
	case "/v2/", "/v2":
		return route{kind: kindPing}
	case "/v2/_catalog":
		return route{kind: kindCatalog}
	}
	m := endpoint.FindStringSubmatch(path)
	if m == nil {
		return route{kind: kindOther}
	}
	rt := route{repo: m[1]}
	switch {
	case m[2] == "manifests":
		rt.kind = kindManifest
	case m[2] == "blobs" && (m[3] == "uploads" || strings.HasPrefix(m[3], "uploads/")):
		rt.kind = kindUpload
	case m[2] == "blobs":
		rt.kind = kindBlob
	case m[2] == "tags" && m[3] == "list":
		rt.kind = kindTags
	case m[2] == "referrers":
		rt.kind = kindReferrers
	default:
		rt.kind = kindOther
	}
	return rt
}

// countingBody counts the upload bytes the registry reads.
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

// writeError answers with a distribution-style JSON error.
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`+"\n", code, message)
}
