package registry

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestRetryTransport(t *testing.T) {
	for _, tc := range []struct {
		name     string
		statuses []int
		header   http.Header
		body     bool
		want     int // requests made
		status   int // final status
	}{
		{"503 then ok", []int{503, 200}, nil, false, 2, 200},
		{"429 honours Retry-After", []int{429, 200}, http.Header{"Retry-After": {"0"}}, false, 2, 200},
		{"gives up", []int{502, 502, 502, 502}, nil, false, 3, 502},
		{"404 is final", []int{404, 200}, nil, false, 1, 404},
		{"replayable body retried", []int{500, 201}, nil, true, 2, 201},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := int(calls.Add(1)) - 1
				if tc.body {
					if b, _ := io.ReadAll(r.Body); string(b) != "payload" {
						t.Errorf("attempt %d body %q", i, b)
					}
				}
				for k, v := range tc.header {
					w.Header()[k] = v
				}
				w.WriteHeader(tc.statuses[min(i, len(tc.statuses)-1)])
			}))
			defer s.Close()
			rt := &retryTransport{inner: http.DefaultTransport, retries: 2, backoff: time.Millisecond}
			var body io.Reader
			if tc.body {
				body = bytes.NewReader([]byte("payload"))
			}
			req, _ := http.NewRequest(http.MethodPut, s.URL, body)
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if int(calls.Load()) != tc.want || resp.StatusCode != tc.status {
				t.Errorf("%d requests ending %d, want %d ending %d", calls.Load(), resp.StatusCode, tc.want, tc.status)
			}
		})
	}
}

func TestRetryAfterIsCapped(t *testing.T) {
	resp := &http.Response{Header: http.Header{"Retry-After": {"86400"}}}
	if d := retryAfter(resp, time.Second); d != maxRetryAfter {
		t.Errorf("wait %v, want the cap %v", d, maxRetryAfter)
	}
	resp.Header.Set("Retry-After", "soon")
	if d := retryAfter(resp, time.Second); d != time.Second {
		t.Errorf("unparseable Retry-After: %v", d)
	}
}

func TestRetryStopsWithContext(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	start := time.Now()
	_, err := (&retryTransport{inner: http.DefaultTransport, retries: 5, backoff: time.Millisecond}).RoundTrip(req)
	if err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("error %v after %v", err, time.Since(start))
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"GET https://user:s3cret@reg.example/v2/":                         "GET https://REDACTED@reg.example/v2/",
		"token https://auth.example/token?scope=repo&access_token=abc123": "token https://auth.example/token?access_token=REDACTED&scope=repo",
		"https://s3.example/blob?X-Amz-Signature=deadbeef&x=1":            "https://s3.example/blob?X-Amz-Signature=REDACTED&x=1",
		"no url here": "no url here",
	} {
		if got := RedactURLs(in); got != want || strings.Contains(got, "s3cret") || strings.Contains(got, "abc123") {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClientSharesTransports(t *testing.T) {
	var pings atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			pings.Add(1)
			return
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	defer s.Close()
	c := NewClient(Options{})
	repo, _ := name.NewRepository(strings.TrimPrefix(s.URL, "http://") + "/org/app")
	for range 5 {
		if _, err := c.HasBlob(context.Background(), repo, v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}); err != nil {
			t.Fatal(err)
		}
	}
	if pings.Load() != 1 {
		t.Errorf("%d pings for one repository, want 1", pings.Load())
	}
}

func TestRedactSecrets(t *testing.T) {
	var s Secrets
	s.Add("hunter2-password", "ab") // too short to register
	got := s.Redact("auth failed for hunter2-password, ab")
	if got != "auth failed for REDACTED, ab" {
		t.Errorf("Redact = %q", got)
	}
	var b strings.Builder
	_, _ = s.Writer(&b).Write([]byte("Error: hunter2-password at https://u:p@h/x\n"))
	if b.String() != "Error: REDACTED at https://REDACTED@h/x\n" {
		t.Errorf("Writer wrote %q", b.String())
	}
	var none *Secrets
	if got := none.Redact("https://u:p@h/x"); got != "https://REDACTED@h/x" {
		t.Errorf("nil Secrets: %q", got)
	}
}
