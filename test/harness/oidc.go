package harness

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// OIDCIssuer is an OpenID Connect issuer in the test process, on
// 127.0.0.1: it serves /.well-known/openid-configuration and its JSON Web
// Key Set, and mints ID tokens signed with RS256. It answers no
// authorization request: tokens come from Mint, as a CI system's workload
// identity would hand them to a step.
//
// RS256 rather than ES256: cosign takes --identity-token as a raw token
// only if it parses as an RS256 JWS, and reads any other value as the path
// of a file holding the token.
type OIDCIssuer struct {
	// URL is "http://127.0.0.1:PORT", the tokens' "iss" claim.
	URL string

	key *rsa.PrivateKey
	kid string
}

// IDToken are the claims of a token Mint signs. Zero fields take the
// defaults named below.
type IDToken struct {
	// Email is the "email" claim, sent with "email_verified": true; no
	// email claim when empty.
	Email string
	// Subject is the "sub" claim; Email when empty.
	Subject string
	// Audience is the "aud" claim; "sigstore", what Fulcio expects of a
	// client, when empty.
	Audience string
	// Expiry is the "exp" claim; ten minutes from now when zero.
	Expiry time.Time
}

// NewOIDCIssuer starts an issuer with a fresh 2048-bit RSA key, stopped
// when the test ends.
func NewOIDCIssuer(t testing.TB) *OIDCIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(key.N.Bytes())
	iss := &OIDCIssuer{key: key, kid: base64.RawURLEncoding.EncodeToString(sum[:8])}
	s := httptest.NewServer(iss.handler())
	t.Cleanup(s.Close)
	iss.URL = s.URL
	return iss
}

// handler serves the discovery document and the key set.
func (i *OIDCIssuer) handler() http.Handler {
	b64 := base64.RawURLEncoding.EncodeToString
	jwks := map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": i.kid,
		"n": b64(i.key.N.Bytes()), "e": b64(big.NewInt(int64(i.key.E)).Bytes()),
	}}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{
			"issuer":                                i.URL,
			"jwks_uri":                              i.URL + "/keys",
			"authorization_endpoint":                i.URL + "/auth",
			"token_endpoint":                        i.URL + "/token",
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, jwks) })
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Mint returns a compact JWS of tok, issued now by i.
func (i *OIDCIssuer) Mint(t testing.TB, tok IDToken) string {
	t.Helper()
	now := time.Now()
	claims := map[string]any{
		"iss": i.URL,
		"sub": tok.Subject,
		"aud": tok.Audience,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": tok.Expiry.Unix(),
	}
	if tok.Subject == "" {
		claims["sub"] = tok.Email
	}
	if tok.Audience == "" {
		claims["aud"] = "sigstore"
	}
	if tok.Expiry.IsZero() {
		claims["exp"] = now.Add(10 * time.Minute).Unix()
	}
	if tok.Email != "" {
		claims["email"] = tok.Email
		claims["email_verified"] = true
	}
	jws, err := i.sign(map[string]string{"alg": "RS256", "typ": "JWT", "kid": i.kid}, claims)
	if err != nil {
		t.Fatal(err)
	}
	return jws
}

// sign encodes header and claims and appends their RS256 signature
// (RSASSA-PKCS1-v1_5 with SHA-256).
func (i *OIDCIssuer) sign(header, claims any) (string, error) {
	h, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	b64 := base64.RawURLEncoding.EncodeToString
	input := b64(h) + "." + b64(c)
	digest := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(nil, i.key, crypto.SHA256, digest[:])
	if err != nil {
		return "", err
	}
	return input + "." + b64(sig), nil
}
