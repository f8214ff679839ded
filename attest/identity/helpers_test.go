package identity

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/registry"

	"github.com/nestattest/nestattest/attest/bundle"
	"github.com/nestattest/nestattest/attest/internal/attesttest"
	"github.com/nestattest/nestattest/attest/layout"
	"github.com/nestattest/nestattest/attest/legacy"
	"github.com/nestattest/nestattest/attest/statement"
	"github.com/nestattest/nestattest/attest/trees"
)

const (
	testIdentity = "builder@example.test"
	testIssuer   = "https://issuer.example.test"
)

// testKey writes a cosign key pair into a temporary directory and returns
// the directory and password.
func testKey(t testing.TB) (dir string, password []byte) {
	t.Helper()
	dir = t.TempDir()
	password = []byte("correct horse")
	if _, _, err := GenerateKeyPair(filepath.Join(dir, "cosign"), func(bool) ([]byte, error) { return password, nil }); err != nil {
		t.Fatal(err)
	}
	return dir, password
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signOpts sign in both layouts, where mirrored too, without the final
// confirmation.
func signOpts(t testing.TB, c *registry.Client, s attest.Signer) trees.Options {
	t.Helper()
	stores := []attest.Store{legacy.Store{}, &bundle.Store{}}
	return trees.Options{Signer: s, Stores: stores, BindRoot: true, Mirrors: true, Client: c, Jobs: 4, Settle: -1,
		Predicates: statement.Provenance{BuilderID: "https://example.test/builder", StartedOn: time.Now()}}
}

// treeRequirements are what the tests require of a signed tree: provenance,
// every node bound to the root.
func treeRequirements() attest.Requirements {
	return attest.Requirements{Types: []string{"slsaprovenance1"}, RequireRoot: true}
}

// verifyOpts read the layouts given, in that order.
func verifyOpts(t testing.TB, c *registry.Client, tr attest.Trust, r attest.Requirements, layouts ...attest.Layout) trees.VerifyOptions {
	t.Helper()
	var stores []attest.Store
	for _, l := range layouts {
		s, err := layout.Read(string(l))
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, s...)
	}
	return trees.VerifyOptions{Trust: tr, Require: r, Stores: stores, Client: c}
}

// failures returns path: reasons of every failed node.
func failures(rep *trees.VerifyReport) []string {
	var out []string
	for _, v := range rep.Verdicts {
		if !v.Passed() {
			out = append(out, v.Node.Path()+" "+v.Node.Descriptor.Digest.String()+": "+v.Reasons())
		}
	}
	return out
}

// newShortCA is an in-process certificate authority whose certificates
// end life after they are issued and name testIssuer.
func newShortCA(t *testing.T, life time.Duration) *attesttest.ShortCA {
	t.Helper()
	return attesttest.NewShortCA(t, life, testIssuer)
}
