// Package driver checks the consumers' own programs, as test/consumers/build.sh
// built them, against each other before the end-to-end tests lean on them:
// Tekton Chains (chains-sign) signs and attests an image index named by a
// TaskRun's IMAGE_URL/IMAGE_DIGEST results, the cosign CLI verifies what
// Chains wrote, and sigstore policy-controller's policy-tester admits the
// index under a ClusterImagePolicy requiring Chains' provenance, and refuses
// what Chains did not sign. Each test logs the upstream versions it ran
// against (build.sh builds Chains from the newest version the module proxy
// serves that the driver supports).
//
// The binaries come from the tools directory (harness.Tools); a missing one
// skips the test, or fails it under NESTATTEST_E2E=require.
package driver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
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
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"

	"github.com/nestattest/nestattest/test/harness"
)

const password = "chains-test-password"

func run(t *testing.T, env []string, name string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	t.Logf("$ %s %s\n-> %v", filepath.Base(name), strings.Join(args, " "), err)
	return o.String(), e.String(), err
}

// fixture is a registry with a pushed parent index, Chains' signing-secrets
// and the binaries.
type fixture struct {
	chainsSign, policyTester, cosign string
	host                             string
	dir, secrets, pub                string
	publicKey                        []byte
	env                              []string
	idx                              v1.ImageIndex
	parent                           name.Tag
	digest                           v1.Hash
	parentRef                        string
}

