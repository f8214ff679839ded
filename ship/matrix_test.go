package ship

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	prresources "github.com/tektoncd/pipeline/pkg/reconciler/pipelinerun/resources"
	trresources "github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	"github.com/tektoncd/pipeline/pkg/trustedresources"
	corev1 "k8s.io/api/core/v1"
	kerrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"

	"github.com/nestattest/nestattest/test/harness"
)

// shardedSample is the sharded Pipeline sample: plan, a Matrix of sign
// TaskRuns over the plan's SHARDS result, verify.
const shardedSample = "docs/samples/tekton-sharded-pipeline.yaml"

func loadSharded(t *testing.T) *v1.Pipeline {
	t.Helper()
	m, err := decodeStrict(filepath.Join(moduleRoot(t), shardedSample))
	if err != nil {
		t.Fatal(err)
	}
	return m.obj.(*v1.Pipeline)
}

// TestShardedPipelineSampleValid: the sample decodes strictly, passes
// Tekton's defaulting and validation, and every variable it uses names
// something declared, results of its inline Tasks included.
func TestShardedPipelineSampleValid(t *testing.T) {
	p := loadSharded(t)
	if err := defaultAndValidate(context.Background(), p); err != nil {
		t.Fatalf("Tekton validation: %v", err)
	}
	s := scope{params: paramNames(p.Spec.Params), workspaces: set(p.Spec.Workspaces, func(w v1.PipelineWorkspaceDeclaration) string { return w.Name }),
		tasks: map[string]map[string]bool{}}
	for _, pt := range p.Spec.Tasks {
		if pt.TaskSpec == nil {
			t.Fatalf("task %s: the sample's Tasks are inline", pt.Name)
		}
		checkTask(t, shardedSample+" task "+pt.Name, pt.TaskSpec.TaskSpec)
		s.tasks[pt.Name] = set(pt.TaskSpec.Results, func(r v1.TaskResult) string { return r.Name })
	}
	arrayRef := regexp.MustCompile(`\[\*\]\)`)
	for _, pt := range p.Spec.Tasks {
		s.check(t, shardedSample+" task "+pt.Name+" params", pt.Params)
		if pt.Matrix != nil {
			raw, _ := json.Marshal(pt.Matrix.Params)
			var stripped []any
			_ = json.Unmarshal([]byte(arrayRef.ReplaceAllString(string(raw), ")")), &stripped)
			s.check(t, shardedSample+" task "+pt.Name+" matrix", stripped)
		}
	}
	s.check(t, shardedSample+" results", p.Spec.Results)
	sign := p.Spec.Tasks[1]
	if sign.Matrix == nil || len(sign.Matrix.Params) != 1 || sign.Matrix.Params[0].Value.StringVal != "$(tasks.plan.results.SHARDS[*])" {
		t.Errorf("sign's matrix: %+v, want SHARD over $(tasks.plan.results.SHARDS[*])", sign.Matrix)
	}
	for _, pt := range p.Spec.Tasks {
		if pt.Name != "verify" && slices.ContainsFunc(pt.TaskSpec.Results, func(r v1.TaskResult) bool { return strings.HasPrefix(r.Name, "IMAGE_") }) {
			t.Errorf("task %s declares %s: only verify may hand Chains the parent", pt.Name, "IMAGE_URL/IMAGE_DIGEST")
		}
	}
}

// pipelineRun is a run of the sharded sample as the reconciler sees it.
type pipelineRun struct {
	t       *testing.T
	f       *fixture
	pr      *v1.PipelineRun
	spec    *v1.PipelineSpec // params, context and workspaces applied
	secrets map[string]map[string][]byte
	token   func(audience string, expiry time.Duration) string // the ServiceAccount's projected tokens
	env     []string                                           // more environment, as workload identity gives it
}

