package ship

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nestattest/nestattest/test/harness"
)

func loadPropagateTask(t *testing.T) *v1.Task {
	t.Helper()
	return loadTaskNamed(t, "nestattest-propagate")
}

// chainsSecrets writes the fixture's signing-secrets, the Secret Chains
// signs with in its own namespace, into a directory in Chains' layout.
func (f *fixture) chainsSecrets(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for k, b := range f.secrets["signing-secrets"] {
		write(t, filepath.Join(dir, k), string(b), 0o600)
	}
	return dir
}

// nodesBelow lists every node below the parent, each in its own
// repository: the fixture's children (two-platform indexes) and their
// images.
func (f *fixture) nodesBelow(t *testing.T) []string {
	t.Helper()
	auth := remote.WithAuth(&authn.Basic{Username: registryUser, Password: registryPassword})
	var out []string
	for _, ref := range strings.Fields(f.refs) {
		d, err := name.NewDigest(ref)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := remote.Index(d, auth)
		if err != nil {
			t.Fatal(err)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ref)
		for _, e := range m.Manifests {
			out = append(out, d.Context().Digest(e.Digest.String()).String())
		}
	}
	return out
}

// chainsPredicate is the predicate of the one SLSA v1.0 provenance
// (https://slsa.dev/provenance/v1, what Chains' slsa/v2alpha4
// format writes; cosign's slsaprovenance1) the real cosign CLI verifies on
// ref with pub, no transparency log, and the statement's subject digest.
func (f *fixture) chainsPredicate(t *testing.T, pub, ref string) (predicate []byte, subject string) {
	t.Helper()
	r := harness.RunEnv(t, []string{"DOCKER_CONFIG=" + f.dockerDir, "TUF_ROOT=" + t.TempDir()}, harness.Tool(t, "cosign"),
		"verify-attestation", "--key", pub, "--insecure-ignore-tlog", "--type", "slsaprovenance1", "--allow-insecure-registry", ref)
	if r.Code != 0 {
		t.Errorf("cosign verify-attestation %s: exit %d\n%s", ref, r.Code, r.Stderr)
		return nil, ""
	}
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	var env struct{ Payload string }
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &env); err != nil {
		t.Fatalf("cosign verify-attestation %s: %v\n%s", ref, err, r.Stdout)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		PredicateType string `json:"predicateType"`
		Subject       []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
		Predicate json.RawMessage `json:"predicate"`
	}
	if err := json.Unmarshal(payload, &st); err != nil || len(st.Subject) != 1 {
		t.Fatalf("statement %s: %v", payload, err)
	}
	if st.PredicateType != "https://slsa.dev/provenance/v1" {
		t.Errorf("%s: predicate type %s, want https://slsa.dev/provenance/v1", ref, st.PredicateType)
	}
	return st.Predicate, "sha256:" + st.Subject[0].Digest["sha256"]
}

