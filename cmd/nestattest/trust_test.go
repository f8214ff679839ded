package main

import (
	"strings"
	"testing"
)

// TestTrustFlagsRefused: verify and propagate take one group of trust
// flags (propagate's after "source-"), refused alike when they conflict or
// fall short: exit 2, before anything is loaded or read, with an error
// naming the flags the command has and how to go on. A key and an
// identity together are refused, not resolved in favour of the key.
func TestTrustFlagsRefused(t *testing.T) {
	const ref = "127.0.0.1:1/org/ko-build:latest"
	id := []string{"--certificate-identity", "a@example.com", "--certificate-oidc-issuer", "https://issuer.example"}
	srcID := []string{"--source-certificate-identity-regexp", ".*", "--source-certificate-oidc-issuer", "https://issuer.example"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"verify: nobody", []string{"verify", ref},
			"say whom to trust: --key, or --certificate-identity[-regexp] and --certificate-oidc-issuer[-regexp]"},
		{"verify: key and identity", append([]string{"verify", "--key", "/nonexistent.pub", ref}, id...),
			"--key and --certificate-identity/--certificate-oidc-issuer exclude each other: give --key to trust signatures by a key, or --certificate-identity and --certificate-oidc-issuer to trust keyless signatures"},
		{"verify: identity twice", append([]string{"verify", "--certificate-identity-regexp", ".*", ref}, id...),
			"--certificate-identity and --certificate-identity-regexp exclude each other: give one"},
		{"verify: no issuer", []string{"verify", "--certificate-identity", "a@example.com", ref},
			"keyless verification needs the certificate's OIDC issuer: give --certificate-oidc-issuer or --certificate-oidc-issuer-regexp"},
		{"verify: root annotation and --require-root", []string{"verify", "--key", "/nonexistent.pub", "-a", "dev.nestattest.root=x", "--require-root", ref},
			"--annotations dev.nestattest.root=… and --require-root exclude each other"},
		{"verify: unknown type", []string{"verify", "--key", "/nonexistent.pub", "--type", "provenance", ref},
			`--type: invalid predicate: type "provenance"`},
		{"propagate: nobody", []string{"propagate", "--key", "/nonexistent.key", ref},
			"say whom to trust: --source-key, or --source-certificate-identity[-regexp] and --source-certificate-oidc-issuer[-regexp]"},
		{"propagate: key and identity", append([]string{"propagate", "--source-key", "/nonexistent.pub", "--key", "/nonexistent.key", ref}, srcID...),
			"--source-key and --source-certificate-identity-regexp/--source-certificate-oidc-issuer exclude each other: give --source-key to trust signatures by a key, or --source-certificate-identity-regexp and --source-certificate-oidc-issuer to trust keyless signatures"},
		{"propagate: no issuer", []string{"propagate", "--source-certificate-identity", "builder@example.com", "--key", "/nonexistent.key", ref},
			"give --source-certificate-oidc-issuer or --source-certificate-oidc-issuer-regexp"},
		{"propagate: unknown source type", []string{"propagate", "--source-key", "/nonexistent.pub", "--source-type", "provenance", "--key", "/nonexistent.key", ref},
			`--source-type: invalid predicate: type "provenance"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := execute(tc.args...)
			if code != ExitUsage || !strings.Contains(stdout+stderr, tc.want) {
				t.Errorf("%v: exit %d, want %d with %q\n%s%s", tc.args, code, ExitUsage, tc.want, stdout, stderr)
			}
			if strings.Contains(stdout+stderr, "/nonexistent") {
				t.Errorf("%v: a key was loaded before the flags were refused:\n%s%s", tc.args, stdout, stderr)
			}
		})
	}
}
