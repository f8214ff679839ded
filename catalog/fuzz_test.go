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
// rel names next, perhaps written with quoted-pairs (rel="ne\xt").
func FuzzNextLink(f *testing.F) {
	for _, s := range []string{`</v2/_catalog?last=b&n=2>; rel="next"`, `</a>; rel=prev, </b>; rel="next prev"`, `</a>; title="x, \"y"; rel=next`, `<`, `</a>;`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		target, err := nextLink(header)
		if err != nil || target == "" {
			return
		}
		unquoted := strings.ToLower(strings.ReplaceAll(header, `\`, ""))
		if !strings.Contains(unquoted, "next") || !strings.Contains(header, "<"+target+">") {
			t.Fatalf("%q gave %q", header, target)
		}
	})
}

// FuzzCatalogPage: whatever a registry serves as a _catalog page, the
// repositories kept are strictly below the parent, at paths walk accepts,
// and never more than the bounds allow.
func FuzzCatalogPage(f *testing.F) {
	f.Add([]byte(`{"repositories":["org/ko-build/app1","org/ko-build/app1/sub","org/other","org/ko-buildx/a"]}`))
	f.Add([]byte(`{"repositories":["org/ko-build/../x","org/ko-build//a","org/ko-build/A","org/ko-build/"]}`))
	f.Add([]byte(`{"repositories":null}`))
	f.Add([]byte(`{"repositories":[1]}`))
	parent := mustRepo(f, "reg.example/org/ko-build")
	f.Fuzz(func(t *testing.T, body []byte) {
		names, err := decodePage(body)
		if err != nil {
			return
		}
		l := &lister{parent: parent, opts: DiscoverOptions{}.withDefaults(), found: map[string]bool{}, seen: map[string]bool{}}
		if err := l.add(names); err != nil {
			return
		}
		if len(l.found) > MaxChildren {
			t.Fatalf("kept %d repositories, over %d", len(l.found), MaxChildren)
		}
		for path := range l.found {
			if _, err := walk.ParseScope(path); err != nil {
				t.Fatalf("kept %q: %v", path, err)
			}
			repo, err := childRepository(parent, path)
			if err != nil || repo.Name() != parent.Name()+"/"+path {
				t.Fatalf("kept %q: %v %v", path, repo, err)
			}
		}
	})
}

// FuzzConfigPlatform: an image config either is refused or gives a platform
// with both OS and architecture, or none.
func FuzzConfigPlatform(f *testing.F) {
	f.Add([]byte(`{"os":"linux","architecture":"arm64","variant":"v8"}`))
	f.Add([]byte(`{"os":"windows","architecture":"amd64","os.version":"10.0.20348.1","os.features":["win32k"]}`))
	f.Add([]byte(`{"architecture":"amd64"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := configPlatform(raw)
		if err != nil || p == nil {
			return
		}
		if p.OS == "" || p.Architecture == "" {
			t.Fatalf("%q gave %+v", raw, p)
		}
	})
}
