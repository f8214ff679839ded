package harness

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// slsaPredicate is a minimal SLSA v1.0 provenance predicate.
const slsaPredicate = `{
  "buildDefinition": {
    "buildType": "https://nestattest.example/harness-test/v1",
    "externalParameters": {"test": "TestSigstoreCosign"}
  },
  "runDetails": {"builder": {"id": "https://nestattest.example/harness-test"}}
}`

// TestOIDCIssuer: a minted token verifies against the key set the
// discovery document points at, and carries the claims Fulcio reads.
func TestOIDCIssuer(t *testing.T) {
	iss := NewOIDCIssuer(t)
	tok := iss.Mint(t, IDToken{Email: "a@nestattest.example"})

	var disco struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	getJSON(t, iss.URL+"/.well-known/openid-configuration", &disco)
	if disco.Issuer != iss.URL {
		t.Fatalf("issuer %q, want %q", disco.Issuer, iss.URL)
	}
	var jwks struct {
		Keys []struct{ Kid, Kty, N, E string } `json:"keys"`
	}
	getJSON(t, disco.JWKSURI, &jwks)
	if len(jwks.Keys) != 1 {
		t.Fatalf("%d keys, want 1", len(jwks.Keys))
	}
	k := jwks.Keys[0]

	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	var header struct{ Alg, Kid string }
	var claims struct {
		Iss, Sub, Aud, Email string
		EmailVerified        bool  `json:"email_verified"`
		Exp                  int64 `json:"exp"`
	}
	if err := json.Unmarshal(segment(t, parts[0]), &header); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(segment(t, parts[1]), &claims); err != nil {
		t.Fatal(err)
	}
	if header.Alg != "RS256" || header.Kid != k.Kid || k.Kty != "RSA" {
		t.Errorf("header %+v, key type %s, want RS256 with an RSA key %q", header, k.Kty, k.Kid)
	}
	if claims.Iss != iss.URL || claims.Sub != "a@nestattest.example" || claims.Aud != "sigstore" ||
		claims.Email != "a@nestattest.example" || !claims.EmailVerified {
		t.Errorf("claims %+v", claims)
	}
	if d := time.Until(time.Unix(claims.Exp, 0)); d < 9*time.Minute || d > 11*time.Minute {
		t.Errorf("token expires in %v, want about 10m", d)
	}

	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(segment(t, k.N)), E: int(new(big.Int).SetBytes(segment(t, k.E)).Int64())}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], segment(t, parts[2])); err != nil {
		t.Errorf("token signature does not verify with the issuer's key set: %v", err)
	}
}

