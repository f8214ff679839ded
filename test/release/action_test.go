package release

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	rel "github.com/nestattest/nestattest/internal/release"
	"github.com/nestattest/nestattest/test/harness"
)

// action is the part of action.yml a runner needs.
type action struct {
	Inputs map[string]struct{ Default string }
	Runs   struct {
		Using string
		Steps []actionStep
	}
}

type actionStep struct {
	ID, Name, If, Uses, Shell, Run string
	Env                            map[string]string
}

// runner runs a composite action's steps as GitHub's runner does: each
// step's `if` and env evaluated, bash with -eo pipefail, its own
// $GITHUB_OUTPUT, one $GITHUB_STEP_SUMMARY; `uses` steps whose `if` holds
// are the runner's (the machine's Go stands for setup-go).
type runner struct {
	t       *testing.T
	dir     string // the action's directory
	inputs  map[string]string
	outputs map[string]map[string]string
	env     []string // the job's environment
	temp    string
	ran     []string // the steps that ran
	took    []string // each run step's name and wall time
}

var (
	exprRe = regexp.MustCompile(`^\$\{\{ ([a-z_]+)\.([a-z_.-]+) \}\}$`)
	condRe = regexp.MustCompile(`^(steps\.[a-z]+\.outputs\.[a-z]+|inputs\.[a-z-]+) == '([^']*)'$`)
)

func newRunner(t *testing.T, dir string, inputs map[string]string, env []string) *runner {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var a action
	if err := yaml.Unmarshal(raw, &a); err != nil {
		t.Fatal(err)
	}
	r := &runner{t: t, dir: dir, inputs: map[string]string{}, outputs: map[string]map[string]string{}, env: env, temp: t.TempDir()}
	for k, in := range a.Inputs {
		r.inputs[k] = in.Default
	}
	for k, v := range inputs {
		r.inputs[k] = v
	}
	return r
}

func (r *runner) value(ref string) string {
	ctx, key, _ := strings.Cut(ref, ".")
	switch ctx {
	case "inputs":
		return r.inputs[key]
	case "github":
		switch key {
		case "action_path":
			return r.dir
		case "action_ref":
			return "v0.0.0-action-test"
		}
	case "steps":
		id, out, ok := strings.Cut(key, ".outputs.")
		if ok {
			return r.outputs[id][out]
		}
	}
	r.t.Fatalf("expression %s: not a context this runner knows", ref)
	return ""
}

func (r *runner) eval(s string) string {
	if !strings.Contains(s, "${{") {
		return s
	}
	m := exprRe.FindStringSubmatch(s)
	if m == nil {
		r.t.Fatalf("expression %q: not a form this runner evaluates", s)
	}
	return r.value(m[1] + "." + m[2])
}

func (r *runner) cond(s string) bool {
	if s == "" {
		return true
	}
	m := condRe.FindStringSubmatch(s)
	if m == nil {
		r.t.Fatalf("if: %q: not a form this runner evaluates", s)
	}
	return r.value(m[1]) == m[2]
}

// run runs the action's steps until one fails; it returns the failing
// step's output, or "".
func (r *runner) run() (failed string) {
	raw, _ := os.ReadFile(filepath.Join(r.dir, "action.yml"))
	var a action
	if err := yaml.Unmarshal(raw, &a); err != nil {
		r.t.Fatal(err)
	}
	summary := filepath.Join(r.temp, "summary.md")
	for _, s := range a.Runs.Steps {
		if !r.cond(s.If) {
			continue
		}
		r.ran = append(r.ran, s.Name)
		if s.Run == "" {
			continue // a uses step: the runner's
		}
		out := filepath.Join(r.t.TempDir(), "output")
		env := append(append([]string{}, r.env...), "GITHUB_OUTPUT="+out, "GITHUB_STEP_SUMMARY="+summary, "RUNNER_TEMP="+r.temp)
		for k, v := range s.Env {
			env = append(env, k+"="+r.eval(v))
		}
		script := filepath.Join(r.t.TempDir(), "step.sh")
		if err := os.WriteFile(script, []byte(s.Run), 0o755); err != nil {
			r.t.Fatal(err)
		}
		cmd := exec.Command("/bin/bash", "--noprofile", "--norc", "-eo", "pipefail", script)
		cmd.Env = append(os.Environ(), env...)
		start := time.Now()
		b, err := cmd.CombinedOutput()
		r.took = append(r.took, fmt.Sprintf("%s %s", s.Name, time.Since(start).Round(time.Millisecond)))
		r.outputs[s.ID] = parseOutputs(r.t, out)
		if err != nil {
			return fmt.Sprintf("step %q: %v\n%s", s.Name, err, b)
		}
	}
	return ""
}

