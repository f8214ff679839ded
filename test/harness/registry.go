package harness

import (
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
)

// Registry is a registry a test talks to over plain HTTP on loopback.
type Registry struct {
	// Host is "127.0.0.1:PORT".
	Host string
	// Name says which registry it is: "distribution-v3.1.2",
	// "docker-registry-2.8.2" or "in-memory".
	Name string

	access *accessLog // what the registry logs of each request it answered; nil: nothing
}

// Ref returns Host + "/" + path, such as "127.0.0.1:5000/org/app:v1".
func (r *Registry) Ref(path string) string { return r.Host + "/" + path }

// DistributionOptions configure the distribution registry. The zero value
// is distribution's default configuration.
type DistributionOptions struct {
	// SparseIndexes sets validation.manifests.indexes.platforms to "none",
	// so an index may list manifests that are not in its repository. By
	// default ("all") such an index is refused with 400
	// MANIFEST_BLOB_UNKNOWN.
	SparseIndexes bool
	// CatalogMaxEntries, when positive, caps the entries of a _catalog page
	// (catalog.maxentries; 1000 by default).
	CatalogMaxEntries int
	// StorageDir, when set, is where the registry's temporary storage goes
	// instead of the test's temporary directory: /dev/shm keeps a slow disk
	// out of a benchmark.
	StorageDir string
	// Tokens, when set, has the registry accept only bearer tokens the
	// token server issued (auth: token), and enforce their access claims.
	Tokens *TokenServer
	// AccessLog turns on the registry's access log (log.accesslog), which
	// Registry.Requests counts.
	AccessLog bool
}

// config is the registry configuration for the options, in the 0.1 schema
// that distribution v3 and Debian's 2.8 both read.
func (o DistributionOptions) config() string {
	var b strings.Builder
	if o.SparseIndexes {
		b.WriteString("validation:\n  manifests:\n    indexes:\n      platforms: none\n")
	}
	if o.CatalogMaxEntries > 0 {
		fmt.Fprintf(&b, "catalog:\n  maxentries: %d\n", o.CatalogMaxEntries)
	}
	return b.String()
}

// Distribution starts the CNCF distribution registry v3.1.2 (the pinned
// "registry" tool) with filesystem storage in a temporary directory and
// deletes enabled. It stops when the test ends.
func Distribution(t testing.TB, opts DistributionOptions) *Registry {
	t.Helper()
	dir := t.TempDir()
	if opts.StorageDir != "" {
		var err error
		if dir, err = os.MkdirTemp(opts.StorageDir, "nestattest-registry-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	if opts.Tokens != nil {
		host := opts.Tokens.serve(t, Tool(t, "registry"), dir, opts.config())
		return &Registry{Host: host, Name: "distribution-v3.1.2"}
	}
	var env []string
	r := &Registry{Name: "distribution-v3.1.2"}
	if opts.AccessLog {
		// distribution writes its access log (Apache's combined format)
		// to standard output, which start sends to the registry's log.
		env = append(env, "REGISTRY_LOG_ACCESSLOG_DISABLED=false")
		r.access = &accessLog{path: filepath.Join(dir, "registry.log")}
	}
	r.Host = serve(t, Tool(t, "registry"), dir, opts.config(), env...)
	return r
}

// DockerRegistry starts Debian's docker-registry (distribution 2.8.2) like
// Distribution, or skips the test when it is not installed (fails it under
// NESTATTEST_E2E=require).
func DockerRegistry(t testing.TB) *Registry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		missing(t, "Debian's docker-registry is not installed (apt-get install docker-registry; make test installs it)")
		return nil
	}
	host := serve(t, bin, t.TempDir(), "")
	return &Registry{Host: host, Name: "docker-registry-" + version(t, bin)}
}

// version returns the version docker-registry reports, without Debian's
// suffix: "docker-registry github.com/docker/distribution 2.8.2+ds1" gives
// "2.8.2".
func version(t testing.TB, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "--version").Output()
	fields := strings.Fields(string(out))
	if err != nil || len(fields) == 0 {
		t.Fatalf("%s --version: %v", bin, err)
	}
	v, _, _ := strings.Cut(fields[len(fields)-1], "+")
	return strings.TrimPrefix(v, "v")
}

// InMemory starts go-containerregistry's in-memory registry in the test
// process, serving the referrers API when referrers is set. It accepts any
// index, whatever its children, and keeps nothing once the test ends. Its
// log of every request it answers is what Registry.Requests counts.
func InMemory(t testing.TB, referrers bool) *Registry {
	t.Helper()
	access := &accessLog{}
	h := ggcrregistry.New(
		ggcrregistry.Logger(log.New(access, "", 0)),
		ggcrregistry.WithReferrersSupport(referrers),
	)
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return &Registry{Host: strings.TrimPrefix(s.URL, "http://"), Name: "in-memory", access: access}
}
