package ship

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"
)

// catalogDirs are the Tekton catalog's resource kinds, laid out as its
// git-based versioning has them: <kind>/<name>/<name>.yaml, README.md and
// samples/ beside it, versions as git tags.
var catalogDirs = []string{"task", "stepaction"}

// manifest is one YAML file of the catalog, decoded.
type manifest struct {
	path string
	kind string
	obj  any
}

// moduleRoot is the repository root: this package sits one below it.
func moduleRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// yamlFiles lists every YAML file under the catalog directories.
func yamlFiles(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, dir := range catalogDirs {
		err := filepath.WalkDir(filepath.Join(moduleRoot(t), dir), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
				out = append(out, p)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(out) == 0 {
		t.Fatal("no YAML under task/ or stepaction/")
	}
	return out
}

// triggersAPI begins the apiVersion of Tekton Triggers' kinds. The
// catalog's Triggers samples are decoded strictly, validated and run with
// tektoncd/triggers' own types and code by the tests of ship/triggers, a
// module of its own: tektoncd/triggers' tests import knative.dev/eventing
// packages that need an older knative.dev/pkg than Tekton Pipelines', and
// `go mod tidy` loads the tests of every package a module imports.
const triggersAPI = "triggers.tekton.dev/"

// errTriggersKind is what decodeStrict returns for a Tekton Triggers kind.
var errTriggersKind = errors.New("a Tekton Triggers kind, decoded and validated by the tests of the module ship/triggers")

// decodeStrict decodes one Kubernetes object into the Tekton (or core)
// type its apiVersion and kind name: unknown and duplicate fields are
// errors. A Tekton Triggers kind is errTriggersKind.
func decodeStrict(path string) (manifest, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return manifest{}, err
	}
	var meta struct{ APIVersion, Kind string }
	if err := yaml.Unmarshal(raw, &meta); err != nil {
		return manifest{}, err
	}
	if strings.HasPrefix(meta.APIVersion, triggersAPI) {
		return manifest{}, fmt.Errorf("%s %s: %w", meta.APIVersion, meta.Kind, errTriggersKind)
	}
	var obj any
	switch meta.APIVersion + " " + meta.Kind {
	case "tekton.dev/v1 Task":
		obj = &v1.Task{}
	case "tekton.dev/v1beta1 StepAction":
		obj = &v1beta1.StepAction{}
	case "tekton.dev/v1 Pipeline":
		obj = &v1.Pipeline{}
	case "tekton.dev/v1 PipelineRun":
		obj = &v1.PipelineRun{}
	case "tekton.dev/v1 TaskRun":
		obj = &v1.TaskRun{}
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	default:
		return manifest{}, fmt.Errorf("%s %s: not a kind this catalog ships", meta.APIVersion, meta.Kind)
	}
	if err := yaml.UnmarshalStrict(raw, obj); err != nil {
		return manifest{}, fmt.Errorf("strict decoding into %T: %w", obj, err)
	}
	return manifest{path: path, kind: meta.Kind, obj: obj}, nil
}

// defaultAndValidate runs Tekton's defaulting and validation, as its
// admission webhook does on create.
func defaultAndValidate(ctx context.Context, obj any) error {
	ctx = apis.WithinCreate(ctx)
	type tekton interface {
		SetDefaults(context.Context)
		Validate(context.Context) *apis.FieldError
	}
	o, ok := obj.(tekton)
	if !ok {
		return nil
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

// manifests decodes every YAML file under the catalog directories but the
// Tekton Triggers samples (see triggersAPI).
func manifests(t *testing.T) []manifest {
	t.Helper()
	var out []manifest
	for _, p := range yamlFiles(t) {
		m, err := decodeStrict(p)
		if errors.Is(err, errTriggersKind) {
			t.Logf("%s: %v", rel(t, p), err)
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", rel(t, p), err)
			continue
		}
		out = append(out, m)
	}
	return out
}

func rel(t testing.TB, p string) string {
	r, err := filepath.Rel(moduleRoot(t), p)
	if err != nil {
		return p
	}
	return r
}

// TestCatalogYAMLValid: every YAML under task/ and stepaction/ decodes
// strictly into tektoncd/pipeline v1.14.0's types and passes their
// defaulting and validation; the Tekton Triggers samples, into
// tektoncd/triggers v0.33.0's, in ship/triggers (TestTriggersYAMLValid).
func TestCatalogYAMLValid(t *testing.T) {
	ms := manifests(t)
	kinds := map[string]int{}
	for _, m := range ms {
		kinds[m.kind]++
		t.Run(rel(t, m.path), func(t *testing.T) {
			if err := defaultAndValidate(context.Background(), m.obj); err != nil {
				t.Errorf("%s: Tekton validation: %v", m.kind, err)
			}
		})
	}
	for _, k := range []string{"Task", "StepAction", "Pipeline", "PipelineRun", "TaskRun", "ConfigMap"} {
		if kinds[k] == 0 {
			t.Errorf("no %s under task/ or stepaction/", k)
		}
	}
}

// TestCatalogLayout: the git-based catalog contract (TEP-0115): the
// resource in <kind>/<name>/<name>.yaml, its README.md and samples/ beside
// it, and the metadata Artifact Hub and the Tekton Hub read.
func TestCatalogLayout(t *testing.T) {
	semver := regexp.MustCompile(`^\d+\.\d+\.\d+$`)
	for _, res := range []struct{ kind, name string }{{"task", "nestattest"}, {"stepaction", "nestattest"}, {"task", "nestattest-propagate"}} {
		kind, name := res.kind, res.name
		dir := filepath.Join(moduleRoot(t), kind, name)
		for _, f := range []string{name + ".yaml", "README.md", "samples"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Errorf("%s/%s: %v", kind, name, err)
			}
		}
		m, err := decodeStrict(filepath.Join(dir, name+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var meta struct {
			Metadata struct {
				Name        string
				Labels      map[string]string
				Annotations map[string]string
			}
		}
		remarshal(t, m.obj, &meta)
		if meta.Metadata.Name != name {
			t.Errorf("%s: metadata.name %q, want the file's name", rel(t, m.path), meta.Metadata.Name)
		}
		if v := meta.Metadata.Labels["app.kubernetes.io/version"]; !semver.MatchString(v) {
			t.Errorf("%s: app.kubernetes.io/version %q, want X.Y.Z (the catalog's git tag vX.Y.Z)", rel(t, m.path), v)
		}
		for _, a := range []string{"tekton.dev/pipelines.minVersion", "tekton.dev/categories", "tekton.dev/tags", "tekton.dev/displayName", "tekton.dev/platforms"} {
			if meta.Metadata.Annotations[a] == "" {
				t.Errorf("%s: annotation %s missing", rel(t, m.path), a)
			}
		}
	}
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

// variable matches a Tekton variable reference.
var variable = regexp.MustCompile(`\$\(([^()]+)\)`)

// references lists the Tekton variables in whatever v holds.
func references(t testing.TB, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range variable.FindAllStringSubmatch(string(b), -1) {
		out = append(out, m[1])
	}
	return out
}

// scope is what a variable may name.
type scope struct {
	params, results, stepResults, workspaces map[string]bool
	steps                                    map[string]map[string]bool // step name: its results
	tasks                                    map[string]map[string]bool // pipeline task: its results
}

var (
	paramRef      = regexp.MustCompile(`^params\.([A-Za-z0-9_-]+)(\[\*\]|\[\d+\])?$`)
	resultRef     = regexp.MustCompile(`^results\.([A-Za-z0-9_-]+)\.path$`)
	stepResultRef = regexp.MustCompile(`^step\.results\.([A-Za-z0-9_-]+)\.path$`)
	stepsRef      = regexp.MustCompile(`^steps\.([a-z0-9-]+)\.results\.([A-Za-z0-9_-]+)$`)
	workspaceRef  = regexp.MustCompile(`^workspaces\.([A-Za-z0-9_-]+)\.(path|bound|claim|volume)$`)
	tasksRef      = regexp.MustCompile(`^tasks\.([a-z0-9-]+)\.results\.([A-Za-z0-9_-]+)$`)
	contextRef    = regexp.MustCompile(`^context\.(taskRun\.(name|namespace|uid)|task\.(name|retry-count)|pipelineRun\.(name|namespace|uid)|pipeline\.name)$`)
)

// check reports the references in v that name nothing in s.
func (s scope) check(t *testing.T, where string, v any) {
	t.Helper()
	for _, ref := range s.unresolved(t, v) {
		t.Errorf("%s: $(%s) names nothing declared", where, ref)
	}
}

// unresolved lists the references in v that name nothing in s.
func (s scope) unresolved(t testing.TB, v any) []string {
	var out []string
	for _, ref := range references(t, v) {
		if !s.resolves(ref) {
			out = append(out, ref)
		}
	}
	return out
}

func (s scope) resolves(ref string) bool {
	if m := paramRef.FindStringSubmatch(ref); m != nil {
		return s.params[m[1]]
	}
	if m := resultRef.FindStringSubmatch(ref); m != nil {
		return s.results[m[1]]
	}
	if m := stepResultRef.FindStringSubmatch(ref); m != nil {
		return s.stepResults[m[1]]
	}
	if m := stepsRef.FindStringSubmatch(ref); m != nil {
		return s.steps[m[1]][m[2]]
	}
	if m := workspaceRef.FindStringSubmatch(ref); m != nil {
		return s.workspaces[m[1]]
	}
	if m := tasksRef.FindStringSubmatch(ref); m != nil {
		return s.tasks[m[1]][m[2]]
	}
	return contextRef.MatchString(ref)
}

func set[T any](items []T, name func(T) string) map[string]bool {
	out := map[string]bool{}
	for _, i := range items {
		out[name(i)] = true
	}
	return out
}

func paramNames(ps []v1.ParamSpec) map[string]bool {
	return set(ps, func(p v1.ParamSpec) string { return p.Name })
}

func workspaceNames(ws []v1.WorkspaceDeclaration) map[string]bool {
	return set(ws, func(w v1.WorkspaceDeclaration) string { return w.Name })
}

// stepActionResults are the results of the StepAction this catalog ships,
// which the samples' steps refer to.
func stepActionResults(t *testing.T) map[string]bool {
	t.Helper()
	m, err := decodeStrict(filepath.Join(moduleRoot(t), "stepaction", "nestattest", "nestattest.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return set(m.obj.(*v1beta1.StepAction).Spec.Results, func(r v1.StepResult) string { return r.Name })
}

// taskResults are the results of the Task this catalog ships.
func taskResults(t *testing.T) map[string]bool {
	t.Helper()
	m, err := decodeStrict(filepath.Join(moduleRoot(t), "task", "nestattest", "nestattest.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return set(m.obj.(*v1.Task).Spec.Results, func(r v1.TaskResult) string { return r.Name })
}

// taskScope is what a Task's steps may refer to.
func taskScope(t *testing.T, spec v1.TaskSpec) scope {
	s := scope{
		params: paramNames(spec.Params), workspaces: workspaceNames(spec.Workspaces),
		results: set(spec.Results, func(r v1.TaskResult) string { return r.Name }),
		steps:   map[string]map[string]bool{},
	}
	for _, st := range spec.Steps {
		switch {
		case st.Ref != nil:
			s.steps[st.Name] = stepActionResults(t)
		default:
			s.steps[st.Name] = set(st.Results, func(r v1.StepResult) string { return r.Name })
		}
	}
	return s
}

// checkTask checks every reference in a Task's steps, volumes and result
// values.
func checkTask(t *testing.T, where string, spec v1.TaskSpec) {
	t.Helper()
	s := taskScope(t, spec)
	for _, st := range spec.Steps {
		s.check(t, where+" step "+st.Name, st)
	}
	s.check(t, where+" volumes", spec.Volumes)
	s.check(t, where+" results", spec.Results)
}

// TestCatalogReferences: every $(params.*), $(results.*), $(workspaces.*),
// $(step.results.*), $(steps.*), $(tasks.*) and $(context.*) in what the
// steps run names something declared.
func TestCatalogReferences(t *testing.T) {
	for _, m := range manifests(t) {
		where := rel(t, m.path)
		switch o := m.obj.(type) {
		case *v1.Task:
			checkTask(t, where, o.Spec)
		case *v1beta1.StepAction:
			sp := o.Spec
			s := scope{params: paramNames(sp.Params), stepResults: set(sp.Results, func(r v1.StepResult) string { return r.Name })}
			s.check(t, where, []any{sp.Image, sp.Command, sp.Args, sp.Script, sp.Env, sp.WorkingDir, sp.VolumeMounts, sp.SecurityContext})
		case *v1.Pipeline:
			checkPipeline(t, where, o.Spec)
		case *v1.PipelineRun:
			if o.Spec.PipelineSpec != nil {
				checkPipeline(t, where, *o.Spec.PipelineSpec)
			}
		}
	}
}

func checkPipeline(t *testing.T, where string, spec v1.PipelineSpec) {
	t.Helper()
	s := scope{params: paramNames(spec.Params), workspaces: set(spec.Workspaces, func(w v1.PipelineWorkspaceDeclaration) string { return w.Name }),
		tasks: map[string]map[string]bool{}}
	for _, pt := range spec.Tasks {
		s.tasks[pt.Name] = map[string]bool{}
		if pt.TaskRef != nil && slices.ContainsFunc(pt.TaskRef.Params, func(p v1.Param) bool { return p.Value.StringVal == "task/nestattest/nestattest.yaml" }) {
			s.tasks[pt.Name] = taskResults(t)
		}
		if pt.TaskRef != nil && slices.ContainsFunc(pt.TaskRef.Params, func(p v1.Param) bool {
			return p.Value.StringVal == "task/nestattest-propagate/nestattest-propagate.yaml"
		}) {
			s.tasks[pt.Name] = set(loadPropagate(t).Spec.Results, func(r v1.TaskResult) string { return r.Name })
		}
		if pt.TaskSpec != nil {
			checkTask(t, where+" task "+pt.Name, pt.TaskSpec.TaskSpec)
		}
	}
	for _, pt := range spec.Tasks {
		s.check(t, where+" task "+pt.Name+" params", pt.Params)
	}
	s.check(t, where+" results", spec.Results)
}

// chainsKeys are the chains-config keys and the values Tekton Chains takes
// (its docs/config.md), for the keys the sample sets.
var chainsKeys = map[string][]string{
	"artifacts.taskrun.format":      {"in-toto", "slsa/v1", "slsa/v2alpha3", "slsa/v2alpha4"},
	"artifacts.taskrun.storage":     {"tekton", "oci", "gcs", "docdb", "grafeas", "archivista"},
	"artifacts.taskrun.signer":      {"x509", "kms", "none"},
	"artifacts.pipelinerun.format":  {"in-toto", "slsa/v1", "slsa/v2alpha3", "slsa/v2alpha4"},
	"artifacts.pipelinerun.storage": {"tekton", "oci", "gcs", "docdb", "grafeas", "archivista"},
	"artifacts.pipelinerun.signer":  {"x509", "kms", "none"},
	"artifacts.oci.format":          {"simplesigning"},
	"artifacts.oci.storage":         {"tekton", "oci", "gcs", "docdb", "grafeas", "archivista"},
	"artifacts.oci.signer":          {"x509", "kms", "none"},
	"signers.x509.fulcio.enabled":   {"true", "false"},
	"transparency.enabled":          {"true", "false", "manual"},
}

// TestChainsConfig: the sample pairs with the Task: Chains stores
// provenance and signatures in the registry (oci), signs with the x509 key
// in signing-secrets, and makes SLSA provenance.
func TestChainsConfig(t *testing.T) {
	m, err := decodeStrict(filepath.Join(moduleRoot(t), "task", "nestattest", "samples", "chains-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cm := m.obj.(*corev1.ConfigMap)
	if cm.Name != "chains-config" || cm.Namespace != "tekton-chains" {
		t.Errorf("ConfigMap %s/%s, want tekton-chains/chains-config", cm.Namespace, cm.Name)
	}
	for k, v := range cm.Data {
		allowed, ok := chainsKeys[k]
		if !ok {
			t.Errorf("%s: not a Chains key this test knows", k)
			continue
		}
		for _, part := range strings.Split(v, ",") {
			if !slices.Contains(allowed, strings.TrimSpace(part)) {
				t.Errorf("%s: %q, want one of %v", k, v, allowed)
			}
		}
	}
	want := map[string]string{
		"artifacts.oci.storage": "oci", "artifacts.taskrun.storage": "oci", "artifacts.taskrun.format": "slsa/v2alpha4",
		"artifacts.oci.signer": "x509", "artifacts.taskrun.signer": "x509",
	}
	for k, v := range want {
		if cm.Data[k] != v {
			t.Errorf("%s = %q, want %q", k, cm.Data[k], v)
		}
	}
}

// TestReferenceCheckCatches: the check finds what a typo would leave
// undeclared, so TestCatalogReferences passing means something.
func TestReferenceCheckCatches(t *testing.T) {
	task := loadTask(t)
	s := taskScope(t, task.Spec)
	step := task.Spec.Steps[0].DeepCopy()
	bad := []string{"params.IMAGES", "params.CHILD[*]", "results.IMAGE_URI.path", "workspaces.sources.path", "context.taskrun.name", "steps.sign.results.IMAGE_URL"}
	for _, b := range bad {
		step.Args = append(step.Args, "$("+b+")")
	}
	if got := s.unresolved(t, step); strings.Join(got, " ") != strings.Join(bad, " ") {
		t.Errorf("unresolved %v, want %v", got, bad)
	}
}
