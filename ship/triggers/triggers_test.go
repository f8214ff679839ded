package triggers

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/reconciler/events/cloudevent"
	triggersv1beta1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	"github.com/tektoncd/triggers/pkg/interceptors"
	"github.com/tektoncd/triggers/pkg/interceptors/cel"
	"github.com/tektoncd/triggers/pkg/template"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
	"sigs.k8s.io/yaml"
)

// TestTriggersYAMLValid: every Tekton Triggers YAML under task/ and
// stepaction/ decodes strictly into tektoncd/triggers v0.33.0's types and
// passes their defaulting and validation (the part of ship's
// TestCatalogYAMLValid that needs tektoncd/triggers).
func TestTriggersYAMLValid(t *testing.T) {
	files := triggersFiles(t)
	kinds := map[string]int{}
	for _, p := range slices.Sorted(maps.Keys(files)) {
		kinds[files[p]]++
		t.Run(rel(t, p), func(t *testing.T) {
			obj, err := decodeStrict(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := defaultAndValidate(context.Background(), obj); err != nil {
				t.Errorf("%s: Triggers validation: %v", files[p], err)
			}
		})
	}
	for _, k := range []string{"EventListener", "TriggerBinding", "TriggerTemplate"} {
		if kinds[k] == 0 {
			t.Errorf("no %s under task/ or stepaction/", k)
		}
	}
}

// buildTaskRun is a finished TaskRun of the nestattest Task in namespace
// ns, as Tekton's status has it: its condition, and the IMAGE_URL and
// IMAGE_DIGEST results when url is not empty.
func buildTaskRun(ns string, status corev1.ConditionStatus, url, digest string) *v1.TaskRun {
	tr := &v1.TaskRun{
		TypeMeta:   metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "TaskRun"},
		ObjectMeta: metav1.ObjectMeta{Name: "ko-build-nestattest-x7k2q-sign", Namespace: ns, UID: "6b1d3c57-2f0e-4b8e-9a43-1f6a3c2d9e10"},
		Spec: v1.TaskRunSpec{TaskRef: &v1.TaskRef{ResolverRef: v1.ResolverRef{Resolver: "git", Params: v1.Params{
			{Name: "pathInRepo", Value: *v1.NewStructuredValues("task/nestattest/nestattest.yaml")},
		}}}},
	}
	tr.Status.SetCondition(&apis.Condition{Type: apis.ConditionSucceeded, Status: status})
	if url != "" {
		tr.Status.Results = []v1.TaskRunResult{
			{Name: "IMAGE_URL", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(url)},
			{Name: "IMAGE_DIGEST", Type: v1.ResultsTypeString, Value: *v1.NewStructuredValues(digest)},
		}
	}
	tr.Status.Status = duckv1.Status{Conditions: tr.Status.Conditions}
	return tr
}

