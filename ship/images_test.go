package ship

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/result"
	"github.com/tektoncd/pipeline/pkg/termination"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"

	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/tektonresult"
	"github.com/nestattest/nestattest/test/harness"
)

// threePlatforms are the platforms of each child of the ko-shaped tree
// whose every node Chains attests through IMAGES.
var threePlatforms = []ggcrv1.Platform{
	{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}, {OS: "linux", Architecture: "s390x"},
}

// signedTaskRun runs the nestattest Task's pod for a TaskRun signing with
// a KMS key (local-kms, reached with credentials from the environment as
// workload identity provides them; no transparency log), the children from
// ko-refs.txt in the source workspace, and returns the pod and the TaskRun
// as the reconciler leaves it: done, its status made by Tekton's code from
// the pod, as Chains reads it.
func (f *fixture) signedTaskRun(t *testing.T, kms *harness.KMS, refs string, params ...v1.Param) (*podRun, *v1.TaskRun) {
	t.Helper()
	tr := &v1.TaskRun{
		TypeMeta:   metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "TaskRun"},
		ObjectMeta: metav1.ObjectMeta{Name: "nestattest-images", UID: types.UID("0f6c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f")},
		Spec: v1.TaskRunSpec{TaskRef: &v1.TaskRef{Name: "nestattest"}, Workspaces: workspaces(),
			Params: append(v1.Params{
				{Name: "CHILDREN", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"--from=ko-refs.txt"}}},
				{Name: "KEY", Value: *v1.NewStructuredValues(kms.KeyRef())},
				{Name: "TLOG_UPLOAD", Value: *v1.NewStructuredValues("false")},
			}, params...)},
	}
	p := newPod(t, taskRun{task: loadTask(t), run: tr, secrets: f.secrets, token: func(string, time.Duration) string { return "unused" }})
	write(t, filepath.Join(p.workspacePath("source"), "ko-refs.txt"), refs, 0o644)
	p.run(kms.Env()...)
	done := tr.DeepCopy()
	done.Status = p.taskRunStatus(tr)
	done.Status.TaskSpec = p.spec
	start, end := metav1.NewTime(time.Date(2026, 12, 5, 3, 4, 5, 0, time.UTC)), metav1.NewTime(time.Date(2026, 12, 5, 3, 5, 6, 0, time.UTC))
	done.Status.StartTime, done.Status.CompletionTime, done.Status.PodName = &start, &end, p.pod.Name
	done.Status.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionTrue, Reason: "Succeeded"})
	return p, done
}

// succeeded fails the test unless every container of the pod exited 0.
func (p *podRun) succeeded() {
	p.t.Helper()
	for c, code := range p.exit {
		if code != 0 {
			p.t.Fatalf("container %s exited %d:\n%s", c, code, p.output[c])
		}
	}
}

// statement is an in-toto statement as the tests read it.
type statement struct {
	Type          string `json:"_type"`
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	Predicate json.RawMessage `json:"predicate"`
}

// names says whether the statement has repository@digest among its
// subjects.
func (s statement) names(ref string) bool {
	repo, digest, _ := strings.Cut(ref, "@")
	for _, sub := range s.Subject {
		if sub.Name == repo && "sha256:"+sub.Digest["sha256"] == digest {
			return true
		}
	}
	return false
}

