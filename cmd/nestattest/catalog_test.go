package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nestattest/nestattest/catalog"
	"github.com/nestattest/nestattest/internal/sample"
)

// catalogRegistry starts an in-memory registry holding app1 and app2, each
// a two-platform index tagged latest below org/ko-build, and returns its
// host and the references ko would print for them.
func catalogRegistry(t *testing.T) (host string, refs []string) {
	t.Helper()
	s := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(s.Close)
	host = strings.TrimPrefix(s.URL, "http://")
	for _, app := range []string{"app1", "app2"} {
		idx, err := sample.Index(app)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := name.NewTag(host + "/org/ko-build/" + app + ":latest")
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteIndex(ref, idx); err != nil {
			t.Fatal(err)
		}
		d, _ := idx.Digest()
		refs = append(refs, ref.Context().Digest(d.String()).String())
	}
	return host, refs
}

func execute(args ...string) (code int, stdout, stderr string) {
	return executeIn("", args...)
}

// executeIn runs args with stdin as standard input.
func executeIn(stdin string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Execute(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestCatalogCommand(t *testing.T) {
	host, refs := catalogRegistry(t)
	parent := host + "/org/ko-build:latest"
	from := filepath.Join(t.TempDir(), "refs.txt")
	if err := os.WriteFile(from, []byte("# ko build\n"+strings.Join(refs, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	results, report := t.TempDir(), filepath.Join(t.TempDir(), "report.json")
	t.Setenv("GITHUB_OUTPUT", filepath.Join(t.TempDir(), "out"))
	t.Setenv("GITHUB_STEP_SUMMARY", "")

	code, stdout, stderr := execute("catalog", "--dry-run", "--from", from, parent)
	if code != ExitOK || !strings.Contains(stdout, "composed (not pushed), 2 children") || strings.Contains(stdout, "{") {
		t.Fatalf("--dry-run: exit %d\n%s%s", code, stdout, stderr)
	}
	dry := strings.SplitN(strings.SplitN(stdout, "@sha256:", 2)[1], " ", 2)[0]
	// -o json: one document, the composed manifest in it.
	code, stdout, stderr = execute("catalog", "--dry-run", "-o", "json", "--from", from, parent)
	var dryDoc struct {
		Digest   string
		Pushed   bool
		Manifest struct {
			Manifests []struct{ Annotations map[string]string }
		}
	}
	if err := json.Unmarshal([]byte(stdout), &dryDoc); code != ExitOK || err != nil || dryDoc.Pushed || dryDoc.Digest != "sha256:"+dry ||
		len(dryDoc.Manifest.Manifests) != 2 || dryDoc.Manifest.Manifests[0].Annotations["dev.nestattest.repository"] != "app1" {
		t.Fatalf("--dry-run -o json: exit %d, %v, %+v\n%s%s", code, err, dryDoc, stdout, stderr)
	}
	if _, err := remote.Head(mustTag(t, parent)); err == nil {
		t.Fatal("--dry-run pushed the parent")
	}
	// ko build piped in: the same children, the same digest.
	code, stdout, stderr = executeIn(strings.Join(refs, "\n")+"\n", "catalog", "--dry-run", "--from", "-", parent)
	if code != ExitOK || !strings.Contains(stdout, "@sha256:"+dry+" ") {
		t.Fatalf("--from -: exit %d\n%s%s", code, stdout, stderr)
	}

	code, stdout, stderr = execute("catalog", "-o", "json", "--from", from, "--index-annotation", "org.opencontainers.image.title=ko-build",
		"--results-dir", results, "--report", report, parent)
	if code != ExitOK {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	var res catalog.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	if !res.Pushed || !res.Mirrored || len(res.Children) != 2 || res.Annotations["org.opencontainers.image.title"] != "ko-build" {
		t.Errorf("result %+v", res)
	}
	for file, want := range map[string]string{"IMAGE_URL": parent, "IMAGE_DIGEST": res.Digest} {
		if got, err := os.ReadFile(filepath.Join(results, file)); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", file, got, err, want)
		}
	}
	if raw, err := os.ReadFile(report); err != nil || !strings.Contains(string(raw), res.Digest) {
		t.Errorf("report: %v", err)
	}
	if out, _ := os.ReadFile(os.Getenv("GITHUB_OUTPUT")); !strings.Contains(string(out), "children=2\n") || !strings.Contains(string(out), "digest="+res.Digest) {
		t.Errorf("GITHUB_OUTPUT:\n%s", out)
	}

	// The same children named with --child give the digest of the dry run;
	// the text output names every child.
	code, stdout, _ = execute("catalog", "--child", "app2=@"+strings.SplitN(refs[1], "@", 2)[1], "--child", "app1=:latest", parent)
	if code != ExitOK || !strings.Contains(stdout, "@sha256:"+dry+"  pushed") || !strings.Contains(stdout, "app1") || !strings.Contains(stdout, "app2") {
		t.Errorf("--child: exit %d\n%s", code, stdout)
	}
}

func TestCatalogCommandRefuses(t *testing.T) {
	host, refs := catalogRegistry(t)
	parent := host + "/org/ko-build:latest"
	good := filepath.Join(t.TempDir(), "good.txt")
	if err := os.WriteFile(good, []byte(refs[0]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.txt")
	if err := os.WriteFile(bad, []byte(refs[0]+"\n"+host+"/org/other/app@"+strings.SplitN(refs[0], "@", 2)[1]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		mention string
	}{
		{"no children", []string{parent}, ExitUsage, "--child, --from or --discover"},
		{"bad mirror", []string{"--mirror", "sometimes", "--child", "app1=:latest", parent}, ExitUsage, "--mirror"},
		{"bad missing-tag", []string{"--missing-tag", "maybe", "--discover", parent}, ExitUsage, "--missing-tag"},
		{"bad annotation", []string{"--index-annotation", "novalue", "--child", "app1=:latest", parent}, ExitUsage, "--index-annotation"},
		{"parent by digest", []string{"--child", "app1=:latest", strings.Replace(refs[0], "/app1", "", 1)}, ExitUsage, "REPOSITORY:TAG"},
		{"outside", []string{"--child", "app1=" + host + "/org/other/app1:latest", parent}, ExitUsage, "outside"},
		{"bad path", []string{"--child", "../app1=:latest", parent}, ExitUsage, "../app1"},
		{"duplicate", []string{"--child", "app1=:latest", "--from", good, parent}, ExitUsage, "named twice"},
		{"outside in a file", []string{"--from", bad, parent}, ExitUsage, "bad.txt:2"},
		{"missing file", []string{"--from", bad + ".none", parent}, ExitUsage, "--from"},
		{"missing child", []string{"--child", "app3=:latest", parent}, ExitFailed, "not in " + host + "/org/ko-build/app3"},
		{"bad jobs", []string{"-j", "0", "--child", "app1=:latest", parent}, ExitUsage, "--jobs"},
		{"stdin twice", []string{"--from", "-", "--from", "-", parent}, ExitUsage, "standard input) is given twice"},
		{"empty stdin", []string{"--from", "-", parent}, ExitUsage, "--child, --from or --discover"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := execute(append([]string{"catalog"}, tc.args...)...)
			if code != tc.code || !strings.Contains(stderr, tc.mention) {
				t.Errorf("exit %d (want %d)\n%s%s", code, tc.code, stdout, stderr)
			}
		})
	}
	code, stdout, stderr := executeIn(refs[0]+"\n"+host+"/org/other/app@"+strings.SplitN(refs[0], "@", 2)[1]+"\n", "catalog", "--from", "-", parent)
	if code != ExitUsage || !strings.Contains(stderr, "standard input:2") {
		t.Errorf("outside on standard input: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, err := remote.Head(mustTag(t, parent)); err == nil {
		t.Error("a refused run pushed the parent")
	}
}

func TestCatalogOptionsRequested(t *testing.T) {
	for _, o := range []catalogOptions{{children: []string{"a=:b"}}, {from: []string{"f"}}, {discover: true}} {
		if !o.requested() {
			t.Errorf("%+v not requested", o)
		}
	}
	if (&catalogOptions{childTag: "v1", mirror: "always"}).requested() {
		t.Error("flags without a child source requested composing")
	}
}

func mustTag(t *testing.T, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}
