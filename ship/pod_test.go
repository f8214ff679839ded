package ship

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/v1beta1"
	faketekton "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	podconvert "github.com/tektoncd/pipeline/pkg/pod"
	"github.com/tektoncd/pipeline/pkg/reconciler/taskrun/resources"
	"github.com/tektoncd/pipeline/pkg/result"
	"github.com/tektoncd/pipeline/pkg/termination"
	"github.com/tektoncd/pipeline/pkg/workspace"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	fakek8s "k8s.io/client-go/kubernetes/fake"

	"github.com/nestattest/nestattest/test/harness"
)

// The images the pod builder names. Their files are laid into the one root
// every container runs in: the nestattest image's binary where the
// Dockerfile puts it, Tekton's entrypoint and workingdirinit where their
// ko-built images have them.
const (
	entrypointImage     = "ghcr.io/tektoncd/pipeline/entrypoint:v1.14.0"
	workingDirInitImage = "ghcr.io/tektoncd/pipeline/workingdirinit:v1.14.0"
	nonroot             = 65532 // the user of the nestattest image and Tekton's images
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// staticBinaries builds, once per test process, the binaries the pod's
// images hold: nestattest as the Dockerfile builds it (static, trimmed,
// version stamped) and Tekton's entrypoint and workingdirinit at v1.14.0
// from the module graph (go.mod lists the entrypoint as a tool).
func staticBinaries(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "nestattest-ship-bin-"); binErr != nil {
			return
		}
		builds := [][]string{
			{"-ldflags", "-X main.version=v0.0.0-ship", "-o", filepath.Join(binDir, "nestattest"), "./cmd/nestattest"},
			{"-o", filepath.Join(binDir, "entrypoint"), "github.com/tektoncd/pipeline/cmd/entrypoint"},
			{"-o", filepath.Join(binDir, "workingdirinit"), "github.com/tektoncd/pipeline/cmd/workingdirinit"},
		}
		for _, b := range builds {
			cmd := exec.Command("go", append([]string{"build", "-trimpath"}, b...)...)
			cmd.Dir = moduleRoot(t)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				binErr = fmt.Errorf("go build %s: %v\n%s", b[len(b)-1], err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// needRoot skips a test that needs chroot and a change of user.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		harness.Missing(t, "running the pod's containers needs root (chroot, and the image's non-root user); CI runs as root")
	}
}

// taskRun is one run of a Task: what the TaskRun says, the StepActions it
// can reference, the Secrets and ConfigMaps its volumes and workspaces name
// (by name), and the issuer of the ServiceAccount tokens its projected
// volumes ask for.
type taskRun struct {
	task        *v1.Task
	run         *v1.TaskRun
	stepActions []*v1beta1.StepAction
	secrets     map[string]map[string][]byte
	// token mints the ServiceAccount's token for an audience, valid for
	// expiry, as the kubelet asks the API server for a projected
	// serviceAccountToken; nil when the test gives the pod none.
	token func(audience string, expiry time.Duration) string
}

// podRun is a TaskRun's pod, run as the kubelet would run it as far as
// this test cares: one root directory stands for every container's file
// system, each volume is a directory in it, linked at its mount path, and
// every container runs chrooted there, in order, as the images' user.
type podRun struct {
	t          *testing.T
	root       string
	spec       *v1.TaskSpec // resolved and substituted, as the pod builder got it
	pod        *corev1.Pod
	workspaces map[string]corev1.Volume // workspace name: its volume
	term       map[string]string        // container name: its termination message
	exit       map[string]int           // container name: its exit code
	output     map[string]string        // container name: what it printed
	token      func(audience string, expiry time.Duration) string
}

// newPod resolves the TaskRun's Task, substitutes its variables and builds
// its pod with Tekton's own reconciler code, then lays out the root.
func newPod(t *testing.T, r taskRun) *podRun {
	t.Helper()
	ctx := context.Background()
	r.run.Namespace = "default"
	p := &podRun{t: t, root: t.TempDir(), term: map[string]string{}, exit: map[string]int{}, output: map[string]string{}, token: r.token}
	spec, vols, err := resolve(ctx, r)
	if err != nil {
		t.Fatalf("resolve the TaskRun: %v", err)
	}
	p.spec, p.workspaces = spec, vols
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: r.run.Namespace}}
	b := podconvert.Builder{
		Images:     pipeline.Images{EntrypointImage: entrypointImage, WorkingDirInitImage: workingDirInitImage, ShellImage: "unused", NopImage: "unused"},
		KubeClient: fakek8s.NewSimpleClientset(sa),
	}
	if p.pod, err = b.Build(ctx, r.run, *spec); err != nil {
		t.Fatalf("build the pod: %v", err)
	}
	p.layOut(r.secrets)
	return p
}

