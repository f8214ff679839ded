package registry

import (
	"context"
	"net/http"
	"net/url"

	"github.com/google/go-containerregistry/pkg/name"
)

// CatalogScope is the token scope of a registry's _catalog listing.
const CatalogScope = "registry:catalog:*"

// Page is one page of a listing: its body and its Link header values.
type Page struct {
	Body  []byte
	Links []string
}

// CatalogPage reads one page of reg's GET /v2/_catalog listing at u (built
// by the caller, with its n and last), at most limit bytes.
func (c *Client) CatalogPage(ctx context.Context, reg name.Registry, u *url.URL, limit int64) (*Page, error) {
	rt, err := c.registryTransport(ctx, reg)
	if err != nil {
		return nil, err
	}
	body, resp, err := readRetrying(ctx, httpClient(rt), request{method: http.MethodGet, url: u.String(), want: []int{http.StatusOK}}, limit, c.opts.retries(), c.opts.backoff())
	if err != nil {
		return nil, err
	}
	return &Page{Body: body, Links: resp.Header.Values("Link")}, nil
}
