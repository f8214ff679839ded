package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nestattest/nestattest/test/harness"
)

func TestExitCodes(t *testing.T) {
	host, _ := catalogRegistry(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"tree"}, ExitUsage, "takes 1 argument"},
		{[]string{"tree", "--no-such-flag", "x"}, ExitUsage, "unknown flag"},
		{[]string{"nonsense"}, ExitUsage, "unknown command"},
		{[]string{"tree", "UPPER/Case:tag"}, ExitUsage, "reference"},
		{[]string{"tree", "-o", "yaml", host + "/org/ko-build/app1:latest"}, ExitUsage, "--output"},
		{[]string{"tree", "--jobs", "0", host + "/org/ko-build/app1:latest"}, ExitUsage, "--jobs"},
		{[]string{"tree", host + "/org/absent:latest"}, ExitFailed, "not found"},
		{[]string{"sign", host + "/org/ko-build/app1:latest"}, ExitUsage, "keyless signing needs an OIDC identity token"},
		{[]string{"sign", "--keyless", "--key", "k", host + "/org/ko-build/app1:latest"}, ExitUsage, "exclude each other"},
		{[]string{"sign", "--key", "/nonexistent.key", host + "/org/ko-build/app1:latest"}, ExitUsage, "/nonexistent.key does not exist"},
		{[]string{"sign", "--key", "https://example.test/cosign.key", host + "/org/ko-build/app1:latest"}, ExitUsage, "unknown key reference scheme"},
		{[]string{"verify", "--key", "/nonexistent.pub", host + "/org/ko-build/app1:latest"}, ExitUsage, "/nonexistent.pub"},
		{[]string{"verify", "--key", "/nonexistent.pub", "--format", "zip", host + "/org/ko-build/app1:latest"}, ExitUsage, "--format"},
		{[]string{"sign", "--key", "/nonexistent.key", "--format", "zip", host + "/org/ko-build/app1:latest"}, ExitUsage, "--format"},
		{[]string{"sign", "--key", "/nonexistent.key", "--images", "some", host + "/org/ko-build/app1:latest"}, ExitUsage, `--images "some": want auto, always or never`},
		{[]string{"sign", "--key", "/nonexistent.key", "--results-from", "results-api", host + "/org/ko-build/app1:latest"}, ExitUsage, "--results-from"},
		{[]string{"sign", "--key", "/nonexistent.key", "--results-from", "sidecar-logs", "--max-result-size", "1572864", host + "/org/ko-build/app1:latest"}, ExitUsage, "max-result-size 1572864"},
		{[]string{"sign", "--key", "/nonexistent.key", "--sbom", "main_test.go", host + "/org/ko-build/app1:latest"}, ExitUsage, "use --predicate main_test.go --type spdxjson"},
		{[]string{"sign", "--key", "/nonexistent.key", "--sbom", "every", host + "/org/ko-build/app1:latest"}, ExitUsage, `--sbom "every": want attached or none`},
		{[]string{"verify", "--key", "/nonexistent.pub", "--signature-only", "--require-sbom", host + "/org/ko-build/app1:latest"}, ExitUsage, "excludes --signature-only"},
		{[]string{"sign", "--key", "/nonexistent.key", "--vsa-key", "/nonexistent.key", "--vsa-keyless", host + "/org/ko-build/app1:latest"}, ExitUsage, "--vsa-keyless and --vsa-key exclude each other"},
		{[]string{"sign", "--key", "/nonexistent.key", "--vsa-key", "/nonexistent.key", "--plan", host + "/org/plan@sha256:" + strings.Repeat("0", 64), "--shard", "1", host + "/org/ko-build/app1:latest"}, ExitUsage, "not with --shard"},
		{[]string{"tree", host + "/org/ko-build/app1:latest"}, ExitOK, "3 nodes in 1 repository (1 index, 2 images, 0 artifacts)"},
	} {
		code, stdout, stderr := execute(tc.args...)
		if code != tc.code || !strings.Contains(stdout+stderr, tc.want) {
			t.Errorf("%v: exit %d, want %d with %q\n%s%s", tc.args, code, tc.code, tc.want, stdout, stderr)
		}
	}
}