// TestPropagateTaskRuns runs task/nestattest-propagate as its TaskRun's
// pod would run in Chains' namespace: the ko-shaped tree's parent composed
// and pushed, Tekton Chains' own code (the reconciler, x509 signer,
// slsa/v2alpha4 format and oci storage) signing and attesting the parent
// the build's results name, then Tekton substituting the propagate
// TaskRun's params, building its pod with Chains' signing-secrets mounted,
// and the entrypoint running the step's exact command line against the
// real registry behind its credentials. Every child then carries Chains'
// predicate unchanged, itself as subject, under Chains' key, as the real
// cosign CLI verifies it; NODES and WRITTEN reach the TaskRun's results;
// with VSA_KEY a verifier's KMS key, every node, the parent too, carries a
// PASSED verification summary that cosign v2 and v3 verify with its public
// key; the same TaskRun again writes nothing.
func TestPropagateTaskRuns(t *testing.T) {
	needRoot(t)
	f := newFixture(t)
	tag := f.parent + ":latest"
	compose(t, f, tag)
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref, remote.WithAuth(&authn.Basic{Username: registryUser, Password: registryPassword}))
	if err != nil {
		t.Fatal(err)
	}
	digest := desc.Digest.String()
	secrets := f.chainsSecrets(t)
	harness.ChainsSign(t, secrets, filepath.Join(f.dockerDir, "config.json"), tag, digest)
	pub := filepath.Join(secrets, "cosign.pub")
	parentPredicate, subject := f.chainsPredicate(t, pub, tag+"@"+digest)
	if subject != digest {
		t.Fatalf("Chains attested %s, want the parent %s", subject, digest)
	}
	below := f.nodesBelow(t)
	if len(below) != 9 {
		t.Fatalf("%d nodes below the parent, want 9: %v", len(below), below)
	}

	// The summaries' key: a verifier's own KMS key, reached through the
	// environment's credentials as workload identity provides them.
	kms := harness.StartKMS(t, harness.KMSOptions{Alias: "alias/verifier"})
	run := func() (*podRun, *v1.TaskRun) {
		tr := &v1.TaskRun{
			ObjectMeta: metav1.ObjectMeta{Name: "nestattest-propagate-run"},
			Spec: v1.TaskRunSpec{TaskRef: &v1.TaskRef{Name: "nestattest-propagate"},
				Params: v1.Params{
					{Name: "IMAGE_URL", Value: *v1.NewStructuredValues(tag)},
					{Name: "IMAGE_DIGEST", Value: *v1.NewStructuredValues(digest)},
					{Name: "SOURCE_INSECURE_IGNORE_TLOG", Value: *v1.NewStructuredValues("true")},
					{Name: "TLOG_UPLOAD", Value: *v1.NewStructuredValues("false")},
					{Name: "WAIT", Value: *v1.NewStructuredValues("30s")},
					{Name: "VSA_KEY", Value: *v1.NewStructuredValues(kms.KeyRef())},
				},
				Workspaces: []v1.WorkspaceBinding{{Name: "dockerconfig", Secret: &corev1.SecretVolumeSource{SecretName: "registry-push",
					Items: []corev1.KeyToPath{{Key: corev1.DockerConfigJsonKey, Path: "config.json"}}}}},
			},
		}
		// The projected token VSA_KEYLESS would sign with; unused here.
		p := newPod(t, taskRun{task: loadPropagateTask(t), run: tr, secrets: f.secrets, token: func(string, time.Duration) string { return "unused" }})
		mounted := false
		for _, c := range p.containers() {
			for _, m := range c.VolumeMounts {
				if m.MountPath == "/etc/signing-secrets" && m.Name == "signing-secrets" && m.ReadOnly {
					mounted = true
				}
			}
		}
		if !mounted {
			t.Errorf("no container mounts Chains' signing-secrets read-only at /etc/signing-secrets")
		}
		p.run(kms.Env()...)
		for c, code := range p.exit {
			if code != 0 {
				t.Fatalf("container %s exited %d:\n%s", c, code, p.output[c])
			}
		}
		return p, tr
	}
	results := func(p *podRun, tr *v1.TaskRun) map[string]string {
		t.Helper()
		files := map[string]string{}
		for _, r := range []string{"NODES", "WRITTEN"} {
			b, err := os.ReadFile(filepath.Join(p.hostPath("/tekton/results"), r))
			if err != nil {
				t.Fatalf("result %s: %v", r, err)
			}
			files[r] = string(b)
		}
		for _, r := range []string{"IMAGE_URL", "IMAGE_DIGEST"} {
			if _, err := os.Stat(filepath.Join(p.hostPath("/tekton/results"), r)); err == nil {
				t.Errorf("propagate wrote %s: Chains has signed the parent already", r)
			}
		}
		got := map[string]string{}
		for _, r := range p.taskRunStatus(tr).Results {
			got[r.Name] = r.Value.StringVal
		}
		if len(got) != 2 || got["NODES"] != files["NODES"] || got["WRITTEN"] != files["WRITTEN"] {
			t.Errorf("TaskRun results %v, the result files %v", got, files)
		}
		return got
	}

	p, tr := run()
	got := results(p, tr)
	// The nine nodes below the parent; catalog mirrored each into the
	// parent's repository, and propagate gives the mirrored copies Chains'
	// provenance too (not counted as nodes of their own).
	if got["NODES"] != "9" || got["WRITTEN"] != "9" {
		t.Errorf("first run: NODES %s, WRITTEN %s; want 9 and 9\n%s", got["NODES"], got["WRITTEN"], p.output[stepContainer("propagate")])
	}
	_, firstDigest, _ := strings.Cut(below[0], "@")
	for _, child := range append(below, f.parent+"@"+firstDigest) {
		pred, subject := f.chainsPredicate(t, pub, child)
		if pred == nil {
			continue
		}
		if !bytes.Equal(pred, parentPredicate) {
			t.Errorf("%s: the predicate differs from Chains':\n%s\n%s", child, pred, parentPredicate)
		}
		if !strings.HasSuffix(child, "@"+subject) {
			t.Errorf("%s: subject %s", child, subject)
		}
	}
	// Every node and every mirrored copy, by Chains' key, as an admission
	// policy requiring Chains' provenance would check them; Chains signed
	// the root without the root annotation, which binds it by digest.
	f.verifyWith(t, tag, nil, "--key", pub, "--insecure-ignore-tlog", "--require-root", "--mirrors")
	// VSA_KEY: the whole tree verified by Chains' key and provenance type,
	// then every node and mirrored copy given a summary signed by the
	// verifier's key, the parent's too.
	line := summariesLine.FindString(p.output[stepContainer("propagate")])
	if !strings.Contains(line, "10 nodes passed, 10 written, 0 present, 0 failed") {
		t.Errorf("summaries: %q, want 10 nodes passed and written\n%s", line, p.output[stepContainer("propagate")])
	}
	refs := append(append([]string{tag + "@" + digest}, below...), f.parent+"@"+firstDigest)
	f.checkSummaries(t, vsaPub(t, kms), refs...)
	t.Logf("propagate Task with VSA_KEY=%s: %s", kms.KeyRef(), line)
	t.Logf("cosign v2.6.5 and v3.1.3 verify-attestation --type %s --key vsa.pub: a PASSED summary on each of %d nodes (and a mirrored copy)", vsaType, len(refs)-1)

	// The same TaskRun again (a retry, or the trigger firing twice):
	// everything is in place; nothing written.
	p, tr = run()
	if got := results(p, tr); got["WRITTEN"] != "0" || got["NODES"] != "9" {
		t.Errorf("second run: NODES %s, WRITTEN %s; want 9 and 0", got["NODES"], got["WRITTEN"])
	}
	if out := p.output[stepContainer("propagate")]; !strings.Contains(out, "nothing to write") ||
		!strings.Contains(summariesLine.FindString(out), "10 nodes passed, 0 written, 10 present, 0 failed") {
		t.Errorf("second run wrote again:\n%s", out)
	}
}

