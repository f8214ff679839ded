package release

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	rel "github.com/nestattest/nestattest/internal/release"
	"github.com/nestattest/nestattest/test/harness"
)

// released is what `make release` made, as the tests read it.
type released struct {
	reg     *harness.Registry
	tree    string // the tree it ran in
	dist    string
	image   string // the index, <repo>@sha256:…
	version string
	key     keyPair
	env     []string
}

// makeRelease stamps a copy of the tree (make stamp, nothing pushed), then
// releases it to the distribution registry on loopback with CHECK_STAMP=1:
// the release refuses a build that is not what the tree was stamped with,
// so passing proves the build reproducible.
func makeRelease(t *testing.T) *released {
	t.Helper()
	r := &released{reg: harness.Distribution(t, harness.DistributionOptions{}), version: "v0.0.0-e2e", key: newKeyPair(t)}
	ko, cosign := harness.Tool(t, "ko"), harness.Tool(t, "cosign")
	base := staticBase(t, r.reg)
	r.tree, r.dist = copyTree(t), t.TempDir()
	// No transparency log on loopback: signed with --tlog-upload=false,
	// verified with --insecure-ignore-tlog, as with cosign.
	r.env = []string{"KO_DEFAULTBASEIMAGE=" + base, "COSIGN_PASSWORD=" + r.key.password, "COSIGN_YES=true",
		"TUF_ROOT=" + t.TempDir(), "SIGN_FLAGS=--tlog-upload=false"}
	vars := []string{"-C", r.tree, "REGISTRY=" + r.reg.Ref("rel"), "VERSION=" + r.version, "KEY=" + r.key.key,
		"DIST=" + r.dist, "KO=" + ko, "COSIGN=" + cosign}
	for _, target := range [][]string{{"stamp"}, {"release", "CHECK_STAMP=1"}} {
		start := time.Now()
		res := harness.RunEnv(t, r.env, "make", append(append([]string{}, vars...), target...)...)
		t.Logf("make %s: %s", strings.Join(target, " "), time.Since(start).Round(time.Second))
		if res.Code != 0 {
			t.Fatalf("make %s: exit %d\n%s\n%s", target[0], res.Code, tail(res.Stdout), tail(res.Stderr))
		}
	}
	img, err := os.ReadFile(filepath.Join(r.dist, "image.txt"))
	if err != nil {
		t.Fatal(err)
	}
	r.image = strings.TrimSpace(string(img))
	return r
}

func tail(s string) string {
	if len(s) > 6000 {
		return "…" + s[len(s)-6000:]
	}
	return s
}

// TestMakeRelease runs `make stamp` and `make release` against the real
// distribution registry on loopback and checks what was released: the
// image index of the four platforms (crane), an SBOM per image, every node
// signed and attested by the released nestattest (nestattest verify, cosign
// v2.6.5 for the legacy layout, cosign v3.1.3 for bundles), SLSA provenance
// that in-toto/attestation validates, the binaries with their checksums and
// the checksums' signature, and the catalog stamped with the image.
func TestMakeRelease(t *testing.T) {
	r := makeRelease(t)
	t.Logf("released %s", r.image)
	nodes := checkIndex(t, r)
	checkSBOMs(t, r, nodes)
	checkSigned(t, r, nodes)
	checkBinaries(t, r)
	checkCatalog(t, r)
	checkStamped(t, r)
}

// checkIndex: crane shows the index with one image per platform, each
// running the static binary at /ko-app/nestattest as the nonroot user of
// the base. It returns the index and its images, by digest.
func checkIndex(t *testing.T, r *released) []string {
	t.Helper()
	crane := harness.Tool(t, "crane")
	res := harness.Run(t, crane, "manifest", r.image)
	if res.Code != 0 {
		t.Fatalf("crane manifest %s: %s", r.image, res.Stderr)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal([]byte(res.Stdout), &idx); err != nil {
		t.Fatal(err)
	}
	repo, _, _ := strings.Cut(r.image, "@")
	nodes := []string{r.image}
	var got []string
	for _, m := range idx.Manifests {
		got = append(got, m.Platform.String())
		child := repo + "@" + m.Digest.String()
		nodes = append(nodes, child)
		cfg := harness.Run(t, crane, "config", child)
		var cf v1.ConfigFile
		if err := json.Unmarshal([]byte(cfg.Stdout), &cf); err != nil {
			t.Fatalf("crane config %s: %v %s", child, err, cfg.Stderr)
		}
		t.Logf("crane: %s %s entrypoint %v user %s", m.Platform, m.Digest, cf.Config.Entrypoint, cf.Config.User)
		if cf.Platform().String() != m.Platform.String() || !slices.Equal(cf.Config.Entrypoint, []string{"/ko-app/nestattest"}) || cf.Config.User != "65532" {
			t.Errorf("%s: platform %s, entrypoint %v, user %q", child, cf.Platform(), cf.Config.Entrypoint, cf.Config.User)
		}
	}
	slices.Sort(got)
	want := slices.Clone(platforms)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the index has %v, want %v", got, want)
	}
	if tag := harness.Run(t, crane, "digest", repo+":"+r.version); strings.TrimSpace(tag.Stdout) != strings.TrimPrefix(r.image, repo+"@") {
		t.Errorf("%s:%s is %q, want the index", repo, r.version, tag.Stdout)
	}
	return nodes
}

