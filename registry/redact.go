package registry

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// ErrRedirect is returned when a registry redirects an API request to
// another host.
var ErrRedirect = errors.New("refused redirect")

var (
	urlPattern    = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]+`)
	secretParams  = []string{"token", "access_token", "refresh_token", "password", "client_secret", "sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token"}
	redactedValue = "REDACTED"
)

// Redact removes credentials from every URL in s: user information, and
// query parameters that carry tokens, passwords or signatures.
func Redact(s string) string {
	return urlPattern.ReplaceAllStringFunc(s, redactURL)
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
