package ghoidc

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestToken: in a GitHub Actions job with `id-token: write`, the token
// comes from $ACTIONS_ID_TOKEN_REQUEST_URL (its own query kept) for the
// audience asked, with the request token as bearer. Without the
// permission, the error says which one.
func TestToken(t *testing.T) {
	const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOm9yZy9yZXBvIn0.c2lnbmF0dXJl"
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.URL.Query().Get("api-version")+" "+r.URL.Query().Get("audience")+" "+r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") != "bearer request-token" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		fmt.Fprintf(w, `{"count":1,"value":%q}`, jwt)
	}))
	defer srv.Close()
	t.Setenv(EnvRequestURL, srv.URL+"/token?api-version=2.0")
	t.Setenv(EnvRequestToken, "request-token")
	if !Available() {
		t.Fatalf("Available() with %s set: false", EnvRequestURL)
	}
	tok, err := Token(context.Background(), "sigstore")
	if err != nil || tok != jwt {
		t.Fatalf("token %q, %v", tok, err)
	}
	if len(asked) != 1 || asked[0] != "2.0 sigstore bearer request-token" {
		t.Errorf("asked %q, want api-version kept, audience sigstore, the request token", asked)
	}

	t.Setenv(EnvRequestToken, "wrong")
	if _, err := Token(context.Background(), "sigstore"); err == nil || !strings.Contains(err.Error(), "id-token: write") {
		t.Errorf("refused: %v", err)
	}
	t.Setenv(EnvRequestURL, "")
	if Available() {
		t.Errorf("Available() without %s: true", EnvRequestURL)
	}
}
