package release

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// goModules are the repository's Go modules that `go mod tidy` must leave
// as they are: the main module, and ship/triggers, the Tekton Triggers
// samples' tests, a module of its own so that the main module does not
// require tektoncd/triggers (ship/triggers/doc.go says why). The modules of
// test/consumers require what their upstreams' go.mod files name and are
// built by test/consumers/build.sh, with gigabytes of modules of their own:
// they are not checked here.
var goModules = []string{".", "ship/triggers"}

// tidyModules are the modules `go mod tidy` must leave as they are whose
// versions may differ from the main module's: ship/conforma, whose OPA
// requires newer versions of eight modules the main module has (it is a
// module of its own so that the main module does not take them).
var tidyModules = []string{"ship/conforma"}

// goCmd runs the go command in dir, outside any go.work, with extra
// environment; it returns what it printed and its error.
func goCmd(dir string, env []string, args ...string) (string, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "GOWORK=off"), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// requirements reads the require lines of a go.mod: module path to
// version.
func requirements(t *testing.T, gomod string) map[string]string {
	t.Helper()
	out, err := goCmd(filepath.Dir(gomod), nil, "mod", "edit", "-json", gomod)
	if err != nil {
		t.Fatalf("go mod edit -json %s: %v\n%s", gomod, err, out)
	}
	var mod struct {
		Require []struct{ Path, Version string }
	}
	if err := json.Unmarshal([]byte(out), &mod); err != nil {
		t.Fatalf("go mod edit -json %s: %v", gomod, err)
	}
	req := map[string]string{}
	for _, r := range mod.Require {
		req[r.Path] = r.Version
	}
	return req
}

// versionDrift lists the modules both go.mod files require, each at its
// own version.
func versionDrift(mainReq, nested map[string]string) []string {
	var out []string
	for path, v := range nested {
		if mv, ok := mainReq[path]; ok && mv != v {
			out = append(out, fmt.Sprintf("%s %s (the main module: %s)", path, v, mv))
		}
	}
	slices.Sort(out)
	return out
}

// TestGoModTidy: `go mod tidy` works in the main module, in ship/triggers
// and in ship/conforma and changes nothing in any (`go mod tidy -diff`), so a
// contributor's first `go mod tidy` works; and every module both require
// is at the main module's version in ship/triggers, so its tests compile
// against what the main module's do and share their compiled packages in
// the build cache. The go command reads what it needs from the module
// cache; only modules missing there are fetched (GOPROXY), as for go test.
func TestGoModTidy(t *testing.T) {
	root := repoRoot(t)
	for _, dir := range append(slices.Clone(goModules), tidyModules...) {
		t.Run(dir, func(t *testing.T) {
			if out, err := goCmd(filepath.Join(root, dir), nil, "mod", "tidy", "-diff"); err != nil {
				t.Errorf("%s: go mod tidy -diff: %v (run go mod tidy there and commit go.mod and go.sum)\n%s", dir, err, out)
			}
		})
	}
	mainReq := requirements(t, filepath.Join(root, "go.mod"))
	for _, dir := range goModules[1:] {
		for _, d := range versionDrift(mainReq, requirements(t, filepath.Join(root, dir, "go.mod"))) {
			t.Errorf("%s/go.mod requires %s: use the main module's version", dir, d)
		}
	}
}

// TestGoModTidyCatches: the checks of TestGoModTidy fail on a copy of
// ship/triggers whose go.mod drops knative.dev/eventing v0.49.2 (tidy
// fails: tektoncd/triggers' tests import knative.dev/eventing v0.30.3's
// pkg/reconciler/source, which needs knative.dev/pkg/metrics), requires a
// module it does not use (a diff), or requires k8s.io/api at another
// version than the main module. Tidy runs first on the copy as it is, which
// passes. As in TestGoModTidy, the go command fetches what the module cache
// lacks: on a fresh machine a changed go.mod needs go.mod files that the
// module as it is never loads (with GOPROXY=off, a cold cache failed both
// cases with "module lookup disabled", not with what they catch).
func TestGoModTidyCatches(t *testing.T) {
	root := repoRoot(t)
	if out, err := goCmd(copyModule(t, filepath.Join(root, "ship", "triggers"), "", ""), nil, "mod", "tidy", "-diff"); err != nil {
		t.Fatalf("go mod tidy -diff on ship/triggers as it is: %v\n%s", err, out)
	}
	for _, c := range []struct {
		name, old, new, want string
	}{
		{"eventing dropped", "require knative.dev/eventing v0.49.2 // indirect\n", "", "knative.dev/pkg/metrics"},
		{"a module not used", "\tgithub.com/tektoncd/triggers v0.33.0\n", "\tgithub.com/tektoncd/triggers v0.33.0\n\tgithub.com/spf13/cobra v1.10.2\n", "-\tgithub.com/spf13/cobra v1.10.2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := copyModule(t, filepath.Join(root, "ship", "triggers"), c.old, c.new)
			out, err := goCmd(dir, nil, "mod", "tidy", "-diff")
			if err == nil || !strings.Contains(out, c.want) {
				t.Errorf("go mod tidy -diff: %v, want a failure naming %q\n%s", err, c.want, out)
			}
		})
	}
	t.Run("another version", func(t *testing.T) {
		dir := copyModule(t, filepath.Join(root, "ship", "triggers"), "\tk8s.io/api v0.35.6\n", "\tk8s.io/api v0.35.5\n")
		drift := versionDrift(requirements(t, filepath.Join(root, "go.mod")), requirements(t, filepath.Join(dir, "go.mod")))
		if want := []string{"k8s.io/api v0.35.5 (the main module: v0.35.6)"}; !slices.Equal(drift, want) {
			t.Errorf("drift %q, want %q", drift, want)
		}
	})
}

// copyModule copies a module's go.mod, go.sum and Go files into a new
// directory, with old replaced by new in its go.mod.
func copyModule(t *testing.T, src, old, new string) string {
	t.Helper()
	dst := t.TempDir()
	files, err := filepath.Glob(filepath.Join(src, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range append(files, filepath.Join(src, "go.mod"), filepath.Join(src, "go.sum")) {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(f) == "go.mod" {
			if !bytes.Contains(raw, []byte(old)) {
				t.Fatalf("%s has no %q", f, old)
			}
			raw = bytes.Replace(raw, []byte(old), []byte(new), 1)
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}
