package ship

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	"github.com/tektoncd/pipeline/pkg/result"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/test/harness"
)

// shipApps are the binaries the ko sample builds into <parent>/<app>.
var shipApps = []string{"app1", "app2", "app3"}

// fixture is a real registry behind a front that demands credentials, the
// children ko would have pushed, and a signing key in Chains' layout.
type fixture struct {
	upstream   string // the registry itself, host:port
	host       string // the front, host:port
	parent     string // host/org/ko-build
	refs       string // what ko wrote: <parent>/<app>@sha256:…, a line each
	secrets    map[string]map[string][]byte
	pub        string // the public key, on this machine
	dockerDir  string // a docker config for the front, on this machine
	challenged atomic.Int32
	authorized atomic.Int32
}

const (
	registryUser     = "ship"
	registryPassword = "s3cret-push-token"
	keyPassword      = "key-password-from-the-secret"
)

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureOf(t, sample.Platforms)
}

// newFixtureOf is newFixture with each child an index of these platforms.
func newFixtureOf(t *testing.T, platforms []ggcrv1.Platform) *fixture {
	t.Helper()
	reg := harness.Distribution(t, harness.DistributionOptions{})
	f := &fixture{secrets: map[string]map[string][]byte{}, upstream: reg.Host}
	f.host = f.front(t, reg.Host)
	f.parent = f.host + "/org/ko-build"
	auth := remote.WithAuth(&authn.Basic{Username: registryUser, Password: registryPassword})
	var refs []string
	for _, app := range shipApps {
		idx, err := sample.IndexOf(app, platforms)
		if err != nil {
			t.Fatal(err)
		}
		repo, err := name.NewRepository(f.parent + "/" + app)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteIndex(repo.Tag("latest"), idx, auth); err != nil {
			t.Fatalf("push %s: %v", repo, err)
		}
		d, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, repo.Digest(d.String()).String())
	}
	f.refs = strings.Join(refs, "\n") + "\n"
	f.key(t)
	config := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, f.host, base64.StdEncoding.EncodeToString([]byte(registryUser+":"+registryPassword)))
	f.secrets["registry-push"] = map[string][]byte{corev1.DockerConfigJsonKey: []byte(config)}
	f.dockerDir = t.TempDir()
	write(t, filepath.Join(f.dockerDir, "config.json"), config, 0o600)
	return f
}

