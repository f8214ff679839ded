package harness

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// The targets a sigstore TUF repository serves, by the names sigstore's
// clients (sigstore-go, cosign v3) ask for.
const (
	TUFTrustedRoot   = "trusted_root.json"
	TUFSigningConfig = "signing_config.v0.2.json"
)

// TUFRepository is a TUF repository as sigstore runs one, generated with
// go-tuf v2's own metadata code and served over HTTP on loopback: root,
// timestamp, snapshot and targets metadata, one Ed25519 key per role,
// consistent snapshots (<version>.<role>.json, targets at
// targets/<sha256>.<name>), as `cosign initialize --mirror URL --root
// RootPath` and sigstore-go's TUF client read it.
type TUFRepository struct {
	// URL is the mirror, "http://127.0.0.1:PORT", for --tuf-mirror and
	// cosign initialize --mirror.
	URL string
	// RootPath is the repository's first root.json, for --tuf-root and
	// cosign initialize --root.
	RootPath string

	dir     string
	addr    string
	signers map[string]signature.Signer
	root    *metadata.Metadata[metadata.RootType]
	targets *metadata.Metadata[metadata.TargetsType]
	snap    *metadata.Metadata[metadata.SnapshotType]
	stamp   *metadata.Metadata[metadata.TimestampType]

	mu  sync.Mutex
	srv *http.Server
}

// TUFRootExpiry is how long a TUFRepository's root metadata is valid.
const TUFRootExpiry = 365 * 24 * time.Hour

// StartTUF generates a repository whose targets are targets (name to
// content), its timestamp, snapshot and targets metadata valid until
// expires, serves it, and stops serving when the test ends.
func StartTUF(t testing.TB, targets map[string][]byte, expires time.Time) *TUFRepository {
	t.Helper()
	r := &TUFRepository{dir: t.TempDir(), signers: map[string]signature.Signer{}}
	r.root = metadata.Root(time.Now().UTC().Add(TUFRootExpiry))
	r.root.Signed.ConsistentSnapshot = true
	for _, role := range []string{metadata.ROOT, metadata.TIMESTAMP, metadata.SNAPSHOT, metadata.TARGETS} {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key, err := metadata.KeyFromPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.root.Signed.AddKey(key, role); err != nil {
			t.Fatal(err)
		}
		if r.signers[role], err = signature.LoadED25519Signer(priv); err != nil {
			t.Fatal(err)
		}
	}
	sign(t, r.root, r.signers[metadata.ROOT])
	r.write(t, "1.root.json", r.root)
	r.RootPath = filepath.Join(r.dir, "1.root.json")
	r.targets = metadata.Targets(expires)
	r.targets.Signed.Version = 0
	r.snap = metadata.Snapshot(expires)
	r.snap.Signed.Version = 0
	r.stamp = metadata.Timestamp(expires)
	r.stamp.Signed.Version = 0
	r.Publish(t, targets, expires)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.URL = "http://" + r.addr
	r.serve(ln)
	t.Cleanup(func() { r.Stop(t) })
	return r
}

// Publish makes targets the repository's targets, as new versions of the
// targets, snapshot and timestamp metadata valid until expires: what a
// sigstore operator does to rotate a key.
func (r *TUFRepository) Publish(t testing.TB, targets map[string][]byte, expires time.Time) {
	t.Helper()
	expires = expires.UTC().Truncate(time.Second)
	r.targets.Signed.Targets = map[string]*metadata.TargetFiles{}
	for name, b := range targets {
		tf, err := metadata.TargetFile().FromBytes(name, b, "sha256")
		if err != nil {
			t.Fatal(err)
		}
		r.targets.Signed.Targets[name] = tf
		sum := sha256.Sum256(b)
		path := filepath.Join(r.dir, "targets", hex.EncodeToString(sum[:])+"."+name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r.targets.Signed.Version++
	r.targets.Signed.Expires = expires
	sign(t, r.targets, r.signers[metadata.TARGETS])
	r.write(t, fmt.Sprintf("%d.targets.json", r.targets.Signed.Version), r.targets)

	r.snap.Signed.Version++
	r.snap.Signed.Expires = expires
	r.snap.Signed.Meta[metadata.TARGETS+".json"] = metadata.MetaFile(r.targets.Signed.Version)
	sign(t, r.snap, r.signers[metadata.SNAPSHOT])
	r.write(t, fmt.Sprintf("%d.snapshot.json", r.snap.Signed.Version), r.snap)

	r.stamp.Signed.Version++
	r.stamp.Signed.Expires = expires
	r.stamp.Signed.Meta[metadata.SNAPSHOT+".json"] = metadata.MetaFile(r.snap.Signed.Version)
	sign(t, r.stamp, r.signers[metadata.TIMESTAMP])
	r.write(t, "timestamp.json", r.stamp)
}

// sign replaces meta's signatures with one by signer.
func sign[T metadata.Roles](t testing.TB, meta *metadata.Metadata[T], signer signature.Signer) {
	t.Helper()
	meta.ClearSignatures()
	if _, err := meta.Sign(signer); err != nil {
		t.Fatal(err)
	}
}

func (r *TUFRepository) write(t testing.TB, name string, meta interface{ ToFile(string, bool) error }) {
	t.Helper()
	if err := meta.ToFile(filepath.Join(r.dir, name), true); err != nil {
		t.Fatal(err)
	}
}

// Stop stops serving: clients then find the mirror unreachable (connection
// refused) at the same URL.
func (r *TUFRepository) Stop(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv != nil {
		r.srv.Close()
		r.srv = nil
	}
}

// Start serves the repository again at the same URL.
func (r *TUFRepository) Start(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Fatalf("serve the TUF repository again at %s: %v", r.addr, err)
	}
	r.serve(ln)
}

func (r *TUFRepository) serve(ln net.Listener) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.srv = &http.Server{Handler: http.FileServer(http.Dir(r.dir)), ReadHeaderTimeout: 10 * time.Second}
	srv := r.srv
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(os.Stderr, "TUF repository at %s: %v\n", ln.Addr(), err)
		}
	}()
}

// TUFTargets are s's trusted root and signing config as a TUF repository
// serves them, for StartTUF and Publish.
func (s *Sigstore) TUFTargets(t testing.TB) map[string][]byte {
	t.Helper()
	targets := map[string][]byte{}
	for name, path := range map[string]string{TUFTrustedRoot: s.TrustedRootPath, TUFSigningConfig: s.SigningConfigPath} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		targets[name] = b
	}
	return targets
}
