package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/nestattest/nestattest/test/harness"
)

// shardWorkflowSample is the sharded GitHub Actions workflow sample.
const shardWorkflowSample = "docs/samples/github-sharded-workflow.yml"

// workflow is the part of a GitHub Actions workflow the runner below runs.
type workflow struct {
	Env  map[string]string
	Jobs map[string]struct {
		Needs    any // a job id or a list of them
		Outputs  map[string]string
		Strategy struct {
			Matrix map[string]any
		}
		Env   map[string]string
		Steps []workflowStep
	}
}

type workflowStep struct {
	ID, Name, Uses, Run, Shell, If string
	With                           map[string]string
	Env                            map[string]string
}

// workflowRunner runs a workflow's jobs as GitHub's runners would, each
// job (each matrix combination) on a machine of its own: its own
// workspace, RUNNER_TEMP, $GITHUB_ENV and $GITHUB_PATH. The actions the
// steps use are the runner's: actions/checkout lays this repository where
// its path says, actions/setup-go is the machine's Go. Every run step runs,
// with bash as the runner runs it.
type workflowRunner struct {
	wf      workflow
	inputs  map[string]string
	secrets map[string]string
	vars    map[string]string
	github  map[string]string
	outputs map[string]map[string]string   // job: outputs
	matrix  map[string][]map[string]string // job: the combinations it ran
}

// expression is the one expression form the sample uses: ${{ x.y.z }}, or
// fromJSON(x.y.z) in a matrix.
var expression = regexp.MustCompile(`\$\{\{\s*(fromJSON\()?([a-zA-Z_][\w.-]*)\)?\s*\}\}`)

// eval evaluates the expressions in s for a job with the matrix values m
// and the step outputs steps.
func (r *workflowRunner) eval(t *testing.T, s string, m map[string]string, steps map[string]map[string]string) string {
	t.Helper()
	return expression.ReplaceAllStringFunc(s, func(e string) string {
		sub := expression.FindStringSubmatch(e)
		if sub[1] != "" {
			t.Fatalf("%s: fromJSON only in a matrix", e)
		}
		return r.lookup(t, sub[2], m, steps)
	})
}

func (r *workflowRunner) lookup(t *testing.T, path string, m map[string]string, steps map[string]map[string]string) string {
	t.Helper()
	ctx, rest, _ := strings.Cut(path, ".")
	get := func(vals map[string]string, key string) string {
		v, ok := vals[key]
		if !ok {
			t.Fatalf("${{ %s }}: not set", path)
		}
		return v
	}
	switch ctx {
	case "inputs":
		return get(r.inputs, rest)
	case "secrets":
		return get(r.secrets, rest)
	case "vars":
		return get(r.vars, rest)
	case "github":
		return get(r.github, rest)
	case "matrix":
		return get(m, rest)
	case "steps", "needs":
		id, key, ok := strings.Cut(rest, ".outputs.")
		if !ok {
			break
		}
		if ctx == "steps" {
			return steps[id][key] // a step output not written is empty
		}
		return get(r.outputs[id], key)
	}
	t.Fatalf("${{ %s }}: a context this runner does not know", path)
	return ""
}

// needs lists a job's needs.
func needs(v any) []string {
	switch n := v.(type) {
	case string:
		return []string{n}
	case []any:
		var out []string
		for _, s := range n {
			out = append(out, s.(string))
		}
		return out
	}
	return nil
}

