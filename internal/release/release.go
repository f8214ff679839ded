// Package release writes a release's identity into the files that name it,
// and reads it back. A release is a version, the digest of the multi-arch
// image ko built, the sha256 of each binary, and the commit the samples
// resolve the Task and StepAction at. Everything that names the release
// names it by digest (the image by its index digest, the catalog by commit,
// the binaries by sha256), so a tag reference slipping back in is a
// failure of Check.
//
// The state lives in release/stamp.json. Stamp rewrites the files from the
// state they carry to a new one, by exact replacement of the old values
// (and of the few lines that hold a version), so that a file nobody stamped
// is left alone and a stamp applied twice changes nothing.
package release

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// StateFile is where the stamp is kept, relative to the repository root.
const StateFile = "release/stamp.json"

// Unreleased values: what the tree carries before its first release.
const (
	UnreleasedDigest   = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	UnreleasedRevision = "0000000000000000000000000000000000000000"
)

// Stamp is a release's identity.
type Stamp struct {
	// Version is the release's tag, vX.Y.Z; empty before the first release.
	Version string `json:"version"`
	// Image is the image index ko built, <repository>@sha256:<hex>.
	Image string `json:"image"`
	// Revision is the commit the samples resolve the Task and the
	// StepAction at, 40 hex digits.
	Revision string `json:"revision"`
	// Binaries are the sha256 (hex) of each released binary, by file name
	// (nestattest-linux-amd64).
	Binaries map[string]string `json:"binaries"`
}

// Files are the files a stamp rewrites, relative to the repository root:
// the Task, the StepAction, their READMEs and samples, the action, and the
// documentation that shows them.
func Files(root string) ([]string, error) {
	var out []string
	for _, dir := range []string{"task", "stepaction", "docs"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if ext := filepath.Ext(p); ext == ".yaml" || ext == ".yml" || ext == ".md" {
				rel, _ := filepath.Rel(root, p)
				out = append(out, filepath.ToSlash(rel))
			}
			return nil
		})
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	out = append(out, "action.yml", "README.md")
	slices.Sort(out)
	return out, nil
}

// Read reads the stamp a tree carries.
func Read(root string) (Stamp, error) {
	raw, err := os.ReadFile(filepath.Join(root, StateFile))
	if err != nil {
		return Stamp{}, err
	}
	var s Stamp
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Stamp{}, fmt.Errorf("%s: %w", StateFile, err)
	}
	return s, s.valid()
}

var (
	versionRe  = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)
	imageRe    = regexp.MustCompile(`^[a-z0-9][a-z0-9.:-]*(/[a-z0-9._-]+)+@sha256:[0-9a-f]{64}$`)
	revisionRe = regexp.MustCompile(`^[0-9a-f]{40}$`)
	sha256Re   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	binaryRe   = regexp.MustCompile(`^nestattest-[a-z0-9]+-[a-z0-9]+(\.exe)?$`)
)

func (s Stamp) valid() error {
	var errs []error
	if s.Version != "" && !versionRe.MatchString(s.Version) {
		errs = append(errs, fmt.Errorf("version %q: want vX.Y.Z", s.Version))
	}
	if !imageRe.MatchString(s.Image) {
		errs = append(errs, fmt.Errorf("image %q: want <repository>@sha256:<64 hex>", s.Image))
	}
	if !revisionRe.MatchString(s.Revision) {
		errs = append(errs, fmt.Errorf("revision %q: want a commit, 40 hex digits", s.Revision))
	}
	for name, sum := range s.Binaries {
		if !binaryRe.MatchString(name) || !sha256Re.MatchString(sum) {
			errs = append(errs, fmt.Errorf("binary %q %q: want nestattest-<os>-<arch> and a sha256", name, sum))
		}
	}
	if s.Version == "" && len(s.Binaries) > 0 {
		errs = append(errs, errors.New("binaries without a version"))
	}
	return errors.Join(errs...)
}

// Label is the app.kubernetes.io/version the Task and StepAction carry:
// the version without its v, 0.0.0 before the first release.
func (s Stamp) Label() string {
	if s.Version == "" {
		return "0.0.0"
	}
	return strings.TrimPrefix(s.Version, "v")
}

// Repository is the image's repository.
func (s Stamp) Repository() string {
	repo, _, _ := strings.Cut(s.Image, "@")
	return repo
}

// Apply rewrites the files of the tree at root from the stamp they carry
// to next, writes next as the state, and returns the files it changed.
func Apply(root string, next Stamp) ([]string, error) {
	if err := next.valid(); err != nil {
		return nil, err
	}
	prev, err := Read(root)
	if err != nil {
		return nil, err
	}
	files, err := Files(root)
	if err != nil {
		return nil, err
	}
	var changed []string
	for _, f := range files {
		ok, err := rewrite(filepath.Join(root, f), func(s string) string { return stampText(f, s, prev, next) })
		if err != nil {
			return nil, err
		}
		if ok {
			changed = append(changed, f)
		}
	}
	raw, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return nil, err
	}
	return changed, os.WriteFile(filepath.Join(root, StateFile), append(raw, '\n'), 0o644)
}

func rewrite(path string, fn func(string) string) (bool, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	out := fn(string(raw))
	if out == string(raw) {
		return false, nil
	}
	return true, os.WriteFile(path, []byte(out), 0o644)
}

var (
	labelLine   = regexp.MustCompile(`(app\.kubernetes\.io/version: )"[^"]*"`)
	releaseLine = regexp.MustCompile(`(?m)^(\s*NESTATTEST_RELEASE: ).*$`)
	sumsBlock   = regexp.MustCompile(`(?m)^(\s*)NESTATTEST_RELEASE_SHA256: [|>]-?\n((?:\s+[0-9a-f]{64}  \S+\n)*)`)
	sumsEmpty   = regexp.MustCompile(`(?m)^(\s*)NESTATTEST_RELEASE_SHA256: ""\n`)
)

// stampText is one file's text stamped: the old image and revision
// replaced, and in the YAML of the catalog and the action the lines that
// hold the version and the binaries' sums.
func stampText(file, s string, prev, next Stamp) string {
	s = strings.ReplaceAll(s, prev.Image, next.Image)
	s = strings.ReplaceAll(s, prev.Revision, next.Revision)
	if strings.HasSuffix(file, ".yaml") {
		s = labelLine.ReplaceAllString(s, `${1}"`+next.Label()+`"`)
	}
	if file == "action.yml" {
		s = releaseLine.ReplaceAllString(s, "${1}"+quote(next.Version))
		s = sumsBlock.ReplaceAllStringFunc(s, func(m string) string { return sums(sumsBlock.FindStringSubmatch(m)[1], next) })
		s = sumsEmpty.ReplaceAllStringFunc(s, func(m string) string { return sums(sumsEmpty.FindStringSubmatch(m)[1], next) })
	}
	return s
}

func quote(v string) string {
	if v == "" {
		return `""`
	}
	return v
}

// sums is the action's block of binary sums, sha256sum's format.
func sums(indent string, s Stamp) string {
	if len(s.Binaries) == 0 {
		return indent + "NESTATTEST_RELEASE_SHA256: \"\"\n"
	}
	names := make([]string, 0, len(s.Binaries))
	for n := range s.Binaries {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString(indent + "NESTATTEST_RELEASE_SHA256: |\n")
	for _, n := range names {
		fmt.Fprintf(&b, "%s  %s  %s\n", indent, s.Binaries[n], n)
	}
	return b.String()
}
