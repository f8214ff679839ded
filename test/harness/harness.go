package harness

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// missing skips or fails a test that lacks a tool, as NESTATTEST_E2E says.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("NESTATTEST_E2E") == "require" {
		t.Fatalf(format+" (NESTATTEST_E2E=require; run `make tools`)", args...)
	}
	t.Skipf(format+" (run `make tools`, or `make test` for the whole suite)", args...)
}

// ModuleRoot returns the directory of the nestattest module.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	rootOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			rootErr = err
			return
		}
		root = filepath.Dir(strings.TrimSpace(string(out)))
	})
	if rootErr != nil || root == "." || root == "" {
		t.Fatalf("module root: %v", rootErr)
	}
	return root
}

var (
	rootOnce sync.Once
	root     string
	rootErr  error
)

// Tools returns the directory holding the pinned tool binaries.
func Tools(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("NESTATTEST_TOOLS"); d != "" {
		return d
	}
	return filepath.Join(ModuleRoot(t), ".tools", "bin")
}

// Tool returns the path of one pinned tool: registry, cosign, crane, oras.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(Tools(t), name)
	if _, err := os.Stat(p); err != nil {
		missing(t, "tool %s not found at %s", name, p)
	}
	return p
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary builds ./cmd/nestattest once per test process and returns its
// path.
func Binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nestattest-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "nestattest")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/nestattest")
		cmd.Dir = ModuleRoot(t)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			binErr = errors.New(err.Error() + ": " + stderr.String())
		}
	})
	if binErr != nil {
		t.Fatalf("build nestattest: %v", binErr)
	}
	return binPath
}

// Result is what a command did.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs bin with args and returns its output and exit code.
func Run(t testing.TB, bin string, args ...string) Result {
	t.Helper()
	return RunEnv(t, nil, bin, args...)
}

// RunEnv runs bin with args and extra environment variables (KEY=value)
// after the test process's own.
func RunEnv(t testing.TB, env []string, bin string, args ...string) Result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.Code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run %s: %v", filepath.Base(bin), err)
	}
	return r
}
