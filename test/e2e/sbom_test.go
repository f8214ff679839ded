package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nestattest/nestattest/test/harness"
)

// koPlatforms are the platforms ko builds the SBOM case for.
var koPlatforms = []string{"linux/amd64", "linux/arm64"}

// koBase pushes a base image for koPlatforms, empty but for its config,
// and returns it by digest: what KO_DEFAULTBASEIMAGE names, offline.
func koBase(t *testing.T, reg *harness.Registry) string {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range koPlatforms {
		plat, err := v1.ParsePlatform(p)
		if err != nil {
			t.Fatal(err)
		}
		img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = plat.OS, plat.Architecture
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: plat}})
	}
	repo, err := name.NewRepository(reg.Ref("base/static"))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(repo.Tag("latest"), idx); err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return repo.Digest(d.String()).String()
}

// koBuild has the real ko v0.19.1 build Go apps for koPlatforms into
// <namespace>/<app>, with its default SBOMs, as `ko build
// --base-import-paths` does, and returns the file of the references it
// printed.
func koBuild(t *testing.T, reg *harness.Registry, namespace string, apps ...string) string {
	t.Helper()
	src := t.TempDir()
	files := map[string]string{"go.mod": "module example.test/apps\n\ngo 1.22\n"}
	for _, app := range apps {
		files[filepath.Join(app, "main.go")] = "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"" + app + "\") }\n"
	}
	for f, content := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, f), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	refs := filepath.Join(t.TempDir(), "ko-refs.txt")
	args := []string{"build", "--base-import-paths", "--platform", strings.Join(koPlatforms, ",")}
	for _, app := range apps {
		args = append(args, "./"+app)
	}
	cmd := exec.Command(harness.Tool(t, "ko"), args...)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "KO_DOCKER_REPO="+reg.Ref(namespace), "KO_DEFAULTBASEIMAGE="+koBase(t, reg), "CGO_ENABLED=0", "GOFLAGS=-trimpath")
	var printed, log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &printed, &log
	if err := cmd.Run(); err != nil {
		t.Fatalf("ko %s: %v\n%s", strings.Join(args, " "), err, lastLines(log.String(), 20))
	}
	// What ko printed, a reference a line, as a build step passes it on.
	if err := os.WriteFile(refs, printed.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s built %s:\n%s", harness.ToolVersion(t, "ko"), strings.Join(apps, ", "), printed.String())
	return refs
}

// sbomSignDoc is the part of sign -o json the SBOM tests read.
type sbomSignDoc struct {
	Nodes []struct {
		Repository, Digest, Kind string
		SBOMs                    []struct{ PredicateType, From, Digest string }
	}
	Summary struct{ Nodes, Written, Present, Failed, AttestationsWritten int }
	SBOM    *struct {
		Attested int
		None     []struct{ Path, Repository, Digest, Kind string }
	}
}

