package catalog

import (
	"strings"
	"testing"

	"github.com/nestattest/nestattest/walk"
)

// FuzzParseChild: a --child spec either is refused or names a child whose
// path walk accepts and whose reference is in <parent>/<path>.
func FuzzParseChild(f *testing.F) {
	for _, s := range []string{"app1=:latest", "app1=@" + digest, "a/b=reg.example/org/ko-build/a/b:v1", "=", "..=:x", "x=reg.example/org/ko-build/x@" + digest} {
		f.Add(s)
	}
	parent := mustRepo(f, "reg.example/org/ko-build")
	f.Fuzz(func(t *testing.T, spec string) {
		c, err := ParseChild(parent, spec)
		if err != nil {
			return
		}
		if _, err := walk.ParseScope(c.Path); err != nil {
			t.Fatalf("%q: path %q: %v", spec, c.Path, err)
		}
		if c.Ref.Context().Name() != parent.Name()+"/"+c.Path {
			t.Fatalf("%q: %s is not at %s", spec, c.Ref, c.Path)
		}
	})
}

// FuzzParseReferences: every child of a references file is strictly below
// the parent, at a path walk accepts.
func FuzzParseReferences(f *testing.F) {
	f.Add("# ko\n\nreg.example/org/ko-build/app1@" + digest + "\n")
	f.Add("reg.example/org/ko-build/a/b:v1\r\nreg.example/org/ko-build/c@" + digest)
	f.Add("reg.example/org/ko-buildx/a:v1\n")
	parent := mustRepo(f, "reg.example/org/ko-build")
	f.Fuzz(func(t *testing.T, in string) {
		children, err := ParseReferences(parent, strings.NewReader(in), "fuzz")
		if err != nil {
			return
		}
		for _, c := range children {
			if _, err := walk.ParseScope(c.Path); err != nil {
				t.Fatalf("path %q: %v", c.Path, err)
			}
			if c.Ref.Context().Name() != parent.Name()+"/"+c.Path {
				t.Fatalf("%s is not at %s", c.Ref, c.Path)
			}
		}
	})
}

// FuzzNextLink: the parser never panics, and finds a target only where a
// rel names next.
func FuzzNextLink(f *testing.F) {
	for _, s := range []string{`</v2/_catalog?last=b&n=2>; rel="next"`, `</a>; rel=prev, </b>; rel="next prev"`, `</a>; title="x, \"y"; rel=next`, `<`, `</a>;`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		target, err := nextLink(header)
		if err != nil || target == "" {
			return
		}
		if !strings.Contains(strings.ToLower(header), "next") || !strings.Contains(header, "<"+target+">") {
			t.Fatalf("%q gave %q", header, target)
		}
	})
}