func parseOutputs(t *testing.T, path string) map[string]string {
	out := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			out[k] = v
		}
	}
	return out
}

// releaseServer serves a release's files from a directory, as GitHub's
// release downloads do: <url>/<version>/<file>.
type releaseServer struct {
	dir, url string
	mu       sync.Mutex
	served   []string
}

func newReleaseServer(t *testing.T) *releaseServer {
	s := &releaseServer{dir: t.TempDir()}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s.mu.Lock()
		s.served = append(s.served, req.URL.Path)
		s.mu.Unlock()
		http.ServeFile(w, req, filepath.Join(s.dir, filepath.FromSlash(strings.TrimPrefix(req.URL.Path, "/"))))
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func (s *releaseServer) put(t *testing.T, version, file string, content []byte, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(s.dir, version, file)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, content, mode); err != nil {
		t.Fatal(err)
	}
}

// firstRequest is a front for the registry that remembers when the first
// request after mark reached it.
type firstRequest struct {
	host  string
	mu    sync.Mutex
	after time.Time
	first time.Time
}

func newFirstRequest(t *testing.T, upstream string) *firstRequest {
	f := &firstRequest{}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: upstream})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		f.mu.Lock()
		if now := time.Now(); f.first.IsZero() && now.After(f.after) {
			f.first = now
		}
		f.mu.Unlock()
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	f.host = strings.TrimPrefix(srv.URL, "http://")
	return f
}

func (f *firstRequest) mark() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.after, f.first = time.Now(), time.Time{}
	return f.after
}

func (f *firstRequest) since(t0 time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.first.IsZero() {
		return -1
	}
	return f.first.Sub(t0)
}

// actionFixture is a release of nestattest served on loopback (the host's
// binary, checksums.txt signed with the release key), an action directory
// whose action.yml is stamped with that release and whose
// release/cosign.pub is the release key, and a tree to sign on the
// distribution registry behind a front that times the first request.
type actionFixture struct {
	server  *releaseServer
	version string
	file    string // nestattest-<os>-<arch>
	binary  []byte
	key     keyPair // the release key
	dir     string  // the stamped action
	reg     *firstRequest
	refs    string // ko-refs.txt
	parent  string
	signer  keyPair // the key the action signs the tree with
	runner  []string
}

func newActionFixture(t *testing.T) *actionFixture {
	t.Helper()
	goarch := map[string]string{"amd64": "X64", "arm64": "ARM64"}[runtime.GOARCH]
	if runtime.GOOS != "linux" || goarch == "" {
		harness.Missing(t, fmt.Sprintf("the action's release binaries are linux ones; this is %s/%s", runtime.GOOS, runtime.GOARCH))
	}
	for _, tool := range []string{"curl", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			harness.Missing(t, fmt.Sprintf("%s is not installed: a GitHub runner has it (apt-get install %s)", tool, tool))
		}
	}
	f := &actionFixture{server: newReleaseServer(t), version: "v0.0.1-action", file: "nestattest-linux-" + runtime.GOARCH, key: newKeyPair(t), signer: newKeyPair(t)}
	f.runner = []string{"RUNNER_OS=Linux", "RUNNER_ARCH=" + goarch}
	var err error
	if f.binary, err = os.ReadFile(harness.Binary(t)); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(f.binary)
	f.publish(t, f.binary, fmt.Sprintf("%x  %s\n", sum, f.file), f.key)

	f.dir = t.TempDir()
	for _, p := range []string{"action.yml", rel.StateFile} {
		copyFile(t, filepath.Join(repoRoot(t), p), filepath.Join(f.dir, p))
	}
	copyFile(t, f.key.pub, filepath.Join(f.dir, "release", "cosign.pub"))
	st, err := rel.Read(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	st.Version, st.Binaries = f.version, map[string]string{f.file: hex.EncodeToString(sum[:])}
	if _, err := rel.Apply(f.dir, st); err != nil {
		t.Fatal(err)
	}

	reg := harness.Distribution(t, harness.DistributionOptions{})
	f.reg = newFirstRequest(t, reg.Host)
	// The action reaches the registry through the timing front.
	refs := strings.Join(pushKoSample(t, reg, f.reg.host), "\n") + "\n"
	f.refs = filepath.Join(t.TempDir(), "ko-refs.txt")
	if err := os.WriteFile(f.refs, []byte(refs), 0o644); err != nil {
		t.Fatal(err)
	}
	f.parent = f.reg.host + "/org/ko-build"
	return f
}

