package release

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

// Check reports every reference in the stamped files that names by tag what
// must be named by digest: a container image (an `image` field, a default
// or value of a *_IMAGE parameter, the nestattest image anywhere), a git
// resolver's revision, a raw.githubusercontent.com ref, an action's
// `uses:`; and every reference to this release that is not the stamp's.
func Check(root string) error {
	st, err := Read(root)
	if err != nil {
		return err
	}
	files, err := Files(root)
	if err != nil {
		return err
	}
	workflows, _ := filepath.Glob(filepath.Join(root, ".github", "workflows", "*.y*ml"))
	for _, w := range workflows {
		rel, _ := filepath.Rel(root, w)
		files = append(files, filepath.ToSlash(rel))
	}
	var errs []error
	for _, f := range files {
		raw, err := os.ReadFile(filepath.Join(root, f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, p := range checkText(f, string(raw), st) {
			errs = append(errs, fmt.Errorf("%s: %s", f, p))
		}
	}
	return errors.Join(errs...)
}

var (
	// nestattestImage is the nestattest image named anywhere, with a tag,
	// a digest or both.
	nestattestImage = regexp.MustCompile(`(?:^|[^\w./-])((?:[a-z0-9-]+(?:\.[a-z0-9-]+)+|localhost)(?::\d+)?(?:/[a-z0-9._-]+)*/nestattest(?::[\w][\w.-]*)?(?:@sha256:[0-9a-f]{64})?)(?:$|[^\w./-])`)
	mdRevision      = regexp.MustCompile(`name: revision, value: "?([^ },"]+)`)
	rawGitHub       = regexp.MustCompile(`raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/([^/\s]+)/`)
	usesLine        = regexp.MustCompile(`(?m)^\s*(?:-\s*)?uses:\s*(\S+)`)
	digestRef       = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)
	commit          = regexp.MustCompile(`^[0-9a-f]{40}$`)
	fence           = regexp.MustCompile("(?ms)^```ya?ml\n(.*?)^```")
)

// checkText is the problems of one file.
func checkText(file, text string, st Stamp) []string {
	var out []string
	for _, sub := range nestattestImage.FindAllStringSubmatch(text, -1) {
		m := sub[1]
		if host, _, _ := strings.Cut(m, "/"); host == "github.com" || host == "raw.githubusercontent.com" {
			continue
		}
		repo, _, hasDigest := strings.Cut(m, "@")
		if _, tag, hasTag := strings.Cut(strings.TrimPrefix(repo, hostOf(repo)), ":"); hasTag && !hasDigest {
			out = append(out, fmt.Sprintf("the nestattest image by tag (%s): %s", tag, m))
		} else if hasDigest && repo == st.Repository() && m != st.Image {
			out = append(out, fmt.Sprintf("%s is not the stamped image %s", m, st.Image))
		}
	}
	for _, m := range rawGitHub.FindAllStringSubmatch(text, -1) {
		if !commit.MatchString(m[1]) {
			out = append(out, fmt.Sprintf("raw.githubusercontent.com at %q, not a commit", m[1]))
		}
	}
	for _, m := range usesLine.FindAllStringSubmatch(text, -1) {
		if _, ref, ok := strings.Cut(m[1], "@"); !strings.HasPrefix(m[1], "./") && (!ok || !commit.MatchString(ref)) {
			out = append(out, fmt.Sprintf("uses: %s, not pinned by a full commit SHA", m[1]))
		}
	}
	switch {
	case strings.HasSuffix(file, ".md"):
		for _, m := range mdRevision.FindAllStringSubmatch(text, -1) {
			out = append(out, revisionProblems(m[1], st)...)
		}
		for _, m := range fence.FindAllStringSubmatch(text, -1) {
			out = append(out, yamlProblems(m[1], st, true)...)
		}
	case strings.HasSuffix(file, ".yaml") || strings.HasSuffix(file, ".yml"):
		for _, doc := range strings.Split(text, "\n---\n") {
			out = append(out, yamlProblems(doc, st, false)...)
		}
	}
	return out
}

// hostOf is the registry host (with its port) of a reference.
func hostOf(ref string) string {
	host, _, _ := strings.Cut(ref, "/")
	return host
}

func revisionProblems(rev string, st Stamp) []string {
	if strings.HasPrefix(rev, "$(") {
		return nil
	}
	if !commit.MatchString(rev) {
		return []string{fmt.Sprintf("git revision %q, not a commit", rev)}
	}
	return nil
}

// yamlProblems walks a YAML document: images and *_IMAGE parameters by
// digest, git resolver revisions by commit. A fragment (from Markdown)
// that is not a whole document is skipped.
func yamlProblems(doc string, st Stamp, fragment bool) []string {
	var v any
	if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
		if fragment {
			return nil
		}
		return []string{fmt.Sprintf("YAML: %v", err)}
	}
	var out []string
	walkYAML(v, func(m map[string]any) {
		if img, ok := m["image"].(string); ok {
			out = append(out, imageProblems("image", img)...)
		}
		name, _ := m["name"].(string)
		if strings.HasSuffix(name, "_IMAGE") {
			for _, k := range []string{"default", "value"} {
				if s, ok := m[k].(string); ok {
					out = append(out, imageProblems(name, s)...)
				}
			}
		}
		if m["resolver"] == "git" {
			params, _ := m["params"].([]any)
			for _, p := range params {
				if pm, ok := p.(map[string]any); ok && pm["name"] == "revision" {
					out = append(out, revisionProblems(fmt.Sprint(pm["value"]), st)...)
				}
			}
		}
	})
	return out
}

func imageProblems(field, ref string) []string {
	if strings.HasPrefix(ref, "$(") || digestRef.MatchString(ref) {
		return nil
	}
	return []string{fmt.Sprintf("%s %s, not by digest", field, ref)}
}

func walkYAML(v any, fn func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		fn(x)
		for _, c := range x {
			walkYAML(c, fn)
		}
	case []any:
		for _, c := range x {
			walkYAML(c, fn)
		}
	}
}

// String shows the stamp, for people.
func (s Stamp) String() string {
	b, _ := json.MarshalIndent(s, "", "  ")
	return string(b)
}
