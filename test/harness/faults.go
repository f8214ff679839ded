package harness

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"
)

// FaultKind is a way a proxied request goes wrong.
type FaultKind string

// The faults a Proxy injects. The first four answer without forwarding;
// FaultReset and FaultTruncated forward the request, so the registry acts
// on it, and break the answer; FaultSlow forwards it late.
const (
	Fault500       FaultKind = "500"       // 500 UNKNOWN
	Fault502       FaultKind = "502"       // 502 UNAVAILABLE
	Fault503       FaultKind = "503"       // 503 UNAVAILABLE
	Fault429       FaultKind = "429"       // 429 TOOMANYREQUESTS with Retry-After: 1
	FaultReset     FaultKind = "reset"     // the connection is reset (RST) halfway through the response
	FaultTruncated FaultKind = "truncated" // the connection is closed halfway through the response, short of its Content-Length
	FaultSlow      FaultKind = "slow"      // the request is forwarded after Faults.Slow
)

// AllFaults lists every FaultKind.
var AllFaults = []FaultKind{Fault500, Fault502, Fault503, Fault429, FaultReset, FaultTruncated, FaultSlow}

// defaultSlow is the pause of FaultSlow when Faults.Slow is zero.
const defaultSlow = 300 * time.Millisecond

// Faults configure seeded, bounded fault injection. Each request draws from
// a generator seeded with Seed: with probability Rate it gets one of Kinds,
// picked uniformly, until Max faults have been injected. Requests draw in
// the order they reach the proxy, so a client that sends its requests one
// at a time meets the same faults at the same requests on every run.
type Faults struct {
	Seed int64
	// Rate is the probability of a fault per request, from 0 to 1.
	Rate  float64
	Kinds []FaultKind
	// Max bounds the faults injected in total; zero means no bound.
	Max int
	// Slow is the pause of FaultSlow; 300ms when zero.
	Slow time.Duration
	// Pings lets faults hit GET /v2/, which they spare by default.
	Pings bool
}

// InjectedFault is one fault the proxy injected.
type InjectedFault struct {
	Kind FaultKind
	// Request is "METHOD /path?query".
	Request string
}

// injector draws faults; the proxy's lock guards it. A nil injector
// injects nothing.
type injector struct {
	cfg Faults
	rng *rand.Rand
	log []InjectedFault
}

func newInjector(f *Faults) *injector {
	if f == nil {
		return nil
	}
	seed := uint64(f.Seed)
	return &injector{cfg: *f, rng: rand.New(rand.NewPCG(seed, seed))}
}

// draw decides whether request gets a fault, and which.
func (in *injector) draw(request string, ping bool) FaultKind {
	if in == nil || len(in.cfg.Kinds) == 0 || (ping && !in.cfg.Pings) {
		return ""
	}
	if in.cfg.Max > 0 && len(in.log) >= in.cfg.Max {
		return ""
	}
	if in.rng.Float64() >= in.cfg.Rate {
		return ""
	}
	kind := in.cfg.Kinds[in.rng.IntN(len(in.cfg.Kinds))]
	in.log = append(in.log, InjectedFault{Kind: kind, Request: request})
	return kind
}

// Injected returns how many faults of each kind the proxy has injected.
func (p *Proxy) Injected() map[FaultKind]int {
	counts := map[FaultKind]int{}
	for _, f := range p.FaultLog() {
		counts[f.Kind]++
	}
	return counts
}

// FaultLog returns the faults the proxy has injected, in order.
func (p *Proxy) FaultLog() []InjectedFault {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.faults == nil {
		return nil
	}
	return append([]InjectedFault(nil), p.faults.log...)
}

// errorStatus is what the status faults answer with.
var errorStatus = map[FaultKind]struct {
	status int
	code   string
}{
	Fault500: {http.StatusInternalServerError, "UNKNOWN"},
	Fault502: {http.StatusBadGateway, "UNAVAILABLE"},
	Fault503: {http.StatusServiceUnavailable, "UNAVAILABLE"},
	Fault429: {http.StatusTooManyRequests, "TOOMANYREQUESTS"},
}

// inject serves r with the fault kind.
func (p *Proxy) inject(w http.ResponseWriter, r *http.Request, kind FaultKind) {
	switch kind {
	case FaultReset, FaultTruncated:
		p.breakResponse(w, r, kind == FaultReset)
	case FaultSlow:
		select {
		case <-time.After(p.faults.slow()):
			p.forward.ServeHTTP(w, r)
		case <-r.Context().Done():
		}
	default:
		e := errorStatus[kind]
		if kind == Fault429 {
			w.Header().Set("Retry-After", "1")
		}
		writeError(w, e.status, e.code, "fault injected by the test proxy")
	}
}

func (in *injector) slow() time.Duration {
	if in.cfg.Slow > 0 {
		return in.cfg.Slow
	}
	return defaultSlow
}

// breakResponse forwards r, then writes the first half of the registry's
// response (status line, headers with the true Content-Length, body) on
// the raw connection and ends it: with a reset, or with a plain close. A
// response without a body is cut halfway through its headers.
func (p *Proxy) breakResponse(w http.ResponseWriter, r *http.Request, reset bool) {
	out := r.Clone(r.Context())
	out.URL.Scheme, out.URL.Host, out.Host, out.RequestURI = "http", p.upstream, "", ""
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		writeError(w, http.StatusBadGateway, "UNAVAILABLE", "test proxy: "+err.Error())
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		writeError(w, http.StatusBadGateway, "UNAVAILABLE", "test proxy: "+err.Error())
		return
	}
	_ = p.rewriteLocation(resp)
	head := responseHead(resp, body)
	cut := len(head) + len(body)/2
	if len(body) < 2 {
		cut = len(head) / 2
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	_, _ = conn.Write(append(head, body...)[:cut])
	if tcp, ok := conn.(*net.TCPConn); ok && reset {
		_ = tcp.SetLinger(0) // Close sends RST
	}
	_ = conn.Close()
}

// responseHead is resp's status line and headers as HTTP/1.1 sends them,
// with a Content-Length for body (or, for HEAD, the one the registry gave).
func responseHead(resp *http.Response, body []byte) []byte {
	h := resp.Header.Clone()
	h.Del("Connection")
	h.Del("Transfer-Encoding")
	switch {
	case resp.Request.Method != http.MethodHead:
		h.Set("Content-Length", strconv.Itoa(len(body)))
	case resp.ContentLength >= 0:
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %s\r\n", resp.Status)
	_ = h.Write(&b)
	b.WriteString("\r\n")
	return b.Bytes()
}
