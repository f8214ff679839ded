package harness

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serve is serve (process.go) for a registry that verifies s's tokens: the
// auth block that trusts s is appended to the configuration, and the
// registry is ready once GET /v2/ with a token s minted answers 200.
func (s *TokenServer) serve(t testing.TB, bin, dir, extra string) string {
	t.Helper()
	for attempt := 1; ; attempt++ {
		addr := freeAddr(t)
		p := start(t, bin, dir, registryConfig(filepath.Join(dir, "data"), addr)+extra+s.config())
		err := s.waitReady(p, addr)
		if err == nil {
			t.Cleanup(func() { p.stop(t) })
			return addr
		}
		p.kill()
		if attempt < 3 && strings.Contains(p.log(), "address already in use") {
			continue
		}
		t.Fatalf("%s: %v; log:\n%s", filepath.Base(bin), err, p.log())
	}
}

// waitReady polls GET /v2/ with a token granting nothing (which the ping
// needs no more than) until it answers 200, the process exits or
// startTimeout passes. A 401 to that token means the registry does not
// trust s: it is an error at once. The token is not recorded.
func (s *TokenServer) waitReady(p *process, addr string) error {
	token, err := s.mint("", []tokenAccess{}, time.Now(), 2*startTimeout+DistributionLeeway)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/v2/", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
				return p.running()
			case http.StatusUnauthorized:
				return fmt.Errorf("GET http://%s/v2/ with a token from the token server: 401, %s",
					addr, resp.Header.Get("WWW-Authenticate"))
			}
		}
		select {
		case <-p.exited:
			return p.running()
		case <-deadline.C:
			return fmt.Errorf("no answer to GET http://%s/v2/ within %v", addr, startTimeout)
		case <-tick.C:
		}
	}
}