func signSBOMs(t *testing.T, k keyPair, ref string, extra ...string) sbomSignDoc {
	t.Helper()
	args := append([]string{"sign", "--tlog-upload=false", "--key", k.key, "--format", "both", "--sbom", "attached", "-o", "json"}, extra...)
	r := harness.RunEnv(t, k.env(), harness.Binary(t), append(args, ref)...)
	if r.Code != 0 {
		t.Fatalf("nestattest %s: exit %d\n%s%s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	var doc sbomSignDoc
	if err := json.Unmarshal([]byte(r.Stdout), &doc); err != nil || doc.SBOM == nil {
		t.Fatalf("sign -o json: %v\n%s", err, r.Stdout)
	}
	return doc
}

// attachedSBOM reads the document of ko's .sbom tag of ref.
func attachedSBOM(t *testing.T, ref string) []byte {
	t.Helper()
	d, err := name.NewDigest(ref)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := v1.NewHash(d.DigestStr())
	img, err := remote.Image(d.Context().Tag(h.Algorithm + "-" + h.Hex + ".sbom"))
	if err != nil {
		t.Fatalf("ko's SBOM of %s: %v", ref, err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("ko's SBOM of %s: %d layers, %v", ref, len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(rc); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// cosignSBOMPredicates runs cosign v2.6.5 (the legacy .att) and v3.1.3
// (the bundles) verify-attestation --type spdxjson with the key on ref,
// and returns, for each, the predicates of the statements cosign printed.
func cosignSBOMPredicates(t *testing.T, pub, ref string) map[string][]json.RawMessage {
	t.Helper()
	// The node carries bundles: cosign, v2 too, then wants a trusted root;
	// an empty one stands in (a key and no transparency log need nothing).
	common := []string{"verify-attestation", "--type", "spdxjson", "--key", pub, "--insecure-ignore-tlog", "--allow-insecure-registry", "--trusted-root", emptyTrustedRoot(t)}
	out := map[string][]json.RawMessage{}
	for _, run := range []struct {
		name string
		cmd  func(t *testing.T, env []string, args ...string) harness.Result
		args []string
	}{
		{"cosign v2.6.5", cosign, common},
		{"cosign v3.1.3", cosign3, common},
	} {
		r := run.cmd(t, nil, append(run.args, ref)...)
		if r.Code != 0 {
			t.Errorf("%s verify-attestation --type spdxjson %s: exit %d\n%s", run.name, ref, r.Code, lastLines(r.Stderr, 5))
			continue
		}
		for _, payload := range harness.AttestedPayloads(t, r.Stdout) {
			var st struct {
				PredicateType string
				Subject       []struct{ Digest map[string]string }
				Predicate     json.RawMessage
			}
			if err := json.Unmarshal(payload, &st); err != nil {
				t.Fatal(err)
			}
			if st.PredicateType != "https://spdx.dev/Document" || len(st.Subject) != 1 || !strings.HasSuffix(ref, "@sha256:"+st.Subject[0].Digest["sha256"]) {
				t.Errorf("%s: statement of %s about %v, want one subject, this node", run.name, st.PredicateType, st.Subject)
			}
			out[run.name] = append(out[run.name], st.Predicate)
		}
	}
	return out
}

// jsonEqual reports whether a and b are the same JSON value.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return bytes.Equal(ja, jb)
}

// TestSignAttachedSBOMs is the SBOM case: ko builds two apps for two
// platforms with its default SBOMs; `sign --sbom attached` attests every
// SBOM ko attached, and says the composed parent has none; cosign v2.6.5
// and v3.1.3 verify each, its predicate the document ko attached; an SBOM
// oras attached to the parent as a referrer is attested the same way; a
// re-run writes nothing; verify --type spdxjson --require-sbom passes.
func TestSignAttachedSBOMs(t *testing.T) {
	// Everything goes through the counting proxy: the registry host is part
	// of every signed docker-reference.
	upstream := harness.Distribution(t, harness.DistributionOptions{})
	proxy := harness.NewProxy(t, upstream.Host, harness.ProxyOptions{})
	reg := &harness.Registry{Host: proxy.Host, Name: upstream.Name}
	refs := koBuild(t, reg, "org/ko-sbom", "app1", "app2")
	k := newKeyPair(t, "cosign")
	tag := reg.Ref("org/ko-sbom:latest")

	doc := signSBOMs(t, k, tag, "--from", refs)
	t.Logf("sign --sbom attached: %+v; SBOMs attested on %d nodes, none on %v", doc.Summary, doc.SBOM.Attested, doc.SBOM.None)
	root := doc.Nodes[0]
	if len(doc.SBOM.None) != 1 || doc.SBOM.None[0].Digest != root.Digest || len(root.SBOMs) != 0 {
		t.Errorf("nodes without an SBOM: %+v, want the composed parent alone", doc.SBOM.None)
	}
	attested := 0
	for _, n := range doc.Nodes {
		ref := n.Repository + "@" + n.Digest
		if n.Digest == root.Digest {
			continue
		}
		// ko attached an SBOM to every image and index it built.
		ko := attachedSBOM(t, ref)
		if len(n.SBOMs) != 1 || n.SBOMs[0].PredicateType != "https://spdx.dev/Document" || !strings.HasSuffix(n.SBOMs[0].From, ".sbom") {
			t.Errorf("%s (%s): SBOMs %+v, want ko's", ref, n.Kind, n.SBOMs)
			continue
		}
		for cosignName, preds := range cosignSBOMPredicates(t, k.pub, ref) {
			if len(preds) != 1 || !jsonEqual(t, preds[0], ko) {
				t.Errorf("%s on %s: %d SPDX predicates, want ko's SBOM", cosignName, ref, len(preds))
			}
		}
		attested++
	}
	t.Logf("cosign v2.6.5 and v3.1.3 verify-attestation --type spdxjson passed on %d nodes, each predicate the SBOM ko attached (JSON-equal)", attested)
	if attested != 2*(1+len(koPlatforms)) || doc.SBOM.Attested != attested {
		t.Errorf("%d SBOMs attested (report: %d), want ko's %d", attested, doc.SBOM.Attested, 2*(1+len(koPlatforms)))
	}

	// oras attaches an SBOM to the parent as a referrer (distribution has no
	// referrers API: oras lists it in the sha256-<hex> fallback tag).
	parent := reg.Ref("org/ko-sbom") + "@" + root.Digest
	spdx := writeFile(t, "parent.spdx.json", "{\n  \"spdxVersion\": \"SPDX-2.3\",\n  \"SPDXID\": \"SPDXRef-DOCUMENT\",\n  \"name\": \"ko-sbom\",\n  \"dataLicense\": \"CC0-1.0\",\n  \"documentNamespace\": \"https://example.test/ko-sbom\"\n}\n")
	if r := harness.Run(t, harness.Tool(t, "oras"), "attach", "--plain-http", "--artifact-type", "application/spdx+json", "--disable-path-validation", parent, spdx); r.Code != 0 {
		t.Fatalf("oras attach: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	t.Logf("%s attached %s to the parent", harness.ToolVersion(t, "oras"), filepath.Base(spdx))
	doc = signSBOMs(t, k, tag, "--from", refs)
	if len(doc.SBOM.None) != 0 || len(doc.Nodes[0].SBOMs) != 1 || doc.Summary.Written != 1 {
		t.Errorf("after oras attach: %+v none %+v, the parent's SBOMs %+v; want the parent's written alone", doc.Summary, doc.SBOM.None, doc.Nodes[0].SBOMs)
	}
	want, err := os.ReadFile(spdx)
	if err != nil {
		t.Fatal(err)
	}
	for cosignName, preds := range cosignSBOMPredicates(t, k.pub, parent) {
		if len(preds) != 1 || !jsonEqual(t, preds[0], want) {
			t.Errorf("%s on the parent: %d SPDX predicates, want the one oras attached", cosignName, len(preds))
		}
	}
	t.Logf("after oras attach: %d node written; cosign v2.6.5 and v3.1.3 verify-attestation --type spdxjson on the parent: the SBOM oras attached (JSON-equal)", doc.Summary.Written)

	// A re-run writes nothing.
	proxy.Reset()
	r := harness.RunEnv(t, k.env(), harness.Binary(t), "sign", "--tlog-upload=false", "--key", k.key, "--format", "both", "--sbom", "attached", "--from", refs, tag)
	if r.Code != 0 || !strings.Contains(r.Stdout, "nothing to write") || proxy.Counts().Writes() != 0 {
		t.Errorf("re-run: exit %d, %d writes\n%s%s", r.Code, proxy.Counts().Writes(), r.Stdout, r.Stderr)
	}
	t.Logf("re-run: %d writes\n%s", proxy.Counts().Writes(), r.Stdout)

	// verify checks every SBOM, and requires one of every image.
	v, r := verifyTree(t, k.pub, tag, "--type", "slsaprovenance1", "--type", "spdxjson", "--require-sbom")
	if r.Code != 0 || v.Summary.Passed != len(doc.Nodes) {
		t.Errorf("verify --type spdxjson --require-sbom: exit %d %+v %v\n%s", r.Code, v.Summary, v.failures(), r.Stderr)
	}
	t.Logf("verify --type slsaprovenance1 --type spdxjson --require-sbom: %d of %d nodes passed", v.Summary.Passed, v.Summary.Nodes)
}