// TestSignComposesAndWritesResults composes a parent from --child, signs
// the tree, and checks the Tekton results, the GitHub outputs and summary,
// and the JSON report; then verifies it.
func TestSignComposesAndWritesResults(t *testing.T) {
	host, refs := catalogRegistry(t)
	dir := t.TempDir()
	t.Setenv(envPassword, "test password")
	if code, _, stderr := execute("generate-key-pair", "--output-key-prefix", filepath.Join(dir, "cosign")); code != 0 {
		t.Fatalf("generate-key-pair: %s", stderr)
	}
	results, out, summary := t.TempDir(), filepath.Join(dir, "out"), filepath.Join(dir, "summary")
	t.Setenv("GITHUB_OUTPUT", out)
	t.Setenv("GITHUB_STEP_SUMMARY", summary)
	report := filepath.Join(dir, "report.json")
	parent := host + "/org/ko-build:v1"
	code, stdout, stderr := execute("sign", "--tlog-upload=false", "--key", filepath.Join(dir, "cosign.key"), "--results-dir", results, "--report", report,
		"--child", "app1="+refs[0], "--child", "app2="+refs[1], parent)
	if code != ExitOK {
		t.Fatalf("sign: exit %d\n%s%s", code, stdout, stderr)
	}
	digest, err := os.ReadFile(filepath.Join(results, "IMAGE_DIGEST"))
	if err != nil || !strings.HasPrefix(string(digest), "sha256:") || len(digest) != 71 {
		t.Fatalf("IMAGE_DIGEST %q, %v", digest, err)
	}
	if url, _ := os.ReadFile(filepath.Join(results, "IMAGE_URL")); string(url) != parent {
		t.Errorf("IMAGE_URL %q, want %q", url, parent)
	}
	// IMAGES: the six nodes below the parent (two indexes, four images),
	// each in its own repository, comma-separated; the same as an output.
	images, _ := os.ReadFile(filepath.Join(results, "IMAGES"))
	listed := strings.Split(string(images), ",")
	if len(listed) != 6 || !strings.HasPrefix(listed[0], host+"/org/ko-build/app1@sha256:") || strings.Contains(string(images), host+"/org/ko-build@") {
		t.Errorf("IMAGES %q, want the 6 nodes below the parent in their repositories", images)
	}
	if !strings.Contains(stderr, "IMAGES: 6 nodes below the root, ") {
		t.Errorf("sign does not say it wrote IMAGES:\n%s", stderr)
	}
	outputs, _ := os.ReadFile(out)
	for _, want := range []string{"url=" + parent + "\n", "digest=" + string(digest) + "\n", "nodes=7\n", "written=7\n", "failed=0\n", "images=" + string(images) + "\n"} {
		if !strings.Contains(string(outputs), want) {
			t.Errorf("GITHUB_OUTPUT lacks %q:\n%s", want, outputs)
		}
	}
	if s, _ := os.ReadFile(summary); !strings.Contains(string(s), "| app1 |") {
		t.Errorf("step summary:\n%s", s)
	}
	var doc signDoc
	raw, _ := os.ReadFile(report)
	if err := json.Unmarshal(raw, &doc); err != nil || doc.Summary.Written != 7 || len(doc.Nodes) != 7 {
		t.Errorf("report: %v %+v", err, doc.Summary)
	}
	// The children were mirrored into the parent repository: signed there too.
	if places := len(doc.Nodes[1].Places); places != 2 {
		t.Errorf("app1 signed in %d places, want its own and the parent's", places)
	}
	code, stdout, stderr = execute("verify", "--key", filepath.Join(dir, "cosign.pub"), "--insecure-ignore-tlog", "--require-root", host+"/org/ko-build@"+string(digest))
	if code != ExitOK {
		t.Errorf("verify: exit %d\n%s%s", code, stdout, stderr)
	}
}