func setup(t *testing.T, repo string) *fixture {
	f := &fixture{
		chainsSign:   harness.Consumer(t, "chains-sign"),
		policyTester: harness.Consumer(t, "policy-tester"),
		cosign:       harness.Tool(t, "cosign"),
		host:         harness.Distribution(t, harness.DistributionOptions{}).Host,
		dir:          t.TempDir(),
	}
	// cosign and policy-tester: no sigstore TUF cache outside the test, no
	// docker credentials, no proxy for loopback.
	f.env = []string{"HOME=" + f.dir, "TUF_ROOT=" + filepath.Join(f.dir, "tuf"), "DOCKER_CONFIG=" + filepath.Join(f.dir, "docker"), "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost"}

	// The parent: a small image index.
	var err error
	if f.idx, err = random.Index(512, 1, 2); err != nil {
		t.Fatal(err)
	}
	if f.parent, err = name.NewTag(f.host + "/" + repo + ":latest"); err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(f.parent, f.idx); err != nil {
		t.Fatal(err)
	}
	if f.digest, err = f.idx.Digest(); err != nil {
		t.Fatal(err)
	}
	f.parentRef = f.parent.Context().Digest(f.digest.String()).String()
	t.Logf("parent index %s", f.parentRef)

	// Chains' signing-secrets: a cosign key pair with its password.
	keys, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte(password), nil })
	if err != nil {
		t.Fatal(err)
	}
	f.publicKey = keys.PublicBytes
	f.secrets = filepath.Join(f.dir, "signing-secrets")
	if err := os.Mkdir(f.secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"cosign.key": keys.PrivateBytes, "cosign.password": []byte(password), "cosign.pub": keys.PublicBytes} {
		if err := os.WriteFile(filepath.Join(f.secrets, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f.pub = filepath.Join(f.secrets, "cosign.pub")
	return f
}

// sign runs chains-sign with the configuration and runs, and checks Chains
// marked every run signed.
func (f *fixture) sign(t *testing.T, config string, runs ...string) {
	t.Helper()
	cfg := filepath.Join(f.dir, "chains-config.yaml")
	write(t, cfg, config)
	args := []string{"--config", cfg, "--signing-secrets", f.secrets}
	for i, r := range runs {
		file := filepath.Join(f.dir, fmt.Sprintf("run%d.yaml", i))
		write(t, file, r)
		flag := "--taskrun"
		if strings.Contains(r, "kind: PipelineRun") {
			flag = "--pipelinerun"
		}
		args = append(args, flag, file)
	}
	stdout, stderr, err := run(t, nil, f.chainsSign, args...)
	if err != nil {
		t.Fatalf("chains-sign: %v\n%s\n%s", err, stdout, stderr)
	}
	t.Logf("chains-sign:\n%s\nits log:\n%s", stdout, stderr)
	var report []struct {
		Kind, Name  string
		Annotations map[string]string
	}
	if err := json.Unmarshal([]byte(stdout), &report); err != nil || len(report) != len(runs) {
		t.Fatalf("chains-sign output %q (%v)", stdout, err)
	}
	for _, r := range report {
		if r.Annotations["chains.tekton.dev/signed"] != "true" {
			t.Fatalf("%s %s not signed: %v", r.Kind, r.Name, r.Annotations)
		}
	}
}

// written logs and returns what Chains wrote next to the parent: its tags
// and the manifests of the signature and attestation tags.
func (f *fixture) written(t *testing.T) []string {
	t.Helper()
	tags, err := remote.List(f.parent.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tags in %s: %v", f.parent.Context(), tags)
	prefix := strings.Replace(f.digest.String(), ":", "-", 1)
	for _, suffix := range []string{".sig", ".att"} {
		tag := f.parent.Context().Tag(prefix + suffix)
		desc, err := remote.Get(tag)
		if err != nil {
			t.Errorf("%s: %v", tag, err)
			continue
		}
		var pretty bytes.Buffer
		json.Indent(&pretty, desc.Manifest, "", "  ")
		t.Logf("%s (%s):\n%s", tag, desc.MediaType, pretty.String())
		img, err := desc.Image()
		if err != nil {
			t.Fatal(err)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			rc, err := l.Uncompressed()
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > 600 {
				b = append(b[:600:600], "..."...)
			}
			t.Logf("  layer: %s", b)
		}
	}
	return tags
}

// statement is the part of Chains' SLSA v1.0 provenance the tests read.
type statement struct {
	Type          string `json:"_type"`
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Name   string
		Digest map[string]string
	}
	Predicate struct {
		BuildDefinition struct {
			BuildType          string         `json:"buildType"`
			ExternalParameters map[string]any `json:"externalParameters"`
		} `json:"buildDefinition"`
		RunDetails struct {
			Builder struct{ ID string }
		} `json:"runDetails"`
	}
}

// verify checks the signature and the attestations with the cosign CLI and
// returns the verified statements.
func (f *fixture) verify(t *testing.T) []statement {
	t.Helper()
	stdout, stderr, err := run(t, f.env, f.cosign, "verify", "--key", f.pub, "--insecure-ignore-tlog", "--allow-insecure-registry", f.parentRef)
	if err != nil {
		t.Fatalf("cosign verify: %v\n%s\n%s", err, stdout, stderr)
	}
	t.Logf("cosign verify:\n%s%s", stdout, stderr)
	var sigs []struct {
		Critical struct {
			Identity struct {
				DockerReference string `json:"docker-reference"`
			}
			Image struct {
				DockerManifestDigest string `json:"docker-manifest-digest"`
			}
			Type string
		}
	}
	if err := json.Unmarshal([]byte(stdout), &sigs); err != nil || len(sigs) != 1 ||
		sigs[0].Critical.Image.DockerManifestDigest != f.digest.String() || sigs[0].Critical.Identity.DockerReference != f.parent.Context().Name() {
		t.Errorf("cosign verify output %q (%v)", stdout, err)
	}

	stdout, stderr, err = run(t, f.env, f.cosign, "verify-attestation", "--key", f.pub, "--type", "slsaprovenance1", "--insecure-ignore-tlog", "--allow-insecure-registry", f.parentRef)
	if err != nil {
		t.Fatalf("cosign verify-attestation: %v\n%s\n%s", err, stdout, stderr)
	}
	t.Logf("cosign verify-attestation: %s", stderr)
	var statements []statement
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var envelope struct {
			PayloadType string
			Payload     string
			Signatures  []struct{ Keyid, Sig string }
		}
		if err := json.Unmarshal([]byte(line), &envelope); err != nil {
			t.Fatalf("cosign verify-attestation output %q: %v", stdout, err)
		}
		payload, err := base64.StdEncoding.DecodeString(envelope.Payload)
		if err != nil {
			t.Fatal(err)
		}
		var s statement
		if err := json.Unmarshal(payload, &s); err != nil {
			t.Fatal(err)
		}
		var pretty bytes.Buffer
		json.Indent(&pretty, payload, "", "  ")
		t.Logf("DSSE envelope: payloadType %s, %d signature(s) (keyid %q), statement:\n%s", envelope.PayloadType, len(envelope.Signatures), envelope.Signatures[0].Keyid, pretty.String())
		t.Logf("predicateType %s, subject %+v, builder.id %s, buildType %s", s.PredicateType, s.Subject, s.Predicate.RunDetails.Builder.ID, s.Predicate.BuildDefinition.BuildType)
		if s.Type != "https://in-toto.io/Statement/v1" || s.PredicateType != "https://slsa.dev/provenance/v1" || len(s.Subject) != 1 ||
			s.Subject[0].Name != f.parent.Context().Name() || s.Subject[0].Digest["sha256"] != f.digest.Hex ||
			s.Predicate.RunDetails.Builder.ID != "https://tekton.dev/chains/v2" {
			t.Errorf("unexpected statement %s", payload)
		}
		statements = append(statements, s)
	}
	return statements
}

func (f *fixture) policy(t *testing.T, builderID string) string {
	t.Helper()
	p := filepath.Join(f.dir, fmt.Sprintf("cip-%d.yaml", time.Now().UnixNano()))
	write(t, p, clusterImagePolicy(f.host, f.publicKey, builderID))
	return p
}

// chainsConfig: slsa/v2alpha4 is the newest of Chains v0.29.2's SLSA v1.0
// formats (it has slsa/v1, i.e. SLSA v0.2, slsa/v2alpha3 and slsa/v2alpha4);
// its oci storage writes cosign's tags, <alg>-<hex>.sig and .att, with
// storage.oci.encoding-format left at its default, dsse (sigstore-bundle,
// OCI 1.1 referrers, is not used).
const chainsConfig = `apiVersion: v1
kind: ConfigMap
metadata:
  name: chains-config
  namespace: tekton-chains
data:
  artifacts.taskrun.format: slsa/v2alpha4
  artifacts.taskrun.storage: oci
  artifacts.taskrun.signer: x509
  artifacts.oci.format: simplesigning
  artifacts.oci.storage: oci
  artifacts.oci.signer: x509
  storage.oci.repository.insecure: "true"
  transparency.enabled: "false"
`

// TestChainsSignsPolicyAdmits: Chains signs the index a TaskRun names, cosign
// verifies it, policy-tester admits it and refuses what Chains did not sign.
func TestChainsSignsPolicyAdmits(t *testing.T) {
	f := setup(t, "ko-build/parent")
	f.sign(t, chainsConfig, fmt.Sprintf(taskRunYAML, f.parent.String(), f.digest.String()))

	tags := f.written(t)
	prefix := strings.Replace(f.digest.String(), ":", "-", 1)
	for _, want := range []string{prefix + ".sig", prefix + ".att"} {
		if !contains(tags, want) {
			t.Errorf("no tag %s in %v", want, tags)
		}
	}
	if statements := f.verify(t); len(statements) != 1 {
		t.Errorf("%d attestations, want Chains' one for the TaskRun", len(statements))
	}

	policy := f.policy(t, "https://tekton.dev/chains/v2")
	stdout, stderr, err := run(t, f.env, f.policyTester, "--policy", policy, "--image", f.parentRef)
	if err != nil {
		t.Fatalf("policy-tester refused the signed index: %v\n%s\n%s", err, stdout, stderr)
	}
	t.Logf("policy-tester, signed index: admitted\n%s", lastLines(stderr, 3))

	// A child of the index: in the same repository, not signed by Chains.
	manifest, err := f.idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	child := f.parent.Context().Digest(manifest.Manifests[0].Digest.String()).String()
	refused(t, f.env, f.policyTester, "--policy", policy, "--image", child)

	// An image Chains never saw, in another repository.
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	other, err := name.NewTag(f.host + "/ko-build/unsigned:latest")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(other, img); err != nil {
		t.Fatal(err)
	}
	imgDigest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	refused(t, f.env, f.policyTester, "--policy", policy, "--image", other.Context().Digest(imgDigest.String()).String())

	// The attestation policy is evaluated: another builder id is refused.
	refused(t, f.env, f.policyTester, "--policy", f.policy(t, "https://example.com/not-chains"), "--image", f.parentRef)
}

// TestChainsSignsPipelineRun: the PipelineRun reconciler signs a PipelineRun
// once its child TaskRun is signed; both name the parent, so the parent gets
// two attestations.
func TestChainsSignsPipelineRun(t *testing.T) {
	f := setup(t, "ko-build/pipeline")
	f.sign(t, chainsConfig+`  artifacts.pipelinerun.format: slsa/v2alpha4
  artifacts.pipelinerun.storage: oci
  artifacts.pipelinerun.signer: x509
`,
		fmt.Sprintf(taskRunYAML, f.parent.String(), f.digest.String()),
		fmt.Sprintf(pipelineRunYAML, f.parent.String(), f.digest.String()))
	f.written(t)
	statements := f.verify(t)
	var kinds []string
	for _, s := range statements {
		spec, _ := s.Predicate.BuildDefinition.ExternalParameters["runSpec"].(map[string]any)
		switch {
		case spec["taskRef"] != nil:
			kinds = append(kinds, "TaskRun")
		case spec["pipelineRef"] != nil:
			kinds = append(kinds, "PipelineRun")
		default:
			kinds = append(kinds, fmt.Sprint(s.Predicate.BuildDefinition.ExternalParameters))
		}
	}
	t.Logf("attestations of the parent: %v", kinds)
	if len(statements) != 2 || !contains(kinds, "TaskRun") || !contains(kinds, "PipelineRun") {
		t.Errorf("attestations %v, want one for the TaskRun and one for the PipelineRun", kinds)
	}
	stdout, stderr, err := run(t, f.env, f.policyTester, "--policy", f.policy(t, "https://tekton.dev/chains/v2"), "--image", f.parentRef)
	if err != nil {
		t.Fatalf("policy-tester refused the signed index: %v\n%s\n%s", err, stdout, stderr)
	}
}

func refused(t *testing.T, env []string, policyTester string, args ...string) {
	t.Helper()
	stdout, stderr, err := run(t, env, policyTester, args...)
	if err == nil {
		t.Errorf("policy-tester admitted %v\n%s\n%s", args, stdout, stderr)
		return
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("policy-tester %v: %v\n%s\n%s", args, err, stdout, stderr)
	}
	t.Logf("policy-tester refused %s: %s", args[len(args)-1], strings.TrimSpace(stdout))
}

// clusterImagePolicy requires, for every image on the registry, a signature
// by the key and SLSA v1.0 provenance signed by it whose builder id is the
// given one. A key authority without ctlog skips the transparency log.
func clusterImagePolicy(host string, pub []byte, builderID string) string {
	indent := func(s string, n int) string {
		pad := strings.Repeat(" ", n)
		return pad + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n"+pad)
	}
	return fmt.Sprintf(`apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: tekton-chains-provenance
spec:
  images:
  - glob: "%s/**"
  authorities:
  - name: tekton-chains
    key:
      hashAlgorithm: sha256
      data: |
%s
    attestations:
    - name: slsa-provenance
      predicateType: https://slsa.dev/provenance/v1
      policy:
        type: cue
        data: |
          predicateType: "https://slsa.dev/provenance/v1"
          predicate: runDetails: builder: id: %q
`, host, indent(string(pub), 8), builderID)
}

// taskRunYAML is a completed TaskRun whose type-hinted results name the
// parent: IMAGE_URL (%s) and IMAGE_DIGEST (%s).
const taskRunYAML = `apiVersion: tekton.dev/v1
kind: TaskRun
metadata:
  name: build-parent
  namespace: build
  uid: 4b7e2f3c-5d0a-4c53-9a8e-2f1d3c4b5a69
  labels:
    tekton.dev/task: nestattest
    tekton.dev/pipelineRun: build
    tekton.dev/pipelineTask: catalog
spec:
  serviceAccountName: builder
  params:
  - name: parent
    value: example
  taskRef:
    name: nestattest
    kind: Task
status:
  podName: build-parent-pod
  startTime: "2026-01-02T03:04:05Z"
  completionTime: "2026-01-02T03:05:06Z"
  conditions:
  - type: Succeeded
    status: "True"
    reason: Succeeded
    message: All Steps have completed executing
    lastTransitionTime: "2026-01-02T03:05:06Z"
  steps:
  - name: catalog
    container: step-catalog
    imageID: ghcr.io/nestattest/nestattest@sha256:0000000000000000000000000000000000000000000000000000000000000001
  results:
  - name: IMAGE_URL
    type: string
    value: %s
  - name: IMAGE_DIGEST
    type: string
    value: %s
  taskSpec:
    params:
    - name: parent
      type: string
    results:
    - name: IMAGE_URL
      type: string
    - name: IMAGE_DIGEST
      type: string
    steps:
    - name: catalog
      image: ghcr.io/nestattest/nestattest:latest
      args: ["catalog", "$(params.parent)"]
`

// pipelineRunYAML is a completed PipelineRun whose only child is the TaskRun
// of taskRunYAML and whose results pass the parent on.
const pipelineRunYAML = `apiVersion: tekton.dev/v1
kind: PipelineRun
metadata:
  name: build
  namespace: build
  uid: 0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f
spec:
  pipelineRef:
    name: nestattest-build
  params:
  - name: parent
    value: example
  taskRunTemplate:
    serviceAccountName: builder
status:
  startTime: "2026-01-02T03:04:00Z"
  completionTime: "2026-01-02T03:05:10Z"
  conditions:
  - type: Succeeded
    status: "True"
    reason: Succeeded
    message: "Tasks Completed: 1 (Failed: 0, Cancelled 0), Skipped: 0"
    lastTransitionTime: "2026-01-02T03:05:10Z"
  results:
  - name: IMAGE_URL
    value: %s
  - name: IMAGE_DIGEST
    value: %s
  childReferences:
  - apiVersion: tekton.dev/v1
    kind: TaskRun
    name: build-parent
    pipelineTaskName: catalog
  pipelineSpec:
    params:
    - name: parent
      type: string
    tasks:
    - name: catalog
      taskRef:
        name: nestattest
        kind: Task
      params:
      - name: parent
        value: $(params.parent)
    results:
    - name: IMAGE_URL
      value: $(tasks.catalog.results.IMAGE_URL)
    - name: IMAGE_DIGEST
      value: $(tasks.catalog.results.IMAGE_DIGEST)
`

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
