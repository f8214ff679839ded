package registry

import (
	"encoding/base64"
	"errors"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
)

// ErrRedirect is returned when a registry redirects an API request to
// another host.
var ErrRedirect = errors.New("refused redirect")

var (
	urlPattern    = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]+`)
	secretParams  = []string{"token", "access_token", "refresh_token", "password", "client_secret", "sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token"}
	redactedValue = "REDACTED"
)

// Redact removes credentials from s: every secret registered with Secret
// (a registry may echo what it was sent into an error message), and from
// every URL the user information and the query parameters that carry
// tokens, passwords or signatures.
func Redact(s string) string {
	secrets.RLock()
	for _, v := range secrets.values {
		s = strings.ReplaceAll(s, v, redactedValue)
	}
	secrets.RUnlock()
	return urlPattern.ReplaceAllStringFunc(s, redactURL)
}

// minSecret is the shortest value Secret registers: shorter ones would
// redact ordinary words.
const minSecret = 4

var secrets struct {
	sync.RWMutex
	values []string
}

// Secret registers values Redact must never let through: registry
// passwords and tokens, and their base64 forms, as the client resolves
// them; key passwords, as the CLI reads them.
func Secret(values ...string) {
	secrets.Lock()
	defer secrets.Unlock()
	for _, v := range values {
		if len(v) >= minSecret && !slices.Contains(secrets.values, v) {
			secrets.values = append(secrets.values, v)
		}
	}
}

// secretsOf registers the secrets of an authenticator's credentials.
func secretsOf(auth authn.Authenticator) {
	cfg, err := auth.Authorization()
	if err != nil || cfg == nil {
		return
	}
	Secret(cfg.Password, cfg.Auth, cfg.IdentityToken, cfg.RegistryToken)
	if cfg.Password != "" {
		Secret(base64.StdEncoding.EncodeToString([]byte(cfg.Username + ":" + cfg.Password)))
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
	k = strings.ToLower(k)
	for _, s := range secretParams {
		if k == s {
			return true
		}
	}
	return false
}