// resolve is the reconciler's path from TaskRun to pod spec: StepActions
// resolved and their params applied, then params, context, results,
// workspaces and credentials substituted, the spec validated again, and the
// workspaces' volumes added.
func resolve(ctx context.Context, r taskRun) (*v1.TaskSpec, map[string]corev1.Volume, error) {
	r.task.SetDefaults(ctx)
	r.run.SetDefaults(ctx)
	ts := r.task.Spec.DeepCopy()
	var objs []runtime.Object
	for _, sa := range r.stepActions {
		sa = sa.DeepCopy()
		sa.Namespace = r.run.Namespace
		objs = append(objs, sa)
	}
	tekton := faketekton.NewSimpleClientset(objs...)
	steps, err := resources.GetStepActionsData(ctx, *ts, r.run, tekton, fakek8s.NewSimpleClientset(), nil)
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

// layOut makes the root: the images' files, and every volume of the pod as
// a directory under /.volumes, linked at each path a container mounts it.
func (p *podRun) layOut(secrets map[string]map[string][]byte) {
	t := p.t
	bin := staticBinaries(t)
	for dir, mode := range map[string]os.FileMode{"": 0o755, "tmp": 0o1777, "etc": 0o755, "home/nonroot": 0o755, "usr/local/bin": 0o755, "ko-app": 0o755, ".volumes": 0o755} {
		mkdir(t, filepath.Join(p.root, dir), mode)
	}
	if err := os.Chown(filepath.Join(p.root, "home/nonroot"), nonroot, nonroot); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(p.root, "etc/passwd"), "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n", 0o644)
	p.devices()
	write(t, filepath.Join(p.root, "etc/group"), "root:x:0:\nnonroot:x:65532:\n", 0o644)
	// The nestattest image: the binary at the path its Dockerfile gives it,
	// which the Task's command names.
	copyFile(t, filepath.Join(bin, "nestattest"), filepath.Join(p.root, p.stepCommand()))
	copyFile(t, filepath.Join(bin, "entrypoint"), filepath.Join(p.root, "ko-app/entrypoint"))
	copyFile(t, filepath.Join(bin, "workingdirinit"), filepath.Join(p.root, "ko-app/workingdirinit"))
	for _, v := range p.pod.Spec.Volumes {
		p.volume(v, secrets)
	}
	p.mounts()
}

// devices makes the character devices a container runtime gives every
// container.
func (p *podRun) devices() {
	mkdir(p.t, filepath.Join(p.root, "dev"), 0o755)
	for dev, minor := range map[string]int{"null": 3, "zero": 5, "random": 8, "urandom": 9} {
		path := filepath.Join(p.root, "dev", dev)
		if err := syscall.Mknod(path, syscall.S_IFCHR|0o666, 1<<8|minor); err != nil {
			p.t.Fatalf("mknod %s: %v", path, err)
		}
		if err := os.Chmod(path, 0o666); err != nil {
			p.t.Fatal(err)
		}
	}
}

// stepCommand is the image path of the nestattest binary: the first
// command of the step that runs it.
func (p *podRun) stepCommand() string {
	for _, s := range p.spec.Steps {
		if len(s.Command) > 0 && strings.HasSuffix(s.Command[0], "/nestattest") {
			return s.Command[0]
		}
	}
	p.t.Fatal("no step runs nestattest")
	return ""
}

