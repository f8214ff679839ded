package registry

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Sentinel errors; test for them with errors.Is. Errors about a registry's
// answer also unwrap to go-containerregistry's *transport.Error, so callers
// can still read the status and the registry's error codes.
var (
	// ErrNotFound: a manifest, blob or tag is not in the repository.
	ErrNotFound = errors.New("not found")
	// ErrDenied: the registry refused the credentials (401) or the access
	// asked for (403).
	ErrDenied = errors.New("access denied")
	// ErrDigestMismatch: a registry served content whose digest is not the
	// one asked for.
	ErrDigestMismatch = errors.New("content does not match digest")
	// ErrTooLarge: a manifest or other document is over its size limit.
	ErrTooLarge = errors.New("too large")
	// ErrRedirect: a registry redirected an API request to another host.
	ErrRedirect = errors.New("refused redirect")
	// ErrNoReferrersAPI: the registry does not serve the OCI 1.1 referrers
	// API; the sha256-<hex> fallback tag is used instead.
	ErrNoReferrersAPI = errors.New("no referrers API")
)

// statusError is a registry's error answer that also matches a sentinel,
// shown briefly: "not found (HTTP 404 MANIFEST_UNKNOWN)".
type statusError struct {
	sentinel error
	err      *transport.Error
}

func (e *statusError) Error() string {
	codes := make([]string, 0, len(e.err.Errors))
	for _, d := range e.err.Errors {
		codes = append(codes, string(d.Code))
	}
	return strings.TrimSpace(fmt.Sprintf("%v (HTTP %d %s)", e.sentinel, e.err.StatusCode, strings.Join(codes, ", ")))
}

func (e *statusError) Unwrap() []error { return []error{e.sentinel, e.err} }

// maxErrorBody is the most of an error answer's body read.
const maxErrorBody = 64 << 10

// checkStatus returns nil when resp has one of the wanted statuses, else
// the registry's error, matching ErrNotFound for 404 and ErrDenied for 401
// and 403.
func checkStatus(resp *http.Response, want ...int) error {
	if slices.Contains(want, resp.StatusCode) {
		return nil
	}
	// The status is the answer: an error body that breaks off (a 404 cut
	// short) still means what its status says, so read what arrives and
	// let go-containerregistry parse that.
	body := resp.Body
	b, _ := io.ReadAll(io.LimitReader(body, maxErrorBody))
	body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	err := transport.CheckError(resp, want...)
	if err == nil {
		return nil
	}
	return classify(err)
}

// classify adds the sentinel a registry's status error stands for.
func classify(err error) error {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return err
	}
	switch terr.StatusCode {
	case http.StatusNotFound:
		return &statusError{sentinel: ErrNotFound, err: terr}
	case http.StatusUnauthorized, http.StatusForbidden:
		return &statusError{sentinel: ErrDenied, err: terr}
	}
	return err
}

// StatusCode returns the HTTP status of a registry's error answer, or 0.
func StatusCode(err error) int {
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.StatusCode
	}
	return 0
}