// verifiedStatements are the SLSA v1.0 provenance statements the real
// cosign CLI (tool: cosign, v2.6.5, or cosign3, v3.1.3) verifies on ref
// with the public key pub, no transparency log.
func (f *fixture) verifiedStatements(t *testing.T, tool, pub, ref string) []statement {
	t.Helper()
	env := []string{"DOCKER_CONFIG=" + f.dockerDir, "TUF_ROOT=" + t.TempDir()}
	sig := harness.RunEnv(t, env, harness.Tool(t, tool), "verify", "--key", pub, "--insecure-ignore-tlog", "--allow-insecure-registry", ref)
	if sig.Code != 0 {
		t.Errorf("%s verify %s: exit %d\n%s", tool, ref, sig.Code, sig.Stderr)
	}
	r := harness.RunEnv(t, env, harness.Tool(t, tool),
		"verify-attestation", "--key", pub, "--insecure-ignore-tlog", "--type", "slsaprovenance1", "--allow-insecure-registry", ref)
	if r.Code != 0 {
		t.Errorf("%s verify-attestation %s: exit %d\n%s", tool, ref, r.Code, r.Stderr)
		return nil
	}
	var out []statement
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		var env struct{ Payload string }
		if err := json.Unmarshal([]byte(line), &env); err != nil {
			t.Fatalf("%s verify-attestation %s: %v\n%s", tool, ref, err, r.Stdout)
		}
		payload, err := base64.StdEncoding.DecodeString(env.Payload)
		if err != nil {
			t.Fatal(err)
		}
		var st statement
		if err := json.Unmarshal(payload, &st); err != nil {
			t.Fatalf("statement %s: %v", payload, err)
		}
		out = append(out, st)
	}
	return out
}

// resultOf is a TaskRun result's string value, and whether it is there.
func resultOf(s v1.TaskRunStatus, name string) (string, bool) {
	for _, r := range s.Results {
		if r.Name == name {
			return r.Value.StringVal, true
		}
	}
	return "", false
}

// TestTaskImagesChainsAttestsEveryNode runs the nestattest Task's pod, as
// TestTaskRunsTheSignCommandLine does, on a ko-shaped tree of three
// three-platform children, then Tekton Chains' own code on the TaskRun as
// Tekton's code left it. The step lists the 12 nodes below the parent in
// IMAGES, which fits the 4 KiB termination message; Chains signs and
// attests the parent (IMAGE_URL, IMAGE_DIGEST) and every node IMAGES names,
// one provenance whose subjects are all 13, stored in each node's own
// repository; the real cosign CLIs, v2.6.5 and v3.1.3, verify every
// node's signature and provenance with Chains' key.
func TestTaskImagesChainsAttestsEveryNode(t *testing.T) {
	needRoot(t)
	f := newFixtureOf(t, threePlatforms)
	kms := harness.StartKMS(t, harness.KMSOptions{})
	tag := f.parent + ":latest"
	p, done := f.signedTaskRun(t, kms, f.refs, v1.Param{Name: "IMAGE", Value: *v1.NewStructuredValues(tag)})
	p.succeeded()
	digest := f.checkResults(t, p.hostPath("/tekton/results"), tag)
	below := f.nodesBelow(t)
	if len(below) != 12 {
		t.Fatalf("%d nodes below the parent, want 12 (3 indexes of 3 platforms): %v", len(below), below)
	}
	want := strings.Join(below, ",")
	file, err := os.ReadFile(filepath.Join(p.hostPath("/tekton/results"), "IMAGES"))
	if err != nil || string(file) != want {
		t.Errorf("the IMAGES result file = %q (%v), want %q", file, err, want)
	}
	// The entrypoint put it in the termination message, and Tekton's
	// reconciler code made it a TaskRun result, which Chains reads.
	term := p.term[stepContainer("sign")]
	t.Logf("termination message: %d of %d bytes", len(term), 4096)
	if got, ok := resultOf(done.Status, "IMAGES"); !ok || got != want {
		t.Errorf("TaskRun result IMAGES = %q (there: %v), want %q", got, ok, want)
	}
	if out := p.output[stepContainer("sign")]; !strings.Contains(out, "IMAGES: 12 nodes below the root") {
		t.Errorf("the step does not say it emitted IMAGES:\n%s", out)
	}

	run, err := json.Marshal(done)
	if err != nil {
		t.Fatal(err)
	}
	secrets := f.chainsSecrets(t)
	harness.ChainsSignRuns(t, harness.ChainsRuns{Secrets: secrets, DockerConfig: filepath.Join(f.dockerDir, "config.json"), TaskRuns: [][]byte{run}})
	pub := filepath.Join(secrets, "cosign.pub")
	parent := f.parent + "@" + digest
	for _, ref := range append([]string{parent}, below...) {
		for _, tool := range []string{"cosign", "cosign3"} {
			sts := f.verifiedStatements(t, tool, pub, ref)
			if len(sts) != 1 {
				t.Errorf("%s: %s verified %d provenance statements, want Chains' one", ref, tool, len(sts))
				continue
			}
			st := sts[0]
			if st.PredicateType != "https://slsa.dev/provenance/v1" || len(st.Subject) != 13 || !st.names(ref) || !st.names(parent) {
				t.Errorf("%s (%s): predicate %s, %d subjects (want 13, it and the parent among them)", ref, tool, st.PredicateType, len(st.Subject))
			}
		}
	}
	t.Logf("Chains (%s) signed and attested the parent and the %d nodes IMAGES names; cosign and cosign3 verified each with Chains' key",
		harness.ToolVersion(t, "chains-sign"), len(below))
}

