package registry

import (
	"net/http"
	"sync"
)

// limitTransport lets at most n requests per host wait for an answer at
// once, across every repository and goroutine of a run: the one
// concurrency limit that walk, catalog and attest share. A slot is held
// from sending a request until its response headers arrive; retries take a
// slot per attempt, and the waits between them hold none.
type limitTransport struct {
	inner http.RoundTripper
	n     int

	mu    sync.Mutex
	hosts map[string]chan struct{}
}

func newLimitTransport(inner http.RoundTripper, n int) *limitTransport {
	return &limitTransport{inner: inner, n: n, hosts: map[string]chan struct{}{}}
}

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	sem := t.slots(req.URL.Host)
	select {
	case sem <- struct{}{}:
	case <-req.Context().Done():
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, req.Context().Err()
	}
	defer func() { <-sem }()
	count(req.Context())
	return t.inner.RoundTrip(req)
}

func (t *limitTransport) slots(host string) chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.hosts[host]
	if !ok {
		s = make(chan struct{}, t.n)
		t.hosts[host] = s
	}
	return s
}