// taskRun runs one TaskRun of a pipeline task as a pod (the reconciler's
// createTaskRun: the matrix combination's params, then the pipeline
// task's, and its workspaces bound to the PipelineRun's), and returns the
// pod and the TaskRun with the status Tekton makes from the pod.
func (r *pipelineRun) taskRun(pt *v1.PipelineTask, spec *v1.TaskSpec, name string, params v1.Params) (*podRun, *v1.TaskRun) {
	t := r.t
	task := &v1.Task{ObjectMeta: metav1.ObjectMeta{Name: r.pr.Name + "-" + pt.Name, Namespace: "default"}, Spec: *spec.DeepCopy()}
	tr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
		Spec:       v1.TaskRunSpec{TaskRef: &v1.TaskRef{Name: task.Name}, Params: append(params, pt.Params...), Workspaces: r.workspaces(pt)},
	}
	p := newPod(t, taskRun{task: task, run: tr, secrets: r.secrets, token: r.token})
	p.run(r.env...)
	for c, code := range p.exit {
		if code != 0 {
			t.Fatalf("TaskRun %s: container %s exited %d:\n%s", name, c, code, p.output[c])
		}
	}
	tr.Status = p.taskRunStatus(tr)
	tr.Status.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: corev1.ConditionTrue})
	return p, tr
}

// workspaces binds a pipeline task's workspaces to the PipelineRun's.
func (r *pipelineRun) workspaces(pt *v1.PipelineTask) []v1.WorkspaceBinding {
	var out []v1.WorkspaceBinding
	for _, ws := range pt.Workspaces {
		for _, b := range r.pr.Spec.Workspaces {
			if b.Name == ws.Workspace {
				b.Name = ws.Name
				out = append(out, b)
			}
		}
	}
	return out
}

// TestShardedPipelineFansOut runs the sample against a real registry: the
// plan task's pod (Tekton's entrypoint, the step's exact command line),
// its SHARDS result read back by Tekton's status code, the sign task
// resolved and fanned out by tektoncd/pipeline's own code
// (ResolvePipelineTask substitutes the array result into the matrix and
// names the TaskRuns, Matrix.FanOut makes each one's params, as
// createTaskRuns does), every fanned-out TaskRun run as its pod, then
// verify, whose IMAGE_URL and IMAGE_DIGEST become the Pipeline's results.
// The shards sign keylessly, as the sample does by default: each its own
// certificate from the local Fulcio for the kubelet's projected
// ServiceAccount token, every signature in a Rekor v2 log and timestamped,
// the trust material from the sigstore workspace (a ConfigMap); then, on a
// tree of their own, with a KMS key (local-kms) reached with credentials
// from the environment, as workload identity puts them there, verify
// reading its public key the same way. No Secret but the registry's is
// mounted. Every node is signed by exactly one shard and the tree verifies
// by that identity.
func TestShardedPipelineFansOut(t *testing.T) {
	needRoot(t)
	t.Run("keyless", func(t *testing.T) {
		f := newFixture(t)
		k := f.startKeyless(t)
		tag := f.parent + ":latest"
		before := k.Requests()
		runSharded(t, f, tag, k.token(t), nil, v1.Params{
			{Name: "SIGNING_CONFIG", Value: *v1.NewStructuredValues("/etc/sigstore/signing_config.json")},
			{Name: "TRUSTED_ROOT", Value: *v1.NewStructuredValues("/etc/sigstore/trusted_root.json")},
			{Name: "FORMAT", Value: *v1.NewStructuredValues("bundle")},
			{Name: "CERTIFICATE_IDENTITY", Value: *v1.NewStructuredValues(k.Identity)},
			{Name: "CERTIFICATE_OIDC_ISSUER", Value: *v1.NewStructuredValues(k.Issuer)},
			// The local Fulcio has no CT log: no SCT to check.
			{Name: "SIGN_EXTRA_ARGS", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"--insecure-skip-verify"}}},
			{Name: "VERIFY_EXTRA_ARGS", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"--insecure-ignore-sct", "--use-signed-timestamps", "--require-root"}}},
		}, v1.WorkspaceBinding{Name: "sigstore", ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "sigstore-trust"}}})
		if after := k.Requests(); after.Certificates-before.Certificates != 3 {
			t.Errorf("sigstore: %+v then %+v; want a certificate per shard, 3", before, after)
		}
		f.verifyWith(t, tag, nil, append(k.identity(), "--require-root", "--format", "bundle")...)
	})
	t.Run("kms", func(t *testing.T) {
		f := newFixture(t)
		kms := harness.StartKMS(t, harness.KMSOptions{})
		tag := f.parent + ":latest"
		// The kubelet projects the token whatever signs; here nothing reads it.
		token := func(string, time.Duration) string { return "unused" }
		runSharded(t, f, tag, token, kms.Env(), v1.Params{
			{Name: "KEY", Value: *v1.NewStructuredValues(kms.KeyRef())},
			{Name: "TLOG_UPLOAD", Value: *v1.NewStructuredValues("false")},
			{Name: "INSECURE_IGNORE_TLOG", Value: *v1.NewStructuredValues("true")},
		})
		if n := kms.Counts()[harness.KMSSign]; n == 0 {
			t.Errorf("KMS: no Sign requests (%v)", kms.Counts())
		}
		f.verifyWith(t, tag, kms.Env(), "--key", kms.KeyRef(), "--insecure-ignore-tlog", "--require-root")
	})
}

