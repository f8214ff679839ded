// Command chains-sign runs Tekton Chains' own controller code on completed
// TaskRuns and PipelineRuns read from files, with no cluster: Chains'
// TaskRun and PipelineRun reconcilers, its ObjectSigner, its signers (x509 on
// a cosign key from the signing-secrets directory, or KMS), its payload
// formats and its storage backends (oci writes to a real registry). Fake
// Kubernetes and Tekton clientsets stand in for the API server: they hold the
// runs so Chains can patch its annotations on them, and the service account
// whose image pull secrets Chains' oci storage reads.
//
//	chains-sign --config chains-config.yaml --signing-secrets DIR --taskrun tr.yaml [--pipelinerun pr.yaml]
//
// On success it prints, as JSON, the annotations Chains left on each run.
// It exits non-zero with Chains' error when signing or storing failed, and
// when a run was not marked signed (not done, no signer configured, ...).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tektoncd/chains/pkg/chains"
	"github.com/tektoncd/chains/pkg/chains/formats"
	"github.com/tektoncd/chains/pkg/chains/signing"
	"github.com/tektoncd/chains/pkg/chains/signing/kms"
	"github.com/tektoncd/chains/pkg/chains/signing/x509"
	"github.com/tektoncd/chains/pkg/chains/storage"
	"github.com/tektoncd/chains/pkg/config"
	prreconciler "github.com/tektoncd/chains/pkg/reconciler/pipelinerun"
	trreconciler "github.com/tektoncd/chains/pkg/reconciler/taskrun"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	pipelinefake "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	listers "github.com/tektoncd/pipeline/pkg/client/listers/pipeline/v1"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"knative.dev/pkg/logging"
	"knative.dev/pkg/tracker"
	"sigs.k8s.io/yaml"

	// Chains' controller registers its payload formats this way.
	_ "github.com/tektoncd/chains/pkg/chains/formats/all"
)

// signedAnnotation is the annotation Chains sets once it signed a run.
const signedAnnotation = "chains.tekton.dev/signed"

