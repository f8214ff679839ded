package e2e

import (
	"bufio"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/nestattest/nestattest/test/harness"
)

// shipAction is the part of action.yml these tests read.
type shipAction struct {
	Inputs map[string]struct {
		Required bool
		Default  string
	}
	Outputs map[string]struct{ Value string }
	Runs    struct {
		Using string
		Steps []shipActionStep
	}
}

type shipActionStep struct {
	ID    string
	Name  string
	If    string
	Uses  string
	Shell string
	Env   map[string]string
	Run   string
}

// shipRoot is the repository root: go test runs this package in test/e2e.
func shipRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func shipLoadAction(t *testing.T) shipAction {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(shipRoot(t), "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var a shipAction
	if err := yaml.Unmarshal(raw, &a); err != nil {
		t.Fatalf("action.yml: %v", err)
	}
	if a.Runs.Using != "composite" {
		t.Fatalf("action.yml runs.using %q, want composite", a.Runs.Using)
	}
	return a
}

// shipInputFlags says what each input of action.yml becomes on the
// `nestattest sign` command line: a flag, or (for the few that are not
// flags) what stands for it.
var shipInputFlags = map[string]string{
	"reference":               "REF",
	"children":                "--child",
	"from":                    "--from",
	"discover":                "--discover",
	"child-tag":               "--child-tag",
	"mirror":                  "--mirror",
	"key":                     "--key",
	"private-key":             "--key",
	"password":                "COSIGN_PASSWORD",
	"predicate":               "--predicate",
	"type":                    "--type",
	"builder-id":              "--builder-id",
	"annotations":             "--annotations",
	"report":                  "--report",
	"allow-insecure-registry": "--allow-insecure-registry",
	"allow-missing":           "--allow-missing",
	"jobs":                    "--jobs",
	"format":                  "--format",
	"tlog-upload":             "--tlog-upload",
	"tuf-mirror":              "--tuf-mirror",
	"tuf-root":                "--tuf-root",
	"images":                  "--images",
	"statements":              "--statements",
	"sbom":                    "--sbom",
	"vsa-key":                 "--vsa-key",
	"vsa-keyless":             "--vsa-keyless",
	"install":                 "the binary",
	"release-url":             "the binary",
	"nestattest-path":         "the binary",
}

// shipSignFlags lists the long flags `nestattest sign --help` shows.
func shipSignFlags(t *testing.T) map[string]bool {
	t.Helper()
	r := harness.Run(t, harness.Binary(t), "sign", "--help")
	if r.Code != 0 {
		t.Fatalf("sign --help: %d %s", r.Code, r.Stderr)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)`).FindAllStringSubmatch(r.Stdout, -1) {
		flags[m[1]] = true
	}
	return flags
}

// TestActionInputsAreSignFlags: every input of action.yml is one of sign's
// flags (or the reference, the password, the binary), the sign step passes
// it, and it reaches the step only through the environment.
func TestActionInputsAreSignFlags(t *testing.T) {
	a := shipLoadAction(t)
	flags := shipSignFlags(t)
	sign := shipStep(t, a, "sign")
	for in := range a.Inputs {
		flag, ok := shipInputFlags[in]
		if !ok {
			t.Errorf("input %s maps to no flag of nestattest sign", in)
			continue
		}
		env := "INPUT_" + strings.ToUpper(strings.ReplaceAll(in, "-", "_"))
		if strings.HasPrefix(flag, "--") {
			if !flags[flag] {
				t.Errorf("input %s: nestattest sign has no %s flag", in, flag)
			}
			if !strings.Contains(sign.Run, flag) || !strings.Contains(sign.Run, "$"+env) {
				t.Errorf("input %s: the sign step does not pass $%s as %s", in, env, flag)
			}
		}
		if flag != "the binary" && sign.Env[env] != "${{ inputs."+in+" }}" {
			t.Errorf("input %s: env %s = %q, want ${{ inputs.%s }}", in, env, sign.Env[env], in)
		}
	}
	for _, s := range a.Runs.Steps {
		if strings.Contains(s.Run, "${{") {
			t.Errorf("step %s splices an expression into its script; pass it through env", s.Name)
		}
	}
}

func shipStep(t *testing.T, a shipAction, id string) shipActionStep {
	t.Helper()
	for _, s := range a.Runs.Steps {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("action.yml has no step %s", id)
	return shipActionStep{}
}

// shipExpr is the only expression form the action's env and outputs use.
var shipExpr = regexp.MustCompile(`^\$\{\{ ([a-z_]+)\.([a-z_.-]+) \}\}$`)

// shipRunner runs a composite action's run steps as the runner does: each
// step's env evaluated, its own $GITHUB_OUTPUT, one $GITHUB_STEP_SUMMARY.
type shipRunner struct {
	inputs  map[string]string
	github  map[string]string
	outputs map[string]map[string]string // step id: outputs
	temp    string
	summary string
	env     []string // the job's environment
}

func (r *shipRunner) eval(t *testing.T, s string) string {
	t.Helper()
	if !strings.Contains(s, "${{") {
		return s
	}
	m := shipExpr.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("expression %q: not a form this runner evaluates", s)
	}
	switch m[1] {
	case "inputs":
		return r.inputs[m[2]]
	case "github":
		return r.github[m[2]]
	case "runner":
		if m[2] == "temp" {
			return r.temp
		}
	case "steps":
		id, key, ok := strings.Cut(m[2], ".outputs.")
		if ok {
			return r.outputs[id][key]
		}
	}
	t.Fatalf("expression %q: unknown context", s)
	return ""
}

// run runs every run step; uses steps (setup-go) are the runner's: the
// machine's Go stands for them.
func (r *shipRunner) run(t *testing.T, a shipAction) harness.Result {
	t.Helper()
	var last harness.Result
	for _, s := range a.Runs.Steps {
		if s.Run == "" {
			continue
		}
		if s.Shell != "bash" {
			t.Fatalf("step %s: shell %q, want bash", s.Name, s.Shell)
		}
		out := filepath.Join(t.TempDir(), "output")
		env := append([]string{"GITHUB_OUTPUT=" + out, "GITHUB_STEP_SUMMARY=" + r.summary, "RUNNER_TEMP=" + r.temp}, r.env...)
		for k, v := range s.Env {
			env = append(env, k+"="+r.eval(t, v))
		}
		script := filepath.Join(t.TempDir(), "step.sh")
		if err := os.WriteFile(script, []byte(s.Run), 0o755); err != nil {
			t.Fatal(err)
		}
		// As the runner runs shell: bash.
		last = harness.RunEnv(t, env, "/bin/bash", "--noprofile", "--norc", "-eo", "pipefail", script)
		if last.Code != 0 {
			t.Fatalf("step %s: exit %d\n%s%s", s.Name, last.Code, last.Stdout, last.Stderr)
		}
		r.outputs[s.ID] = shipParseOutputs(t, out)
	}
	return last
}

// shipParseOutputs reads a $GITHUB_OUTPUT file: name=value lines and
// name<<DELIMITER blocks.
func shipParseOutputs(t *testing.T, path string) map[string]string {
	t.Helper()
	out := map[string]string{}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if k, delim, ok := strings.Cut(line, "<<"); ok && !strings.Contains(k, "=") {
			var v []string
			for sc.Scan() && sc.Text() != delim {
				v = append(v, sc.Text())
			}
			out[k] = strings.Join(v, "\n")
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			out[k] = v
			continue
		}
		t.Errorf("GITHUB_OUTPUT line %q is neither name=value nor name<<DELIMITER", line)
	}
	return out
}

// TestActionSignsAndWritesEveryOutput runs action.yml's steps as a runner
// would, the action's own source built by its install step, against the
// real registry: compose from the references ko wrote, sign, and every
// declared output comes out of $GITHUB_OUTPUT.
func TestActionSignsAndWritesEveryOutput(t *testing.T) {
	reg := harness.Distribution(t, harness.DistributionOptions{})
	ko := catalogKo(t, reg, "org/ko-build", "app1", "app2", "app3")
	k := newKeyPair(t, "cosign")
	a := shipLoadAction(t)
	report := filepath.Join(t.TempDir(), "report.json")
	r := &shipRunner{
		inputs:  map[string]string{},
		github:  map[string]string{"action_path": shipRoot(t), "action_ref": "v0.0.0-action-test"},
		outputs: map[string]map[string]string{},
		temp:    t.TempDir(),
		summary: filepath.Join(t.TempDir(), "summary.md"),
	}
	for name, in := range a.Inputs {
		r.inputs[name] = in.Default
	}
	// The summaries' key: another key pair, with the same password.
	vsaKey := newKeyPair(t, "cosign")
	for name, v := range map[string]string{"reference": ko.Tag, "from": ko.RefsFile + "\n", "key": k.key, "password": k.password, "report": report, "tlog-upload": "false",
		"vsa-key": vsaKey.key} {
		r.inputs[name] = v
	}
	r.run(t, a)
	if v := r.outputs["build"]["path"]; !strings.HasPrefix(v, r.temp) {
		t.Errorf("the build step built %q, not into $RUNNER_TEMP", v)
	}
	got := map[string]string{}
	for name, o := range a.Outputs {
		got[name] = r.eval(t, o.Value)
		if got[name] == "" {
			t.Errorf("output %s (%s) was not written", name, o.Value)
		}
	}
	tree := treeOf(t, ko.Tag)
	root := tree.Nodes[0]
	// images: every node below the parent, in its own repository, as
	// Tekton Chains' IMAGES result takes them (no Tekton limit here).
	if below := tree.refs()[1:]; got["images"] != strings.Join(below, ",") {
		t.Errorf("output images = %q, want the 9 nodes below the parent %q", got["images"], strings.Join(below, ","))
	}
	want := map[string]string{"url": ko.Tag, "digest": root.Digest, "reference": ko.Parent.Name() + "@" + root.Digest,
		"nodes": "10", "written": "10", "present": "0", "failed": "0"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("output %s = %q, want %q", k, got[k], v)
		}
	}
	summary, err := os.ReadFile(r.summary)
	if err != nil || !strings.Contains(string(summary), "| path | digest |") || !strings.Contains(string(summary), "| verification summary |") ||
		!strings.Contains(string(summary), "verification summaries: 10 nodes, 10 written, 0 present, 0 failed") {
		t.Errorf("step summary: %v, want a verification summary column\n%s", err, summary)
	}
	if _, err := os.Stat(report); err != nil {
		t.Errorf("report: %v", err)
	}
	cosignVerify(t, k.pub, ko.Parent.Name()+"@"+root.Digest)
	// vsa-key: every node's summary, PASSED, signed by that key.
	for _, ref := range tree.refs() {
		for _, tool := range []string{"cosign", "cosign3"} {
			a := harness.RunEnv(t, []string{"TUF_ROOT=" + t.TempDir()}, harness.Tool(t, tool), "verify-attestation", "--key", vsaKey.pub,
				"--type", "https://slsa.dev/verification_summary/v1", "--insecure-ignore-tlog", "--allow-insecure-registry", ref)
			if a.Code != 0 || !strings.Contains(string(firstPayload(t, a.Stdout)), `"verificationResult":"PASSED"`) {
				t.Errorf("%s verify-attestation --type https://slsa.dev/verification_summary/v1 %s: exit %d\n%s%s", tool, ref, a.Code, a.Stdout, a.Stderr)
			}
		}
	}
	t.Logf("action with vsa-key: cosign v2.6.5 and v3.1.3 verify a PASSED summary on each of %d nodes; the step summary has a verification summary column", len(tree.refs()))

	// Again, the key given as content, the children named one by one: the
	// same parent, nothing written, the key file gone after the step.
	key, err := os.ReadFile(k.key)
	if err != nil {
		t.Fatal(err)
	}
	var children []string
	for _, ref := range ko.Refs {
		path := strings.TrimPrefix(strings.SplitN(ref, "@", 2)[0], ko.Parent.Name()+"/")
		children = append(children, path+"=@"+strings.SplitN(ref, "@", 2)[1])
	}
	r.inputs["from"], r.inputs["key"], r.inputs["private-key"], r.inputs["children"] = "", "", string(key), strings.Join(children, "\n")
	r.inputs["nestattest-path"] = r.outputs["build"]["path"]
	r.run(t, a)
	if d := r.outputs["sign"]["digest"]; d != root.Digest {
		t.Errorf("second run: digest %s, want %s", d, root.Digest)
	}
	if w := r.outputs["sign"]["written"]; w != "0" {
		t.Errorf("second run wrote %s nodes", w)
	}
	if left, _ := filepath.Glob(filepath.Join(r.temp, "nestattest-key.*")); len(left) > 0 {
		t.Errorf("the private key was left in $RUNNER_TEMP: %v", left)
	}
}

// shipDockerfile is the Dockerfile, as instructions.
type shipDockerfile struct {
	lines []string // instructions, continuation lines joined
}

func shipReadDockerfile(t *testing.T) shipDockerfile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(shipRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var d shipDockerfile
	cur := ""
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		if cur += l; strings.TrimSpace(cur) != "" {
			d.lines = append(d.lines, strings.TrimSpace(cur))
		}
		cur = ""
	}
	return d
}

// stages splits the instructions at each FROM.
func (d shipDockerfile) stages() [][]string {
	var out [][]string
	for _, l := range d.lines {
		if strings.HasPrefix(l, "FROM ") {
			out = append(out, nil)
		}
		if len(out) > 0 {
			out[len(out)-1] = append(out[len(out)-1], l)
		}
	}
	return out
}

func shipInstr(stage []string, op string) []string {
	var out []string
	for _, l := range stage {
		if strings.HasPrefix(l, op+" ") {
			out = append(out, strings.TrimSpace(strings.TrimPrefix(l, op+" ")))
		}
	}
	return out
}

// TestDockerfileBuildsWhatTheREADMEInstalls: the image's build stage
// compiles the package `go install` installs, static, with trimmed paths
// and the version stamped; run here exactly as the stage's RUN line says,
// only the output path moved out of /out. The final stage is a base image
// given as a build argument, runs as a numeric non-root user, carries OCI
// labels, and its entrypoint is the command the Task and StepAction run.
func TestDockerfileBuildsWhatTheREADMEInstalls(t *testing.T) {
	root := shipRoot(t)
	d := shipReadDockerfile(t)
	stages := d.stages()
	if len(stages) != 2 {
		t.Fatalf("%d stages, want build and final", len(stages))
	}
	build, final := stages[0], stages[1]
	for i, s := range stages {
		if from := s[0]; !regexp.MustCompile(`^FROM (--platform=\$BUILDPLATFORM )?\$\{[A-Z_]+\}( AS \w+)?$`).MatchString(from) {
			t.Errorf("stage %d: %q: the base image must be a build argument", i, from)
		}
	}

	// The package the README installs.
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	install := regexp.MustCompile(`go install (github\.com/nestattest/nestattest(/\S*)?)@`).FindSubmatch(readme)
	if install == nil {
		t.Fatal("README.md has no `go install github.com/nestattest/nestattest/...@` line")
	}
	pkg := "." + string(install[2])

	var run string
	for _, r := range shipInstr(build, "RUN") {
		if strings.Contains(r, "go build") {
			run = r
		}
	}
	if run == "" {
		t.Fatal("the build stage has no go build")
	}
	for _, want := range []string{"-trimpath", "-X main.version=${VERSION}", " " + pkg} {
		if !strings.Contains(run, want) {
			t.Errorf("go build line %q lacks %q", run, want)
		}
	}
	if !slices.Contains(shipInstr(build, "ENV"), "CGO_ENABLED=0") {
		t.Error("the build stage does not set CGO_ENABLED=0")
	}
	out := filepath.Join(t.TempDir(), "nestattest")
	moved := strings.Replace(run, "-o /out/nestattest", "-o "+out, 1)
	if moved == run {
		t.Fatalf("go build line %q does not write /out/nestattest, which the final stage copies", run)
	}
	if !slices.ContainsFunc(shipInstr(final, "COPY"), func(c string) bool { return strings.HasPrefix(c, "--from=build /out/nestattest ") }) {
		t.Error("the final stage does not copy /out/nestattest from the build stage")
	}
	cmd := exec.Command("/bin/sh", "-c", moved)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "VERSION=v9.9.9-dockerfile", "TARGETOS=", "TARGETARCH=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sh -c %q: %v\n%s", moved, err, b)
	}
	if r := harness.Run(t, out, "version"); !strings.HasPrefix(r.Stdout, "nestattest v9.9.9-dockerfile ") {
		t.Errorf("version: %q, want the stamped version", r.Stdout)
	}
	info, err := buildinfo.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if info.Path != "github.com/nestattest/nestattest"+string(install[2]) {
		t.Errorf("built %s, the README installs %s", info.Path, install[1])
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["-trimpath"] != "true" || settings["CGO_ENABLED"] != "0" {
		t.Errorf("build settings -trimpath=%q CGO_ENABLED=%q", settings["-trimpath"], settings["CGO_ENABLED"])
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary is dynamically linked (%v)", p.Type)
		}
	}

	// The final stage.
	users := shipInstr(final, "USER")
	if len(users) != 1 || !regexp.MustCompile(`^[1-9][0-9]*(:[0-9]+)?$`).MatchString(users[0]) {
		t.Errorf("USER %v, want one numeric non-root user", users)
	}
	labels := strings.Join(shipInstr(final, "LABEL"), " ")
	for _, l := range []string{"title", "description", "source", "version", "revision", "created"} {
		if !strings.Contains(labels, "org.opencontainers.image."+l+"=") {
			t.Errorf("no org.opencontainers.image.%s label", l)
		}
	}
	entry := shipInstr(final, "ENTRYPOINT")
	if len(entry) != 1 {
		t.Fatalf("ENTRYPOINT %v", entry)
	}
	for _, p := range []string{"task/nestattest/nestattest.yaml", "stepaction/nestattest/nestattest.yaml"} {
		if cmd := shipCommand(t, filepath.Join(root, p)); fmt.Sprintf("[%q]", cmd) != entry[0] {
			t.Errorf("%s runs %q, the image's ENTRYPOINT is %s", p, cmd, entry[0])
		}
	}
}

// shipCommand is the command a Task's (first) step or a StepAction runs.
func shipCommand(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Spec struct {
			Command []string
			Steps   []struct{ Command []string }
		}
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	cmd := doc.Spec.Command
	if len(doc.Spec.Steps) > 0 {
		cmd = doc.Spec.Steps[0].Command
	}
	if len(cmd) != 1 {
		t.Fatalf("%s: command %v", path, cmd)
	}
	return cmd[0]
}

// firstPayload is the first statement cosign verify-attestation printed.
func firstPayload(t *testing.T, stdout string) []byte {
	t.Helper()
	if p := harness.AttestedPayloads(t, stdout); len(p) > 0 {
		return p[0]
	}
	return nil
}
