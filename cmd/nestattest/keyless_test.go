package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tuf"
	"github.com/spf13/cobra"

	"github.com/nestattest/nestattest/internal/ghoidc"
	"github.com/nestattest/nestattest/registry"
)

// A signing config v0.2 naming one Fulcio, one Rekor v2 log and one TSA.
const testSigningConfig = `{
  "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
  "caUrls": [{"url": "https://fulcio.config.example", "majorApiVersion": 1, "validFor": {"start": "2020-01-01T00:00:00Z"}, "operator": "test"}],
  "oidcUrls": [{"url": "https://oauth2.config.example", "majorApiVersion": 1, "validFor": {"start": "2020-01-01T00:00:00Z"}, "operator": "test"}],
  "rekorTlogUrls": [{"url": "https://rekor.config.example", "majorApiVersion": 2, "validFor": {"start": "2020-01-01T00:00:00Z"}, "operator": "test"}],
  "rekorTlogConfig": {"selector": "ANY"},
  "tsaUrls": [{"url": "https://tsa.config.example/api/v1/timestamp", "majorApiVersion": 1, "validFor": {"start": "2020-01-01T00:00:00Z"}, "operator": "test"}],
  "tsaConfig": {"selector": "ANY"}
}`

// TestEmptyServiceFlagsAreUnset: a Tekton step passes every flag, each
// param left at its default "" as an empty value (--rekor-url=). An empty
// value is no value: cosign's default applies, or the signing config's
// service; only a value given overrides the signing config.
func TestEmptyServiceFlagsAreUnset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing_config.json")
	if err := os.WriteFile(path, []byte(testSigningConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	sc, err := root.NewSigningConfigFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	// A signing config that names no timestamp authority has no tsaConfig
	// either: no timestamps, rather than a nil dereference in sigstore-go.
	var doc map[string]any
	if err := json.Unmarshal([]byte(testSigningConfig), &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "tsaUrls")
	delete(doc, "tsaConfig")
	raw, _ := json.Marshal(doc)
	noTSAPath := filepath.Join(t.TempDir(), "signing_config.json")
	if err := os.WriteFile(noTSAPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	noTSA, err := root.NewSigningConfigFromPath(noTSAPath)
	if err != nil {
		t.Fatal(err)
	}
	empty := []string{"--key=", "--fulcio-url=", "--rekor-url=", "--timestamp-server-url=", "--trusted-root=", "--signing-config="}
	for _, tc := range []struct {
		name               string
		args               []string
		sc                 *root.SigningConfig
		fulcio, rekor, tsa string
		rekorVersion       uint32
		noTlog             bool
	}{
		{name: "nothing given", fulcio: defaultFulcioURL, rekor: defaultRekorURL, rekorVersion: 1},
		{name: "empty values", args: empty, fulcio: defaultFulcioURL, rekor: defaultRekorURL, rekorVersion: 1},
		{name: "empty values, signing config", args: empty, sc: sc,
			fulcio: "https://fulcio.config.example", rekor: "https://rekor.config.example", rekorVersion: 2, tsa: "https://tsa.config.example/api/v1/timestamp"},
		{name: "values", args: []string{"--fulcio-url=https://f.example", "--rekor-url=https://r.example", "--timestamp-server-url=https://t.example"},
			fulcio: "https://f.example", rekor: "https://r.example", rekorVersion: 1, tsa: "https://t.example"},
		{name: "values override the signing config", sc: sc, args: []string{"--fulcio-url=https://f.example", "--rekor-url=https://r.example", "--timestamp-server-url=https://t.example"},
			fulcio: "https://f.example", rekor: "https://r.example", rekorVersion: 1, tsa: "https://t.example"},
		{name: "signing config without a timestamp authority", args: empty, sc: noTSA,
			fulcio: "https://fulcio.config.example", rekor: "https://rekor.config.example", rekorVersion: 2},
		{name: "no transparency log", args: append(empty, "--tlog-upload=false"), fulcio: defaultFulcioURL, noTlog: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o signingOptions
			cmd := &cobra.Command{Use: "sign"}
			o.addFlags(cmd)
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			if o.key.key != "" {
				t.Errorf("--key=%q, want empty: keyless", o.key.key)
			}
			fulcio, err := o.fulcio(cmd, tc.sc)
			if err != nil || fulcio != tc.fulcio {
				t.Errorf("Fulcio %q (%v), want %q", fulcio, err, tc.fulcio)
			}
			if tsa := o.tsa(cmd, tc.sc, time.Now()); tsa != tc.tsa {
				t.Errorf("TSA %q, want %q", tsa, tc.tsa)
			}
			rekor, err := o.rekor(cmd, tc.sc, time.Now())
			switch {
			case err != nil:
				t.Errorf("Rekor: %v", err)
			case tc.noTlog && rekor != nil:
				t.Errorf("Rekor %+v, want none", rekor)
			case !tc.noTlog && (rekor == nil || rekor.BaseURL != tc.rekor || rekor.Version != tc.rekorVersion):
				t.Errorf("Rekor %+v, want %s v%d", rekor, tc.rekor, tc.rekorVersion)
			}
		})
	}
}

// TestEmptyKeyIsKeyless: --key= (a KEY param left empty) signs keylessly,
// as no --key does, rather than failing on a key named "".
func TestEmptyKeyIsKeyless(t *testing.T) {
	t.Setenv(envIDToken, "")
	t.Setenv(ghoidc.EnvRequestURL, "")
	for _, args := range [][]string{
		{"sign", "--key=", "127.0.0.1:1/org/ko-build:latest"},
		{"sign", "--key=", "--fulcio-url=", "--rekor-url=", "--timestamp-server-url=", "--signing-config=", "--trusted-root=", "127.0.0.1:1/org/ko-build:latest"},
	} {
		code, stdout, stderr := execute(args...)
		if want := "keyless signing needs an OIDC identity token"; code != ExitUsage || !strings.Contains(stdout+stderr, want) {
			t.Errorf("%v: exit %d, want %d with %q\n%s%s", args, code, ExitUsage, want, stdout, stderr)
		}
	}
}

// TestGitHubActionsToken: in a GitHub Actions job, keyless signing takes
// the job's OIDC token for audience sigstore (internal/ghoidc asks for it),
// and the token is then a secret every output is redacted of.
func TestGitHubActionsToken(t *testing.T) {
	const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOm9yZy9yZXBvIn0.c2lnbmF0dXJl"
	var audiences []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		audiences = append(audiences, r.URL.Query().Get("audience"))
		fmt.Fprintf(w, `{"count":1,"value":%q}`, jwt)
	}))
	defer srv.Close()
	t.Setenv(envIDToken, "")
	t.Setenv(ghoidc.EnvRequestURL, srv.URL+"/token?api-version=2.0")
	t.Setenv(ghoidc.EnvRequestToken, "request-token")
	s := streams{secrets: &registry.Secrets{}}
	o := &signingOptions{}
	src, err := o.tokenSource(s)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := src(context.Background())
	if err != nil || tok != jwt {
		t.Fatalf("token %q, %v", tok, err)
	}
	if len(audiences) != 1 || audiences[0] != tokenAudience {
		t.Errorf("asked for audiences %q, want [%s]", audiences, tokenAudience)
	}
	if got := s.secrets.Redact("token " + jwt); strings.Contains(got, jwt) {
		t.Errorf("the token is not redacted: %q", got)
	}
}

