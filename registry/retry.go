package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/nestattest/nestattest/internal/backoff"
)

// maxRetryAfter caps how long a Retry-After header can make us wait.
const maxRetryAfter = 30 * time.Second

// retryTransport retries requests that failed with a connection error or a
// status a registry uses for passing trouble (408, 429, 500, 502, 503, 504).
// A request whose body cannot be replayed is sent once.
type retryTransport struct {
	inner   http.RoundTripper
	retries int
	backoff time.Duration
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	wait := backoff.Backoff{First: t.backoff}
	for attempt := 0; ; attempt++ {
		r, err := rewind(req, attempt)
		if err != nil {
			return nil, err
		}
		resp, err := t.inner.RoundTrip(r)
		if attempt >= t.retries || !retryable(req, resp, err) {
			return resp, err
		}
		d := retryAfter(resp, wait.Next())
		if resp != nil {
			drain(resp)
		}
		if err := backoff.Sleep(req.Context(), d); err != nil {
			return nil, err
		}
	}
}

// rewind returns the request for an attempt, with a fresh body on retries.
func rewind(req *http.Request, attempt int) (*http.Request, error) {
	if attempt == 0 || req.Body == nil || req.Body == http.NoBody {
		return req, nil
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Body = body
	return r, nil
}

func retryable(req *http.Request, resp *http.Response, err error) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	if err != nil {
		return req.Context().Err() == nil && !errors.Is(err, context.Canceled) && !permanent(err)
	}
	switch resp.StatusCode {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// permanent reports connection errors that a retry cannot mend: a plain
// HTTP server asked for HTTPS (go-containerregistry's ping tries HTTPS first
// on loopback and insecure registries, and falls back to HTTP only once the
// HTTPS attempt gives up) and a certificate that does not verify.
func permanent(err error) bool {
	var rhe tls.RecordHeaderError
	var cve *tls.CertificateVerificationError
	return errors.Is(err, http.ErrSchemeMismatch) || errors.As(err, &rhe) || errors.As(err, &cve)
}

// retryAfter is the wait the registry asked for, or the backoff's wait.
func retryAfter(resp *http.Response, wait time.Duration) time.Duration {
	if resp == nil {
		return wait
	}
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return wait
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return min(time.Duration(s)*time.Second, maxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(time.Until(t), 0), maxRetryAfter)
	}
	return wait
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}
