package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// DistributionLeeway is how long past a token's exp claim distribution v3
// still accepts it (token.Leeway in its registry/auth/token package).
const DistributionLeeway = 60 * time.Second

// defaultTokenLifetime is a token's lifetime when TokenOptions.Lifetime is zero.
const defaultTokenLifetime = 5 * time.Minute

// The service (the tokens' audience) and issuer a TokenServer names.
const (
	TokenService = "nestattest-registry"
	TokenIssuer  = "nestattest-token-server"
)

// TokenOptions configure a TokenServer. The zero value has no users, grants
// an anonymous request nothing, and issues tokens for five minutes, signed
// with an x5c header.
type TokenOptions struct {
	// Users are the accounts, by name, that authenticate with HTTP Basic.
	Users map[string]TokenUser
	// Anonymous is what a request without credentials may be granted.
	Anonymous ACL
	// Lifetime is how long a token lasts: the expires_in of the answer, and
	// when distribution starts refusing the token (see TokenServer).
	Lifetime time.Duration
	// KeyID signs tokens with a "kid" header (the key's thumbprint, which
	// distribution computes from its rootcertbundle) instead of an "x5c"
	// header holding the certificate.
	KeyID bool
}

// TokenUser is an account of a TokenServer.
type TokenUser struct {
	Password string
	ACL      ACL
}

// ACL is what an account may be granted. A request is granted, for each
// resource it asks about, the actions asked for that some rule allows on
// it; the rest is dropped, as Docker's token specification says.
type ACL []Rule

// Rule allows actions on the resources of one type whose names match Name.
type Rule struct {
	// Type is the resource type: "repository" or "registry".
	Type string
	// Name is a resource name ("org/app", "catalog"); "org/ko-build/**"
	// matches org/ko-build and every repository below it, "**" every name.
	Name string
	// Actions are the actions allowed: "pull", "push", "delete", or "*"
	// for any action, the "*" the catalog asks for included.
	Actions []string
}

// AllowRepositories returns a rule that allows actions on the
// repositories pattern matches (see Rule.Name).
func AllowRepositories(pattern string, actions ...string) Rule {
	return Rule{Type: "repository", Name: pattern, Actions: actions}
}

// AllowCatalog returns a rule that allows listing the registry's
// repositories: registry:catalog:*.
func AllowCatalog() Rule {
	return Rule{Type: "registry", Name: "catalog", Actions: []string{"*"}}
}

// matches says whether the rule covers the resource typ/name.
func (r Rule) matches(typ, name string) bool {
	if r.Type != typ {
		return false
	}
	if prefix, ok := strings.CutSuffix(r.Name, "/**"); ok {
		return name == prefix || strings.HasPrefix(name, prefix+"/")
	}
	return r.Name == "**" || r.Name == name
}

// allows says whether the rule allows action.
func (r Rule) allows(action string) bool {
	return slices.Contains(r.Actions, "*") || slices.Contains(r.Actions, action)
}

// grant returns the actions of s the ACL allows, nil if none.
func (acl ACL) grant(s tokenScope) []string {
	var granted []string
	for _, action := range s.actions {
		for _, r := range acl {
			if r.matches(s.typ, s.name) && r.allows(action) {
				granted = append(granted, action)
				break
			}
		}
	}
	return granted
}

// tokenScope is one "type:name:actions" of a token request or grant.
type tokenScope struct {
	typ, name string
	actions   []string
}

// parseScope reads "repository:org/app:pull,push". The name may hold
// colons ("repository:host:5000/app:pull"): the type ends at the first,
// the actions start after the last.
func parseScope(s string) (tokenScope, error) {
	typ, rest, ok := strings.Cut(s, ":")
	i := strings.LastIndex(rest, ":")
	if !ok || i <= 0 || typ == "" || i == len(rest)-1 {
		return tokenScope{}, fmt.Errorf("scope %q is not type:name:actions", s)
	}
	return tokenScope{typ: typ, name: rest[:i], actions: strings.Split(rest[i+1:], ",")}, nil
}

func (s tokenScope) String() string {
	return s.typ + ":" + s.name + ":" + strings.Join(s.actions, ",")
}

// TokenRequest is one request a TokenServer answered.
type TokenRequest struct {
	Time time.Time
	// User is the Basic user name; empty for an anonymous request.
	User string
	// Scopes are the scopes asked for, as sent; Granted the scopes granted,
	// "type:name:actions", the actions in the order asked.
	Scopes, Granted []string
	// Status is the answer's: 200 with a token, 401 for wrong credentials,
	// 400 for a malformed request or another service.
	Status int
}

// String is the request's log line.
func (r TokenRequest) String() string {
	user := r.User
	if user == "" {
		user = "(anonymous)"
	}
	return fmt.Sprintf("%s %d user=%s scopes=%q granted=%q",
		r.Time.Format("15:04:05.000"), r.Status, user, r.Scopes, r.Granted)
}