// publish puts a binary and checksums.txt, signed with key as cosign
// sign-blob signs, into the release.
func (f *actionFixture) publish(t *testing.T, binary []byte, checksums string, key keyPair) {
	t.Helper()
	f.server.put(t, f.version, f.file, binary, 0o644)
	f.server.put(t, f.version, "checksums.txt", []byte(checksums), 0o644)
	sums := filepath.Join(f.server.dir, f.version, "checksums.txt")
	res := harness.RunEnv(t, []string{"COSIGN_PASSWORD=" + key.password, "COSIGN_YES=true", "TUF_ROOT=" + t.TempDir()}, harness.Tool(t, "cosign"),
		"sign-blob", "--key", key.key, "--tlog-upload=false", "--output-signature", sums+".sig", sums)
	if res.Code != 0 {
		t.Fatalf("cosign sign-blob: %s", res.Stderr)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// job runs the stamped action to sign tag with the given job environment.
func (f *actionFixture) job(t *testing.T, tag string, env []string, inputs map[string]string) (*runner, time.Duration, string) {
	t.Helper()
	return f.jobIn(t, f.dir, tag, env, inputs)
}

// jobIn runs the action in dir.
func (f *actionFixture) jobIn(t *testing.T, dir, tag string, env []string, inputs map[string]string) (*runner, time.Duration, string) {
	t.Helper()
	in := map[string]string{"reference": f.parent + ":" + tag, "from": f.refs, "key": f.signer.key, "password": f.signer.password,
		"release-url": f.server.url, "format": "legacy", "tlog-upload": "false"}
	for k, v := range inputs {
		in[k] = v
	}
	r := newRunner(t, dir, in, append(append(env, f.runner...), "COSIGN_PASSWORD="))
	t0 := f.reg.mark()
	failed := r.run()
	return r, f.reg.since(t0), failed
}

// noGoPath is PATH without the directory that holds go: the job has no
// compiler to reach for.
func noGoPath(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		return os.Getenv("PATH")
	}
	goDir, _ := filepath.EvalSymlinks(filepath.Dir(goBin))
	var keep []string
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if e, _ := filepath.EvalSymlinks(d); e != goDir && d != filepath.Dir(goBin) {
			keep = append(keep, d)
		}
	}
	return strings.Join(keep, string(os.PathListSeparator))
}