type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(s string) error { *f = append(*f, s); return nil }

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); errors.Is(err, flag.ErrHelp) {
		return
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "chains-sign:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chains-sign", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var taskRuns, pipelineRuns files
	fs.Var(&taskRuns, "taskrun", "a file holding a completed tekton.dev/v1 TaskRun, YAML or JSON (repeatable; a file may hold several documents separated by ---)")
	fs.Var(&pipelineRuns, "pipelinerun", "a file holding a completed tekton.dev/v1 PipelineRun (repeatable); its child TaskRuns must be given with --taskrun")
	configFile := fs.String("config", "", "Chains' configuration: a chains-config ConfigMap, a YAML/JSON map of its data, or key=value lines")
	secrets := fs.String("signing-secrets", trreconciler.SecretPath, "the directory Chains reads its signing-secrets from (cosign.key, cosign.password, x509.pem)")
	namespace := fs.String("namespace", "default", "the namespace of runs that name none")
	dockerConfig := fs.String("docker-config", "", "a Docker config.json the run's service account gets as image pull secret (Chains' oci storage authenticates with it)")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if len(taskRuns)+len(pipelineRuns) == 0 {
		return errors.New("nothing to sign: give --taskrun and/or --pipelinerun")
	}

	data := map[string]string{}
	if *configFile != "" {
		b, err := os.ReadFile(*configFile)
		if err != nil {
			return err
		}
		if data, err = parseConfig(b); err != nil {
			return fmt.Errorf("%s: %w", *configFile, err)
		}
	}
	cfg, err := config.NewConfigFromMap(data)
	if err != nil {
		return fmt.Errorf("chains config: %w", err)
	}

	var trs []*v1.TaskRun
	var prs []*v1.PipelineRun
	for _, f := range append(append(files{}, taskRuns...), pipelineRuns...) {
		t, p, err := readRuns(f, *namespace)
		if err != nil {
			return err
		}
		trs, prs = append(trs, t...), append(prs, p...)
	}

	level := zapcore.InfoLevel
	if *verbose {
		level = zapcore.DebugLevel
	}
	zcfg := zap.NewDevelopmentConfig()
	zcfg.Level = zap.NewAtomicLevelAt(level)
	zcfg.OutputPaths, zcfg.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	zcfg.DisableStacktrace = true
	logger, err := zcfg.Build()
	if err != nil {
		return err
	}
	defer logger.Sync() //nolint:errcheck
	ctx := logging.WithLogger(context.Background(), logger.Sugar())
	ctx = config.ToContext(ctx, cfg)

	// Chains' ObjectSigner only logs a warning and skips the artifact when a
	// signer or a format cannot be set up; make that an error here, with the
	// same constructors it calls.
	if err := checkSigners(ctx, *secrets, *cfg); err != nil {
		return err
	}

	// The API server: the runs, and the service accounts they run as.
	var objs []runtime.Object
	for _, tr := range trs {
		objs = append(objs, tr.DeepCopy())
	}
	for _, pr := range prs {
		objs = append(objs, pr.DeepCopy())
	}
	pipelineClient := pipelinefake.NewSimpleClientset(objs...)
	kubeObjs, err := serviceAccounts(trs, prs, *dockerConfig)
	if err != nil {
		return err
	}
	kubeClient := kubefake.NewSimpleClientset(kubeObjs...)

	// What each controller does when the chains-config ConfigMap is loaded.
	backends, err := storage.InitializeBackends(ctx, pipelineClient, kubeClient, *cfg)
	if err != nil {
		return err
	}

	taskRunReconciler := &trreconciler.Reconciler{
		TaskRunSigner: &chains.ObjectSigner{
			Backends:          backends,
			SecretPath:        *secrets,
			Pipelineclientset: pipelineClient,
		},
		Pipelineclientset: pipelineClient,
	}
	var report []result
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, tr := range trs {
		if err := taskRunReconciler.ReconcileKind(ctx, tr.DeepCopy()); err != nil {
			return fmt.Errorf("TaskRun %s/%s: %w", tr.Namespace, tr.Name, err)
		}
		got, err := pipelineClient.TektonV1().TaskRuns(tr.Namespace).Get(ctx, tr.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		r := result{Kind: "TaskRun", Namespace: tr.Namespace, Name: tr.Name, Annotations: got.Annotations}
		if err := r.check(tr.IsDone()); err != nil {
			return err
		}
		report = append(report, r)
		// The lister the PipelineRun reconciler reads holds the run as the
		// informer would see it: as given, with Chains' annotations.
		signed := tr.DeepCopy()
		signed.Annotations = got.Annotations
		if err := indexer.Add(signed); err != nil {
			return err
		}
	}

	pipelineRunReconciler := &prreconciler.Reconciler{
		PipelineRunSigner: &chains.ObjectSigner{
			Backends:          backends,
			SecretPath:        *secrets,
			Pipelineclientset: pipelineClient,
		},
		Pipelineclientset: pipelineClient,
		TaskRunLister:     listers.NewTaskRunLister(indexer),
		Tracker:           notReady{},
	}
	for _, pr := range prs {
		if err := pipelineRunReconciler.ReconcileKind(ctx, pr.DeepCopy()); err != nil {
			return fmt.Errorf("PipelineRun %s/%s: %w", pr.Namespace, pr.Name, err)
		}
		got, err := pipelineClient.TektonV1().PipelineRuns(pr.Namespace).Get(ctx, pr.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		r := result{Kind: "PipelineRun", Namespace: pr.Namespace, Name: pr.Name, Annotations: got.Annotations}
		if err := r.check(pr.IsDone()); err != nil {
			return fmt.Errorf("%w (are all its child TaskRuns given with --taskrun?)", err)
		}
		report = append(report, r)
	}

	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(report)
}

type result struct {
	Kind        string            `json:"kind"`
	Namespace   string            `json:"namespace"`
	Name        string            `json:"name"`
	Annotations map[string]string `json:"annotations"`
}

func (r result) check(done bool) error {
	if r.Annotations[signedAnnotation] == "true" {
		return nil
	}
	why := ""
	if !done {
		why = ": it is not done (status.conditions Succeeded is not True/False)"
	}
	return fmt.Errorf("Chains did not mark %s %s/%s signed%s; annotations: %v", r.Kind, r.Namespace, r.Name, why, r.Annotations)
}

// checkSigners builds every signer and payloader the configuration names, as
// Chains' ObjectSigner does, and returns their errors instead of skipping.
func checkSigners(ctx context.Context, secretPath string, cfg config.Config) error {
	for _, a := range []struct {
		kind     string
		artifact config.Artifact
	}{
		{"artifacts.taskrun", cfg.Artifacts.TaskRuns},
		{"artifacts.pipelinerun", cfg.Artifacts.PipelineRuns},
		{"artifacts.oci", cfg.Artifacts.OCI},
	} {
		if !a.artifact.Enabled() {
			continue
		}
		if _, err := formats.GetPayloader(config.PayloadType(a.artifact.Format), cfg); err != nil {
			return fmt.Errorf("%s.format %q: %w", a.kind, a.artifact.Format, err)
		}
		switch a.artifact.Signer {
		case signing.TypeX509:
			if _, err := x509.NewSigner(ctx, secretPath, cfg); err != nil {
				return fmt.Errorf("%s.signer x509 (signing-secrets %s): %w", a.kind, secretPath, err)
			}
		case signing.TypeKMS:
			if _, err := kms.NewSigner(ctx, cfg.Signers.KMS); err != nil {
				return fmt.Errorf("%s.signer kms: %w", a.kind, err)
			}
		}
	}
	return nil
}

// parseConfig reads the chains-config data: a ConfigMap, a map, or
// key=value lines (blank lines and # comments skipped).
func parseConfig(b []byte) (map[string]string, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err == nil && doc != nil {
		if doc["kind"] == "ConfigMap" {
			var cm corev1.ConfigMap
			if err := yaml.Unmarshal(b, &cm); err != nil {
				return nil, err
			}
			return cm.Data, nil
		}
		out := map[string]string{}
		for k, v := range doc {
			switch v := v.(type) {
			case string:
				out[k] = v
			case bool, float64:
				out[k] = fmt.Sprint(v)
			default:
				return nil, fmt.Errorf("key %q: value %v is not a string", k, v)
			}
		}
		return out, nil
	}
	out := map[string]string{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: want key=value, a YAML map or a ConfigMap", i+1)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

// readRuns decodes the TaskRuns and PipelineRuns of a YAML or JSON file.
func readRuns(file, namespace string) ([]*v1.TaskRun, []*v1.PipelineRun, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	var trs []*v1.TaskRun
	var prs []*v1.PipelineRun
	for i, doc := range splitYAML(b) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, nil, fmt.Errorf("%s: document %d: %w", file, i+1, err)
		}
		if tm.APIVersion != v1.SchemeGroupVersion.String() {
			return nil, nil, fmt.Errorf("%s: document %d: apiVersion %q, want %s (what Chains' reconcilers watch)", file, i+1, tm.APIVersion, v1.SchemeGroupVersion)
		}
		var obj interface {
			metav1.Object
			runtime.Object
		}
		switch tm.Kind {
		case "TaskRun":
			tr := &v1.TaskRun{}
			trs, obj = append(trs, tr), tr
		case "PipelineRun":
			pr := &v1.PipelineRun{}
			prs, obj = append(prs, pr), pr
		default:
			return nil, nil, fmt.Errorf("%s: document %d: kind %q, want TaskRun or PipelineRun", file, i+1, tm.Kind)
		}
		if err := yaml.Unmarshal(doc, obj); err != nil {
			return nil, nil, fmt.Errorf("%s: document %d: %w", file, i+1, err)
		}
		if obj.GetName() == "" {
			return nil, nil, fmt.Errorf("%s: document %d: %s has no metadata.name", file, i+1, tm.Kind)
		}
		if obj.GetNamespace() == "" {
			obj.SetNamespace(namespace)
		}
	}
	return trs, prs, nil
}

func splitYAML(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(append([]byte("\n"), b...), []byte("\n---")) {
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

// serviceAccounts returns the service accounts the runs name (default:
// "default"), each with the Docker config as image pull secret if one is
// given.
func serviceAccounts(trs []*v1.TaskRun, prs []*v1.PipelineRun, dockerConfig string) ([]runtime.Object, error) {
	type key struct{ ns, name string }
	seen := map[key]bool{}
	var keys []key
	add := func(ns, name string) {
		if name == "" {
			name = "default"
		}
		if k := (key{ns, name}); !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, tr := range trs {
		add(tr.Namespace, tr.Spec.ServiceAccountName)
	}
	for _, pr := range prs {
		add(pr.Namespace, pr.Spec.TaskRunTemplate.ServiceAccountName)
	}
	var pull []byte
	if dockerConfig != "" {
		var err error
		if pull, err = os.ReadFile(dockerConfig); err != nil {
			return nil, err
		}
	}
	var objs []runtime.Object
	secretNamespaces := map[string]bool{}
	for _, k := range keys {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: k.ns, Name: k.name}}
		if pull != nil {
			sa.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "chains-sign-registry"}}
			if !secretNamespaces[k.ns] {
				secretNamespaces[k.ns] = true
				objs = append(objs, &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Namespace: k.ns, Name: "chains-sign-registry"},
					Type:       corev1.SecretTypeDockerConfigJson,
					Data:       map[string][]byte{corev1.DockerConfigJsonKey: pull},
				})
			}
		}
		objs = append(objs, sa)
	}
	return objs, nil
}

// notReady is the tracker the PipelineRun reconciler calls when a child
// TaskRun is not complete or not yet signed; without a cluster nothing will
// ever call back, so the reconciler returns and the run is reported unsigned.
type notReady struct{ tracker.Interface }

func (notReady) TrackReference(ref tracker.Reference, obj interface{}) error {
	return fmt.Errorf("child %s %s/%s is not complete or not signed", ref.Kind, ref.Namespace, ref.Name)
}
