package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Environment variables the harness reads.
const (
	// EnvTools names the directory of the pinned tool binaries.
	EnvTools = "NESTATTEST_TOOLS"
	// EnvE2E, set to "require", turns a missing tool from a skip into a
	// failure.
	EnvE2E = "NESTATTEST_E2E"
	// EnvBin names a nestattest binary built from this working tree, which
	// Binary then uses instead of building one per test process
	// (test/ci.sh builds it once for every package).
	EnvBin = "NESTATTEST_BIN"
	// EnvToolsPending lists, space-separated, files whose existence means
	// that a build of tools has ended (test/ci.sh: the exit-code files of
	// test/tools.sh and test/consumers/build.sh). With it, tests start
	// while the tools are still being built: Tool waits for a tool that is
	// not there yet until it appears or every build listed has ended.
	EnvToolsPending = "NESTATTEST_TOOLS_PENDING"
)

// Missing skips a test that lacks something it needs (a tool, a package,
// root), or fails it under NESTATTEST_E2E=require, saying what is missing.
func Missing(t testing.TB, what string) { t.Helper(); missing(t, what) }

// missing skips a test that lacks a tool, or fails it under
// NESTATTEST_E2E=require, with the command that provides the tool.
func missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv(EnvE2E) == "require" {
		t.Fatalf("%s; run `make tools` (%s=require makes this a failure)", what, EnvE2E)
		return
	}
	t.Skipf("%s; run `make tools`, or `make test` for the whole suite", what)
}

// moduleRoot is the directory of the nestattest module, from `go env GOMOD`.
var moduleRoot = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a module")
	}
	return filepath.Dir(gomod), nil
})

// Tools returns the directory of the pinned tool binaries: $NESTATTEST_TOOLS,
// or <module root>/.tools/bin where `make tools` puts them. A test skips
// when the directory is missing, or fails under NESTATTEST_E2E=require.
func Tools(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(EnvTools)
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, ".tools", "bin")
	}
	if _, err := os.Stat(dir); err != nil {
		missing(t, fmt.Sprintf("tools directory %s not found", dir))
	}
	return dir
}

// Tool returns the path of one pinned tool ("registry", "cosign", "crane",
// "oras"), skipping or failing the test as Tools does when it is missing.
func Tool(t testing.TB, name string) string {
	t.Helper()
	path := filepath.Join(Tools(t), name)
	if _, err := exec.LookPath(path); err != nil {
		if !awaitTool(t, name, path) {
			missing(t, fmt.Sprintf("tool %s not found: %v", name, err))
		}
	}
	return path
}

// awaitTool waits, when $NESTATTEST_TOOLS_PENDING lists builds still
// running, for the tool at path to appear, and reports whether it did. The
// scripts link a tool into the directory once it is built and its version
// recorded.
func awaitTool(t testing.TB, name, path string) bool {
	t.Helper()
	pending := strings.Fields(os.Getenv(EnvToolsPending))
	if len(pending) == 0 {
		return false
	}
	start := time.Now()
	for {
		ended := true
		for _, f := range pending {
			if _, err := os.Stat(f); err != nil {
				ended = false
			}
		}
		if _, err := exec.LookPath(path); err == nil {
			t.Logf("waited %v for tool %s to be built", time.Since(start).Round(time.Second), name)
			return true
		}
		if ended {
			return false
		}
		time.Sleep(time.Second)
	}
}

// ToolVersion returns the module and version a tool in the tools directory
// was built from, as test/tools.sh and test/consumers/build.sh record it in
// <name>.version ("github.com/tektoncd/chains v0.22.0 <stamp>"), for tests
// to log which upstream they ran against. A tool without the record fails
// the test: the scripts always write one.
func ToolVersion(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Tools(t), name+".version"))
	if err != nil {
		t.Fatalf("version of tool %s: %v; rebuild it with `make tools consumers`", name, err)
	}
	return strings.TrimSpace(string(b))
}

// Consumer returns the path of a consumer's program built by
// test/consumers/build.sh ("chains-sign", "policy-tester") as Tool does, and
// logs the upstream module and version it was built from, so a test's log
// says which Chains or policy-controller it ran against.
func Consumer(t testing.TB, name string) string {
	t.Helper()
	bin := Tool(t, name)
	t.Logf("%s built from %s", name, ToolVersion(t, name))
	return bin
}

// buildBinary builds ./cmd/nestattest into a new temporary directory, once
// per test process, unless $NESTATTEST_BIN names one; the binary outlives
// any single test so every test of the process shares it.
var buildBinary = sync.OnceValues(func() (string, error) {
	if bin := os.Getenv(EnvBin); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("%s: %w", EnvBin, err)
		}
		return bin, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "nestattest-e2e-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "nestattest")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/nestattest")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/nestattest: %w\n%s", err, out)
	}
	return bin, nil
})

// Binary returns the path of the nestattest binary, built from the working
// tree once per test process, or $NESTATTEST_BIN.
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// Result is what a command did: its output and exit code.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs bin with args in the test process's environment, with no
// input, and returns its output and exit code. A command that cannot be
// started fails the test. Nothing is logged, so secrets in arguments or
// output stay out of test logs unless the test prints them.
func Run(t testing.TB, bin string, args ...string) Result {
	t.Helper()
	return RunEnv(t, nil, bin, args...)
}

// RunEnv is Run with extra environment variables ("KEY=value"), which take
// precedence over the test process's own.
func RunEnv(t testing.TB, env []string, bin string, args ...string) Result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run %s: %v", filepath.Base(bin), err)
	}
	return Result{Stdout: stdout.String(), Stderr: stderr.String(), Code: cmd.ProcessState.ExitCode()}
}