// TestActionRunsTheRelease runs the action as a runner would with the
// release served from loopback: it installs the released binary (checked
// against the sum its commit pins and the release key's signature over
// checksums.txt), compiles nothing — the cold job has no Go on PATH and an
// empty Go cache, and leaves it empty — and signs the tree. It measures the
// time from the start of the job to the first registry request, cold and
// warm, and beside them the source build the action falls back to.
func TestActionRunsTheRelease(t *testing.T) {
	f := newActionFixture(t)
	cold := t.TempDir()
	jobs := []struct {
		name   string
		env    []string
		inputs map[string]string
	}{
		{"cold Go cache, no Go on PATH", []string{"PATH=" + noGoPath(t), "GOCACHE=" + filepath.Join(cold, "go-build"), "GOMODCACHE=" + filepath.Join(cold, "mod")}, nil},
		{"warm Go cache", nil, nil},
	}
	for i, j := range jobs {
		r, first, failed := f.job(t, fmt.Sprintf("v%d", i+1), j.env, j.inputs)
		if failed != "" {
			t.Fatalf("%s: %s", j.name, failed)
		}
		t.Logf("action, released binary, %s: first registry request %s after the job started (steps: %v)", j.name, first.Round(time.Millisecond), r.took)
		if first < 0 {
			t.Errorf("%s: no registry request", j.name)
		}
		if got := r.outputs["install"]["path"]; got != filepath.Join(r.temp, "nestattest-"+f.version, f.file) {
			t.Errorf("%s: installed %q", j.name, got)
		}
		if _, built := r.outputs["build"]; built || strings.Contains(strings.Join(r.ran, ","), "Build") || strings.Contains(strings.Join(r.ran, ","), "Set up Go") {
			t.Errorf("%s: the action built nestattest (steps %v)", j.name, r.ran)
		}
		if out := r.outputs["sign"]; out["nodes"] != "13" || out["failed"] != "0" || out["digest"] == "" {
			t.Errorf("%s: sign outputs %v", j.name, out)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(cold, "go-build")); len(entries) > 0 {
		t.Errorf("the cold job filled the Go cache: %d entries; it compiled something", len(entries))
	}
	res := harness.Run(t, harness.Binary(t), "verify", "--key", f.signer.pub, "--insecure-ignore-tlog", "--require-root", f.parent+":v2")
	if res.Code != 0 {
		t.Errorf("verify what the action signed: %s%s", res.Stdout, res.Stderr)
	}

	// Beside it: the source build the action falls back to (the action at
	// the repository root, its own source), warm cache.
	r, first, failed := f.jobIn(t, repoRoot(t), "v3", nil, map[string]string{"install": "source"})
	if failed != "" {
		t.Fatalf("source build: %s", failed)
	}
	t.Logf("action, source build (install: source), warm Go cache: first registry request %s after the job started (steps: %v)", first.Round(time.Millisecond), r.took)
}

// TestActionRefusesATamperedRelease: a binary that is not what the pinned
// commit names is never run — whether the release's checksums.txt still
// names the real sum, was changed to name the tampered binary (its
// signature no longer holds), was signed again with another key, or was
// signed by the release key itself for another binary. The install step
// fails, the tampered binary (a script that would leave a mark) never ran,
// and nothing reached the registry.
func TestActionRefusesATamperedRelease(t *testing.T) {
	f := newActionFixture(t)
	mark := filepath.Join(t.TempDir(), "ran")
	tampered := []byte("#!/bin/sh\ntouch " + mark + "\n")
	sum := sha256.Sum256(tampered)
	good := sha256.Sum256(f.binary)
	other := newKeyPair(t)
	for _, c := range []struct {
		name, checksums string
		key             keyPair
		want            string
	}{
		{"the binary replaced", fmt.Sprintf("%x  %s\n", good, f.file), f.key, "refusing to run it"},
		{"checksums.txt changed to match", fmt.Sprintf("%x  %s\n", sum, f.file), keyPair{}, "not signed by the nestattest release key"},
		{"checksums.txt signed by another key", fmt.Sprintf("%x  %s\n", sum, f.file), other, "not signed by the nestattest release key"},
		{"checksums.txt signed by the release key for another binary", fmt.Sprintf("%x  %s\n", sum, f.file), f.key, "this commit of the action pins"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.publish(t, f.binary, fmt.Sprintf("%x  %s\n", good, f.file), f.key) // the real release
			if c.key.key != "" {
				f.publish(t, tampered, c.checksums, c.key)
			} else {
				f.server.put(t, f.version, f.file, tampered, 0o755)
				f.server.put(t, f.version, "checksums.txt", []byte(c.checksums), 0o644)
			}
			r, first, failed := f.job(t, "tampered", nil, nil)
			if failed == "" || !strings.Contains(failed, c.want) {
				t.Fatalf("the action did not refuse (%q): %s", c.want, failed)
			}
			if _, err := os.Stat(mark); err == nil {
				t.Error("the tampered binary ran")
			}
			if first >= 0 {
				t.Errorf("a registry request %s after the job started", first)
			}
			if len(r.ran) != 1 {
				t.Errorf("steps after the refusal ran: %v", r.ran)
			}
			t.Logf("refused: %s", lastLine(failed))
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