// checkSBOMs: ko wrote an SBOM for every platform image next to it
// (<repo>:sha256-<hex>.sbom, cosign's layout) and into the release's files.
func checkSBOMs(t *testing.T, r *released, nodes []string) {
	t.Helper()
	crane := harness.Tool(t, "crane")
	for _, n := range nodes[1:] {
		repo, digest, _ := strings.Cut(n, "@")
		tag := repo + ":" + strings.Replace(digest, ":", "-", 1) + ".sbom"
		res := harness.Run(t, crane, "manifest", tag)
		if res.Code != 0 {
			t.Errorf("no SBOM for %s: %s", n, res.Stderr)
			continue
		}
		t.Logf("SBOM %s", tag)
	}
	files, _ := filepath.Glob(filepath.Join(r.dist, "sbom", "*"))
	if len(files) < len(platforms) {
		t.Errorf("SBOM files %v, want one per platform", files)
	}
}

// checkSigned: every node signed and attested, read by nestattest and by
// both cosign CLIs, and the provenance valid in-toto.
func checkSigned(t *testing.T, r *released, nodes []string) {
	t.Helper()
	pub := filepath.Join(r.dist, "cosign.pub")
	var doc struct {
		Summary struct{ Nodes, Passed, Failed int }
	}
	raw, err := os.ReadFile(filepath.Join(r.dist, "verify-report.json"))
	if err != nil || json.Unmarshal(raw, &doc) != nil || doc.Summary.Nodes != len(nodes) || doc.Summary.Passed != len(nodes) {
		t.Errorf("the release's own verify report: %+v %v", doc.Summary, err)
	}
	if res := harness.Run(t, harness.Binary(t), "verify", "--key", pub, "--insecure-ignore-tlog", "--require-root", r.image); res.Code != 0 {
		t.Errorf("nestattest verify %s: exit %d\n%s%s", r.image, res.Code, res.Stdout, res.Stderr)
	} else {
		t.Logf("nestattest verify:\n%s", res.Stdout)
	}
	cosign2, cosign3 := harness.Tool(t, "cosign"), harness.Tool(t, "cosign3")
	env := []string{"COSIGN_YES=true", "TUF_ROOT=" + t.TempDir()}
	// The release carries bundles (--format both): cosign, v2 too, then
	// wants a trusted root, which it fetches from sigstore's TUF
	// repository online; here, offline, an empty one stands in (a key and
	// no transparency log need nothing from it).
	root := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(root, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		for _, c := range []struct{ name, bin string }{{"cosign v2.6.5", cosign2}, {"cosign v3.1.3", cosign3}} {
			for _, args := range [][]string{{"verify"}, {"verify-attestation", "--type", "slsaprovenance1"}} {
				res := harness.RunEnv(t, env, c.bin, append(args, "--key", pub, "--insecure-ignore-tlog", "--trusted-root", root, "--allow-insecure-registry", n)...)
				if res.Code != 0 {
					t.Errorf("%s %s %s: exit %d\n%s", c.name, args[0], n, res.Code, tail(res.Stderr))
					continue
				}
				if args[0] == "verify-attestation" && c.bin == cosign2 {
					checkProvenance(t, r, n, res.Stdout)
				}
			}
		}
	}
	t.Logf("cosign v2.6.5 and v3.1.3 verify and verify-attestation: %d nodes", len(nodes))
}