// volume fills a volume's directory the way its source would.
func (p *podRun) volume(v corev1.Volume, secrets map[string]map[string][]byte) {
	t := p.t
	dir := filepath.Join(p.root, ".volumes", v.Name)
	switch {
	case v.EmptyDir != nil:
		mkdir(t, dir, 0o777)
	case v.Secret != nil:
		mkdir(t, dir, 0o755)
		data, ok := secrets[v.Secret.SecretName]
		if !ok {
			t.Fatalf("volume %s: no Secret %s", v.Name, v.Secret.SecretName)
		}
		items := v.Secret.Items
		if len(items) == 0 {
			for k := range data {
				items = append(items, corev1.KeyToPath{Key: k, Path: k})
			}
		}
		for _, it := range items {
			b, ok := data[it.Key]
			if !ok {
				t.Fatalf("volume %s: Secret %s has no key %s", v.Name, v.Secret.SecretName, it.Key)
			}
			write(t, filepath.Join(dir, it.Path), string(b), 0o644)
		}
	case v.ConfigMap != nil:
		mkdir(t, dir, 0o755)
		data, ok := secrets[v.ConfigMap.Name]
		if !ok {
			t.Fatalf("volume %s: no ConfigMap %s", v.Name, v.ConfigMap.Name)
		}
		for k, b := range data {
			write(t, filepath.Join(dir, k), string(b), 0o644)
		}
	case v.Projected != nil:
		// What the kubelet projects: here only ServiceAccount tokens, each
		// for its audience and lifetime (Kubernetes' default, an hour,
		// when none is asked for), readable by the container's user.
		mkdir(t, dir, 0o755)
		for _, src := range v.Projected.Sources {
			sat := src.ServiceAccountToken
			if sat == nil || src.Secret != nil || src.ConfigMap != nil || src.DownwardAPI != nil || src.ClusterTrustBundle != nil {
				t.Fatalf("volume %s: a projected source other than a serviceAccountToken, which this test does not emulate", v.Name)
			}
			if p.token == nil {
				t.Fatalf("volume %s: a ServiceAccount token for %q, and the test gives the pod none", v.Name, sat.Audience)
			}
			expiry := time.Hour
			if sat.ExpirationSeconds != nil {
				expiry = time.Duration(*sat.ExpirationSeconds) * time.Second
			}
			write(t, filepath.Join(dir, sat.Path), p.token(sat.Audience, expiry), 0o644)
		}
	case v.DownwardAPI != nil:
		mkdir(t, dir, 0o755)
		for _, it := range v.DownwardAPI.Items {
			if it.Path == "ready" { // what Tekton sets once the sidecars are up
				write(t, filepath.Join(dir, it.Path), "READY", 0o644)
			}
		}
	default:
		t.Fatalf("volume %s: a source this test does not emulate", v.Name)
	}
}

// mounts links every mount path of every container to its volume; the
// containers mount each volume at the same path, parents before children.
func (p *podRun) mounts() {
	t := p.t
	at := map[string]corev1.VolumeMount{}
	for _, c := range p.containers() {
		for _, m := range c.VolumeMounts {
			if prev, ok := at[m.MountPath]; ok && (prev.Name != m.Name || prev.SubPath != m.SubPath) {
				t.Fatalf("%s is mounted from %s and from %s: this test needs one volume per path", m.MountPath, prev.Name, m.Name)
			}
			at[m.MountPath] = m
		}
	}
	paths := make([]string, 0, len(at))
	for path := range at {
		paths = append(paths, path)
	}
	sort.Strings(paths)
	for _, path := range paths {
		m := at[path]
		link := p.hostPath(path)
		mkdir(t, filepath.Dir(link), 0o755)
		if err := os.Symlink(filepath.Join("/.volumes", m.Name, m.SubPath), link); err != nil {
			t.Fatalf("mount %s at %s: %v", m.Name, path, err)
		}
	}
}

// hostPath is where a container path is on this machine: the path
// resolved inside the root, following the mount links and the links the
// containers made (the entrypoint's /tekton/steps/step-<name>).
func (p *podRun) hostPath(path string) string {
	return p.resolveIn(path, 0)
}

func (p *podRun) resolveIn(path string, depth int) string {
	if depth > 32 {
		p.t.Fatalf("%s: too many links", path)
	}
	parts := strings.Split(strings.Trim(filepath.Clean("/"+path), "/"), "/")
	inside := "/"
	for i, part := range parts {
		inside = filepath.Join(inside, part)
		target, err := os.Readlink(filepath.Join(p.root, inside))
		if err != nil {
			continue
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(inside), target)
		}
		return p.resolveIn(filepath.Join(append([]string{target}, parts[i+1:]...)...), depth+1)
	}
	return filepath.Join(p.root, inside)
}

