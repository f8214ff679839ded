package harness

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/kms"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/aws" // registers awskms://
)

// setEnv sets "KEY=value" variables for the rest of the test.
func setEnv(t *testing.T, env []string) {
	t.Helper()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// TestKMSSigstore: sigstore's AWS KMS client, configured as a user would,
// signs through local-kms with the seeded key, with the endpoint in the
// environment or in the reference (HTTPS); one GetPublicKey and one
// DescribeKey load the key, one Sign signs.
func TestKMSSigstore(t *testing.T) {
	k := StartKMS(t, KMSOptions{})
	setEnv(t, k.Env())
	msg := []byte("nestattest payload")
	for _, tc := range []struct {
		name, ref string
		env       []string
	}{
		{"AWS_ENDPOINT_URL", k.KeyRef(), nil},
		{"endpoint in the reference, AWS_CA_BUNDLE", k.TLSKeyRef(), []string{"AWS_CA_BUNDLE=" + k.CAFile}},
		{"endpoint in the reference, AWS_TLS_INSECURE_SKIP_VERIFY", k.TLSKeyRef(), []string{"AWS_TLS_INSECURE_SKIP_VERIFY=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setEnv(t, tc.env)
			k.Reset()
			sv, err := kms.Get(context.Background(), tc.ref, crypto.SHA256)
			if err != nil {
				t.Fatalf("kms.Get(%s): %v", tc.ref, err)
			}
			sig, err := sv.SignMessage(bytes.NewReader(msg))
			if err != nil {
				t.Fatalf("sign: %v", err)
			}
			pub, err := sv.PublicKey()
			if err != nil || !k.PublicKey.Equal(pub) {
				t.Fatalf("public key %v, %v; want the seeded key", pub, err)
			}
			verifier, err := signature.LoadVerifier(pub, crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			digest := sha256.Sum256(msg)
			if err := verifier.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)); err != nil || !ecdsa.VerifyASN1(k.PublicKey, digest[:], sig) {
				t.Errorf("signature does not verify: %v", err)
			}
			want := map[string]int{KMSGetPublicKey: 1, KMSDescribeKey: 1, KMSSign: 1}
			if got := k.Counts(); !maps.Equal(got, want) {
				t.Errorf("requests %v, want %v", got, want)
			}
			t.Logf("%s: requests %v", tc.ref, k.Counts())
		})
	}
	t.Run("unverified certificate", func(t *testing.T) {
		sv, err := kms.Get(context.Background(), k.TLSKeyRef(), crypto.SHA256)
		if err == nil {
			_, err = sv.PublicKey()
		}
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("HTTPS to the proxy without AWS_TLS_INSECURE_SKIP_VERIFY: %v, want a certificate error", err)
		}
		t.Logf("without AWS_TLS_INSECURE_SKIP_VERIFY=1: %v", err)
	})
}

// TestKMSCosign: the cosign CLI prints the seeded public key and signs a
// blob with it, the endpoint in the environment or in the reference
// (with the proxy's certificate trusted through AWS_CA_BUNDLE, or not
// verified).
func TestKMSCosign(t *testing.T) {
	cosign := Tool(t, "cosign")
	k := StartKMS(t, KMSOptions{})
	want, err := cryptoutils.MarshalPublicKeyToPEM(k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	blob := filepath.Join(dir, "blob")
	if err := os.WriteFile(blob, []byte("nestattest blob"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, ref string
		env       []string
	}{
		{"AWS_ENDPOINT_URL", k.KeyRef(), k.Env()},
		{"AWS_CA_BUNDLE", k.TLSKeyRef(), append(k.Env(), "AWS_CA_BUNDLE="+k.CAFile)},
		{"AWS_TLS_INSECURE_SKIP_VERIFY", k.TLSKeyRef(), append(k.Env(), "AWS_TLS_INSECURE_SKIP_VERIFY=1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k.Reset()
			r := RunEnv(t, tc.env, cosign, "public-key", "--key", tc.ref)
			if r.Code != 0 || r.Stdout != string(want) {
				t.Fatalf("cosign public-key --key %s: %d\n%s\n%s\nwant\n%s", tc.ref, r.Code, r.Stdout, r.Stderr, want)
			}
			sigFile := filepath.Join(dir, tc.name+".sig")
			r = RunEnv(t, tc.env, cosign, "sign-blob", "--yes", "--tlog-upload=false", "--key", tc.ref, "--output-signature", sigFile, blob)
			if r.Code != 0 {
				t.Fatalf("cosign sign-blob --key %s: %d\n%s", tc.ref, r.Code, r.Stderr)
			}
			b64, _ := os.ReadFile(sigFile)
			sig, err := base64.StdEncoding.DecodeString(string(b64))
			digest := sha256.Sum256([]byte("nestattest blob"))
			if err != nil || !ecdsa.VerifyASN1(k.PublicKey, digest[:], sig) {
				t.Errorf("cosign's signature %q does not verify: %v", b64, err)
			}
			if got := k.Counts(); got[KMSSign] != 1 {
				t.Errorf("requests %v, want one Sign", got)
			}
			t.Logf("%s: requests %v", tc.ref, k.Counts())
		})
	}
}