// checkProvenance parses the statement cosign verified strictly into
// in-toto/attestation's protobuf types and validates it.
func checkProvenance(t *testing.T, r *released, node, out string) {
	t.Helper()
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	var env struct{ Payload string }
	if err := json.Unmarshal([]byte(line), &env); err != nil {
		t.Fatalf("cosign verify-attestation output: %v", err)
	}
	raw, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	st, prov := validStatement(t, raw)
	_, digest, _ := strings.Cut(node, "@")
	if "sha256:"+st.GetSubject()[0].GetDigest()["sha256"] != digest {
		t.Errorf("%s: statement subject %v", node, st.GetSubject())
	}
	ext := prov.GetBuildDefinition().GetExternalParameters().AsMap()
	if ext["reference"] != r.image {
		t.Errorf("%s: externalParameters.reference %v, want %s", node, ext["reference"], r.image)
	}
	if deps := prov.GetBuildDefinition().GetResolvedDependencies(); len(deps) == 0 || "oci://"+strings.Split(r.image, "@")[0] != deps[0].GetUri() {
		t.Errorf("%s: resolvedDependencies %v, want the index", node, deps)
	}
	if node == r.image {
		t.Logf("provenance of %s (in-toto Statement %s, %s) passes Validate: %s", node, st.GetType(), st.GetPredicateType(), prov.GetBuildDefinition().GetBuildType())
	}
}

// checkBinaries: a binary per platform, each the sum checksums.txt gives
// it, that sum signed with the release key (cosign verify-blob, and openssl
// as the GitHub Action checks it), and the host's binary stamped with the
// version.
func checkBinaries(t *testing.T, r *released) {
	t.Helper()
	sums := map[string]string{}
	raw, err := os.ReadFile(filepath.Join(r.dist, "checksums.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		sum, name, _ := strings.Cut(l, "  ")
		sums[name] = sum
	}
	for _, p := range platforms {
		name := "nestattest-" + strings.ReplaceAll(p, "/", "-")
		b, err := os.ReadFile(filepath.Join(r.dist, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		h := sha256.Sum256(b)
		if sums[name] != hex.EncodeToString(h[:]) {
			t.Errorf("%s: checksums.txt says %q, the file is %x", name, sums[name], h)
		}
	}
	pub, sig, file := filepath.Join(r.dist, "cosign.pub"), filepath.Join(r.dist, "checksums.txt.sig"), filepath.Join(r.dist, "checksums.txt")
	if res := harness.RunEnv(t, []string{"TUF_ROOT=" + t.TempDir()}, harness.Tool(t, "cosign"), "verify-blob", "--key", pub, "--signature", sig, "--insecure-ignore-tlog", file); res.Code != 0 {
		t.Errorf("cosign verify-blob checksums.txt: %d %s", res.Code, res.Stderr)
	}
	if err := opensslVerify(t, pub, sig, file); err != nil {
		t.Errorf("openssl: %v", err)
	}
	host := filepath.Join(r.dist, "nestattest-linux-amd64")
	if res := harness.Run(t, host, "version"); !strings.HasPrefix(res.Stdout, "nestattest "+r.version+" ") {
		t.Errorf("version: %q", res.Stdout)
	}
}

// opensslVerify checks a cosign sign-blob signature as the action does.
func opensslVerify(t *testing.T, pub, sig, file string) error {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		harness.Missing(t, "openssl is not installed (apt-get install openssl)")
	}
	der := filepath.Join(t.TempDir(), "sig.der")
	if out, err := exec.Command("openssl", "base64", "-d", "-A", "-in", sig, "-out", der).CombinedOutput(); err != nil {
		return fmt.Errorf("base64: %v %s", err, out)
	}
	if out, err := exec.Command("openssl", "dgst", "-sha256", "-verify", pub, "-signature", der, file).CombinedOutput(); err != nil {
		return fmt.Errorf("dgst -verify: %v %s", err, out)
	}
	return nil
}

// checkCatalog: the released catalog names the released image by digest.
func checkCatalog(t *testing.T, r *released) {
	t.Helper()
	f, err := os.Open(filepath.Join(r.dist, "resources.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	found := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "task/nestattest/nestattest.yaml" || h.Name == "stepaction/nestattest/nestattest.yaml" {
			b, _ := io.ReadAll(tr)
			if !strings.Contains(string(b), "default: "+r.image) {
				t.Errorf("released %s does not name %s", h.Name, r.image)
			}
			found++
		}
	}
	if found != 2 {
		t.Errorf("resources.tar.gz holds %d of the Task and StepAction", found)
	}
}

// checkStamped: the stamped tree names the released image and binaries,
// and nothing in it by tag.
func checkStamped(t *testing.T, r *released) {
	t.Helper()
	st, err := rel.Read(r.tree)
	if err != nil {
		t.Fatal(err)
	}
	if st.Image != r.image || st.Version != r.version || len(st.Binaries) != len(platforms) {
		t.Errorf("stamped %s", st)
	}
	if err := rel.Check(r.tree); err != nil {
		t.Errorf("the stamped tree: %v", err)
	}
}