// front serves the registry only to requests with the credentials, and
// challenges the others for basic auth, as a hosted registry would.
func (f *fixture) front(t *testing.T, upstream string) string {
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: upstream})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != registryUser || p != registryPassword {
			f.challenged.Add(1)
			w.Header().Set("WWW-Authenticate", `Basic realm="nestattest-ship"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		f.authorized.Add(1)
		r.Header.Del("Authorization")
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// key makes a cosign key pair and the Secret Chains signs with:
// signing-secrets, with cosign.key, cosign.password and cosign.pub.
func (f *fixture) key(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(filepath.Join(staticBinaries(t), "nestattest"), "generate-key-pair", "--output-key-prefix", filepath.Join(dir, "cosign"))
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD="+keyPassword)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generate-key-pair: %v\n%s", err, out)
	}
	s := map[string][]byte{"cosign.password": []byte(keyPassword)}
	for _, k := range []string{"cosign.key", "cosign.pub"} {
		b, err := os.ReadFile(filepath.Join(dir, k))
		if err != nil {
			t.Fatal(err)
		}
		s[k] = b
	}
	f.secrets["signing-secrets"] = s
	f.pub = filepath.Join(dir, "cosign.pub")
}

// workspaces binds the source workspace to an emptyDir and dockerconfig to
// the registry Secret, its .dockerconfigjson mapped to config.json.
func workspaces() []v1.WorkspaceBinding {
	return []v1.WorkspaceBinding{
		{Name: "source", EmptyDir: &corev1.EmptyDirVolumeSource{}},
		{Name: "dockerconfig", Secret: &corev1.SecretVolumeSource{SecretName: "registry-push",
			Items: []corev1.KeyToPath{{Key: corev1.DockerConfigJsonKey, Path: "config.json"}}}},
	}
}

func loadTask(t *testing.T) *v1.Task { t.Helper(); return loadTaskNamed(t, "nestattest") }

// loadTaskNamed reads task/NAME/NAME.yaml with Tekton's types, strictly.
func loadTaskNamed(t *testing.T, name string) *v1.Task {
	t.Helper()
	m, err := decodeStrict(filepath.Join(moduleRoot(t), "task", name, name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return m.obj.(*v1.Task)
}

func loadStepAction(t *testing.T) *v1beta1.StepAction {
	t.Helper()
	m, err := decodeStrict(filepath.Join(moduleRoot(t), "stepaction", "nestattest", "nestattest.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return m.obj.(*v1beta1.StepAction)
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// checkResults checks the result files Chains reads: IMAGE_URL exactly the
// repository and tag given, IMAGE_DIGEST the digest that tag now names,
// neither with a newline.
func (f *fixture) checkResults(t *testing.T, dir, tag string) string {
	t.Helper()
	url, err := os.ReadFile(filepath.Join(dir, "IMAGE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	digest, err := os.ReadFile(filepath.Join(dir, "IMAGE_DIGEST"))
	if err != nil {
		t.Fatal(err)
	}
	if string(url) != tag {
		t.Errorf("IMAGE_URL = %q, want exactly %q", url, tag)
	}
	if !digestRE.Match(digest) {
		t.Errorf("IMAGE_DIGEST = %q, want exactly sha256:<64 hex>", digest)
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref, remote.WithAuth(&authn.Basic{Username: registryUser, Password: registryPassword}))
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest.String() != string(digest) {
		t.Errorf("IMAGE_DIGEST = %s, but %s is %s", digest, tag, desc.Digest)
	}
	return string(digest)
}

// checkTermination checks that the entrypoint put both results into the
// step's termination message, where the reconciler reads them.
func checkTermination(t *testing.T, rs []result.RunResult, typ result.ResultType, url, digest string) {
	t.Helper()
	got := map[string]result.RunResult{}
	for _, r := range rs {
		got[r.Key] = r
	}
	for k, want := range map[string]string{"IMAGE_URL": url, "IMAGE_DIGEST": digest} {
		r, ok := got[k]
		switch {
		case !ok:
			t.Errorf("termination message has no %s: %+v", k, rs)
		case r.Value != want || r.ResultType != typ:
			t.Errorf("termination message %s = %q (type %d), want %q (type %d)", k, r.Value, r.ResultType, want, typ)
		}
	}
}

// checkStatus checks the TaskRun results Chains reads.
func checkStatus(t *testing.T, s v1.TaskRunStatus, url, digest string) {
	t.Helper()
	got := map[string]string{}
	for _, r := range s.Results {
		got[r.Name] = r.Value.StringVal
	}
	if got["IMAGE_URL"] != url || got["IMAGE_DIGEST"] != digest {
		t.Errorf("TaskRun results %v, want IMAGE_URL %q and IMAGE_DIGEST %q", got, url, digest)
	}
}

// verify checks every node of the tree with `nestattest verify` and the
// public key of the Secret.
func (f *fixture) verify(t *testing.T, ref string) {
	t.Helper()
	f.verifyWith(t, ref, nil, "--key", f.pub, "--insecure-ignore-tlog")
}

// verifyWith checks every node of the tree with `nestattest verify`, whom
// to trust given by args, env added to the environment.
func (f *fixture) verifyWith(t *testing.T, ref string, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(staticBinaries(t), "nestattest"), append(append([]string{"verify", "-o", "json"}, args...), ref)...)
	cmd.Env = append(append(os.Environ(), "DOCKER_CONFIG="+f.dockerDir), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("verify %s: %v\n%s", ref, err, out)
	}
	var doc struct {
		Summary struct{ Nodes, Passed, Failed int }
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	// The parent, three two-platform indexes, six images.
	if doc.Summary.Nodes != 10 || doc.Summary.Failed != 0 {
		t.Errorf("verify: %+v, want 10 nodes, none failed", doc.Summary)
	}
}

// keyless is the local sigstore stack (Fulcio, a Rekor v2 log, a timestamp
// authority, an OIDC issuer) a TaskRun's pod signs keylessly against.
type keyless struct {
	*harness.Sigstore
}

// startKeyless starts the stack and gives the fixture the ConfigMap
// sigstore-trust with its trusted_root.json and signing_config.json, what
// the Task's sigstore workspace binds.
func (f *fixture) startKeyless(t *testing.T) keyless {
	t.Helper()
	s := harness.StartSigstore(t, harness.SigstoreOptions{})
	trust := map[string][]byte{}
	for file, path := range map[string]string{"trusted_root.json": s.TrustedRootPath, "signing_config.json": s.SigningConfigPath} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		trust[file] = b
	}
	f.secrets["sigstore-trust"] = trust
	return keyless{s}
}

// token stands for the kubelet projecting the TaskRun ServiceAccount's
// token: signed by the stack's issuer (the cluster's, for Fulcio), for the
// audience and lifetime the projection asks for. The stack's Fulcio takes
// its issuer as an email issuer, so the token carries the identity as
// email too.
func (k keyless) token(t *testing.T) func(audience string, expiry time.Duration) string {
	return func(audience string, expiry time.Duration) string {
		return k.OIDC.Mint(t, harness.IDToken{Email: k.Identity, Subject: "system:serviceaccount:default:default",
			Audience: audience, Expiry: time.Now().Add(expiry)})
	}
}

// identity is whom a keylessly signed tree must be signed by: the
// ServiceAccount's identity from the stack's issuer, the certificate
// chaining to the stack's Fulcio (no CT log, so no SCT), the signing time
// from its timestamp authority.
func (k keyless) identity() []string {
	return []string{"--certificate-identity", k.Identity, "--certificate-oidc-issuer", k.Issuer,
		"--trusted-root", k.TrustedRootPath, "--insecure-ignore-sct", "--use-signed-timestamps"}
}

// cosignVerify checks refs with the real cosign CLI (v3), by the keyless
// identity: the signature and the SLSA v1.0 provenance, with their
// timestamps and, for bundles, their Rekor v2 entries. The legacy layout
// cannot carry a Rekor v2 entry (cosign's annotation holds a Rekor v1
// signed entry timestamp): there the timestamp alone gives the signing
// time (--insecure-ignore-tlog), as test/e2e checks it.
func (f *fixture) cosignVerify(t *testing.T, k keyless, format string, refs ...string) {
	t.Helper()
	env := []string{"DOCKER_CONFIG=" + f.dockerDir, "TUF_ROOT=" + t.TempDir()}
	args := append(k.identity(), "--allow-insecure-registry")
	if format == "legacy" {
		args = append(args, "--insecure-ignore-tlog")
	}
	for _, ref := range refs {
		for _, cmd := range [][]string{{"verify"}, {"verify-attestation", "--type", "slsaprovenance1"}} {
			r := harness.RunEnv(t, env, harness.Tool(t, "cosign3"), append(append(cmd, args...), ref)...)
			if r.Code != 0 {
				t.Errorf("cosign %s %s: exit %d\n%s", cmd[0], ref, r.Code, r.Stderr)
			}
		}
	}
}

// firstChild is the first reference ko wrote.
func (f *fixture) firstChild() string {
	ref, _, _ := strings.Cut(f.refs, "\n")
	return ref
}

// TestTaskRunsTheSignCommandLine runs the Task as a TaskRun's pod would:
// Tekton substitutes the params, builds the pod, and the entrypoint runs the
// step's exact command line against the real registry. First keyless, as
// the Task signs by default: the kubelet's projected ServiceAccount token,
// a certificate from a real Fulcio, every signature logged in a real Rekor
// v2 log and timestamped, the trust material from the sigstore workspace;
// the tree is then checked by identity with nestattest and cosign. Then
// with no child source (sign what is there: nothing to write). Then with
// both workspaces unbound and a KMS key (local-kms, its credentials in the
// environment as workload identity puts them there): no key in the pod.
func TestTaskRunsTheSignCommandLine(t *testing.T) {
	needRoot(t)
	f := newFixture(t)
	k := f.startKeyless(t)
	tag := f.parent + ":latest"
	run := func(params v1.Params, ws []v1.WorkspaceBinding, env ...string) (*podRun, *v1.TaskRun) {
		tr := &v1.TaskRun{
			ObjectMeta: metav1.ObjectMeta{Name: "nestattest-run"},
			Spec:       v1.TaskRunSpec{TaskRef: &v1.TaskRef{Name: "nestattest"}, Params: params, Workspaces: ws},
		}
		p := newPod(t, taskRun{task: loadTask(t), run: tr, secrets: f.secrets, token: k.token(t)})
		if len(ws) > 0 {
			write(t, filepath.Join(p.workspacePath("source"), "ko-refs.txt"), f.refs, 0o644)
		}
		for _, c := range p.containers() {
			for _, m := range c.VolumeMounts {
				if strings.Contains(m.Name, "signing-secrets") || strings.Contains(m.MountPath, "signing-secrets") {
					t.Errorf("container %s mounts %s at %s: the build-side Task mounts no signing key", c.Name, m.Name, m.MountPath)
				}
			}
		}
		p.run(env...)
		for name, code := range p.exit {
			if code != 0 {
				t.Fatalf("container %s exited %d:\n%s", name, code, p.output[name])
			}
		}
		return p, tr
	}
	// The trust material from the sigstore workspace; the local Fulcio
	// has no certificate transparency log, so its certificates carry no
	// SCT to check (--insecure-skip-verify).
	keylessParams := v1.Params{
		{Name: "SIGNING_CONFIG", Value: *v1.NewStructuredValues("/etc/sigstore/signing_config.json")},
		{Name: "TRUSTED_ROOT", Value: *v1.NewStructuredValues("/etc/sigstore/trusted_root.json")},
		{Name: "FORMAT", Value: *v1.NewStructuredValues("bundle")},
		{Name: "EXTRA_ARGS", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"--insecure-skip-verify"}}},
	}
	ws := append(workspaces(), v1.WorkspaceBinding{Name: "sigstore", ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: "sigstore-trust"}}})

	before := k.Requests()
	params := append(v1.Params{
		{Name: "IMAGE", Value: *v1.NewStructuredValues(tag)},
		{Name: "CHILDREN", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"--from=ko-refs.txt"}}},
		{Name: "REPORT", Value: *v1.NewStructuredValues("nestattest-report.json")},
	}, keylessParams...)
	p, tr := run(params, ws)
	digest := f.checkResults(t, p.hostPath("/tekton/results"), tag)
	checkTermination(t, p.results(stepContainer("sign")), result.TaskRunResultType, tag, digest)
	checkStatus(t, p.taskRunStatus(tr), tag, digest)
	var report struct {
		Summary struct{ Nodes, Written, Failed int }
	}
	b, err := os.ReadFile(filepath.Join(p.workspacePath("source"), "nestattest-report.json"))
	if err != nil {
		t.Fatalf("the report in the source workspace: %v", err)
	}
	if err := json.Unmarshal(b, &report); err != nil || report.Summary.Nodes != 10 || report.Summary.Failed != 0 {
		t.Errorf("report summary %+v (%v), want 10 nodes, none failed", report.Summary, err)
	}
	if f.challenged.Load() == 0 || f.authorized.Load() == 0 {
		t.Errorf("the registry front challenged %d and admitted %d requests: the credentials were not used", f.challenged.Load(), f.authorized.Load())
	}
	// One certificate for the run; a signature and an attestation for each
	// node and each of the 9 nodes below it mirrored into the parent's
	// repository, each logged and timestamped.
	after := k.Requests()
	if after.Certificates-before.Certificates != 1 || after.Entries-before.Entries != 38 || after.Timestamps-before.Timestamps != 38 {
		t.Errorf("sigstore: %+v then %+v; want 1 certificate, 38 entries and 38 timestamps", before, after)
	}
	f.verifyWith(t, tag, nil, append(k.identity(), "--require-root", "--format", "bundle")...)
	f.cosignVerify(t, k, "bundle", tag+"@"+digest, f.firstChild())

	// The same TaskRun again (a retry): the parent is in place and every
	// node signed and attested by this identity; nothing to write, nothing
	// logged.
	p, tr = run(params, ws)
	if again := f.checkResults(t, p.hostPath("/tekton/results"), tag); again != digest {
		t.Errorf("second run: IMAGE_DIGEST %s, want %s", again, digest)
	}
	if out := p.output[stepContainer("sign")]; !strings.Contains(out, "nothing to write") {
		t.Errorf("second run wrote again:\n%s", out)
	}
	if d := k.Requests(); d.Entries != after.Entries || d.Timestamps != after.Timestamps {
		t.Errorf("second run logged or timestamped: %+v then %+v", after, d)
	}
	checkStatus(t, p.taskRunStatus(tr), tag, digest)

	// Every workspace is optional: unbound, the step runs in the image's
	// working directory with the credentials of $HOME/.docker (none, so the
	// registry itself, which asks for none), and writes no report. No child
	// source: it signs the tree the tag already is. A KMS key signs,
	// reached with credentials from the environment, as IRSA or GKE
	// workload identity provide them; no transparency log, every signature
	// timestamped, in the default legacy layout.
	kms := harness.StartKMS(t, harness.KMSOptions{})
	direct := f.upstream + "/org/ko-build:latest"
	p, tr = run(v1.Params{
		{Name: "IMAGE", Value: *v1.NewStructuredValues(direct)},
		{Name: "KEY", Value: *v1.NewStructuredValues(kms.KeyRef())},
		{Name: "TLOG_UPLOAD", Value: *v1.NewStructuredValues("false")},
		{Name: "TIMESTAMP_SERVER_URL", Value: *v1.NewStructuredValues(k.TSAURL + "/api/v1/timestamp")},
	}, nil, kms.Env()...)
	if again := f.checkResults(t, p.hostPath("/tekton/results"), direct); again != digest {
		t.Errorf("unbound workspaces: IMAGE_DIGEST %s, want %s", again, digest)
	}
	checkStatus(t, p.taskRunStatus(tr), direct, digest)
	if n := kms.Counts()[harness.KMSSign]; n == 0 {
		t.Errorf("KMS: no Sign requests (%v)", kms.Counts())
	}
	f.verifyWith(t, direct, kms.Env(), "--key", kms.KeyRef(), "--insecure-ignore-tlog", "--format", "legacy",
		"--trusted-root", k.TrustedRootPath, "--use-signed-timestamps")
}

// TestStepActionResultsLiftedToTaskResults runs the sample Task that uses
// the StepAction: Tekton resolves the StepAction, the entrypoint runs its
// command line and reads its step results, and the reconciler's code lifts
// them into the Task results Chains reads. With VSA_KEYLESS, every node
// also gets a verification summary under a certificate for the same
// identity, which cosign v3 verifies.
func TestStepActionResultsLiftedToTaskResults(t *testing.T) {
	needRoot(t)
	f := newFixture(t)
	m, err := decodeStrict(filepath.Join(moduleRoot(t), "stepaction", "nestattest", "samples", "task-with-stepaction.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	task := m.obj.(*v1.Task)
	// ko cannot run here: the children are pushed and ko-refs.txt written
	// as its build step would. The StepAction is the one in this catalog,
	// installed in the namespace, instead of fetched from git.
	var steps []v1.Step
	for _, s := range task.Spec.Steps {
		if s.Ref != nil {
			s.Ref = &v1.Ref{Name: "nestattest"}
			steps = append(steps, s)
		}
	}
	task.Spec.Steps = steps
	// The sample signs keylessly with the public-good TUF repository's
	// trust material; here with the local stack's trusted root and signing
	// config, in the source workspace. The
	// local Fulcio has no CT log: no SCT to check.
	k := f.startKeyless(t)
	steps[0].Params = append(steps[0].Params, v1.Param{Name: "EXTRA_ARGS", Value: v1.ParamValue{Type: v1.ParamTypeArray, ArrayVal: []string{"--insecure-skip-verify"}}})
	// Verification summaries signed keylessly, by the build's own
	// identity: the one key a build pod may hold.
	steps[0].Params = append(steps[0].Params, v1.Param{Name: "VSA_KEYLESS", Value: *v1.NewStructuredValues("true")})
	tr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: "build-and-nestattest-run"},
		Spec: v1.TaskRunSpec{TaskRef: &v1.TaskRef{Name: task.Name}, Workspaces: workspaces(),
			Params: v1.Params{
				{Name: "PARENT", Value: *v1.NewStructuredValues(f.parent)},
				{Name: "SIGNING_CONFIG", Value: *v1.NewStructuredValues("signing_config.json")},
				{Name: "TRUSTED_ROOT", Value: *v1.NewStructuredValues("trusted_root.json")},
			}},
	}
	p := newPod(t, taskRun{task: task, run: tr, stepActions: []*v1beta1.StepAction{loadStepAction(t)}, secrets: f.secrets, token: k.token(t)})
	write(t, filepath.Join(p.workspacePath("source"), "ko-refs.txt"), f.refs, 0o644)
	for file, b := range f.secrets["sigstore-trust"] {
		write(t, filepath.Join(p.workspacePath("source"), file), string(b), 0o644)
	}
	p.run()
	sign := stepContainer("sign")
	if p.exit[sign] != 0 {
		t.Fatalf("sign exited %d:\n%s", p.exit[sign], p.output[sign])
	}
	tag := f.parent + ":latest"
	digest := f.checkResults(t, p.hostPath("/tekton/steps/step-sign/results"), tag)
	checkTermination(t, p.results(sign), result.StepResultType, tag, digest)
	checkStatus(t, p.taskRunStatus(tr), tag, digest)
	// The sample's default layout, legacy: its signatures cannot carry the
	// Rekor v2 log's entries, so the timestamps give the signing time.
	f.verifyWith(t, tag, nil, append(k.identity(), "--require-root", "--insecure-ignore-tlog")...)
	f.cosignVerify(t, k, "legacy", tag+"@"+digest, f.firstChild())
	// VSA_KEYLESS: a PASSED summary on every node, under a certificate for
	// the same identity, timestamped.
	line := summariesLine.FindString(p.output[sign])
	if !strings.Contains(line, "10 nodes passed, 10 written, 0 present, 0 failed") {
		t.Errorf("summaries: %q, want 10 nodes passed and written\n%s", line, p.output[sign])
	}
	below := f.nodesBelow(t)
	env := []string{"DOCKER_CONFIG=" + f.dockerDir, "TUF_ROOT=" + t.TempDir()}
	for _, ref := range append([]string{tag + "@" + digest}, below...) {
		r := harness.RunEnv(t, env, harness.Tool(t, "cosign3"), append(append([]string{"verify-attestation", "--type", vsaType}, k.identity()...),
			"--insecure-ignore-tlog", "--allow-insecure-registry", ref)...)
		if r.Code != 0 || !strings.Contains(strings.ToLower(r.Stdout), "payload") {
			t.Errorf("cosign3 verify-attestation --type %s %s: exit %d\n%s%s", vsaType, ref, r.Code, r.Stdout, r.Stderr)
		}
	}
	t.Logf("StepAction with VSA_KEYLESS: %s; cosign v3.1.3 verifies each of %d nodes' summary by the identity", line, len(below)+1)
}