// TestSignVSAStepSummary signs with --vsa-key and --sbom attached: every
// node also gets a verification summary, which the report counts and the
// GitHub step summary shows in a column of its own, beside the SBOM
// column. A summary key that does not load stops the run before it
// writes; the summary key signs summaries only, no node's signature; a
// re-run writes no summary.
func TestSignVSAStepSummary(t *testing.T) {
	host, refs := catalogRegistry(t)
	dir := t.TempDir()
	t.Setenv(envPassword, "test password")
	for _, k := range []string{"cosign", "vsa"} {
		if code, _, stderr := execute("generate-key-pair", "--output-key-prefix", filepath.Join(dir, k)); code != 0 {
			t.Fatalf("generate-key-pair: %s", stderr)
		}
	}
	summary, report := filepath.Join(dir, "summary"), filepath.Join(dir, "report.json")
	t.Setenv("GITHUB_OUTPUT", filepath.Join(dir, "out"))
	t.Setenv("GITHUB_STEP_SUMMARY", summary)
	parent := host + "/org/ko-build:v1"
	// A summary key that does not load stops the run before it writes.
	code, stdout, stderr := execute("sign", "--tlog-upload=false", "--key", filepath.Join(dir, "cosign.key"), "--vsa-key", filepath.Join(dir, "missing.key"),
		"--child", "app1="+refs[0], "--child", "app2="+refs[1], parent)
	if code != ExitUsage {
		t.Errorf("sign --vsa-key missing.key: exit %d, want %d\n%s%s", code, ExitUsage, stdout, stderr)
	}
	code, stdout, stderr = execute("sign", "--tlog-upload=false", "--key", filepath.Join(dir, "cosign.key"), "--report", report, "--sbom", "attached",
		"--vsa-key", filepath.Join(dir, "vsa.key"), "--child", "app1="+refs[0], "--child", "app2="+refs[1], parent)
	if code != ExitOK || !strings.Contains(stderr, "7 nodes passed, 7 written, 0 present, 0 failed") {
		t.Fatalf("sign --vsa-key: exit %d\n%s%s", code, stdout, stderr)
	}
	s, _ := os.ReadFile(summary)
	for _, want := range []string{"| attestation | SBOM | verification summary |", "| none | written |", "verification summaries: 7 nodes, 7 written, 0 present, 0 failed"} {
		if !strings.Contains(string(s), want) {
			t.Errorf("step summary lacks %q:\n%s", want, s)
		}
	}
	var doc signDoc
	raw, _ := os.ReadFile(report)
	if err := json.Unmarshal(raw, &doc); err != nil || doc.Summary.Written != 7 || doc.Summaries == nil || doc.Summaries.Written != 7 || doc.Nodes[0].Summary != "written" {
		t.Errorf("report: %v %+v", err, doc.Summaries)
	}
	code, stdout, stderr = execute("verify", "--key", filepath.Join(dir, "vsa.pub"), "--insecure-ignore-tlog", "--signature-only", parent)
	if code == ExitOK {
		t.Errorf("the summary key verifies signatures: it signs summaries only\n%s", stdout)
	}
	code, stdout, stderr = execute("sign", "--tlog-upload=false", "--key", filepath.Join(dir, "cosign.key"), "--sbom", "attached",
		"--vsa-key", filepath.Join(dir, "vsa.key"), "--child", "app1="+refs[0], "--child", "app2="+refs[1], parent)
	if code != ExitOK || !strings.Contains(stderr, "7 nodes passed, 0 written, 7 present, 0 failed") {
		t.Errorf("sign --vsa-key again: exit %d, want the summaries present\n%s%s", code, stdout, stderr)
	}
}

