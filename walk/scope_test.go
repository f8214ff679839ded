package walk

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

func TestParseScope(t *testing.T) {
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{"app1", true},
		{"rpms/foo", true},
		{"a.b_c__d-e--f/g0", true},
		{"github.com/org/app", true},
		{strings.Repeat("a", MaxRepositoryLength), true},
		{"", false},
		{"..", false},
		{"../escape", false},
		{"a/../../b", false},
		{"./a", false},
		{"/x", false},
		{"/", false},
		{"x/", false},
		{"UPPER", false},
		{"App", false},
		{"host:5000/x", false},
		{"localhost:5000", false},
		{"a//b", false},
		{"a:tag", false},
		{"a@sha256:" + strings.Repeat("0", 64), false},
		{strings.Repeat("a", MaxRepositoryLength+1), false},
		{"a b", false},
		{"a\\b", false},
		{"-a", false},
		{"a-", false},
		{"a..b", false},
		{"a___b", false},
		{"é", false},
		{"a\n", false},
	} {
		t.Run(tc.value, func(t *testing.T) {
			got, err := ParseScope(tc.value)
			if tc.ok {
				if err != nil || got != tc.value {
					t.Fatalf("ParseScope(%q) = %q, %v; want it accepted", tc.value, got, err)
				}
				return
			}
			if !errors.Is(err, ErrScope) {
				t.Fatalf("ParseScope(%q) = %q, %v; want ErrScope", tc.value, got, err)
			}
			if !strings.Contains(err.Error(), AnnotationRepository) {
				t.Errorf("error %q does not name the annotation", err)
			}
		})
	}
}

func TestChildRepository(t *testing.T) {
	parent, err := name.NewRepository("quay.io/org/ko-build")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		annotations map[string]string
		want        string
		err         error
	}{
		{nil, "quay.io/org/ko-build", nil},
		{map[string]string{"other": "x"}, "quay.io/org/ko-build", nil},
		{map[string]string{AnnotationRepository: "app1"}, "quay.io/org/ko-build/app1", nil},
		{map[string]string{AnnotationRepository: "app1/plugins"}, "quay.io/org/ko-build/app1/plugins", nil},
		{map[string]string{AnnotationRepository: "../other"}, "", ErrScope},
		{map[string]string{AnnotationRepository: strings.Repeat("a", MaxRepositoryLength-5)}, "", ErrScope},
	} {
		got, err := ChildRepository(parent, tc.annotations)
		if !errors.Is(err, tc.err) {
			t.Errorf("ChildRepository(%v) error %v, want %v", tc.annotations, err, tc.err)
			continue
		}
		if err == nil && got.Name() != tc.want {
			t.Errorf("ChildRepository(%v) = %s, want %s", tc.annotations, got.Name(), tc.want)
		}
	}
}

// FuzzParseScope checks that whatever ParseScope accepts stays inside the
// parent's namespace and is a repository go-containerregistry accepts.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"app1", "a/b", "..", "/x", "host:5000/x", "a//b", "UPPER", "", "a.b-c__d", "github.com/x/y"} {
		f.Add(s)
	}
	parent, err := name.NewRepository("registry.example/org/ko-build")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, value string) {
		scope, err := ParseScope(value)
		if err != nil {
			if !errors.Is(err, ErrScope) {
				t.Fatalf("error %v is not ErrScope", err)
			}
			return
		}
		repo, err := ChildRepository(parent, map[string]string{AnnotationRepository: scope})
		if err != nil {
			if !errors.Is(err, ErrScope) {
				t.Fatalf("ChildRepository: %v", err)
			}
			return
		}
		if !strings.HasPrefix(repo.Name(), parent.Name()+"/") {
			t.Fatalf("%q escapes to %s", value, repo.Name())
		}
		for _, c := range strings.Split(scope, "/") {
			if c == "" || c == "." || c == ".." {
				t.Fatalf("%q accepted with component %q", value, c)
			}
		}
		if _, err := name.NewRepository(repo.Name(), name.StrictValidation); err != nil {
			t.Fatalf("%q accepted but go-containerregistry refuses %s: %v", value, repo.Name(), err)
		}
	})
}