// TestBuildSideMountsNoSecret: the build-side Task, the StepAction and the
// StepAction's sample Task, which run beside build steps, declare no Secret
// volume and no projected Secret: no key that signs provenance can be
// read there. Only Chains' namespace, where the propagate Task runs,
// mounts signing-secrets.
func TestBuildSideMountsNoSecret(t *testing.T) {
	noSecret := func(where string, vols []corev1.Volume) {
		for _, v := range vols {
			if v.Secret != nil {
				t.Errorf("%s: volume %s mounts Secret %s", where, v.Name, v.Secret.SecretName)
			}
			if v.Projected != nil {
				for _, s := range v.Projected.Sources {
					if s.Secret != nil {
						t.Errorf("%s: volume %s projects Secret %s", where, v.Name, s.Secret.Name)
					}
				}
			}
			if v.CSI != nil {
				t.Errorf("%s: volume %s is a CSI volume (a secrets store?)", where, v.Name)
			}
		}
	}
	task := loadTask(t)
	noSecret("task/nestattest", task.Spec.Volumes)
	for _, s := range task.Spec.Steps {
		for _, e := range s.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				t.Errorf("task/nestattest step %s: env %s from Secret %s", s.Name, e.Name, e.ValueFrom.SecretKeyRef.Name)
			}
		}
	}
	sa := loadStepAction(t)
	for _, e := range sa.Spec.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Errorf("stepaction/nestattest: env %s from Secret %s", e.Name, e.ValueFrom.SecretKeyRef.Name)
		}
	}
	for _, m := range sa.Spec.VolumeMounts {
		if strings.Contains(m.Name, "signing-secrets") || strings.Contains(m.MountPath, "signing-secrets") {
			t.Errorf("stepaction/nestattest mounts %s at %s", m.Name, m.MountPath)
		}
	}
	m, err := decodeStrict(filepath.Join(moduleRoot(t), "stepaction", "nestattest", "samples", "task-with-stepaction.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	noSecret("stepaction/nestattest/samples/task-with-stepaction.yaml", m.obj.(*v1.Task).Spec.Volumes)
}

// The propagate Task's directory.
const propagateDir = "task/nestattest-propagate"

func loadPropagate(t testing.TB) *v1.Task {
	t.Helper()
	m, err := decodeStrict(filepath.Join(moduleRoot(t), propagateDir, "nestattest-propagate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return m.obj.(*v1.Task)
}

// propagateSample decodes one of the propagate Task's samples strictly.
func propagateSample(t *testing.T, name string) any {
	t.Helper()
	m, err := decodeStrict(filepath.Join(moduleRoot(t), propagateDir, "samples", name))
	if err != nil {
		t.Fatal(err)
	}
	return m.obj
}

// TestReleasePipelineRunRunsPropagate: the release PipelineRun sample runs
// the propagate Task on the build's parent, every param it gives the Task
// declared by it, then verifies every node by Chains' public key alone.
func TestReleasePipelineRunRunsPropagate(t *testing.T) {
	pr := propagateSample(t, "release-pipelinerun.yaml").(*v1.PipelineRun)
	if pr.Namespace != "tekton-chains" || pr.Spec.PipelineSpec == nil {
		t.Fatalf("PipelineRun in %q, pipelineSpec %v: want an inline Pipeline in tekton-chains", pr.Namespace, pr.Spec.PipelineSpec != nil)
	}
	declared := paramNames(loadPropagate(t).Spec.Params)
	var propagate, verify *v1.PipelineTask
	for i, pt := range pr.Spec.PipelineSpec.Tasks {
		switch pt.Name {
		case "propagate":
			propagate = &pr.Spec.PipelineSpec.Tasks[i]
		case "verify":
			verify = &pr.Spec.PipelineSpec.Tasks[i]
		}
	}
	if propagate == nil || verify == nil || !slices.Contains(verify.RunAfter, "propagate") {
		t.Fatalf("want a propagate task and a verify task after it")
	}
	if !slices.ContainsFunc(propagate.TaskRef.Params, func(p v1.Param) bool {
		return p.Value.StringVal == propagateDir+"/nestattest-propagate.yaml"
	}) {
		t.Errorf("propagate's taskRef %+v names no %s", propagate.TaskRef, propagateDir)
	}
	for _, p := range propagate.Params {
		if !declared[p.Name] {
			t.Errorf("propagate is given %s, which the Task does not declare", p.Name)
		}
	}
	for _, v := range verify.TaskSpec.Volumes {
		if v.Secret != nil && (len(v.Secret.Items) != 1 || v.Secret.Items[0].Key != "cosign.pub") {
			t.Errorf("verify mounts %s's %v: want cosign.pub alone", v.Secret.SecretName, v.Secret.Items)
		}
	}
}