// TestSigstoreCosign signs and attests an image keylessly with the real
// cosign v3 CLI against a real Fulcio, Rekor v2 and TSA, verifies both with
// cosign v3 and cosign v2, and checks what the services were asked.
func TestSigstoreCosign(t *testing.T) {
	cosign3 := Tool(t, "cosign3")
	cosign2 := Tool(t, "cosign")
	reg := Distribution(t, DistributionOptions{})

	began := time.Now()
	s := StartSigstore(t, SigstoreOptions{})
	t.Logf("sigstore started in %v: fulcio %s, rekor %s, tsa %s, issuer %s",
		time.Since(began).Round(time.Millisecond), s.FulcioURL, s.RekorURL, s.TSAURL, s.IssuerURL)

	tag := reg.Ref("keyless/app:v1")
	img := pushRandom(t, tag)
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Ref("keyless/app@" + digest.String())
	predicate := filepath.Join(t.TempDir(), "provenance.json")
	if err := os.WriteFile(predicate, []byte(slsaPredicate), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"TUF_ROOT=" + t.TempDir(), "HOME=" + t.TempDir()}
	signing := []string{"--yes", "--signing-config", s.SigningConfigPath, "--trusted-root", s.TrustedRootPath, "--allow-insecure-registry"}
	verifying := []string{
		"--certificate-identity", s.Identity, "--certificate-oidc-issuer", s.Issuer,
		"--trusted-root", s.TrustedRootPath, "--insecure-ignore-sct", "--allow-insecure-registry",
	}
	// cosign v2 checks a certificate against the time of a Rekor entry
	// unless told to take the TSA's; cosign v3 takes it by itself when a
	// bundle has only Rekor v2 entries.
	verifying2 := append([]string{"--new-bundle-format", "--use-signed-timestamps"}, verifying...)

	step(t, env, cosign3, append(append([]string{"sign", "--identity-token", s.Token(t)}, signing...), ref)...)
	if got, want := s.Requests(), (SigstoreCounts{Certificates: 1, Entries: 1, Timestamps: 1}); got != want {
		t.Errorf("after cosign sign: %+v, want %+v", got, want)
	}
	step(t, env, cosign3, append(append([]string{"attest", "--identity-token", s.Token(t),
		"--type", "slsaprovenance1", "--predicate", predicate}, signing...), ref)...)
	if got, want := s.Requests(), (SigstoreCounts{Certificates: 2, Entries: 2, Timestamps: 2}); got != want {
		t.Errorf("after cosign attest: %+v, want %+v", got, want)
	}

	for _, r := range []string{ref, tag} {
		step(t, env, cosign3, append(append([]string{"verify"}, verifying...), r)...)
		step(t, env, cosign3, append(append([]string{"verify-attestation", "--type", "slsaprovenance1"}, verifying...), r)...)
		step(t, env, cosign2, append(append([]string{"verify"}, verifying2...), r)...)
		step(t, env, cosign2, append(append([]string{"verify-attestation", "--type", "slsaprovenance1"}, verifying2...), r)...)
	}
	if got, want := s.Requests(), (SigstoreCounts{Certificates: 2, Entries: 2, Timestamps: 2}); got != want {
		t.Errorf("after verifying: %+v, want %+v (verification is offline)", got, want)
	}

	// The identity and the issuer are really checked.
	for _, flag := range []string{"--certificate-identity", "--certificate-oidc-issuer"} {
		args := append([]string{"verify"}, verifying...)
		for i := range args {
			if args[i] == flag {
				args[i+1] = "https://other.example/" + args[i+1]
			}
		}
		r := RunEnv(t, env, cosign3, append(args, ref)...)
		if r.Code == 0 {
			t.Errorf("cosign3 verify with another %s passed", flag)
		}
	}
}

// step runs a cosign command that must pass, and logs how long it took.
func step(t *testing.T, env []string, bin string, args ...string) {
	t.Helper()
	began := time.Now()
	r := RunEnv(t, env, bin, args...)
	shown := strings.Join(redactToken(args), " ")
	if r.Code != 0 {
		t.Fatalf("%s %s: exit %d\n%s%s", filepath.Base(bin), shown, r.Code, r.Stdout, r.Stderr)
	}
	t.Logf("%s %s: %v", filepath.Base(bin), shown, time.Since(began).Round(time.Millisecond))
}

// redactToken hides the value of --identity-token.
func redactToken(args []string) []string {
	out := append([]string(nil), args...)
	for i := range out {
		if out[i] == "--identity-token" && i+1 < len(out) {
			out[i+1] = "<token>"
		}
	}
	return out
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func segment(t *testing.T, seg string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSigstoreFulcioOnly: with no log and no TSA, cosign v3 signs with a
// Fulcio certificate alone, and a verifier that skips the log checks the
// certificate against the current time.
func TestSigstoreFulcioOnly(t *testing.T) {
	cosign3 := Tool(t, "cosign3")
	reg := Distribution(t, DistributionOptions{})
	s := StartSigstore(t, SigstoreOptions{NoRekor: true, NoTSA: true})
	if s.RekorURL != "" || s.TSAURL != "" {
		t.Fatalf("rekor %q, tsa %q: want neither", s.RekorURL, s.TSAURL)
	}
	img := pushRandom(t, reg.Ref("fulcio-only/app:v1"))
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Ref("fulcio-only/app@" + digest.String())
	env := []string{"TUF_ROOT=" + t.TempDir(), "HOME=" + t.TempDir()}

	step(t, env, cosign3, "sign", "--yes", "--identity-token", s.Token(t), "--signing-config", s.SigningConfigPath,
		"--trusted-root", s.TrustedRootPath, "--allow-insecure-registry", ref)
	if got, want := s.Requests(), (SigstoreCounts{Certificates: 1}); got != want {
		t.Errorf("after cosign sign: %+v, want %+v", got, want)
	}
	step(t, env, cosign3, "verify", "--certificate-identity", s.Identity, "--certificate-oidc-issuer", s.Issuer,
		"--trusted-root", s.TrustedRootPath, "--insecure-ignore-sct", "--insecure-ignore-tlog", "--allow-insecure-registry", ref)
}
