package catalog

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nestattest/nestattest/registry"
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func mustRepo(t testing.TB, s string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseChild(t *testing.T) {
	parent := mustRepo(t, "reg.example/org/ko-build")
	for _, tc := range []struct {
		spec, path, ref string
		err             error
	}{
		{spec: "app1=reg.example/org/ko-build/app1@" + digest, path: "app1", ref: "reg.example/org/ko-build/app1@" + digest},
		{spec: "app1=:v1", path: "app1", ref: "reg.example/org/ko-build/app1:v1"},
		{spec: "app1=@" + digest, path: "app1", ref: "reg.example/org/ko-build/app1@" + digest},
		{spec: "rpms/foo-1.2=:latest", path: "rpms/foo-1.2", ref: "reg.example/org/ko-build/rpms/foo-1.2:latest"},
		{spec: "github.com/org/app=:latest", path: "github.com/org/app", ref: "reg.example/org/ko-build/github.com/org/app:latest"},
		{spec: "app1=reg.example/org/ko-build/app1:v1@" + digest, path: "app1", ref: "reg.example/org/ko-build/app1@" + digest},
		{spec: "app1", err: ErrSyntax},
		{spec: "app1=", err: ErrSyntax},
		{spec: "app1=:Bad Tag", err: ErrSyntax},
		{spec: "app1=@sha256:12", err: ErrSyntax},
		{spec: "app1=reg.example/org/ko-build/app1", err: ErrSyntax}, // no tag or digest
		{spec: "=:latest", err: ErrPath},
		{spec: ".=:latest", err: ErrPath},
		{spec: "../other=:latest", err: ErrPath},
		{spec: "/app1=:latest", err: ErrPath},
		{spec: "App1=:latest", err: ErrPath},
		{spec: "app1//x=:latest", err: ErrPath},
		{spec: "app1:v1=:latest", err: ErrPath},
		{spec: strings.Repeat("a", 250) + "=:latest", err: ErrPath},
		{spec: "app1=reg.example/org/ko-build/app2:v1", err: ErrPath},
		{spec: "app1=other.example/org/ko-build/app1:v1", err: ErrOutside},
		{spec: "app1=reg.example/org/other/app1:v1", err: ErrOutside},
		{spec: "app1=reg.example/org/ko-build:v1", err: ErrOutside},
		{spec: "app1=reg.example/org/ko-buildx/app1:v1", err: ErrOutside},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			c, err := ParseChild(parent, tc.spec)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				if !strings.Contains(err.Error(), "--child") {
					t.Errorf("the error does not name the input: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Path != tc.path || c.Ref.Name() != tc.ref {
				t.Errorf("got %s %s, want %s %s", c.Path, c.Ref.Name(), tc.path, tc.ref)
			}
		})
	}
}

func TestParseReferences(t *testing.T) {
	parent := mustRepo(t, "reg.example/org/ko-build")
	in := "# ko build ./cmd/...\n\nreg.example/org/ko-build/app1@" + digest + "\n  reg.example/org/ko-build/app2-5d41402abc4b2a76b9719d911017c592@" + digest + "  \r\n" +
		"reg.example/org/ko-build/github.com/org/app3:v1@" + digest + "\n"
	got, err := ParseReferences(parent, strings.NewReader(in), "refs.txt")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, c := range got {
		paths = append(paths, c.Path+" "+c.Source)
	}
	want := "app1 refs.txt:3,app2-5d41402abc4b2a76b9719d911017c592 refs.txt:4,github.com/org/app3 refs.txt:5"
	if strings.Join(paths, ",") != want {
		t.Errorf("got %q, want %q", paths, want)
	}

	for _, tc := range []struct {
		name, in, where string
		err             error
	}{
		{"other registry", "other.example/org/ko-build/app1@" + digest, "refs.txt:1", ErrOutside},
		{"sibling", "ok\nreg.example/org/ko-build-2/app1@" + digest, "refs.txt:1", ErrSyntax},
		{"sibling namespace", "\nreg.example/org/ko-build-2/app1@" + digest, "refs.txt:2", ErrOutside},
		{"parent itself", "reg.example/org/ko-build@" + digest, "refs.txt:1", ErrOutside},
		{"no registry", "org/ko-build/app1@" + digest, "refs.txt:1", ErrSyntax},
		{"two on a line", "reg.example/org/ko-build/app1@" + digest + " reg.example/org/ko-build/app2@" + digest, "refs.txt:1", ErrSyntax},
		{"bad path", "reg.example/org/ko-build/a--b_/x@" + digest, "refs.txt:1", ErrPath},
		{"dot segment", "reg.example/org/ko-build/a/../b@" + digest, "refs.txt:1", ErrPath},
		{"long line", strings.Repeat("x", maxLine+1), "refs.txt", ErrSyntax},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseReferences(parent, strings.NewReader(tc.in), "refs.txt")
			if !errors.Is(err, tc.err) || !strings.HasPrefix(err.Error(), tc.where) {
				t.Fatalf("err = %v, want %v at %s", err, tc.err, tc.where)
			}
		})
	}

	many := strings.Repeat("reg.example/org/ko-build/app@"+digest+"\n", MaxChildren+1)
	if _, err := ParseReferences(parent, strings.NewReader(many), "refs.txt"); !errors.Is(err, ErrTooMany) {
		t.Errorf("%d references: err = %v", MaxChildren+1, err)
	}
}

// TestComposeRefuses: every refused input stops Compose before anything is
// pushed.
func TestComposeRefuses(t *testing.T) {
	reg := newFakeRegistry(t, true, true)
	parent := koSample(t, reg)
	ko := koChildren(t, parent)
	child := func(spec string) Child {
		c, err := ParseChild(parent, spec)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name     string
		children []Child
		err      error
		mention  string
	}{
		{"none", nil, ErrNoChildren, "--child"},
		{"duplicate path", append(ko, child("app1=@"+digest)), ErrDuplicate, `"app1" named twice`},
		{"missing tag", append(ko, child("app4=:latest")), ErrNotFound, `--child "app4=:latest"`},
		{"missing digest", []Child{child("app1=@" + digest)}, ErrNotFound, digest},
		{"registry's not found", []Child{child("app1=:v2")}, registry.ErrNotFound, "app1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg.counts()
			_, err := Compose(context.Background(), parent.Tag("latest"), Options{Client: testClient(), Children: tc.children})
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tc.err, tc.mention)
			}
			counts, _ := reg.counts()
			for k := range counts {
				if strings.HasPrefix(k, "PUT") || strings.HasPrefix(k, "POST") || strings.HasPrefix(k, "PATCH") {
					t.Errorf("%s before refusing: %v", k, counts)
				}
			}
			if _, err := remote.Head(parent.Tag("latest")); err == nil {
				t.Errorf("the parent was pushed")
			}
		})
	}
}
