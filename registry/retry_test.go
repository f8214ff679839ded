package registry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// TestNoRetryOnSchemeMismatch: asking a plain HTTP server for HTTPS fails
// at once, so go-containerregistry's ping falls back to HTTP without
// waiting for retries.
func TestNoRetryOnSchemeMismatch(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer s.Close()
	rt := Options{Backoff: time.Second}.base()
	req, _ := http.NewRequest(http.MethodGet, "https://"+strings.TrimPrefix(s.URL, "http://")+"/v2/", nil)
	start := time.Now()
	if _, err := rt.RoundTrip(req); err == nil {
		t.Fatal("HTTPS to a plain HTTP server succeeded")
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("took %v: retried", d)
	}

	repo, err := name.NewRepository(strings.TrimPrefix(s.URL, "http://") + "/org/app")
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if _, err := NewClient(Options{}).transport(context.Background(), repo); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("a transport for a loopback registry took %v", d)
	}
}
