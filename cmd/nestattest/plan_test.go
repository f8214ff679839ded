package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPlanSignVerifyShards plans a 3-node tree in 2 shards, checks what
// plan hands on (PLAN and SHARDS exact, GitHub outputs, JSON), signs each
// shard, and verifies each shard and the whole tree, which alone writes
// IMAGE_URL and IMAGE_DIGEST.
func TestPlanSignVerifyShards(t *testing.T) {
	host, _ := catalogRegistry(t)
	ref := host + "/org/ko-build/app1:latest"
	dir := t.TempDir()
	t.Setenv(envPassword, "test password")
	if code, _, stderr := execute("generate-key-pair", "--output-key-prefix", filepath.Join(dir, "cosign")); code != 0 {
		t.Fatalf("generate-key-pair: %s", stderr)
	}
	key, pub := filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
	outputs := filepath.Join(dir, "outputs")
	t.Setenv("GITHUB_OUTPUT", outputs)
	t.Setenv("GITHUB_STEP_SUMMARY", "")

	results := t.TempDir()
	code, stdout, stderr := execute("plan", "--shards", "2", "--results-dir", results, "-o", "json", ref)
	if code != ExitOK {
		t.Fatalf("plan: exit %d\n%s%s", code, stdout, stderr)
	}
	var doc planDoc
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Nodes != 3 || !doc.Written || len(doc.Sizes) != 2 || doc.Sizes[0].Nodes != 2 || doc.Sizes[1].Nodes != 1 {
		t.Errorf("plan: %+v", doc)
	}
	for file, want := range map[string]string{"PLAN": doc.Plan, "SHARDS": `["0","1"]`} {
		if got, err := os.ReadFile(filepath.Join(results, file)); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want exactly %q", file, got, err, want)
		}
	}
	out, _ := os.ReadFile(outputs)
	for _, want := range []string{"plan=" + doc.Plan + "\n", `shards=["0","1"]` + "\n", "nodes=3\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("GITHUB_OUTPUT lacks %q:\n%s", want, out)
		}
	}
	if code, stdout, _ = execute("plan", "--shards", "2", ref); code != ExitOK || !strings.Contains(stdout, "(already there)") {
		t.Errorf("plan again: exit %d\n%s", code, stdout)
	}

	for _, shard := range []string{"0", "1"} {
		signResults := t.TempDir()
		code, stdout, stderr = execute("sign", "--tlog-upload=false", "--key", key, "--plan", doc.Plan, "--shard", shard, "--results-dir", signResults, ref)
		if code != ExitOK || !strings.Contains(stderr, "shard "+shard+" of 2 of plan") || !strings.Contains(stderr, "a shard writes no IMAGE_URL") {
			t.Fatalf("sign shard %s: exit %d\n%s%s", shard, code, stdout, stderr)
		}
		if entries, _ := os.ReadDir(signResults); len(entries) != 0 {
			t.Errorf("sign shard %s wrote %v into the results directory", shard, entries)
		}
		code, stdout, stderr = execute("verify", "--key", pub, "--insecure-ignore-tlog", "--plan", doc.Plan, "--shard", shard, ref)
		if code != ExitOK || !strings.Contains(stdout, "✓") {
			t.Errorf("verify shard %s: exit %d\n%s%s", shard, code, stdout, stderr)
		}
		if shard == "1" && !strings.Contains(stdout, "(another shard's)") {
			t.Errorf("verify shard 1 does not mark the root as another shard's:\n%s", stdout)
		}
	}
	verifyResults := t.TempDir()
	if code, stdout, stderr = execute("verify", "--key", pub, "--insecure-ignore-tlog", "--results-dir", verifyResults, ref); code != ExitOK {
		t.Fatalf("verify: exit %d\n%s%s", code, stdout, stderr)
	}
	if got, _ := os.ReadFile(filepath.Join(verifyResults, "IMAGE_URL")); string(got) != ref {
		t.Errorf("IMAGE_URL %q, want %q", got, ref)
	}
	if got, _ := os.ReadFile(filepath.Join(verifyResults, "IMAGE_DIGEST")); !strings.HasPrefix(string(got), "sha256:") || len(got) != 71 {
		t.Errorf("IMAGE_DIGEST %q", got)
	}
	if code, stdout, _ = execute("sign", "--tlog-upload=false", "--key", key, ref); code != ExitOK || !strings.Contains(stdout, "nothing to write") {
		t.Errorf("unsharded sign after the shards: exit %d\n%s", code, stdout)
	}
}

// TestShardFlags: --plan and --shard refused alone, with a bad id, or
// with a plan by tag, before any request.
func TestShardFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"sign", "--key", "k", "--plan", "r.test/x@sha256:" + strings.Repeat("0", 64), "r.test/x:v1"}, "--plan needs --shard"},
		{[]string{"sign", "--key", "k", "--shard", "1", "r.test/x:v1"}, "--shard needs --plan"},
		{[]string{"sign", "--key", "k", "--plan", "r.test/x@sha256:" + strings.Repeat("0", 64), "--shard", "01", "r.test/x:v1"}, `--shard "01": want a shard id`},
		{[]string{"sign", "--key", "k", "--plan", "r.test/x@sha256:" + strings.Repeat("0", 64), "--shard", "x", "r.test/x:v1"}, `--shard "x": want a shard id`},
		{[]string{"sign", "--key", "k", "--plan", "r.test/x@sha256:" + strings.Repeat("0", 64), "--shard", "256", "r.test/x:v1"}, "shard id out of range"},
		{[]string{"plan", "--shards", "0", "r.test/x:v1"}, "--shards 0: want 1 to 256"},
		{[]string{"plan", "r.test/x:v1"}, "--shards 0: want 1 to 256"},
	} {
		code, stdout, stderr := execute(tc.args...)
		if code != ExitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, want %d with %q\n%s%s", tc.args, code, ExitUsage, tc.want, stdout, stderr)
		}
	}
}
