package release

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	rel "github.com/nestattest/nestattest/internal/release"
)

// TestNothingByTag: the Task, the StepAction, their samples, READMEs and
// tests, the action, the workflows, the README and docs/ name every image,
// git revision and action by digest, and every reference to the release is
// the one release/stamp.json records.
func TestNothingByTag(t *testing.T) {
	if err := rel.Check(repoRoot(t)); err != nil {
		t.Error(err)
	}
}

// TestCheckCatchesATag: each kind of tag reference slipped back into a copy
// of the tree fails the check.
func TestCheckCatchesATag(t *testing.T) {
	for _, c := range []struct{ file, old, new string }{
		{"stepaction/nestattest/nestattest.yaml", "nestattest/nestattest@sha256:0000000000000000000000000000000000000000000000000000000000000000", "nestattest/nestattest@sha256:" + strings.Repeat("ab", 32)},
		{"docs/releasing.md", "ghcr.io/nestattest/nestattest@sha256:…", "ghcr.io/nestattest/nestattest:v0.1.0"},
		{"task/nestattest/nestattest.yaml", "default: ghcr.io/nestattest/nestattest@sha256:0000000000000000000000000000000000000000000000000000000000000000", "default: ghcr.io/nestattest/nestattest:v0.1.0"},
		{"task/nestattest/samples/ko-pipeline.yaml", `value: "4011f7e69a09e2b97f9ae6455f739856ede65eed" # v1.5.0`, "value: v1.5.0"},
		{"task/nestattest/samples/ko-pipeline.yaml", "image: docker.io/library/golang:1.26.8@sha256:3c3e25a4da13fd0478eed2df1eb35a0e667094a7124d3993a6a1d30f71c17e79", "image: ghcr.io/ko-build/ko:v0.18.0"},
		{"stepaction/nestattest/README.md", `value: "0000000000000000000000000000000000000000"`, "value: v0.1.0"},
		{"action.yml", "actions/setup-go@b7ad1dad31e06c5925ef5d2fc7ad053ef454303e", "actions/setup-go@v7"},
		{".github/workflows/release.yml", "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1", "actions/checkout@v7"},
		{"docs/tekton.md", "nestattest/nestattest/0000000000000000000000000000000000000000/task", "nestattest/nestattest/v0.1.0/task"},
		{"README.md", "nestattest/nestattest@0000000000000000000000000000000000000000", "nestattest/nestattest@v1"},
	} {
		t.Run(c.file+" "+c.new, func(t *testing.T) {
			root := copyTree(t)
			p := filepath.Join(root, c.file)
			raw, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(raw), c.old) {
				t.Fatalf("%s has no %q to change", c.file, c.old)
			}
			if err := os.WriteFile(p, []byte(strings.Replace(string(raw), c.old, c.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			err = rel.Check(root)
			if err == nil || !strings.Contains(err.Error(), c.file) {
				t.Errorf("the check let %q in %s pass: %v", c.new, c.file, err)
			}
		})
	}
}

// TestStampRoundTrip: a stamp rewrites every file that names the release,
// the stamped tree checks clean and reads back the stamp, and stamping the
// previous release back gives the tree byte for byte.
func TestStampRoundTrip(t *testing.T) {
	root := copyTree(t)
	before := snapshot(t, root)
	prev, err := rel.Read(root)
	if err != nil {
		t.Fatal(err)
	}
	next := rel.Stamp{
		Version:  "v1.2.3",
		Image:    "ghcr.io/nestattest/nestattest@sha256:" + strings.Repeat("ab", 32),
		Revision: strings.Repeat("c", 40),
		Binaries: map[string]string{"nestattest-linux-amd64": strings.Repeat("1", 64), "nestattest-linux-arm64": strings.Repeat("2", 64)},
	}
	changed, err := rel.Apply(root, next)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"task/nestattest/nestattest.yaml", "stepaction/nestattest/nestattest.yaml", "task/nestattest/samples/ko-pipeline.yaml",
		"task/nestattest/tests/run.yaml", "stepaction/nestattest/samples/task-with-stepaction.yaml", "action.yml", "README.md", "docs/tekton.md"} {
		if !slices.Contains(changed, f) {
			t.Errorf("stamping left %s alone (changed: %v)", f, changed)
		}
	}
	if got, err := rel.Read(root); err != nil || got.String() != next.String() {
		t.Errorf("read back %v %v", got, err)
	}
	if err := rel.Check(root); err != nil {
		t.Errorf("the stamped tree: %v", err)
	}
	task := read(t, root, "task/nestattest/nestattest.yaml")
	if !strings.Contains(task, `app.kubernetes.io/version: "1.2.3"`) || !strings.Contains(task, "default: "+next.Image) {
		t.Errorf("the stamped Task:\n%s", task)
	}
	action := actionEnv(t, root)
	if action["NESTATTEST_RELEASE"] != "v1.2.3" ||
		action["NESTATTEST_RELEASE_SHA256"] != strings.Repeat("1", 64)+"  nestattest-linux-amd64\n"+strings.Repeat("2", 64)+"  nestattest-linux-arm64\n" {
		t.Errorf("the stamped action's install env: %q", action)
	}
	if _, err := rel.Apply(root, prev); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, root)
	for f, b := range before {
		if after[f] != b {
			t.Errorf("%s differs after stamping back", f)
		}
	}
}

