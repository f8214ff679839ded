package triggers

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	faketekton "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	"github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	"github.com/tektoncd/pipeline/pkg/workspace"
	triggersv1beta1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fakek8s "k8s.io/client-go/kubernetes/fake"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"
)

// What this module's tests share with the main module's ship package: the
// repository's layout, strict decoding, Tekton's admission defaulting and
// validation, and the reconciler's path from a TaskRun to its steps. They
// are ship's helpers (yaml_test.go, pod_test.go), narrowed to what the
// Triggers samples need; keep them in step.

// catalogDirs are the catalog's resource kinds (ship's catalogDirs).
var catalogDirs = []string{"task", "stepaction"}

// The propagate Task's directory.
const propagateDir = "task/nestattest-propagate"

// triggersAPI begins the apiVersion of Tekton Triggers' kinds: the files
// this module checks, and the main module's ship package leaves to it.
const triggersAPI = "triggers.tekton.dev/"

// repoRoot is the repository root: this module sits two below it.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, propagateDir)); err != nil {
		t.Fatalf("the repository root %s has no %s: run these tests in ship/triggers of a nestattest checkout: %v", root, propagateDir, err)
	}
	return root
}

func rel(t testing.TB, p string) string {
	r, err := filepath.Rel(repoRoot(t), p)
	if err != nil {
		return p
	}
	return r
}

// apiVersionKind reads a Kubernetes object's apiVersion and kind.
func apiVersionKind(raw []byte) (string, string, error) {
	var meta struct{ APIVersion, Kind string }
	if err := yaml.Unmarshal(raw, &meta); err != nil {
		return "", "", err
	}
	return meta.APIVersion, meta.Kind, nil
}

// decodeStrict decodes one Kubernetes object into the Tekton Triggers or
// Tekton type its apiVersion and kind name: unknown and duplicate fields
// are errors.
func decodeStrict(path string) (any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	apiVersion, kind, err := apiVersionKind(raw)
	if err != nil {
		return nil, err
	}
	var obj any
	switch apiVersion + " " + kind {
	case "triggers.tekton.dev/v1beta1 EventListener":
		obj = &triggersv1beta1.EventListener{}
	case "triggers.tekton.dev/v1beta1 TriggerBinding":
		obj = &triggersv1beta1.TriggerBinding{}
	case "triggers.tekton.dev/v1beta1 TriggerTemplate":
		obj = &triggersv1beta1.TriggerTemplate{}
	case "tekton.dev/v1 Task":
		obj = &v1.Task{}
	default:
		return nil, fmt.Errorf("%s %s: not a kind this module's tests decode", apiVersion, kind)
	}
	if err := yaml.UnmarshalStrict(raw, obj); err != nil {
		return nil, fmt.Errorf("strict decoding into %T: %w", obj, err)
	}
	return obj, nil
}

// triggersFiles lists the YAML files under the catalog directories whose
// apiVersion is Tekton Triggers', path to kind.
func triggersFiles(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, dir := range catalogDirs {
		err := filepath.WalkDir(filepath.Join(repoRoot(t), dir), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
				return err
			}
			raw, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			apiVersion, kind, err := apiVersionKind(raw)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if strings.HasPrefix(apiVersion, triggersAPI) {
				out[p] = kind
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func loadPropagate(t testing.TB) *v1.Task {
	t.Helper()
	obj, err := decodeStrict(filepath.Join(repoRoot(t), propagateDir, "nestattest-propagate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*v1.Task)
}

// propagateSample decodes one of the propagate Task's samples strictly.
func propagateSample(t *testing.T, name string) any {
	t.Helper()
	obj, err := decodeStrict(filepath.Join(repoRoot(t), propagateDir, "samples", name))
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// defaultAndValidate runs Tekton Triggers' (or Tekton's) defaulting and
// validation, as its admission webhook does on create.
func defaultAndValidate(ctx context.Context, obj any) error {
	ctx = apis.WithinCreate(ctx)
	type tekton interface {
		SetDefaults(context.Context)
		Validate(context.Context) *apis.FieldError
	}
	o, ok := obj.(tekton)
	if !ok {
		return fmt.Errorf("%T has no SetDefaults and Validate", obj)
	}
	// The API server names an object from its generateName before the
	// webhook sees it.
	if m, ok := obj.(metav1.Object); ok && m.GetName() == "" && m.GetGenerateName() != "" {
		m.SetName(m.GetGenerateName() + "x7k2q")
	}
	o.SetDefaults(ctx)
	if err := o.Validate(ctx); err != nil {
		return err
	}
	return nil
}

// remarshal copies in into out through JSON.
func remarshal(t testing.TB, in, out any) {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
}

// taskRun is one run of a Task (ship's taskRun, without the StepActions,
// Secrets and tokens the propagate TaskRun made here does not use).
type taskRun struct {
	task *v1.Task
	run  *v1.TaskRun
}

// resolve is the reconciler's path from TaskRun to pod spec: StepActions
// resolved and their params applied, then params, context, results,
// workspaces and credentials substituted, the spec validated again, and the
// workspaces' volumes added (ship's resolve).
func resolve(ctx context.Context, r taskRun) (*v1.TaskSpec, map[string]corev1.Volume, error) {
	r.task.SetDefaults(ctx)
	r.run.SetDefaults(ctx)
	ts := r.task.Spec.DeepCopy()
	steps, err := resources.GetStepActionsData(ctx, *ts, r.run, faketekton.NewSimpleClientset(), fakek8s.NewSimpleClientset(), nil)
	if err != nil {
		return nil, nil, err
	}
	ts.Steps = steps
	if err := paramTypes(ts.Params, r.run.Spec.Params); err != nil {
		return nil, nil, err
	}
	ts = resources.ApplyParameters(ts, r.run, ts.Params...)
	ts = resources.ApplyContexts(ts, r.task.Name, r.run)
	ts = resources.ApplyResults(ts)
	ts = resources.ApplyArtifacts(ts)
	ts = resources.ApplyStepExitCodePath(ts)
	vols := workspace.CreateVolumes(r.run.Spec.Workspaces)
	ts = resources.ApplyWorkspaces(ctx, ts, ts.Workspaces, r.run.Spec.Workspaces, vols)
	ts = resources.ApplyCredentialsPath(ts, pipeline.CredsDir)
	if err := v1.ValidateUsageOfDeclaredParameters(ctx, ts.Steps, ts.Params); err != nil {
		return nil, nil, err
	}
	if err := ts.Validate(ctx); err != nil {
		return nil, nil, err
	}
	ts, err = workspace.Apply(ctx, *ts, r.run.Spec.Workspaces, vols)
	return ts, vols, err
}

// paramTypes refuses a param of another type than the Task declares, as
// the reconciler's validation does: a string given for an array would
// otherwise vanish from the command line.
func paramTypes(specs v1.ParamSpecs, params v1.Params) error {
	for _, p := range params {
		for _, s := range specs {
			if s.Name == p.Name && s.Type != p.Value.Type {
				return fmt.Errorf("param %s: %s given, the Task declares %s", p.Name, p.Value.Type, s.Type)
			}
		}
	}
	return nil
}