// runSharded composes the fixture's parent at tag and runs the sharded
// sample on it with params and the dockerconfig workspace, plus ws; the
// pods get token as their projected ServiceAccount token and env in their
// environment.
func runSharded(t *testing.T, f *fixture, tag string, token func(string, time.Duration) string, env []string, params v1.Params, ws ...v1.WorkspaceBinding) {
	t.Helper()
	compose(t, f, tag)
	ctx := context.Background()
	p := loadSharded(t)
	pr := &v1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: "sharded-run", Namespace: "default", UID: "3f1c2d9e-0000-4000-8000-000000000001"},
		Spec: v1.PipelineRunSpec{
			PipelineRef: &v1.PipelineRef{Name: p.Name},
			Params: append(v1.Params{
				{Name: "IMAGE", Value: *v1.NewStructuredValues(tag)},
				{Name: "SHARDS", Value: *v1.NewStructuredValues("3")},
			}, params...),
			Workspaces: append([]v1.WorkspaceBinding{
				{Name: "dockerconfig", Secret: &corev1.SecretVolumeSource{SecretName: "registry-push",
					Items: []corev1.KeyToPath{{Key: corev1.DockerConfigJsonKey, Path: "config.json"}}}},
			}, ws...),
		},
	}
	p.SetDefaults(ctx)
	pr.SetDefaults(ctx)
	if err := prresources.ValidateWorkspaceBindings(&p.Spec, pr); err != nil {
		t.Fatal(err)
	}
	spec, err := prresources.ApplyParameters(&p.Spec, pr)
	if err != nil {
		t.Fatal(err)
	}
	spec = prresources.ApplyWorkspaces(prresources.ApplyContexts(spec, p.Name, pr), pr)
	r := &pipelineRun{t: t, f: f, pr: pr, spec: spec, secrets: f.secrets, token: token, env: env}

	// plan: one TaskRun; its results as the reconciler reads them.
	planPT := spec.Tasks[0]
	_, planTR := r.taskRun(&planPT, &planPT.TaskSpec.TaskSpec, pr.Name+"-plan", nil)
	results := map[string]v1.ResultValue{}
	for _, res := range planTR.Status.Results {
		results[res.Name] = res.Value
	}
	shards := results["SHARDS"]
	if shards.Type != v1.ParamTypeArray || !slices.Equal(shards.ArrayVal, []string{"0", "1", "2"}) || !strings.Contains(results["PLAN"].StringVal, "@sha256:") {
		t.Fatalf("plan results %+v, want PLAN by digest and SHARDS [0 1 2] as an array", results)
	}

	// sign: resolved and fanned out by Tekton's own code.
	state := prresources.PipelineRunState{{
		PipelineTask: &planPT, TaskRunNames: []string{planTR.Name}, TaskRuns: []*v1.TaskRun{planTR},
		ResolvedTask: &trresources.ResolvedTask{TaskSpec: &planPT.TaskSpec.TaskSpec},
	}}
	noTask := func(context.Context, string) (*v1.Task, *v1.RefSource, *trustedresources.VerificationResult, error) {
		return nil, nil, nil, errors.New("the sample's Tasks are inline")
	}
	notYet := func(name string) (*v1.TaskRun, error) { return nil, kerrors.NewNotFound(v1.Resource("taskrun"), name) }
	signPT := spec.Tasks[1]
	rpt, err := prresources.ResolvePipelineTask(ctx, *pr, nil, nil, noTask, notYet, nil, signPT, state)
	if err != nil {
		t.Fatalf("ResolvePipelineTask: %v", err)
	}
	combos := rpt.PipelineTask.Matrix.FanOut()
	max := config.FromContextOrDefaults(ctx).Defaults.DefaultMaxMatrixCombinationsCount
	if len(rpt.TaskRunNames) != 3 || len(combos) != 3 || rpt.PipelineTask.Matrix.CountCombinations() > max {
		t.Fatalf("%d TaskRuns (%v), %d combinations (the cap %d), want 3", len(rpt.TaskRunNames), rpt.TaskRunNames, len(combos), max)
	}
	signed := map[string]int{}
	for i, name := range rpt.TaskRunNames {
		if got := combos[i][0]; got.Name != "SHARD" || got.Value.StringVal != shards.ArrayVal[i] {
			t.Errorf("TaskRun %s: matrix param %+v, want SHARD=%s", name, got, shards.ArrayVal[i])
		}
		pod, _ := r.taskRun(rpt.PipelineTask, rpt.ResolvedTask.TaskSpec, name, combos[i])
		for _, v := range pod.pod.Spec.Volumes {
			if v.Secret != nil && v.Secret.SecretName != "registry-push" {
				t.Errorf("TaskRun %s mounts Secret %s: a shard signs with no key in the pod", name, v.Secret.SecretName)
			}
		}
		out := pod.output[stepContainer("sign")]
		m := regexp.MustCompile(`shard (\d+) of 3 of plan \S+: (\d+) nodes? of 10`).FindStringSubmatch(out)
		if m == nil || m[1] != shards.ArrayVal[i] {
			t.Fatalf("TaskRun %s signed no shard %s:\n%s", name, shards.ArrayVal[i], out)
		}
		signed[m[1]] = atoi(t, m[2])
		if _, err := os.Stat(pod.hostPath("/tekton/results/IMAGE_URL")); err == nil {
			t.Errorf("TaskRun %s wrote IMAGE_URL: a shard must not hand Chains the parent", name)
		}
	}
	total := 0
	for _, n := range signed {
		total += n
	}
	if total != 10 {
		t.Errorf("the shards signed %v, %d nodes; the tree has 10", signed, total)
	}

	// verify: the whole tree, then IMAGE_URL and IMAGE_DIGEST.
	verifyPT := spec.Tasks[2]
	pod, verifyTR := r.taskRun(&verifyPT, &verifyPT.TaskSpec.TaskSpec, pr.Name+"-verify", nil)
	digest := f.checkResults(t, pod.hostPath("/tekton/results"), tag)
	checkStatus(t, verifyTR.Status, tag, digest)
	prResults, err := prresources.ApplyTaskResultsToPipelineResults(spec.Results,
		map[string][]v1.TaskRunResult{"verify": verifyTR.Status.Results}, nil, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, res := range prResults {
		got[res.Name] = res.Value.StringVal
	}
	if got["IMAGE_URL"] != tag || got["IMAGE_DIGEST"] != digest {
		t.Errorf("PipelineRun results %v, want IMAGE_URL %s and IMAGE_DIGEST %s", got, tag, digest)
	}
}

// compose pushes the parent of the fixture's children at tag, with
// nestattest catalog.
func compose(t *testing.T, f *fixture, tag string) {
	t.Helper()
	refs := filepath.Join(t.TempDir(), "ko-refs.txt")
	write(t, refs, f.refs, 0o644)
	cmd := exec.Command(filepath.Join(staticBinaries(t), "nestattest"), "catalog", "--from", refs, tag)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+f.dockerDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("catalog: %v\n%s", err, out)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}
