package conforma

import (
	"context"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/test/harness"
)

// TestMain builds the nestattest binary from the nestattest module itself
// (../.., its own go.mod), for the harness to run.
func TestMain(m *testing.M) {
	if os.Getenv(harness.EnvBin) == "" {
		dir, err := os.MkdirTemp("", "nestattest-conforma-")
		if err != nil {
			panic(err)
		}
		bin := filepath.Join(dir, "nestattest")
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/nestattest")
		cmd.Dir = filepath.Join("..", "..")
		cmd.Env = append(os.Environ(), "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build ./cmd/nestattest: %v\n%s", err, out)
			os.Exit(1)
		}
		os.Setenv(harness.EnvBin, bin)
	}
	os.Exit(m.Run())
}

// The rule under test, as docs/policy/conforma carries it.
var rulePath = filepath.Join("..", "..", "docs", "policy", "conforma", "nested_namespace.rego")

// Where the trusted build task came from, as Tekton records a Task fetched
// by the git resolver (status.provenance.refSource).
const (
	taskURI    = "git+https://github.com/nestattest/nestattest.git"
	taskCommit = "0123456789abcdef0123456789abcdef01234567"
)

// chainsConfig has Chains sign the image with its cosign key, store the
// PipelineRun's SLSA v1.0 provenance next to it (slsa/v2alpha4 with the
// slsa-tekton build type, which records every TaskRun in full, as Konflux
// configures Chains and Conforma reads it) and keep the TaskRun's
// provenance on the TaskRun.
const chainsConfig = harness.ChainsConfig + `artifacts.taskrun.storage: tekton
artifacts.pipelinerun.format: slsa/v2alpha4
artifacts.pipelinerun.storage: oci
artifacts.pipelinerun.signer: x509
builddefinition.buildtype: https://tekton.dev/chains/v2/slsa-tekton
`

// world is a propagated tree and what a Conforma run gets for it.
type world struct {
	env      []string // for the tools: registry credentials, TUF cache
	parent   string   // repository@digest
	below    []string // the nodes below it, repository@digest
	outsider string   // an image in a child repository, not in the tree
	chains   keyPair  // Chains' key: what signed the build and propagate
	other    keyPair  // a key nobody trusts
	inputs   map[string]map[string]any
	trees    map[string]string // who signed: the tree JWS
}

type keyPair struct{ key, pub, password string }

func newKeyPair(t *testing.T, password string) keyPair {
	t.Helper()
	dir := t.TempDir()
	r := harness.RunEnv(t, []string{"COSIGN_PASSWORD=" + password}, harness.Binary(t), "generate-key-pair", "--output-key-prefix", filepath.Join(dir, "cosign"))
	if r.Code != 0 {
		t.Fatalf("generate-key-pair: %s", r.Stderr)
	}
	return keyPair{key: filepath.Join(dir, "cosign.key"), pub: filepath.Join(dir, "cosign.pub"), password: password}
}