// wideRefs pushes n single-platform images, each into its own child
// repository <parent>/cNNN, and returns their references as ko writes
// them, a line each.
func (f *fixture) wideRefs(t *testing.T, seed string, n int) string {
	t.Helper()
	auth := remote.WithAuth(&authn.Basic{Username: registryUser, Password: registryPassword})
	var b strings.Builder
	for i := range n {
		img, err := sample.Image(fmt.Sprintf("%s-%d", seed, i), ggcrv1.Platform{OS: "linux", Architecture: "amd64"})
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		ref, err := name.NewDigest(fmt.Sprintf("%s/c%03d@%s", f.parent, i, d))
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img, auth); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(&b, ref)
	}
	return b.String()
}

// fittingChildren is the most children named <parent>/cNNN whose IMAGES
// list fits the termination message beside the IMAGE_URL tag and
// IMAGE_DIGEST, as nestattest sizes it (TestTerminationSizeIsTektons
// checks that sizing against Tekton's own code).
func fittingChildren(tag, parent string) int {
	fits := func(n int) bool {
		refs := make([]string, n)
		for i := range refs {
			refs[i] = fmt.Sprintf("%s/c%03d@sha256:%064d", parent, i, i)
		}
		return tektonresult.Limits{From: tektonresult.FromTerminationMessage}.Fits(tektonresult.Step{}, []tektonresult.Result{
			{Name: "IMAGE_URL", Value: tag}, {Name: "IMAGE_DIGEST", Value: fmt.Sprintf("sha256:%064d", 0)},
			{Name: "IMAGES", Value: strings.Join(refs, ",")}})
	}
	n := 0
	for fits(n + 1) {
		n++
	}
	return n
}

// TestTaskImagesCutOff runs the Task's pod on the largest tree whose
// IMAGES list fits Tekton's 4,096-byte termination message and on one
// child more: the first emits IMAGES, through the entrypoint and Tekton's
// reconciler code into the TaskRun's results; the second emits it empty
// and says so in the step's log, and with EMIT_IMAGES=always it fails
// instead, saying why. Never a list cut short.
func TestTaskImagesCutOff(t *testing.T) {
	needRoot(t)
	f := newFixture(t)
	kms := harness.StartKMS(t, harness.KMSOptions{})
	n := fittingChildren(f.parent+":wide-000", f.parent)
	t.Logf("children named %s/cNNN: IMAGES fits the termination message up to %d of them (%d bytes an entry)", f.parent, n, len(f.parent)+len("/c000@sha256:")+64+1)
	for _, c := range []struct {
		children int
		mode     string
		emitted  bool
	}{{n, "auto", true}, {n + 1, "auto", false}, {n + 1, "always", false}} {
		tag := fmt.Sprintf("%s:wide-%03d", f.parent, c.children)
		refs := f.wideRefs(t, "wide", c.children)
		p, done := f.signedTaskRun(t, kms, refs, v1.Param{Name: "IMAGE", Value: *v1.NewStructuredValues(tag)},
			v1.Param{Name: "EMIT_IMAGES", Value: *v1.NewStructuredValues(c.mode)})
		sign := stepContainer("sign")
		out := p.output[sign]
		got, _ := resultOf(done.Status, "IMAGES")
		listed := strings.FieldsFunc(got, func(r rune) bool { return r == ',' })
		switch {
		case c.emitted:
			p.succeeded()
			if len(listed) != c.children || !strings.Contains(out, fmt.Sprintf("IMAGES: %d nodes below the root, ", c.children)) {
				t.Errorf("%d children: IMAGES lists %d; step log:\n%s", c.children, len(listed), out)
			}
			t.Logf("%d children, EMIT_IMAGES=%s: IMAGES emitted; the termination message the entrypoint wrote is %d bytes", c.children, c.mode, len(p.term[sign]))
		case c.mode == "auto":
			p.succeeded()
			if _, ok := resultOf(done.Status, "IMAGES"); !ok || got != "" || !strings.Contains(out, "IMAGES: not emitted (empty)") {
				t.Errorf("%d children: IMAGES = %q; step log:\n%s", c.children, got, out)
			}
			t.Logf("%d children, EMIT_IMAGES=%s: the step says %q", c.children, c.mode, line(out, "IMAGES:"))
		default:
			if p.exit[sign] == 0 || !strings.Contains(out, "--images always: the IMAGES result would take") {
				t.Errorf("%d children, EMIT_IMAGES=always: exit %d; step log:\n%s", c.children, p.exit[sign], out)
			}
			t.Logf("%d children, EMIT_IMAGES=%s: the step exits %d: %q", c.children, c.mode, p.exit[sign], line(out, "--images always"))
		}
	}
}