// order is the jobs in an order their needs allow.
func (r *workflowRunner) order(t *testing.T) []string {
	t.Helper()
	var out []string
	done := map[string]bool{}
	for len(out) < len(r.wf.Jobs) {
		progress := false
		for _, id := range sortedKeys(r.wf.Jobs) {
			if done[id] || slices.ContainsFunc(needs(r.wf.Jobs[id].Needs), func(n string) bool { return !done[n] }) {
				continue
			}
			done[id], progress = true, true
			out = append(out, id)
		}
		if !progress {
			t.Fatal("the jobs' needs form a cycle or name a job that is not there")
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// combinations expands a job's strategy.matrix: one key, its values a
// list or fromJSON of an output.
func (r *workflowRunner) combinations(t *testing.T, matrix map[string]any) []map[string]string {
	t.Helper()
	if len(matrix) == 0 {
		return []map[string]string{nil}
	}
	if len(matrix) != 1 {
		t.Fatalf("matrix %v: this runner expands one key", matrix)
	}
	var out []map[string]string
	for key, v := range matrix {
		s, ok := v.(string)
		sub := expression.FindStringSubmatch(s)
		if !ok || sub == nil || sub[1] == "" {
			t.Fatalf("matrix.%s = %v: want ${{ fromJSON(...) }}", key, v)
		}
		var values []string
		if err := json.Unmarshal([]byte(r.lookup(t, sub[2], nil, nil)), &values); err != nil {
			t.Fatalf("matrix.%s: fromJSON(%s): %v", key, sub[2], err)
		}
		for _, val := range values {
			out = append(out, map[string]string{key: val})
		}
	}
	return out
}

// run runs every job, its matrix combinations one after another.
func (r *workflowRunner) run(t *testing.T) {
	t.Helper()
	for _, id := range r.order(t) {
		job := r.wf.Jobs[id]
		r.outputs[id] = map[string]string{}
		for _, m := range r.combinations(t, job.Strategy.Matrix) {
			r.matrix[id] = append(r.matrix[id], m)
			steps := r.runJob(t, id, m)
			for k, v := range job.Outputs {
				r.outputs[id][k] = r.eval(t, v, m, steps)
			}
		}
	}
}

// runJob runs one job's steps on a machine of its own and returns its
// steps' outputs.
func (r *workflowRunner) runJob(t *testing.T, id string, m map[string]string) map[string]map[string]string {
	t.Helper()
	job := r.wf.Jobs[id]
	workspace, temp := t.TempDir(), t.TempDir()
	envFile, pathFile := filepath.Join(temp, "env"), filepath.Join(temp, "path")
	steps := map[string]map[string]string{}
	for i, s := range job.Steps {
		name := r.eval(t, s.Name, m, steps)
		switch {
		case s.If != "":
			t.Fatalf("job %s step %d: `if:` is not something this runner evaluates", id, i)
		case strings.HasPrefix(s.Uses, "actions/checkout@"):
			if s.With["repository"] != "nestattest/nestattest" || s.With["path"] == "" {
				t.Fatalf("job %s: checkout of %v: want nestattest/nestattest into a path", id, s.With)
			}
			if err := os.Symlink(shipRoot(t), filepath.Join(workspace, s.With["path"])); err != nil {
				t.Fatal(err)
			}
			continue
		case strings.HasPrefix(s.Uses, "actions/setup-go@"):
			continue // the machine's Go
		case s.Uses != "":
			t.Fatalf("job %s: uses %s, which this runner does not stand in for", id, s.Uses)
		}
		if s.Shell != "" && s.Shell != "bash" {
			t.Fatalf("job %s step %q: shell %q", id, name, s.Shell)
		}
		out := filepath.Join(t.TempDir(), "output")
		env := []string{"GITHUB_OUTPUT=" + out, "GITHUB_ENV=" + envFile, "GITHUB_PATH=" + pathFile,
			"GITHUB_STEP_SUMMARY=" + filepath.Join(temp, "summary.md"), "RUNNER_TEMP=" + temp, "GITHUB_WORKSPACE=" + workspace,
			"GITHUB_ACTIONS=true", "PATH=" + r.path(t, pathFile)}
		for _, scope := range []map[string]string{r.wf.Env, job.Env, r.fileEnv(t, envFile), s.Env} {
			for k, v := range scope {
				env = append(env, k+"="+r.eval(t, v, m, steps))
			}
		}
		script := filepath.Join(t.TempDir(), "step.sh")
		if err := os.WriteFile(script, []byte("cd \"$GITHUB_WORKSPACE\"\n"+s.Run), 0o755); err != nil {
			t.Fatal(err)
		}
		res := harness.RunEnv(t, env, "/bin/bash", "--noprofile", "--norc", "-eo", "pipefail", script)
		t.Logf("job %s %v step %q: exit %d\n%s%s", id, m, name, res.Code, res.Stdout, lastLines(res.Stderr, 5))
		if res.Code != 0 {
			t.Fatalf("job %s %v step %q: exit %d\n%s%s", id, m, name, res.Code, res.Stdout, res.Stderr)
		}
		if s.ID != "" {
			steps[s.ID] = shipParseOutputs(t, out)
		}
	}
	return steps
}

// path is the machine's PATH with what the steps added to $GITHUB_PATH
// before it.
func (r *workflowRunner) path(t *testing.T, file string) string {
	b, _ := os.ReadFile(file)
	var dirs []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			dirs = append([]string{l}, dirs...)
		}
	}
	return strings.Join(append(dirs, os.Getenv("PATH")), string(os.PathListSeparator))
}

// fileEnv is what the steps wrote to $GITHUB_ENV.
func (r *workflowRunner) fileEnv(t *testing.T, file string) map[string]string {
	if _, err := os.Stat(file); err != nil {
		return nil
	}
	return shipParseOutputs(t, file)
}

// TestShardWorkflowSample runs the sharded workflow sample's jobs as
// GitHub's runners would against a real registry: plan, then one sign job
// per shard id from the plan job's output, then verify. Every node is
// signed exactly once and the whole tree verifies.
func TestShardWorkflowSample(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(shipRoot(t), shardWorkflowSample))
	if err != nil {
		t.Fatal(err)
	}
	var wf workflow // on, permissions and runs-on are the platform's, not read here
	if err := yaml.Unmarshal(raw, &wf); err != nil {
		t.Fatalf("%s: %v", shardWorkflowSample, err)
	}
	reg := harness.Distribution(t, harness.DistributionOptions{SparseIndexes: true})
	tag := shardPush(t, reg, reg.Host, 4, 3, "org/workflow")[0]
	k := newKeyPair(t, "cosign")
	key, err := os.ReadFile(k.key)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(k.pub)
	if err != nil {
		t.Fatal(err)
	}
	r := &workflowRunner{
		wf:      wf,
		inputs:  map[string]string{"reference": tag, "shards": "3"},
		secrets: map[string]string{"COSIGN_PRIVATE_KEY": string(key), "COSIGN_PASSWORD": k.password, "GITHUB_TOKEN": "ghs_test-token"},
		vars:    map[string]string{"COSIGN_PUBLIC_KEY": string(pub)},
		github:  map[string]string{"actor": "octocat"},
		outputs: map[string]map[string]string{},
		matrix:  map[string][]map[string]string{},
	}
	r.run(t)

	plan := r.outputs["plan"]
	if !strings.Contains(plan["plan"], "@sha256:") || plan["shards"] != `["0","1","2"]` {
		t.Errorf("plan job outputs %v", plan)
	}
	var ran []string
	for _, m := range r.matrix["sign"] {
		ran = append(ran, m["shard"])
	}
	if !slices.Equal(ran, []string{"0", "1", "2"}) {
		t.Errorf("sign jobs ran for shards %v, want 0, 1, 2", ran)
	}
	root := treeOf(t, tag).Nodes[0]
	if got := r.outputs["verify"]; got["digest"] != root.Digest || got["reference"] != strings.TrimSuffix(tag, ":latest")+"@"+root.Digest {
		t.Errorf("verify job outputs %v, want digest %s", got, root.Digest)
	}
	nodes := treeOf(t, tag).refs()
	for n, l := range layers(t, nodes, reg.Host, reg.Host) {
		if l != [2]int{1, 1} {
			t.Errorf("%s: %d signature and %d attestation layers, want exactly 1 and 1", n, l[0], l[1])
		}
	}
	if d, res := verifyTree(t, k.pub, tag); res.Code != 0 || d.Summary.Passed != len(nodes) {
		t.Errorf("verify: exit %d, %+v", res.Code, d.Summary)
	}
}
