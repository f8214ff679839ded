package registry

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// DeniedError is an access the registry refused with fresh credentials:
// which access (pull, push or both) to which repository, on which
// registry, and the request that met the refusal. It matches ErrDenied.
type DeniedError struct {
	Host string
	// Scope is the token scope asked for: "repository:org/app:pull,push",
	// "registry:catalog:*".
	Scope string
	// Refused are the actions refused, "pull", "push" or both: what the
	// token granted lacks, where the token says what it grants (a JWT's
	// access claim), else what the request needs.
	Refused []string
	// Request is the request that met the refusal: "GET /v2/org/app/manifests/v1".
	Request string
}

func (e *DeniedError) Error() string {
	parts := strings.Split(e.Scope, ":")
	if e.Scope == "" {
		return fmt.Sprintf("request refused by the registry: the credentials for %s are not accepted (%s)", e.Host, e.Request)
	}
	if len(parts) != 3 || parts[0] != "repository" {
		return fmt.Sprintf("listing the repositories refused by the registry: the credentials for %s may not list them (%s)", e.Host, e.Request)
	}
	repo := parts[1]
	switch {
	case slices.Contains(e.Refused, "pull") && slices.Contains(e.Refused, "push"):
		return fmt.Sprintf("pull from and push to %s refused by the registry: the credentials for %s may neither pull nor push there (%s)", repo, e.Host, e.Request)
	case slices.Contains(e.Refused, "pull"):
		return fmt.Sprintf("pull from %s refused by the registry: the credentials for %s may not pull there (%s)", repo, e.Host, e.Request)
	}
	return fmt.Sprintf("push to %s refused by the registry: the credentials for %s may not push there (%s)", repo, e.Host, e.Request)
}

// Is makes a DeniedError match ErrDenied.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

// deny remembers that a token asked for after req left was refused for
// need, and returns the error every later request for that access gets.
// Where the token says what it grants, only the scopes it lacks are
// remembered.
func (t *authTransport) deny(req *http.Request, need []string, fresh *token) error {
	grants := jwtGrants(fresh.value)
	var first *DeniedError
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range need {
		if d := t.denied[s]; d != nil { // another request met it first: one refusal, one message
			return d
		}
		refused := refusedActions(s, req.Method, grants)
		if len(refused) == 0 {
			continue
		}
		d := &DeniedError{Host: t.reg.RegistryStr(), Scope: s, Refused: refused, Request: req.Method + " " + req.URL.Path}
		t.denied[s] = d
		if first == nil {
			first = d
		}
	}
	if first == nil && len(need) > 0 { // the token claims the access, the registry refuses it anyway
		s := need[0]
		first = &DeniedError{Host: t.reg.RegistryStr(), Scope: s, Refused: methodActions(s, req.Method), Request: req.Method + " " + req.URL.Path}
		t.denied[s] = first
	}
	if first == nil { // a request no scope covers
		return &DeniedError{Host: t.reg.RegistryStr(), Request: req.Method + " " + req.URL.Path}
	}
	return first
}

// refusedActions are the actions of scope a request with method lacks:
// those of the scope the token does not grant, when grants is known; else
// what the method needs (pull to read, push to write).
func refusedActions(scope, method string, grants map[string][]string) []string {
	if grants == nil {
		return methodActions(scope, method)
	}
	i, j := strings.Index(scope, ":"), strings.LastIndex(scope, ":")
	if i < 0 || j <= i {
		return nil
	}
	granted := grants[scope[:j]]
	var refused []string
	for _, a := range strings.Split(scope[j+1:], ",") {
		if !slices.Contains(granted, a) && !slices.Contains(granted, "*") {
			refused = append(refused, a)
		}
	}
	return refused
}

// methodActions is what a request with method needs of scope: pull to
// read, push to write; pull of a mount's source.
func methodActions(scope, method string) []string {
	if !strings.HasPrefix(scope, "repository:") {
		return []string{"*"}
	}
	if method == http.MethodGet || method == http.MethodHead || !strings.HasSuffix(scope, "push") {
		return []string{"pull"}
	}
	return []string{"push"}
}

// jwtGrants reads what a token grants from its access claim, when it is a
// JWT (distribution's, Docker Hub's, Harbor's tokens are), keyed by
// "type:name"; nil for an opaque token. The token is not verified: this
// only names a refusal the registry made.
func jwtGrants(tok string) map[string][]string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil
	}
	var claims struct {
		Access *[]struct {
			Type    string   `json:"type"`
			Name    string   `json:"name"`
			Actions []string `json:"actions"`
		} `json:"access"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Access == nil {
		return nil
	}
	grants := map[string][]string{}
	for _, a := range *claims.Access {
		key := a.Type + ":" + a.Name
		grants[key] = append(grants[key], a.Actions...)
	}
	return grants
}