// line is the first line of out that holds s.
func line(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// TestTerminationSizeIsTektons checks nestattest's sizing of a
// termination message against Tekton's own writer: for IMAGES lists of
// every length around the limit, the size tektonresult computes is the
// size of the message termination.WriteMessage writes with the
// entrypoint's own entries at their longest (StartedAt with a zone offset,
// an ExitCode), and it fits exactly when Tekton writes it.
func TestTerminationSizeIsTektons(t *testing.T) {
	for _, step := range []tektonresult.Step{{}, {Dir: "step-sign"}} {
		typ := result.TaskRunResultType
		if step.Dir != "" {
			typ = result.StepResultType
		}
		last := -1
		for n := 0; n <= 45; n++ {
			refs := make([]string, n)
			for i := range refs {
				refs[i] = fmt.Sprintf("quay.io/org/ko-build/app%d@sha256:%064x", i, i)
			}
			rs := []tektonresult.Result{{Name: "IMAGE_URL", Value: "quay.io/org/ko-build:v1"},
				{Name: "IMAGE_DIGEST", Value: fmt.Sprintf("sha256:%064x", 99)}, {Name: "IMAGES", Value: strings.Join(refs, ",")}}
			var entries []result.RunResult
			for _, r := range rs {
				entries = append(entries, result.RunResult{Key: r.Name, Value: r.Value, ResultType: typ})
			}
			path := filepath.Join(t.TempDir(), "termination-log")
			werr := termination.WriteMessage(path, entries)
			if werr == nil {
				werr = termination.WriteMessage(path, []result.RunResult{
					{Key: "StartedAt", Value: "2026-12-05T18:35:03.000+01:00", ResultType: result.InternalTektonResultType},
					{Key: "ExitCode", Value: "255", ResultType: result.InternalTektonResultType}})
			}
			size, limit := tektonresult.Limits{From: tektonresult.FromTerminationMessage}.Size(step, rs)
			fits := size <= limit
			if fits != (werr == nil) {
				t.Errorf("%s, %d images: nestattest sizes it %d of %d bytes, Tekton's writer says %v", step.Dir, n, size, limit, werr)
			}
			if werr == nil {
				b, err := os.ReadFile(path)
				if err != nil || len(b) != size {
					t.Errorf("%s, %d images: Tekton wrote %d bytes, nestattest says %d", step.Dir, n, len(b), size)
				}
				last = n
			}
		}
		t.Logf("results %q: IMAGES of quay.io/org/ko-build/appN references fits up to %d of them", step.Dir, last)
		if last < 30 || last == 45 {
			t.Errorf("the limit fell at %d images", last)
		}
	}
}