// workspacePath is the host directory of a workspace's volume.
func (p *podRun) workspacePath(name string) string {
	v, ok := p.workspaces[name]
	if !ok {
		p.t.Fatalf("no workspace %s", name)
	}
	return filepath.Join(p.root, ".volumes", v.Name)
}

func (p *podRun) containers() []corev1.Container {
	return append(append([]corev1.Container(nil), p.pod.Spec.InitContainers...), p.pod.Spec.Containers...)
}

// run runs the init containers and the steps in order, as the image's user,
// each with its command, args, env and working directory, chrooted into the
// root; it records each one's exit code, output and termination message.
func (p *podRun) run(env ...string) {
	for _, c := range p.containers() {
		p.runContainer(c, env)
	}
}

func (p *podRun) runContainer(c corev1.Container, extraEnv []string) {
	t := p.t
	argv := append(append([]string(nil), c.Command...), c.Args...)
	if len(argv) == 0 {
		t.Fatalf("container %s: no command", c.Name)
	}
	cmd := &exec.Cmd{Path: argv[0], Args: argv, Dir: c.WorkingDir}
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.Env = []string{"HOME=/home/nonroot", "PATH=/usr/local/bin:/ko-app"}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			t.Fatalf("container %s: env %s comes from %v, which this test does not emulate", c.Name, e.Name, e.ValueFrom)
		}
		cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
	}
	cmd.Env = append(cmd.Env, extraEnv...)
	if path := c.TerminationMessagePath; path != "" {
		// The kubelet gives each container a writable file there.
		write(t, p.hostPath(path), "", 0o666)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: p.root, Credential: &syscall.Credential{Uid: nonroot, Gid: nonroot}}
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("container %s: %v", c.Name, err)
	}
	p.exit[c.Name], p.output[c.Name] = code, out.String()
	t.Logf("container %s: %s\nexit %d\n%s", c.Name, strings.Join(argv, " "), code, out.String())
	if path := c.TerminationMessagePath; path != "" {
		if b, err := os.ReadFile(p.hostPath(path)); err == nil {
			p.term[c.Name] = string(b)
			os.Remove(p.hostPath(path)) // each container has its own
		}
	}
}

// results parses a container's termination message as the reconciler
// does.
func (p *podRun) results(container string) []result.RunResult {
	p.t.Helper()
	msg, ok := p.term[container]
	if !ok {
		p.t.Fatalf("container %s wrote no termination message", container)
	}
	rs, err := termination.ParseMessage(zap.NewNop().Sugar(), msg)
	if err != nil {
		p.t.Fatalf("container %s: termination message %q: %v", container, msg, err)
	}
	return rs
}

// taskRunStatus is the TaskRun status the reconciler makes from the
// finished pod: Tekton's own code reads the termination messages and lifts
// step results into Task results. Chains reads status.results.
func (p *podRun) taskRunStatus(tr *v1.TaskRun) v1.TaskRunStatus {
	p.t.Helper()
	done := p.pod.DeepCopy()
	done.Status.Phase = corev1.PodSucceeded
	for _, c := range done.Spec.Containers {
		st := corev1.ContainerStatus{Name: c.Name, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: int32(p.exit[c.Name]), Message: p.term[c.Name], Reason: "Completed",
		}}}
		if p.exit[c.Name] != 0 {
			done.Status.Phase = corev1.PodFailed
			st.State.Terminated.Reason = "Error"
		}
		if strings.Contains(c.Image, "@") { // the kubelet reports the image it ran by digest
			st.ImageID = c.Image
		}
		done.Status.ContainerStatuses = append(done.Status.ContainerStatuses, st)
	}
	tr = tr.DeepCopy()
	tr.Status.TaskSpec = p.spec
	s, err := podconvert.MakeTaskRunStatus(context.Background(), zap.NewNop().Sugar(), *tr, done, fakek8s.NewSimpleClientset(), p.spec)
	if err != nil {
		p.t.Fatalf("make the TaskRun status: %v", err)
	}
	return s
}

// stepContainer is the name of the container that runs a step.
func stepContainer(step string) string { return podconvert.StepName(step, 0) }

func mkdir(t testing.TB, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

func write(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	write(t, to, string(b), 0o755)
}
