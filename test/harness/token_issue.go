package harness

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// tokenResponse is the answer to a token request, with the token under both
// names clients read (Docker's "token", OAuth2's "access_token").
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

// tokenHeader is the JOSE header of a token: an x5c chain (the certificate,
// standard base64 DER) or a kid distribution looks up in its trusted keys.
type tokenHeader struct {
	Alg string   `json:"alg"`
	Typ string   `json:"typ"`
	Kid string   `json:"kid,omitempty"`
	X5c []string `json:"x5c,omitempty"`
}

// tokenClaims are the claims distribution's token.ClaimSet reads.
type tokenClaims struct {
	Issuer     string        `json:"iss"`
	Subject    string        `json:"sub"`
	Audience   string        `json:"aud"`
	Expiration int64         `json:"exp"`
	NotBefore  int64         `json:"nbf"`
	IssuedAt   int64         `json:"iat"`
	JWTID      string        `json:"jti"`
	Access     []tokenAccess `json:"access"`
}

// tokenAccess is one entry of the access claim.
type tokenAccess struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// ServeHTTP answers GET /token: it authenticates the Basic credentials,
// if any, grants what the account's ACL allows of the scopes asked, and
// records the request.
func (s *TokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/token" || r.Method != http.MethodGet {
		// 404 to a POST (OAuth2) makes clients fall back to GET.
		writeError(w, http.StatusNotFound, "UNSUPPORTED", "token server: only GET /token")
		return
	}
	q := r.URL.Query()
	rec := TokenRequest{Time: time.Now(), Scopes: q["scope"]}
	status, resp, msg := s.answer(r, q.Get("service"), &rec)
	rec.Status = status
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	s.mu.Unlock()
	switch status {
	case http.StatusOK:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Basic realm="nestattest token server"`)
		writeError(w, status, "UNAUTHORIZED", msg)
	default:
		writeError(w, status, "INVALID_REQUEST", msg)
	}
}

// answer decides a request, filling rec's user and grants.
func (s *TokenServer) answer(r *http.Request, service string, rec *TokenRequest) (int, tokenResponse, string) {
	user, password, withCreds := r.BasicAuth()
	rec.User = user
	if service != s.Service {
		return http.StatusBadRequest, tokenResponse{}, fmt.Sprintf("service %q, want %q", service, s.Service)
	}
	var asked []tokenScope
	for _, param := range rec.Scopes {
		for _, one := range strings.Fields(param) {
			sc, err := parseScope(one)
			if err != nil {
				return http.StatusBadRequest, tokenResponse{}, err.Error()
			}
			asked = append(asked, sc)
		}
	}
	acl, lifetime, ok := s.account(user, password, withCreds)
	if !ok {
		return http.StatusUnauthorized, tokenResponse{}, "incorrect username or password"
	}
	access := grantAll(acl, asked)
	for _, a := range access {
		rec.Granted = append(rec.Granted, tokenScope{a.Type, a.Name, a.Actions}.String())
	}
	token, err := s.mint(user, access, rec.Time, lifetime)
	if err != nil {
		return http.StatusInternalServerError, tokenResponse{}, err.Error()
	}
	return http.StatusOK, tokenResponse{
		Token:       token,
		AccessToken: token,
		ExpiresIn:   int(lifetime / time.Second),
		IssuedAt:    rec.Time.UTC().Format(time.RFC3339),
	}, ""
}

// account returns the ACL and token lifetime for the credentials, or false
// when they are wrong. No credentials get the anonymous ACL.
func (s *TokenServer) account(user, password string, withCreds bool) (ACL, time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !withCreds {
		return s.anonymous, s.lifetime, true
	}
	u, ok := s.users[user]
	if !ok || u.Password != password {
		return nil, 0, false
	}
	return u.ACL, s.lifetime, true
}

// grantAll is the access claim for the scopes asked: per resource, the
// actions the ACL allows, resources granted nothing left out.
func grantAll(acl ACL, asked []tokenScope) []tokenAccess {
	access := []tokenAccess{}
	for _, sc := range asked {
		if actions := acl.grant(sc); len(actions) > 0 {
			access = append(access, tokenAccess{Type: sc.typ, Name: sc.name, Actions: actions})
		}
	}
	return access
}

// mint signs a token for subject with the access claim, issued at iat and
// refused by distribution once lifetime has passed.
func (s *TokenServer) mint(subject string, access []tokenAccess, iat time.Time, lifetime time.Duration) (string, error) {
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	c := tokenClaims{
		Issuer:     s.Issuer,
		Subject:    subject,
		Audience:   s.Service,
		IssuedAt:   iat.Unix(),
		NotBefore:  iat.Unix(),
		Expiration: iat.Add(lifetime - DistributionLeeway).Unix(),
		JWTID:      hex.EncodeToString(jti),
		Access:     access,
	}
	h := tokenHeader{Alg: "ES256", Typ: "JWT"}
	if s.keyID {
		h.Kid = jwkThumbprint(&s.key.PublicKey)
	} else {
		h.X5c = []string{base64.StdEncoding.EncodeToString(s.cert.Raw)}
	}
	return signToken(s.key, h, c)
}

// signToken returns the compact JWS of the claims under header, ES256: the
// signature is r and s, 32 bytes each.
func signToken(key *ecdsa.PrivateKey, header tokenHeader, c tokenClaims) (string, error) {
	h, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	digest := sha256.Sum256([]byte(input))
	r, sv, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		return "", err
	}
	sig := append(r.FillBytes(make([]byte, 32)), sv.FillBytes(make([]byte, 32))...)
	return input + "." + enc.EncodeToString(sig), nil
}

// jwkThumbprint is the key ID distribution derives from a P-256 public key
// (token.GetJWKThumbprint): the SHA-256 of its JWK's members in
// lexicographic order, the coordinates without leading zero bytes.
func jwkThumbprint(pub *ecdsa.PublicKey) string {
	point, err := pub.Bytes() // 0x04 || X || Y
	if err != nil {
		return ""
	}
	enc := base64.RawURLEncoding
	x := enc.EncodeToString(bytes.TrimLeft(point[1:33], "\x00"))
	y := enc.EncodeToString(bytes.TrimLeft(point[33:], "\x00"))
	jwk := fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`, x, y)
	sum := sha256.Sum256([]byte(jwk))
	return enc.EncodeToString(sum[:])
}

// dockerConfig is a config.json with Basic credentials for host.
func dockerConfig(host, user, password string) []byte {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	b, _ := json.MarshalIndent(map[string]any{
		"auths": map[string]any{host: map[string]string{"auth": auth}},
	}, "", "  ")
	return b
}