// secrets lays a key out as Chains' signing-secrets.
func (k keyPair) secrets(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, from := range map[string]string{"cosign.key": k.key, "cosign.pub": k.pub} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "cosign.password"), []byte(k.password), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// build pushes a ko-shaped tree (app1, app2, app3, each a two-platform
// index) and composes its parent with nestattest catalog; has Tekton
// Chains' own code sign the build's TaskRun and PipelineRun, whose results
// name the parent; and propagates Chains' provenance to every node with
// nestattest propagate, signed with Chains' key.
func build(t *testing.T) *world {
	t.Helper()
	reg := harness.Distribution(t, harness.DistributionOptions{})
	w := &world{env: []string{"TUF_ROOT=" + t.TempDir()}, chains: newKeyPair(t, "chains"), other: newKeyPair(t, "other")}
	parent := reg.Ref("org/ko-build")
	var refs []string
	for _, app := range []string{"app1", "app2", "app3"} {
		idx, err := sample.Index(app)
		if err != nil {
			t.Fatal(err)
		}
		repo, err := name.NewRepository(parent + "/" + app)
		if err != nil {
			t.Fatal(err)
		}
		d, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteIndex(repo.Digest(d.String()), idx); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, repo.Digest(d.String()).String())
	}
	img, err := sample.Image("outsider", sample.Platforms[0])
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	outsider, _ := name.NewDigest(parent + "/app1@" + d.String())
	if err := remote.Write(outsider, img); err != nil {
		t.Fatal(err)
	}
	w.outsider = outsider.String()
	refsFile := filepath.Join(t.TempDir(), "ko-refs.txt")
	if err := os.WriteFile(refsFile, []byte(strings.Join(refs, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := harness.Run(t, harness.Binary(t), "catalog", "--from", refsFile, parent+":latest"); r.Code != 0 {
		t.Fatalf("catalog: %s", r.Stderr)
	}
	tree := w.tree(t, parent+":latest")
	w.parent = tree.Root.Repository + "@" + tree.Root.Digest
	for _, n := range tree.Nodes[1:] {
		w.below = append(w.below, n.Repository+"@"+n.Digest)
	}

	digest := tree.Root.Digest
	harness.ChainsSignRuns(t, harness.ChainsRuns{Config: chainsConfig, Secrets: w.chains.secrets(t),
		TaskRuns: [][]byte{[]byte(fmt.Sprintf(taskRunYAML, parent+":latest", digest, taskURI, taskCommit))}, PipelineRun: []byte(fmt.Sprintf(pipelineRunYAML, parent+":latest", digest))})
	r := harness.RunEnv(t, []string{"COSIGN_PASSWORD=" + w.chains.password}, harness.Binary(t), "propagate",
		"--source-key", w.chains.pub, "--source-insecure-ignore-tlog", "--key", w.chains.key, "--tlog-upload=false", w.parent)
	if r.Code != 0 {
		t.Fatalf("propagate: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	t.Logf("propagate: %s", strings.TrimSpace(r.Stdout))
	return w
}

// treeJSON is `nestattest tree -o json` of ref, as printed.
func (w *world) treeJSON(t *testing.T, ref string) []byte {
	t.Helper()
	r := harness.Run(t, harness.Binary(t), "tree", "-o", "json", ref)
	if r.Code != 0 {
		t.Fatalf("tree %s: %s", ref, r.Stderr)
	}
	return []byte(r.Stdout)
}

type treeDoc struct {
	Root  struct{ Repository, Digest string }
	Nodes []struct{ Repository, Digest, Parent string }
}

func (w *world) tree(t *testing.T, ref string) treeDoc {
	t.Helper()
	var d treeDoc
	if err := json.Unmarshal(w.treeJSON(t, ref), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// signedTree is the tree JSON of the parent as a JWS (ES256), its
// signature made by the real cosign CLI's sign-blob with key over the
// JWS signing input, the DER signature cosign prints turned into the
// r||s form JWS takes.
func (w *world) signedTree(t *testing.T, k keyPair) string {
	t.Helper()
	return w.signedTreeOf(t, k, w.parent)
}

// signedTreeOf is signedTree for the tree under ref.
func (w *world) signedTreeOf(t *testing.T, k keyPair, ref string) string {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	input := b64([]byte(`{"alg":"ES256","typ":"JWT"}`)) + "." + b64(w.treeJSON(t, ref))
	file := filepath.Join(t.TempDir(), "signing-input")
	if err := os.WriteFile(file, []byte(input), 0o644); err != nil {
		t.Fatal(err)
	}
	r := harness.RunEnv(t, append([]string{"COSIGN_PASSWORD=" + k.password}, w.env...), harness.Tool(t, "cosign"),
		"sign-blob", "--yes", "--key", k.key, "--tlog-upload=false", "--use-signing-config=false", file)
	if r.Code != 0 {
		t.Fatalf("cosign sign-blob: %s", r.Stderr)
	}
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r.Stdout))
	if err != nil {
		t.Fatal(err)
	}
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &sig); err != nil {
		t.Fatalf("cosign's signature: %v", err)
	}
	raw := make([]byte, 64)
	sig.R.FillBytes(raw[:32])
	sig.S.FillBytes(raw[32:])
	return input + "." + b64(raw)
}

// input is what Conforma hands its rules for ref: the image, and the
// attestations it verified on it with the policy's key (Chains'), each
// statement decoded.
func (w *world) input(t *testing.T, ref string) map[string]any {
	t.Helper()
	r := harness.RunEnv(t, w.env, harness.Tool(t, "cosign"), "verify-attestation", "--key", w.chains.pub,
		"--insecure-ignore-tlog", "--type", "slsaprovenance1", ref)
	if r.Code != 0 {
		t.Fatalf("cosign verify-attestation %s: %s", ref, r.Stderr)
	}
	var atts []any
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		var env struct {
			Payload    string
			Signatures []map[string]any
		}
		if err := json.Unmarshal([]byte(line), &env); err != nil {
			t.Fatal(err)
		}
		payload, err := base64.StdEncoding.DecodeString(env.Payload)
		if err != nil {
			t.Fatal(err)
		}
		var st map[string]any
		if err := json.Unmarshal(payload, &st); err != nil {
			t.Fatal(err)
		}
		atts = append(atts, map[string]any{"statement": st, "signatures": env.Signatures})
	}
	return map[string]any{"image": map[string]any{"ref": ref}, "attestations": atts}
}

// deny evaluates the rule's deny set with OPA on input and data.
func deny(t *testing.T, input map[string]any, data map[string]any) []string {
	t.Helper()
	src, err := os.ReadFile(rulePath)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rego.New(rego.Query("data.nested_namespace.deny"), rego.Module(rulePath, string(src)),
		rego.Input(input), rego.Store(inmem.NewFromObject(data)), rego.StrictBuiltinErrors(true)).Eval(context.Background())
	if err != nil {
		t.Fatalf("evaluate: %v", err)
	}
	var out []string
	for _, r := range rs {
		for _, e := range r.Expressions {
			for _, v := range e.Value.([]any) {
				out = append(out, v.(map[string]any)["msg"].(string))
			}
		}
	}
	return out
}

// data is the policy's data: the signed trees, the key they must be signed
// with (Chains'), and the trusted build tasks.
func (w *world) data(t *testing.T, trees []string, trusted ...map[string]any) map[string]any {
	t.Helper()
	pub, err := os.ReadFile(w.chains.pub)
	if err != nil {
		t.Fatal(err)
	}
	ts := []any{}
	for _, tr := range trusted {
		ts = append(ts, tr)
	}
	return map[string]any{
		"nestattest": map[string]any{"trees": trees},
		"rule_data":  map[string]any{"nestattest_tree_signer": string(pub), "nestattest_trusted_build_tasks": ts},
	}
}

var trustedTask = map[string]any{"uri": taskURI, "digest": map[string]any{"sha1": taskCommit}}

// TestRuleAdmitsThePropagatedTree runs the rule with OPA's Go library on
// the input Conforma's rules get for every node of a propagated tree: the
// provenance Tekton Chains' code wrote for the build's PipelineRun (the
// parent's, and on every node below it the same predicate with the node as
// subject, written by nestattest propagate with Chains' key), as the real
// cosign CLI verifies it with Chains' key, and the tree nestattest tree
// reads, signed with Chains' key. Every node passes. It refuses an image
// in a child repository that is not in the tree, every node when the task
// that names the parent is not trusted, and every node below the parent
// when the tree is signed by another key or names another parent.
func TestRuleAdmitsThePropagatedTree(t *testing.T) {
	w := build(t)
	good := w.data(t, []string{w.signedTree(t, w.chains)}, trustedTask)
	inputs := map[string]map[string]any{}
	for _, ref := range append([]string{w.parent}, w.below...) {
		inputs[ref] = w.input(t, ref)
		if got := deny(t, inputs[ref], good); len(got) != 0 {
			t.Errorf("%s: refused: %v", ref, got)
		}
	}
	t.Logf("admitted the parent and the %d nodes below it", len(w.below))

	// An image in app1's repository, not in the tree, carrying the same
	// provenance signed with Chains' key (as a propagate run on another
	// tree, or a forged copy, would put it there).
	out := w.withSubject(t, inputs[w.below[0]], w.outsider)
	if got := deny(t, out, good); !has(got, w.outsider) {
		t.Errorf("an image not in the tree: admitted (%v)", got)
	} else {
		t.Logf("an image not in the tree: refused: %s", got[0])
	}

	// The task that names the parent is not a trusted one.
	untrusted := w.data(t, []string{w.signedTree(t, w.chains)}, map[string]any{"uri": taskURI, "digest": map[string]any{"sha1": strings.Repeat("f", 40)}})
	for _, ref := range append([]string{w.parent}, w.below...) {
		if got := deny(t, inputs[ref], untrusted); len(got) == 0 {
			t.Errorf("%s: admitted though no trusted task names the parent", ref)
		} else if ref == w.below[0] {
			t.Logf("the task that names the parent not trusted: %s refused: %s", ref, got[0])
		}
	}

	// A tree signed with Chains' key whose root, app2's index, no trusted
	// task names: the nodes below app2 are not admitted by it.
	var app2Index string
	for _, ref := range w.below {
		if strings.Contains(ref, "/app2@") {
			app2Index = ref // the first in tree order: the index
			break
		}
	}
	app2 := w.data(t, []string{w.signedTreeOf(t, w.chains, app2Index)}, trustedTask)
	for _, ref := range w.below {
		if !strings.Contains(ref, "/app2@") {
			continue
		}
		if got := deny(t, inputs[ref], app2); !has(got, ref) {
			t.Errorf("a tree under app2's index, which no trusted task names: %s admitted (%v)", ref, got)
		} else if ref == app2Index {
			t.Logf("a tree rooted at app2's index, which no trusted task names: refused: %s", got[0])
		}
	}

	// The tree signed by another key; and no tree at all.
	for what, trees := range map[string][]string{"a tree signed by another key": {w.signedTree(t, w.other)}, "no tree": {}} {
		d := w.data(t, trees, trustedTask)
		if got := deny(t, inputs[w.parent], d); len(got) != 0 {
			t.Errorf("%s: the parent, which the task names, refused: %v", what, got)
		}
		for _, ref := range w.below {
			if got := deny(t, inputs[ref], d); !has(got, ref) {
				t.Errorf("%s: %s admitted (%v)", what, ref, got)
			} else if ref == w.below[0] {
				t.Logf("%s: refused: %s", what, got[0])
			}
		}
	}
}

// withSubject is input for another image: its ref, and the statements
// with that image as their subject.
func (w *world) withSubject(t *testing.T, input map[string]any, ref string) map[string]any {
	t.Helper()
	repo, digest, _ := strings.Cut(ref, "@")
	b, _ := json.Marshal(input)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	out["image"] = map[string]any{"ref": ref}
	for _, a := range out["attestations"].([]any) {
		a.(map[string]any)["statement"].(map[string]any)["subject"] = []any{map[string]any{"name": repo,
			"digest": map[string]any{"sha256": strings.TrimPrefix(digest, "sha256:")}}}
	}
	return out
}

func has(msgs []string, ref string) bool {
	for _, m := range msgs {
		if strings.Contains(m, ref) {
			return true
		}
	}
	return false
}

// taskRunYAML is the build's TaskRun, done: the nestattest Task, fetched
// by the git resolver from %[3]s at %[4]s, its type-hinted results naming
// the parent: IMAGE_URL (%[1]s) and IMAGE_DIGEST (%[2]s).
const taskRunYAML = `apiVersion: tekton.dev/v1
kind: TaskRun
metadata:
  name: build-sign
  namespace: build
  uid: 4b7e2f3c-5d0a-4c53-9a8e-2f1d3c4b5a69
  labels:
    tekton.dev/task: nestattest
    tekton.dev/pipelineRun: build
    tekton.dev/pipelineTask: sign
spec:
  serviceAccountName: builder
  params:
  - name: IMAGE
    value: %[1]s
  taskRef:
    resolver: git
    params:
    - name: url
      value: https://github.com/nestattest/nestattest.git
    - name: revision
      value: %[4]s
    - name: pathInRepo
      value: task/nestattest/nestattest.yaml
status:
  podName: build-sign-pod
  startTime: "2026-12-05T03:04:05Z"
  completionTime: "2026-12-05T03:05:06Z"
  conditions:
  - type: Succeeded
    status: "True"
    reason: Succeeded
    message: All Steps have completed executing
    lastTransitionTime: "2026-12-05T03:05:06Z"
  provenance:
    refSource:
      uri: %[3]s
      digest:
        sha1: %[4]s
      entryPoint: task/nestattest/nestattest.yaml
  steps:
  - name: sign
    container: step-sign
    imageID: ghcr.io/nestattest/nestattest@sha256:0000000000000000000000000000000000000000000000000000000000000001
  results:
  - name: IMAGE_URL
    type: string
    value: %[1]s
  - name: IMAGE_DIGEST
    type: string
    value: %[2]s
  - name: IMAGES
    type: string
    value: ""
  taskSpec:
    params:
    - name: IMAGE
      type: string
    results:
    - name: IMAGE_URL
      type: string
    - name: IMAGE_DIGEST
      type: string
    - name: IMAGES
      type: string
    steps:
    - name: sign
      image: ghcr.io/nestattest/nestattest@sha256:0000000000000000000000000000000000000000000000000000000000000001
      command: [/ko-app/nestattest]
      args: ["sign", "--from=ko-refs.txt", "$(params.IMAGE)"]
`

// pipelineRunYAML is the build's PipelineRun, done, its one task the
// TaskRun of taskRunYAML, its results passing the parent on: IMAGE_URL
// (%[1]s) and IMAGE_DIGEST (%[2]s).
const pipelineRunYAML = `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata:
  name: build
  namespace: build
  uid: 0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f
spec:
  pipelineRef:
    name: ko-build
  params:
  - name: image
    value: %[1]s
  taskRunTemplate:
    serviceAccountName: builder
status:
  startTime: "2026-12-05T03:04:00Z"
  completionTime: "2026-12-05T03:05:10Z"
  conditions:
  - type: Succeeded
    status: "True"
    reason: Succeeded
    message: "Tasks Completed: 1 (Failed: 0, Cancelled 0), Skipped: 0"
    lastTransitionTime: "2026-12-05T03:05:10Z"
  results:
  - name: IMAGE_URL
    value: %[1]s
  - name: IMAGE_DIGEST
    value: %[2]s
  childReferences:
  - apiVersion: tekton.dev/v1
    kind: TaskRun
    name: build-sign
    pipelineTaskName: sign
  pipelineSpec:
    params:
    - name: image
      type: string
    tasks:
    - name: sign
      taskRef:
        resolver: git
        params:
        - name: url
          value: https://github.com/nestattest/nestattest.git
        - name: revision
          value: 0123456789abcdef0123456789abcdef01234567
        - name: pathInRepo
          value: task/nestattest/nestattest.yaml
      params:
      - name: IMAGE
        value: $(params.image)
    results:
    - name: IMAGE_URL
      value: $(tasks.sign.results.IMAGE_URL)
    - name: IMAGE_DIGEST
      value: $(tasks.sign.results.IMAGE_DIGEST)
`