func read(t *testing.T, root, f string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, f))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// actionEnv is the environment of action.yml's install step.
func actionEnv(t *testing.T, root string) map[string]string {
	t.Helper()
	var a struct {
		Runs struct {
			Steps []struct {
				ID  string
				Env map[string]string
			}
		}
	}
	if err := yaml.Unmarshal([]byte(read(t, root, "action.yml")), &a); err != nil {
		t.Fatal(err)
	}
	for _, s := range a.Runs.Steps {
		if s.ID == "install" {
			return s.Env
		}
	}
	t.Fatal("action.yml has no install step")
	return nil
}

func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	files, err := rel.Files(root)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range append(files, rel.StateFile) {
		if b, err := os.ReadFile(filepath.Join(root, f)); err == nil {
			out[f] = string(b)
		}
	}
	return out
}

// TestBuildDefinitions: ko builds the platforms Tekton's own images are
// built for, on distroless's static nonroot base by digest, static and
// reproducible; the Task and StepAction declare those platforms and run the
// binary where ko puts it; the Dockerfile builds on the build machine's
// platform and lays the image out the same way.
func TestBuildDefinitions(t *testing.T) {
	root := repoRoot(t)
	var ko struct {
		DefaultBaseImage string   `json:"defaultBaseImage"`
		DefaultPlatforms []string `json:"defaultPlatforms"`
		Builds           []struct {
			ID, Main string
			Env      []string
			Flags    []string
			Ldflags  []string
		}
	}
	if err := yaml.UnmarshalStrict([]byte(read(t, root, ".ko.yaml")), &ko); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^gcr\.io/distroless/static-debian12:nonroot@sha256:[0-9a-f]{64}$`).MatchString(ko.DefaultBaseImage) {
		t.Errorf("defaultBaseImage %s: want distroless static nonroot by digest", ko.DefaultBaseImage)
	}
	if !slices.Equal(ko.DefaultPlatforms, platforms) {
		t.Errorf("defaultPlatforms %v, want %v", ko.DefaultPlatforms, platforms)
	}
	if len(ko.Builds) != 1 || ko.Builds[0].Main != "./cmd/nestattest" || !slices.Contains(ko.Builds[0].Env, "CGO_ENABLED=0") ||
		!slices.Contains(ko.Builds[0].Flags, "-trimpath") || !slices.Contains(ko.Builds[0].Flags, "-buildvcs=false") ||
		!strings.Contains(strings.Join(ko.Builds[0].Ldflags, " "), "-X main.version={{.Env.VERSION}}") {
		t.Errorf(".ko.yaml builds: %+v", ko.Builds)
	}
	for _, f := range []string{"task/nestattest/nestattest.yaml", "stepaction/nestattest/nestattest.yaml"} {
		text := read(t, root, f)
		if !strings.Contains(text, `tekton.dev/platforms: "`+strings.Join(platforms, ",")+`"`) {
			t.Errorf("%s does not declare the platforms %v", f, platforms)
		}
		if !strings.Contains(text, "- /ko-app/nestattest\n") {
			t.Errorf("%s does not run /ko-app/nestattest, where ko puts the binary", f)
		}
	}
	docker := read(t, root, "Dockerfile")
	for _, want := range []string{"FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build", `ENTRYPOINT ["/ko-app/nestattest"]`, "-buildvcs=false"} {
		if !strings.Contains(docker, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	for _, arg := range regexp.MustCompile(`(?m)^ARG (\w+_IMAGE)=(\S+)$`).FindAllStringSubmatch(docker, -1) {
		if !regexp.MustCompile(`@sha256:[0-9a-f]{64}$`).MatchString(arg[2]) {
			t.Errorf("Dockerfile %s=%s: not by digest", arg[1], arg[2])
		}
	}
}
