package ship

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nestattest/nestattest/test/harness"
)

// vsaType is the SLSA verification summary's predicate type.
const vsaType = "https://slsa.dev/verification_summary/v1"

// vsaPub writes the public half of the KMS key that signs the summaries
// to vsa.pub, as `cosign public-key --key awskms://...` would.
func vsaPub(t *testing.T, k *harness.KMS) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "vsa.pub")
	write(t, path, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), 0o644)
	return path
}

// checkSummaries checks, with the real cosign v2 and v3 CLIs, that every
// ref carries a verification summary signed by pub (no transparency log:
// the legacy layout cannot carry a Rekor v2 entry, and a KMS key needs no
// signing time), each PASSED and about the ref's digest.
func (f *fixture) checkSummaries(t *testing.T, pub string, refs ...string) {
	t.Helper()
	env := []string{"DOCKER_CONFIG=" + f.dockerDir, "TUF_ROOT=" + t.TempDir()}
	for _, tool := range []string{"cosign", "cosign3"} {
		for _, ref := range refs {
			r := harness.RunEnv(t, env, harness.Tool(t, tool), "verify-attestation", "--key", pub, "--insecure-ignore-tlog",
				"--type", vsaType, "--allow-insecure-registry", ref)
			if r.Code != 0 {
				t.Errorf("%s verify-attestation --type %s %s: exit %d\n%s", tool, vsaType, ref, r.Code, r.Stderr)
				continue
			}
			n := 0
			for _, payload := range harness.AttestedPayloads(t, r.Stdout) {
				var st struct {
					PredicateType string `json:"predicateType"`
					Predicate     struct {
						ResourceURI        string   `json:"resourceUri"`
						VerificationResult string   `json:"verificationResult"`
						VerifiedLevels     []string `json:"verifiedLevels"`
					} `json:"predicate"`
				}
				if err := json.Unmarshal(payload, &st); err != nil {
					t.Fatalf("%s: statement %s: %v", ref, payload, err)
				}
				_, digest, _ := strings.Cut(ref, "@")
				if st.PredicateType != vsaType || st.Predicate.VerificationResult != "PASSED" || !strings.HasSuffix(st.Predicate.ResourceURI, "@"+digest) {
					t.Errorf("%s: %s summary %s, want a PASSED %s of the node", ref, tool, payload, vsaType)
				}
				n++
			}
			if n == 0 {
				t.Errorf("%s verify-attestation %s: no statement printed\n%s", tool, ref, r.Stdout)
			}
		}
	}
}

// summariesLine is what a run said of its verification summaries.
var summariesLine = regexp.MustCompile(`verification summaries \(.*\): .*`)

// TestTaskWritesVerificationSummaries runs the Task as a TaskRun's pod
// would, signing keylessly as it does by default (the projected token,
// the local Fulcio, every signature timestamped) with VSA_KEY a KMS key,
// reached through the environment's credentials as workload identity
// provides them: after signing, the step verifies the tree by the
// identity it signed with and gives every node a summary signed by the
// KMS key, which the real cosign v2 and v3 verify with its public key
// alone. The same TaskRun again writes no summary.
func TestTaskWritesVerificationSummaries(t *testing.T) {
	needRoot(t)
	f := newFixture(t)
	k := f.startKeyless(t)
	kms := harness.StartKMS(t, harness.KMSOptions{Alias: "alias/verifier"})
	tag := f.parent + ":latest"
	ws := append(workspaces(), v1.WorkspaceBinding{Name: "sigstore", ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: "sigstore-trust"}}})
	params := v1.Params{
		{Name: "IMAGE", Value: *v1.NewStructuredValues(tag)},
		{Name: "CHILDREN", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"--from=ko-refs.txt"}}},
		{Name: "SIGNING_CONFIG", Value: *v1.NewStructuredValues("/etc/sigstore/signing_config.json")},
		{Name: "TRUSTED_ROOT", Value: *v1.NewStructuredValues("/etc/sigstore/trusted_root.json")},
		{Name: "EXTRA_ARGS", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"--insecure-skip-verify"}}},
		{Name: "VSA_KEY", Value: *v1.NewStructuredValues(kms.KeyRef())},
	}
	run := func() (out, digest string) {
		tr := &v1.TaskRun{
			ObjectMeta: metav1.ObjectMeta{Name: "nestattest-vsa-run"},
			Spec:       v1.TaskRunSpec{TaskRef: &v1.TaskRef{Name: "nestattest"}, Params: params, Workspaces: ws},
		}
		p := newPod(t, taskRun{task: loadTask(t), run: tr, secrets: f.secrets, token: k.token(t)})
		write(t, filepath.Join(p.workspacePath("source"), "ko-refs.txt"), f.refs, 0o644)
		p.run(kms.Env()...)
		out = p.output[stepContainer("sign")]
		if code := p.exit[stepContainer("sign")]; code != 0 {
			t.Fatalf("sign exited %d:\n%s", code, out)
		}
		return out, f.checkResults(t, p.hostPath("/tekton/results"), tag)
	}
	out, digest := run()
	line := summariesLine.FindString(out)
	if !strings.Contains(line, "10 nodes passed, 10 written, 0 present, 0 failed; 0 nodes that failed got none") {
		t.Errorf("summaries: %q, want 10 nodes passed and written\n%s", line, out)
	}
	signs := kms.Counts()[harness.KMSSign]
	if signs == 0 {
		t.Errorf("KMS: no Sign requests (%v)", kms.Counts())
	}
	t.Logf("Task (keyless signing) with VSA_KEY=%s: %s; %d KMS Sign requests", kms.KeyRef(), line, signs)
	// Every node, and a child's mirrored copy in the parent's repository.
	below := f.nodesBelow(t)
	_, first, _ := strings.Cut(below[0], "@")
	refs := append(append([]string{tag + "@" + digest}, below...), f.parent+"@"+first)
	f.checkSummaries(t, vsaPub(t, kms), refs...)
	t.Logf("cosign v2.6.5 and v3.1.3 verify-attestation --type %s --key vsa.pub: a PASSED summary on each of %d nodes (and a mirrored copy)", vsaType, len(refs)-1)

	// The same TaskRun again: the tree and its summaries are in place.
	out, _ = run()
	line = summariesLine.FindString(out)
	if !strings.Contains(line, "10 nodes passed, 0 written, 10 present, 0 failed") || !strings.Contains(out, "nothing to write") {
		t.Errorf("second run: summaries %q, want none written\n%s", line, out)
	}
	if n := kms.Counts()[harness.KMSSign]; n != signs {
		t.Errorf("second run: %d KMS Sign requests after %d, want none", n, signs)
	}
	t.Logf("the same TaskRun again: %s", line)
}
