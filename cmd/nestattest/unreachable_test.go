package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnreachableService: a transparency log, a timestamp authority, a
// KMS or a Fulcio that cannot be reached is one error naming it and the
// ways out, exit 1, and nothing written: a run with a key and no services
// afterwards writes every node.
func TestUnreachableService(t *testing.T) {
	host, refs := catalogRegistry(t)
	dir := t.TempDir()
	t.Setenv(envPassword, "test password")
	if code, _, stderr := execute("generate-key-pair", "--output-key-prefix", filepath.Join(dir, "cosign")); code != ExitOK {
		t.Fatalf("generate-key-pair: %s", stderr)
	}
	key := filepath.Join(dir, "cosign.key")
	root := filepath.Join(dir, "trusted_root.json")
	token := filepath.Join(dir, "id-token")
	enc := base64.RawURLEncoding
	jwt := enc.EncodeToString([]byte(`{"alg":"RS256"}`)) + "." + enc.EncodeToString([]byte(`{"iss":"https://issuer.test","sub":"builder@example.test","aud":"sigstore","exp":9999999999}`)) + ".c2ln"
	for f, content := range map[string]string{root: `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`, token: jwt} {
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	parent := host + "/org/ko-build:v1"
	if code, _, stderr := execute("catalog", "--child", "app1="+refs[0], "--child", "app2="+refs[1], parent); code != ExitOK {
		t.Fatalf("catalog: %s", stderr)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"transparency log", nil, []string{"--key", key, "--rekor-url", "http://127.0.0.1:1"},
			[]string{"transparency log http://127.0.0.1:1 cannot be reached (dial tcp 127.0.0.1:1: connect: connection refused)", "--rekor-url", "--tlog-upload=false"}},
		{"timestamp authority", nil, []string{"--key", key, "--tlog-upload=false", "--timestamp-server-url", "http://127.0.0.1:1/api/v1/timestamp"},
			[]string{"timestamp authority http://127.0.0.1:1/api/v1/timestamp cannot be reached", "--timestamp-server-url"}},
		{"KMS", map[string]string{"VAULT_ADDR": "http://127.0.0.1:1", "VAULT_TOKEN": "t"}, []string{"--key", "hashivault://nestattest", "--tlog-upload=false"},
			[]string{"KMS hashivault://nestattest cannot be reached", "VAULT_ADDR"}},
		{"Fulcio", nil, []string{"--fulcio-url", "http://127.0.0.1:1", "--trusted-root", root, "--identity-token", token, "--tlog-upload=false"},
			[]string{"certificate authority (Fulcio) http://127.0.0.1:1 cannot be reached", "--fulcio-url"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, stdout, stderr := execute(append(append([]string{"sign"}, tc.args...), parent)...)
			if code != ExitFailed || strings.Count(stderr, "cannot be reached") != 1 || strings.Contains(stderr, "failed  ") {
				t.Errorf("exit %d, want %d and one error\n%s%s", code, ExitFailed, stdout, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("the error lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
	code, stdout, stderr := execute("sign", "--key", key, "--tlog-upload=false", parent)
	if code != ExitOK || !strings.Contains(stdout, ": 7 written, 0 present") {
		t.Errorf("the tree afterwards, with a key and no services: exit %d, want all 7 nodes written now\n%s%s", code, stdout, stderr)
	}
}
