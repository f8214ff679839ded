package release

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/test/harness"
	"github.com/nestattest/nestattest/walk"
)

// platforms are the platforms the release builds, as .ko.yaml lists them.
var platforms = []string{"linux/amd64", "linux/arm64", "linux/s390x", "linux/ppc64le"}

// repoRoot is the repository root: go test runs this package in
// test/release.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// staticBase pushes, by digest, a base image shaped as distroless's
// static-debian12:nonroot is for ko: for each release platform, one layer
// with the CA certificates, passwd and group with the nonroot user, /tmp
// and the user's home, run as 65532. With no internet, the release builds
// on it (KO_DEFAULTBASEIMAGE) instead of the digest .ko.yaml names.
func staticBase(t *testing.T, reg *harness.Registry) string {
	t.Helper()
	certs, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		harness.Missing(t, fmt.Sprintf("no CA bundle to put in the base image: %v", err))
	}
	layer := tarLayer(t, map[string]string{
		"etc/passwd":                        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
		"etc/group":                         "root:x:0:\nnonroot:x:65532:\n",
		"etc/ssl/certs/ca-certificates.crt": string(certs),
	}, "tmp/", "home/nonroot/")
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		plat, err := v1.ParsePlatform(p)
		if err != nil {
			t.Fatal(err)
		}
		img, err := mutate.AppendLayers(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON), layer)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = plat.OS, plat.Architecture
		cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
		cf.Config.User = "65532"
		cf.Config.WorkingDir = "/home/nonroot"
		cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: plat}})
	}
	repo, err := name.NewRepository(reg.Ref("distroless/static-debian12"))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(repo.Tag("nonroot"), idx); err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return repo.Digest(d.String()).String()
}

// tarLayer is a layer of files and directories (names ending in /), owned
// as distroless owns them.
func tarLayer(t *testing.T, files map[string]string, dirs ...string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, d := range dirs {
		uid := 0
		if strings.HasPrefix(d, "home/nonroot") {
			uid = 65532
		}
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode, Uid: uid, Gid: uid, ModTime: epoch}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"etc/", "etc/ssl/", "etc/ssl/certs/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: n, Mode: 0o755, ModTime: epoch}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt"} {
		body := files[n]
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(body)), ModTime: epoch}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil }, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return layer
}

// pushKoSample pushes, below <host>/org/ko-build, what ko would have:
// app1 and app3 (two-platform indexes) and app2 (a two-platform index that
// also lists the further-scoped app2/plugins, whose copy app2's own
// repository holds so that registries that check index children accept
// app2), each tagged latest (app2/plugins only by digest), and returns their references as ko prints
// them, through host (the registry, or a front for it).
func pushKoSample(t *testing.T, reg *harness.Registry, host string) []string {
	t.Helper()
	parent, err := name.NewRepository(reg.Ref("org/ko-build"))
	if err != nil {
		t.Fatal(err)
	}
	at := func(p string) name.Repository { return parent.Registry.Repo(parent.RepositoryStr(), p) }
	plugins, err := sample.Index("plugins")
	if err != nil {
		t.Fatal(err)
	}
	pd, err := plugins.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(at("app2/plugins").Digest(pd.String()), plugins); err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, app := range []string{"app1", "app2", "app3"} {
		var extra []mutate.IndexAddendum
		if app == "app2" {
			extra = append(extra, mutate.IndexAddendum{Add: plugins, Descriptor: v1.Descriptor{Annotations: map[string]string{walk.AnnotationRepository: "plugins"}}})
		}
		idx, err := sample.Index(app, extra...)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteIndex(at(app).Tag("latest"), idx); err != nil {
			t.Fatal(err)
		}
		d, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, strings.Replace(at(app).Digest(d.String()).String(), reg.Host, host, 1))
	}
	return refs
}

// keyPair is a cosign key pair made by `nestattest generate-key-pair`.
type keyPair struct{ key, pub, password string }

func newKeyPair(t *testing.T) keyPair {
	t.Helper()
	dir := t.TempDir()
	k := keyPair{key: filepath.Join(dir, "cosign.key"), pub: filepath.Join(dir, "cosign.pub"), password: "release-test-password"}
	if r := harness.RunEnv(t, []string{"COSIGN_PASSWORD=" + k.password}, harness.Binary(t), "generate-key-pair", "--output-key-prefix", filepath.Join(dir, "cosign")); r.Code != 0 {
		t.Fatalf("generate-key-pair: %d %s", r.Code, r.Stderr)
	}
	return k
}

// copyTree copies the repository's files (tracked, and untracked but not
// ignored: the working tree as go test sees it) into a new directory, so a
// test can stamp it.
func copyTree(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		harness.Missing(t, fmt.Sprintf("git ls-files: %v", err))
	}
	dst := t.TempDir()
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(root, f)
		info, err := os.Lstat(src)
		if err != nil || !info.Mode().IsRegular() {
			continue // deleted in the working tree, or a link
		}
		raw, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), raw, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}
