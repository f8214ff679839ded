package harness

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
)

// Registry is a registry a test runs against.
type Registry struct {
	// Host is host:port on loopback.
	Host string
	// Name says which registry it is: "distribution-v3.1.2",
	// "docker-registry-2.8.2" or "in-memory".
	Name string
}

// Ref returns Host/path.
func (r *Registry) Ref(path string) string { return r.Host + "/" + path }

// DistributionOptions configure the distribution registry.
type DistributionOptions struct {
	// SparseIndexes sets validation.manifests.indexes.platforms: none, so
	// an index may list manifests that are not in its repository.
	SparseIndexes bool
	// CatalogMaxEntries caps a _catalog page (catalog.maxentries).
	CatalogMaxEntries int
}

// Distribution starts the real CNCF distribution registry v3.1.2 with
// filesystem storage in a temporary directory.
func Distribution(t testing.TB, opts DistributionOptions) *Registry {
	t.Helper()
	bin := Tool(t, "registry")
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)
	if opts.SparseIndexes {
		cfg += "validation:\n  manifests:\n    indexes:\n      platforms: none\n"
	}
	if opts.CatalogMaxEntries > 0 {
		cfg += fmt.Sprintf("catalog:\n  maxentries: %d\n", opts.CatalogMaxEntries)
	}
	start(t, dir, cfg, bin, "serve")
	waitReady(t, addr)
	return &Registry{Host: addr, Name: "distribution-v3.1.2"}
}

// DockerRegistry starts Debian's docker-registry (distribution 2.8.2), or
// skips the test when it is not installed.
func DockerRegistry(t testing.TB) *Registry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Skip("Debian's docker-registry is not installed (apt-get install docker-registry)")
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)
	start(t, dir, cfg, bin, "serve")
	waitReady(t, addr)
	return &Registry{Host: addr, Name: "docker-registry-2.8.2"}
}

// InMemory starts go-containerregistry's in-memory registry, serving the
// referrers API when referrers is set.
func InMemory(t testing.TB, referrers bool) *Registry {
	t.Helper()
	h := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)), ggcrregistry.WithReferrersSupport(referrers))
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return &Registry{Host: strings.TrimPrefix(s.URL, "http://"), Name: "in-memory"}
}

// start runs a registry with cfg written to dir/config.yml, stops it when
// the test ends, and prints its log if the test failed.
func start(t testing.TB, dir, cfg, bin string, args ...string) {
	t.Helper()
	path := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "registry.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append(args, path)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil && len(b) > 0 {
				t.Logf("%s log:\n%s", filepath.Base(bin), tail(b, 4000))
			}
		}
	})
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// freeAddr returns a free loopback address.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitReady polls GET /v2/ until the registry answers, for up to a minute.
func waitReady(t testing.TB, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("registry at %s did not answer: %v", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