// TestTUFUnreachable: with no --trusted-root, keyless signing and
// verification read sigstore's TUF repository; when it cannot be reached
// and nothing is cached, the error names the URL and both ways on.
func TestTUFUnreachable(t *testing.T) {
	dir := t.TempDir()
	rootJSON := filepath.Join(dir, "root.json")
	if err := os.WriteFile(rootJSON, tuf.DefaultRoot(), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envPassword, "test password")
	if code, _, stderr := execute("generate-key-pair", "--output-key-prefix", filepath.Join(dir, "cosign")); code != 0 {
		t.Fatalf("generate-key-pair: %s", stderr)
	}
	const mirror = "http://127.0.0.1:1"
	tufFlags := []string{"--tuf-mirror", mirror, "--tuf-root", rootJSON, "--tuf-cache", filepath.Join(dir, "cache")}
	for _, args := range [][]string{
		{"sign", "--identity-token", "not-a-token", "127.0.0.1:1/org/ko-build:latest"},
		{"verify", "--certificate-identity", "a@example.com", "--certificate-oidc-issuer", "https://issuer.example", "127.0.0.1:1/org/ko-build:latest"},
		{"verify", "--key", filepath.Join(dir, "cosign.pub"), "127.0.0.1:1/org/ko-build:latest"},
	} {
		code, stdout, stderr := execute(append(args, tufFlags...)...)
		for _, want := range []string{"could not be read", mirror, "--tuf-mirror URL", "--trusted-root FILE"} {
			if code != ExitUsage || !strings.Contains(stdout+stderr, want) {
				t.Errorf("%v: exit %d, want %d with %q\n%s%s", args, code, ExitUsage, want, stdout, stderr)
			}
		}
	}
}
