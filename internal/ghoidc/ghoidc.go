// Package ghoidc gets the OIDC identity token that GitHub Actions issues to
// a job with `permissions: id-token: write`, as actions/attest and cosign
// ask for it: a GET of the URL in $ACTIONS_ID_TOKEN_REQUEST_URL for an
// audience, with the bearer token in $ACTIONS_ID_TOKEN_REQUEST_TOKEN.
//
// The token is a secret: callers register it wherever output is redacted.
package ghoidc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
)

// The variables GitHub Actions sets in a job allowed to ask for a token.
const (
	EnvRequestURL   = "ACTIONS_ID_TOKEN_REQUEST_URL"
	EnvRequestToken = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
)

// maxResponse bounds the answer read.
const maxResponse = 1 << 20

// Available reports whether this process runs in a GitHub Actions job that
// may ask for a token.
func Available() bool {
	return os.Getenv(EnvRequestURL) != ""
}

// Token asks GitHub Actions for the job's OIDC token for audience (Fulcio's
// is "sigstore"). A refusal says which permission the job lacks.
func Token(ctx context.Context, audience string) (string, error) {
	u, err := url.Parse(os.Getenv(EnvRequestURL))
	if err != nil {
		return "", fmt.Errorf("%s: %w", EnvRequestURL, err)
	}
	q := u.Query()
	q.Set("audience", audience)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "bearer "+os.Getenv(EnvRequestToken))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("GitHub Actions OIDC token: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GitHub Actions OIDC token: HTTP %d (does the job have `permissions: id-token: write`?)", resp.StatusCode)
	}
	var tok struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(body, &tok); err != nil {
		return "", fmt.Errorf("GitHub Actions OIDC token: %w", err)
	}
	return tok.Value, nil
}