// tektonEvent is the CloudEvent Tekton Pipelines sends when tr finishes,
// made by its own code, as its HTTP client puts it on the wire (binary
// mode: the attributes in Ce-* headers, the data as the body).
func tektonEvent(t *testing.T, tr *v1.TaskRun) (http.Header, []byte) {
	t.Helper()
	ctx := context.Background()
	ev, err := cloudevent.EventForObjectWithCondition(ctx, tr) //nolint:staticcheck // what the reconciler's events code calls
	if err != nil {
		t.Fatalf("Tekton's CloudEvent for the TaskRun: %v", err)
	}
	req, err := http.NewRequest(http.MethodPost, "http://el-nestattest-propagate.tekton-chains.svc.cluster.local:8080", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cehttp.WriteRequest(ctx, binding.ToMessage(ev), req); err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	return req.Header, body
}

// fire runs the EventListener's one trigger on an event as its sink does:
// each interceptor in turn (the CEL ClusterInterceptor is triggers' own
// code), their extensions passed on, then the binding's params resolved
// from the event and the template's resources made from them. It returns
// those resources, or the message of the interceptor that stopped the
// event.
func fire(t *testing.T, el *triggersv1beta1.EventListener, tb *triggersv1beta1.TriggerBinding, tt *triggersv1beta1.TriggerTemplate, header http.Header, body []byte) ([]json.RawMessage, string) {
	t.Helper()
	ctx := context.Background()
	if len(el.Spec.Triggers) != 1 {
		t.Fatalf("EventListener: %d triggers, want 1", len(el.Spec.Triggers))
	}
	elt := el.Spec.Triggers[0]
	extensions := map[string]any{}
	for _, i := range elt.Interceptors {
		if i.Ref.Name != "cel" || i.Ref.Kind != triggersv1beta1.ClusterInterceptorKind {
			t.Fatalf("interceptor %s: %s %s, which this test does not run", i.GetName(), i.Ref.Kind, i.Ref.Name)
		}
		resp := cel.NewInterceptor(nil).Process(ctx, &triggersv1beta1.InterceptorRequest{
			Body: string(body), Header: header, Extensions: extensions,
			InterceptorParams: interceptors.GetInterceptorParams(i),
			Context: &triggersv1beta1.TriggerContext{EventURL: "http://el-nestattest-propagate.tekton-chains.svc.cluster.local:8080",
				EventID: "e1", TriggerID: "namespaces/" + el.Namespace + "/triggers/" + elt.Name},
		})
		if !resp.Continue {
			return nil, resp.Status.Message
		}
		for k, v := range resp.Extensions {
			extensions[k] = v
		}
	}
	var spec triggersv1beta1.TriggerSpec
	remarshal(t, elt, &spec)
	rt, err := template.ResolveTrigger(triggersv1beta1.Trigger{Spec: spec},
		func(name string) (*triggersv1beta1.TriggerBinding, error) {
			if name != tb.Name {
				t.Fatalf("the trigger binds %s, the sample is %s", name, tb.Name)
			}
			return tb, nil
		},
		func(name string) (*triggersv1beta1.ClusterTriggerBinding, error) {
			t.Fatalf("the trigger binds the ClusterTriggerBinding %s, which the samples do not have", name)
			return nil, nil
		},
		func(name string) (*triggersv1beta1.TriggerTemplate, error) {
			if name != tt.Name {
				t.Fatalf("the trigger's template is %s, the sample is %s", name, tt.Name)
			}
			return tt, nil
		})
	if err != nil {
		t.Fatalf("resolve the trigger: %v", err)
	}
	params, err := template.ResolveParams(rt, body, header, extensions, template.NewTriggerContext("e1"))
	if err != nil {
		t.Fatalf("resolve the binding's params: %v", err)
	}
	return template.ResolveResources(rt.TriggerTemplate, params), ""
}

// TestPropagateTriggerFiresOnASucceededBuild runs the Triggers samples on
// the CloudEvent Tekton sends for a build TaskRun that succeeded: the
// EventListener's CEL interceptor (tektoncd/triggers v0.33.0's code)
// admits it and lifts IMAGE_URL and IMAGE_DIGEST out of the event's
// TaskRun, the binding and template make a TaskRun of nestattest-propagate
// that decodes strictly, passes Tekton's validation and, resolved against
// the propagate Task as the reconciler would, runs propagate on exactly
// that parent. Failed builds, other namespaces and TaskRuns naming no
// parent fire nothing.
func TestPropagateTriggerFiresOnASucceededBuild(t *testing.T) {
	el := propagateSample(t, "triggers-eventlistener.yaml").(*triggersv1beta1.EventListener)
	tb := propagateSample(t, "triggers-binding.yaml").(*triggersv1beta1.TriggerBinding)
	tt := propagateSample(t, "triggers-template.yaml").(*triggersv1beta1.TriggerTemplate)
	for _, o := range []any{el, tb, tt} {
		if err := defaultAndValidate(context.Background(), o); err != nil {
			t.Fatalf("%T: Triggers validation: %v", o, err)
		}
	}
	const (
		url    = "quay.io/org/ko-build:v1.2.3"
		digest = "sha256:4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b"
	)
	header, body := tektonEvent(t, buildTaskRun("my-builds", corev1.ConditionTrue, url, digest))
	if got := header.Get("Ce-Type"); got != "dev.tekton.event.taskrun.successful.v1" {
		t.Fatalf("Ce-Type %q", got)
	}
	resources, stopped := fire(t, el, tb, tt, header, body)
	if stopped != "" {
		t.Fatalf("the EventListener stopped a succeeded build's event: %s", stopped)
	}
	if len(resources) != 1 {
		t.Fatalf("%d resources, want a TaskRun", len(resources))
	}
	var tr v1.TaskRun
	if err := yaml.UnmarshalStrict(resources[0], &tr); err != nil {
		t.Fatalf("the template's TaskRun: %v\n%s", err, resources[0])
	}
	if err := defaultAndValidate(context.Background(), &tr); err != nil {
		t.Fatalf("the template's TaskRun: Tekton validation: %v", err)
	}
	if tr.Namespace != "tekton-chains" || tr.Spec.TaskRef == nil || tr.Spec.TaskRef.Name != "nestattest-propagate" {
		t.Errorf("TaskRun in %q of %+v, want nestattest-propagate in tekton-chains", tr.Namespace, tr.Spec.TaskRef)
	}
	got := map[string]string{}
	for _, p := range tr.Spec.Params {
		got[p.Name] = p.Value.StringVal
	}
	if got["IMAGE_URL"] != url || got["IMAGE_DIGEST"] != digest {
		t.Errorf("TaskRun params %v, want IMAGE_URL %s and IMAGE_DIGEST %s", got, url, digest)
	}
	// The reconciler's path from this TaskRun to the step that runs.
	tr.Namespace = "tekton-chains"
	spec, _, err := resolve(context.Background(), taskRun{task: loadPropagate(t), run: &tr})
	if err != nil {
		t.Fatalf("resolve the TaskRun against the propagate Task: %v", err)
	}
	if args := spec.Steps[0].Args; !slices.Contains(args, url+"@"+digest) || !slices.Contains(args, "--source-insecure-ignore-tlog=true") {
		t.Errorf("propagate runs %v, want it on %s@%s with Chains' tlog-less signatures", args, url, digest)
	}

	for _, tc := range []struct {
		name string
		tr   *v1.TaskRun
	}{
		{"a failed build", buildTaskRun("my-builds", corev1.ConditionFalse, url, digest)},
		{"another namespace", buildTaskRun("someone-else", corev1.ConditionTrue, url, digest)},
		{"no parent named", buildTaskRun("my-builds", corev1.ConditionTrue, "", "")},
	} {
		header, body := tektonEvent(t, tc.tr)
		if resources, stopped := fire(t, el, tb, tt, header, body); stopped == "" || resources != nil {
			t.Errorf("%s: the EventListener fired (%s)", tc.name, resources)
		} else if !strings.Contains(stopped, "did not return true") {
			t.Errorf("%s: stopped with %q, want the filter's refusal", tc.name, stopped)
		}
	}
}