func TestDemo(t *testing.T) {
	code, stdout, stderr := execute("demo")
	if code != ExitOK {
		t.Fatalf("demo: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{"13 nodes in 5 repositories", "13 written", "nothing to write", "verified: 13 of 13 nodes", "Next, try:", "demo --keep",
		"Real builds sign keylessly", "or with a KMS key", "docs/trust.md"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if strings.Contains(stdout, "signing-secrets") || strings.Contains(stdout, "Chains") {
		t.Errorf("the demo teaches Tekton Chains' signing-secrets layout:\n%s", stdout)
	}
}

// TestDemoKeep: with --keep the key and references stay, and the registry
// serves the commands the demo suggests until interrupted.
func TestDemoKeep(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan int)
	go func() { done <- Execute(ctx, []string{"demo", "--keep", dir}, strings.NewReader(""), out, io.Discard) }()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(out.String(), "serves until Ctrl-C") {
		if time.Now().After(deadline) {
			t.Fatalf("demo --keep did not settle:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var next []string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "  nestattest ") {
			next = append(next, strings.Fields(strings.SplitN(l, "#", 2)[0])[1:]...)
			next = append(next, "\n")
		}
	}
	for _, cmdline := range strings.Split(strings.Join(next, " "), "\n") {
		args := strings.Fields(cmdline)
		if len(args) == 0 {
			continue
		}
		if code, stdout, stderr := execute(args...); code != ExitOK {
			t.Errorf("suggested %q: exit %d\n%s%s", args, code, stdout, stderr)
		}
	}
	for _, f := range []string{"ko-refs.txt", "cosign.key", "cosign.pub"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("--keep lost %s: %v", f, err)
		}
	}
	cancel()
	if code := <-done; code != ExitOK {
		t.Errorf("demo --keep ended with %d", code)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestKeyInputs: the password comes as cosign takes it — piped on
// standard input (CI, cron), $COSIGN_PASSWORD, --password-file — and a
// wrong one or none is a clear usage error that does not echo it; a public
// key given to sign is refused before any password is asked;
// $COSIGN_REPOSITORY is refused with the reason.
func TestKeyInputs(t *testing.T) {
	host, _ := catalogRegistry(t)
	ref := host + "/org/ko-build/app1:latest"
	dir := t.TempDir()
	prefix := filepath.Join(dir, "release")
	if code, _, stderr := executeIn("s3cret-pw\n", "generate-key-pair", "--output-key-prefix", prefix); code != ExitOK {
		t.Fatalf("generate-key-pair: exit %d\n%s", code, stderr)
	}
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Unset for this test only (t.Setenv restores them afterwards).
	for _, v := range []string{"COSIGN_REPOSITORY", envPassword} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	sign := []string{"sign", "--tlog-upload=false", "--key", prefix + ".key", ref}

	if code, stdout, stderr := executeIn("s3cret-pw\n", sign...); code != ExitOK || !strings.Contains(stdout, "written") {
		t.Errorf("password piped on stdin: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, stdout, stderr := execute(append(sign, "--password-file", pwFile)...); code != ExitOK || !strings.Contains(stdout, "nothing to write") {
		t.Errorf("--password-file: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr := executeIn("", sign...) // an empty standard input; TestKeyPasswordStdin runs the real forms
	if code != ExitUsage || !strings.Contains(stderr, envPassword) || strings.Contains(stderr, "ioctl") {
		t.Errorf("no password: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = executeIn("wrong-pw-42\n", sign...)
	if code != ExitUsage || !strings.Contains(stderr, "password") || strings.Contains(stdout+stderr, "wrong-pw-42") {
		t.Errorf("wrong password: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = executeIn("never-read\n", "sign", "--tlog-upload=false", "--key", prefix+".pub", ref)
	if code != ExitUsage || !strings.Contains(stderr, "public key") {
		t.Errorf("a public key to sign: exit %d\n%s%s", code, stdout, stderr)
	}

	t.Setenv("COSIGN_REPOSITORY", host+"/elsewhere")
	code, _, stderr = execute(append(sign, "--password-file", pwFile)...)
	if code != ExitUsage || !strings.Contains(stderr, "COSIGN_REPOSITORY") || !strings.Contains(stderr, "own repository") {
		t.Errorf("COSIGN_REPOSITORY: exit %d\n%s", code, stderr)
	}
}

// TestKeyPasswordStdin runs the binary with an encrypted key and no
// $COSIGN_PASSWORD the ways CI, cron and `docker run` without -t start it:
// standard input at /dev/null, closed, an empty pipe. Each is a usage
// error that names $COSIGN_PASSWORD and --password-file, with no prompt and
// no ioctl error; a password piped in signs.
func TestKeyPasswordStdin(t *testing.T) {
	host, _ := catalogRegistry(t)
	ref := host + "/org/ko-build/app1:latest"
	key := filepath.Join(t.TempDir(), "cosign")
	if code, _, stderr := executeIn("s3cret-pw\n", "generate-key-pair", "--output-key-prefix", key); code != ExitOK {
		t.Fatalf("generate-key-pair: exit %d\n%s", code, stderr)
	}
	bin := harness.Binary(t)
	args := []string{"sign", "--tlog-upload=false", "--key", key + ".key", ref}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	for _, tc := range []struct {
		name  string
		cmd   *exec.Cmd
		stdin io.Reader
	}{
		{"stdin at /dev/null", exec.Command(bin, args...), devNull},
		{"stdin closed", exec.Command("sh", append([]string{"-c", `exec "$0" "$@" <&-`, bin}, args...)...), nil},
		{"an empty pipe", exec.Command(bin, args...), strings.NewReader("")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runWithoutPassword(t, tc.cmd, tc.stdin)
			if code != ExitUsage || !strings.Contains(stderr, "$"+envPassword) || !strings.Contains(stderr, "--password-file") ||
				strings.Contains(stderr, "ioctl") || strings.Contains(stderr, "Enter password") {
				t.Errorf("exit %d, want %d and an error naming $%s and --password-file\n%s%s", code, ExitUsage, envPassword, stdout, stderr)
			}
		})
	}
	t.Run("the password piped", func(t *testing.T) {
		code, stdout, stderr := runWithoutPassword(t, exec.Command(bin, args...), strings.NewReader("s3cret-pw\n"))
		if code != ExitOK || !strings.Contains(stdout, "written") {
			t.Errorf("exit %d\n%s%s", code, stdout, stderr)
		}
	})
	t.Run("a wrong password piped", func(t *testing.T) {
		code, stdout, stderr := runWithoutPassword(t, exec.Command(bin, args...), strings.NewReader("wrong-pw-42\n"))
		if code != ExitUsage || !strings.Contains(stderr, "wrong password") || strings.Contains(stdout+stderr, "wrong-pw-42") {
			t.Errorf("exit %d\n%s%s", code, stdout, stderr)
		}
	})
}

// runWithoutPassword runs cmd with stdin (nil: as cmd has it) and the
// test's environment less $COSIGN_PASSWORD.
func runWithoutPassword(t *testing.T, cmd *exec.Cmd, stdin io.Reader) (code int, stdout, stderr string) {
	t.Helper()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPassword+"=") && !strings.HasPrefix(kv, envRepository+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}
