package registry

import (
	"encoding/base64"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
)

var (
	urlPattern    = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]+`)
	secretParams  = []string{"token", "access_token", "refresh_token", "password", "client_secret", "sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token"}
	redactedValue = "REDACTED"
)

// RedactURLs removes credentials from every URL in s: the user information,
// and the query parameters that carry tokens, passwords or signatures.
func RedactURLs(s string) string {
	return urlPattern.ReplaceAllStringFunc(s, redactURL)
}

// minSecret is the shortest value Secrets keeps: shorter ones would redact
// ordinary words.
const minSecret = 4

// Secrets are the values one run must never let through: registry passwords
// and tokens, and their base64 forms, as a Client resolves them; key
// passwords and identity tokens, as the CLI reads them. The zero value is
// ready to use, and a nil *Secrets redacts URLs only.
type Secrets struct {
	mu     sync.RWMutex
	values []string
}

// Add registers values.
func (s *Secrets) Add(values ...string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range values {
		if len(v) >= minSecret && !slices.Contains(s.values, v) {
			s.values = append(s.values, v)
		}
	}
}

// Redact removes every registered secret from str (a registry may echo what
// it was sent into an error message), then credentials from its URLs.
func (s *Secrets) Redact(str string) string {
	if s != nil {
		s.mu.RLock()
		for _, v := range s.values {
			str = strings.ReplaceAll(str, v, redactedValue)
		}
		s.mu.RUnlock()
	}
	return RedactURLs(str)
}

// Writer returns a writer that redacts each write to w. Callers write whole
// lines or documents, so a secret is never split across writes.
func (s *Secrets) Writer(w io.Writer) io.Writer { return redactingWriter{w: w, s: s} }

type redactingWriter struct {
	w io.Writer
	s *Secrets
}

func (r redactingWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(r.w, r.s.Redact(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// addAuth registers the secrets of an authenticator's credentials.
func (s *Secrets) addAuth(auth authn.Authenticator) {
	cfg, err := auth.Authorization()
	if err != nil || cfg == nil {
		return
	}
	s.Add(cfg.Password, cfg.Auth, cfg.IdentityToken, cfg.RegistryToken)
	if cfg.Password != "" {
		s.Add(base64.StdEncoding.EncodeToString([]byte(cfg.Username + ":" + cfg.Password)))
	}
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	changed := false
	if u.User != nil {
		u.User = url.User(redactedValue)
		changed = true
	}
	q := u.Query()
	for k := range q {
		if isSecretParam(k) {
			q.Set(k, redactedValue)
			changed = true
		}
	}
	if !changed {
		return raw
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func isSecretParam(k string) bool {
	return slices.Contains(secretParams, strings.ToLower(k))
}