// TokenServer is a Docker token-protocol authorization server (what
// Docker Hub, quay.io, ghcr.io and Harbor speak) on 127.0.0.1, in the test
// process. A client sends GET Realm?service=...&scope=...[&scope=...] with
// HTTP Basic credentials and gets {"token", "access_token", "expires_in",
// "issued_at"}; the token is an ES256 JWT whose access claim holds what the
// account's ACL allows of what was asked. Give it to Distribution through
// DistributionOptions.Tokens, and distribution verifies every token and
// enforces its access claim.
//
// Distribution accepts a token until DistributionLeeway past its exp
// claim, so the claim is set that much before the end of the lifetime:
// a test sees the token refused once the lifetime has passed (to the
// second), which a lifetime of a few seconds makes quick.
type TokenServer struct {
	// Realm is the token endpoint, "http://localhost:PORT/token", the
	// server listening on 127.0.0.1. It names localhost rather than
	// 127.0.0.1 because go-containerregistry (from v0.22) refuses a realm
	// on a loopback or private IP literal unless it is the registry's own
	// host:port, and a test may put a Proxy in front of the registry.
	Realm string
	// Service is what clients ask a token for and the tokens' audience:
	// TokenService.
	Service string
	// Issuer is the tokens' iss claim: TokenIssuer.
	Issuer string
	// CertFile is the PEM file of the signing key's self-signed
	// certificate, distribution's rootcertbundle.
	CertFile string

	key   *ecdsa.PrivateKey
	cert  *x509.Certificate
	keyID bool

	mu        sync.Mutex
	users     map[string]TokenUser
	anonymous ACL
	lifetime  time.Duration
	requests  []TokenRequest
}

// NewTokenServer starts a token server with a new P-256 key and
// certificate, stopped when the test ends; if the test failed, the
// requests it answered are logged.
func NewTokenServer(t testing.TB, opts TokenOptions) *TokenServer {
	t.Helper()
	s := &TokenServer{
		Service:   TokenService,
		Issuer:    TokenIssuer,
		keyID:     opts.KeyID,
		users:     map[string]TokenUser{},
		anonymous: opts.Anonymous,
	}
	for name, u := range opts.Users {
		s.users[name] = u
	}
	s.SetLifetime(opts.Lifetime)
	s.key, s.cert = newSigningCert(t)
	s.CertFile = filepath.Join(t.TempDir(), "token-signing-cert.pem")
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.cert.Raw})
	if err := os.WriteFile(s.CertFile, pemCert, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		srv.Close()
		if t.Failed() {
			t.Logf("token server requests:\n%s", s.log())
		}
	})
	s.Realm = "http://localhost:" + srv.URL[strings.LastIndex(srv.URL, ":")+1:] + "/token"
	return s
}

// newSigningCert returns a P-256 key and a self-signed certificate for it,
// valid from an hour ago for a day.
func newSigningCert(t testing.TB) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: TokenIssuer},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

// SetUser adds the account name, or replaces its password and ACL; the
// next token request sees the change. Tokens already issued keep what
// they grant until they expire.
func (s *TokenServer) SetUser(name string, u TokenUser) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[name] = u
}

// RemoveUser deletes the account name: its credentials are refused.
func (s *TokenServer) RemoveUser(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.users, name)
}

// SetAnonymous replaces what a request without credentials may be granted.
func (s *TokenServer) SetAnonymous(acl ACL) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.anonymous = acl
}

// SetLifetime changes the lifetime of the tokens issued from now on;
// zero is five minutes.
func (s *TokenServer) SetLifetime(d time.Duration) {
	if d <= 0 {
		d = defaultTokenLifetime
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime = d
}

// TokenRequests returns the requests answered since the server started
// or was last Reset, in order.
func (s *TokenServer) TokenRequests() []TokenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Reset forgets the requests answered.
func (s *TokenServer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

// log is the requests answered, a line each.
func (s *TokenServer) log() string {
	var b strings.Builder
	for _, r := range s.TokenRequests() {
		b.WriteString(r.String() + "\n")
	}
	return b.String()
}

// DockerConfig writes a Docker config.json that logs user in to
// registryHost ("127.0.0.1:PORT") with its current password, and returns
// its directory, for DOCKER_CONFIG: crane, cosign and oras read it.
func (s *TokenServer) DockerConfig(t testing.TB, registryHost, user string) string {
	t.Helper()
	s.mu.Lock()
	u, ok := s.users[user]
	s.mu.Unlock()
	if !ok {
		t.Fatalf("token server: no user %q", user)
	}
	dir := t.TempDir()
	cfg := dockerConfig(registryHost, user, u.Password)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// config is the auth block of distribution's configuration that trusts s.
func (s *TokenServer) config() string {
	return fmt.Sprintf(`auth:
  token:
    realm: %q
    service: %q
    issuer: %q
    rootcertbundle: %q
    signingalgorithms:
      - ES256
`, s.Realm, s.Service, s.Issuer, s.CertFile)
}
