package release

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nestattest/nestattest/test/harness"
)

// A block is a fenced code block of a Markdown page, with the docs-test
// mark on the line before its fence, if any.
type block struct {
	file, lang, mark, text string
	line                   int
}

var (
	fenceOpen = regexp.MustCompile("^```([a-z]*)\\s*$")
	markLine  = regexp.MustCompile(`^<!-- docs-test: (.+) -->$`)
	// commandLangs are the fences that hold commands.
	commandLangs = []string{"sh", "bash", "shell", "console"}
)

// The marks a block may carry. A command block without one is run in the
// sandbox; every other command block says why it is not run here.
const (
	markRepo    = "repo"    // run at the repository root
	markCluster = "cluster" // needs a Kubernetes cluster
	markCI      = "ci"      // the test suite itself: .ci/run runs it
	markOutput  = "output"  // a JSON block: what the command block before it prints
	markRunBy   = "run by " // run by the named test, as it stands
)

// docPages are the pages whose command blocks are checked: the README and
// everything under docs/.
func docPages(t *testing.T) []string {
	t.Helper()
	root := repoRoot(t)
	pages := []string{filepath.Join(root, "README.md")}
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".md") {
			pages = append(pages, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return pages
}

// blocks reads a page's fenced blocks.
func blocks(t *testing.T, path string) []block {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	var out []block
	for i := 0; i < len(lines); i++ {
		m := fenceOpen.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		b := block{file: path, lang: m[1], line: i + 1}
		if i > 0 {
			if mm := markLine.FindStringSubmatch(lines[i-1]); mm != nil {
				b.mark = mm[1]
			}
		}
		var body []string
		for i++; i < len(lines) && lines[i] != "```"; i++ {
			body = append(body, lines[i])
		}
		b.text = strings.Join(body, "\n")
		out = append(out, b)
	}
	return out
}

func (b block) command() bool { return slices.Contains(commandLangs, b.lang) }

func (b block) where(t *testing.T) string {
	rel, _ := filepath.Rel(repoRoot(t), b.file)
	return fmt.Sprintf("%s:%d", rel, b.line)
}

// testNames lists the Test functions of the repository.
func testNames(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	re := regexp.MustCompile(`(?m)^func (Test\w+)\(t \*testing\.T\)`)
	err := filepath.WalkDir(repoRoot(t), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == ".tools") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(p, "_test.go") {
			raw, _ := os.ReadFile(p)
			for _, m := range re.FindAllStringSubmatch(string(raw), -1) {
				out[m[1]] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDocsBlocksAreMarked: every command block of the README and docs/ is
// run by TestDocsCommands, or says why not: it needs a cluster, it is the
// suite itself, or a named test runs it. Marks are ones this test knows,
// and a JSON output block follows a command block.
func TestDocsBlocksAreMarked(t *testing.T) {
	tests := testNames(t)
	counts := map[string]int{}
	for _, page := range docPages(t) {
		bs := blocks(t, page)
		for i, b := range bs {
			switch {
			case b.mark == "" && b.command():
				counts["run"]++
			case b.mark == markRepo && b.command():
				counts["run at the repository root"]++
			case (b.mark == markCluster || b.mark == markCI) && b.command():
				counts[b.mark]++
			case strings.HasPrefix(b.mark, markRunBy) && b.command():
				name := strings.TrimPrefix(b.mark, markRunBy)
				if !tests[name] {
					t.Errorf("%s: run by %s, which is no test of this repository", b.where(t), name)
				}
				counts["run by a named test"]++
			case b.mark == markOutput && b.lang == "json":
				if i == 0 || !bs[i-1].command() || bs[i-1].mark != "" {
					t.Errorf("%s: an output block must follow a command block the docs test runs", b.where(t))
				}
				counts["JSON output checked"]++
			case b.mark != "":
				t.Errorf("%s: mark %q on a %s block; marks are repo, cluster, ci, run by TestX (command blocks) and output (JSON)", b.where(t), b.mark, b.lang)
			}
		}
	}
	t.Logf("command and output blocks: %v", counts)
}

// sandbox is what the documented commands run against: the distribution
// registry on loopback standing for quay.io, the ko-shaped sample's
// children pushed below quay.io/org/ko-build (tagged latest) with their
// references in ko-refs.txt as ko prints them, a cosign key pair with its
// password in COSIGN_PASSWORD, and nestattest, cosign and crane on PATH.
type sandbox struct {
	dir, host string
	env       []string
}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	reg := harness.Distribution(t, harness.DistributionOptions{})
	s := &sandbox{dir: t.TempDir(), host: reg.Host}
	bin := t.TempDir()
	for tool, path := range map[string]string{"nestattest": harness.Binary(t), "cosign": harness.Tool(t, "cosign"), "crane": harness.Tool(t, "crane")} {
		if err := os.Symlink(path, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	const password = "docs-sandbox-password"
	s.env = []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"), "COSIGN_PASSWORD=" + password,
		"COSIGN_YES=true", "TUF_ROOT=" + t.TempDir()}
	if r := harness.RunEnv(t, s.env, harness.Binary(t), "generate-key-pair", "--output-key-prefix", filepath.Join(s.dir, "cosign")); r.Code != 0 {
		t.Fatalf("generate-key-pair: %s", r.Stderr)
	}
	refs := strings.Join(pushKoSample(t, reg, reg.Host), "\n") + "\n"
	if err := os.WriteFile(filepath.Join(s.dir, "ko-refs.txt"), []byte(refs), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// run runs a command block with bash, -euo pipefail, quay.io standing for
// the sandbox's registry, and returns its standard output.
func (s *sandbox) run(t *testing.T, b block, dir string) string {
	t.Helper()
	script := strings.ReplaceAll(b.text, "quay.io", s.host)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", "-euo", "pipefail", "-c", script)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), s.env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s: %s (%s)", b.where(t), firstLine(b.text), time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Errorf("%s: %v\n%s\nstdout:\n%s\nstderr:\n%s", b.where(t), err, b.text, tail(stdout.String()), tail(stderr.String()))
	}
	return stdout.String()
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}

// TestDocsCommands runs, page by page and in order, every command block of
// the README and docs/ that carries no mark (in a fresh sandbox per page)
// or the repo mark (at the repository root), and checks every JSON output
// block against what the command before it printed: each field it shows
// must be in the output, where it shows it.
func TestDocsCommands(t *testing.T) {
	for _, page := range docPages(t) {
		bs := blocks(t, page)
		if !slices.ContainsFunc(bs, func(b block) bool { return b.command() && (b.mark == "" || b.mark == markRepo) }) {
			continue
		}
		rel, _ := filepath.Rel(repoRoot(t), page)
		t.Run(rel, func(t *testing.T) {
			var s *sandbox
			var last string
			for _, b := range bs {
				switch {
				case b.command() && b.mark == "":
					if s == nil {
						s = newSandbox(t)
					}
					last = s.run(t, b, s.dir)
				case b.command() && b.mark == markRepo:
					if s == nil {
						s = newSandbox(t)
					}
					last = s.run(t, b, repoRoot(t))
				case b.mark == markOutput:
					checkShape(t, b, last)
				}
			}
		})
	}
}

// checkShape: every field of the documented JSON is in the real output at
// the same place ("…" stands for more fields); for an array, each
// documented element's fields must be in some element of the output.
func checkShape(t *testing.T, b block, out string) {
	t.Helper()
	var doc, got any
	if err := json.Unmarshal([]byte(b.text), &doc); err != nil {
		t.Errorf("%s: the documented JSON does not parse: %v", b.where(t), err)
		return
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Errorf("%s: the command's output is not JSON: %v\n%s", b.where(t), err, tail(out))
		return
	}
	for _, p := range missing("", doc, got) {
		t.Errorf("%s: the documentation shows %s, which the output does not have", b.where(t), p)
	}
}

func missing(path string, doc, got any) []string {
	switch d := doc.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{path + " (an object)"}
		}
		var out []string
		for k, v := range d {
			if k == "…" {
				continue
			}
			gv, ok := g[k]
			if !ok {
				out = append(out, path+"."+k)
				continue
			}
			out = append(out, missing(path+"."+k, v, gv)...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok {
			return []string{path + " (an array)"}
		}
		var out []string
		for i, e := range d {
			best := []string{fmt.Sprintf("%s[%d]", path, i)}
			for _, ge := range g {
				if m := missing(fmt.Sprintf("%s[%d]", path, i), e, ge); len(m) < len(best) {
					best = m
				}
			}
			out = append(out, best...)
		}
		return out
	}
	return nil
}
