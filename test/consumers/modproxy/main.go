// Command modproxy adds one module version, made from a git repository, to a
// file-system Go module proxy (GOPROXY=file://DIR): DIR/<module>/@v/<version>
// .info, .mod and .zip, the zip made by golang.org/x/mod/zip as the public
// proxy makes it.
//
// It is for the few module versions proxy.golang.org refuses to serve here
// ("403 This module version is not available") though sum.golang.org knows
// them. The go command checks every zip and go.mod it downloads against
// go.sum and the checksum database, so a copy made from anything but the
// tagged source is refused; modproxy also checks the zip's hash against the
// go.sum lines given with -sum before writing anything.
//
//	modproxy -git DIR -module github.com/tektoncd/chains -version v0.29.2 [-rev REV] [-subdir D] -sum go.sum -out PROXY
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "modproxy:", err)
		os.Exit(1)
	}
}

func run() error {
	gitDir := flag.String("git", "", "git directory (bare or not) holding the revision")
	mod := flag.String("module", "", "module path")
	version := flag.String("version", "", "module version")
	rev := flag.String("rev", "", "git revision (default: the version, as a tag; with -subdir, subdir/version)")
	subdir := flag.String("subdir", "", "the module's directory in the repository")
	sumFile := flag.String("sum", "", "a go.sum holding the module's h1: hashes; the zip and go.mod must match them")
	out := flag.String("out", "", "the proxy directory")
	flag.Parse()
	if *gitDir == "" || *mod == "" || *version == "" || *out == "" || *sumFile == "" {
		flag.Usage()
		return errors.New("-git, -module, -version, -sum and -out are required")
	}
	m := module.Version{Path: *mod, Version: *version}
	if err := module.Check(m.Path, m.Version); err != nil {
		return err
	}
	if *rev == "" {
		*rev = *version
		if *subdir != "" {
			*rev = *subdir + "/" + *version
		}
		if module.IsPseudoVersion(*version) {
			r, err := module.PseudoVersionRev(*version)
			if err != nil {
				return err
			}
			*rev = r
		}
	}
	wantZip, wantMod, err := sums(*sumFile, m)
	if err != nil {
		return err
	}

	commit, err := git(*gitDir, "rev-parse", "--verify", *rev+"^{commit}")
	if err != nil {
		return err
	}
	commit = strings.TrimSpace(commit)
	unix, err := git(*gitDir, "log", "-1", "--format=%ct", commit)
	if err != nil {
		return err
	}
	secs, err := strconv.ParseInt(strings.TrimSpace(unix), 10, 64)
	if err != nil {
		return err
	}

	tmp, err := os.MkdirTemp("", "modproxy")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "src")
	if err := extract(*gitDir, commit, *subdir, src); err != nil {
		return err
	}
	goMod, err := os.ReadFile(filepath.Join(src, "go.mod"))
	if err != nil {
		return err
	}
	if got, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(goMod)), nil
	}); err != nil || got != wantMod {
		return fmt.Errorf("%s go.mod at %s: hash %s, go.sum says %s (%v)", m, commit, got, wantMod, err)
	}
	zipFile := filepath.Join(tmp, "m.zip")
	f, err := os.Create(zipFile)
	if err != nil {
		return err
	}
	if err := modzip.CreateFromDir(f, m, src); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	got, err := dirhash.HashZip(zipFile, dirhash.Hash1)
	if err != nil {
		return err
	}
	if got != wantZip {
		return fmt.Errorf("%s from %s: zip hash %s, go.sum says %s", m, commit, got, wantZip)
	}

	escPath, err := module.EscapePath(m.Path)
	if err != nil {
		return err
	}
	escVer, err := module.EscapeVersion(m.Version)
	if err != nil {
		return err
	}
	dir := filepath.Join(*out, escPath, "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	info, err := json.Marshal(map[string]any{
		"Version": m.Version,
		"Time":    time.Unix(secs, 0).UTC().Format(time.RFC3339),
		"Origin":  map[string]string{"VCS": "git", "Hash": commit},
	})
	if err != nil {
		return err
	}
	zipBytes, err := os.ReadFile(zipFile)
	if err != nil {
		return err
	}
	for ext, b := range map[string][]byte{".info": info, ".mod": goMod, ".zip": zipBytes} {
		if err := os.WriteFile(filepath.Join(dir, escVer+ext), b, 0o644); err != nil {
			return err
		}
	}
	list, _ := os.ReadFile(filepath.Join(dir, "list"))
	if !bytes.Contains(append([]byte("\n"), list...), []byte("\n"+m.Version+"\n")) {
		list = append(list, m.Version+"\n"...)
		if err := os.WriteFile(filepath.Join(dir, "list"), list, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("modproxy: %s %s from %s (%s)\n", m.Path, m.Version, commit, got)
	return nil
}

// sums returns the module's zip and go.mod hashes from a go.sum.
func sums(file string, m module.Version) (zipSum, modSum string, err error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != m.Path {
			continue
		}
		switch f[1] {
		case m.Version:
			zipSum = f[2]
		case m.Version + "/go.mod":
			modSum = f[2]
		}
	}
	if zipSum == "" || modSum == "" {
		return "", "", fmt.Errorf("%s has no %s and %s/go.mod lines", file, m, m)
	}
	return zipSum, modSum, nil
}

func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"--git-dir", gitDirOf(dir)}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return string(out), nil
}

func gitDirOf(dir string) string {
	if fi, err := os.Stat(filepath.Join(dir, ".git")); err == nil && fi.IsDir() {
		return filepath.Join(dir, ".git")
	}
	return dir
}

// extract writes the regular files of commit's subdir into dst. A blob the
// git directory lacks (a partial mirror) is skipped: if the module zip needed
// it, the hash check fails.
func extract(gitDir, commit, subdir, dst string) error {
	prefix := ""
	if subdir != "" {
		prefix = strings.TrimSuffix(subdir, "/") + "/"
	}
	tree, err := git(gitDir, "ls-tree", "-r", "-z", "--full-tree", commit)
	if err != nil {
		return err
	}
	type entry struct{ path, sha string }
	var files []entry
	for _, rec := range strings.Split(tree, "\x00") {
		meta, path, ok := strings.Cut(rec, "\t")
		if !ok || !strings.HasPrefix(path, prefix) {
			continue
		}
		f := strings.Fields(meta) // mode type sha
		if len(f) != 3 || f[1] != "blob" || (f[0] != "100644" && f[0] != "100755") {
			continue // symlinks and submodules are never in a module zip
		}
		files = append(files, entry{strings.TrimPrefix(path, prefix), f[2]})
	}
	// A module in a subdirectory without a LICENSE gets the repository's,
	// as the go command's and the proxy's zips do.
	if prefix != "" {
		hasLicense := false
		for _, e := range files {
			hasLicense = hasLicense || e.path == "LICENSE"
		}
		if !hasLicense {
			for _, rec := range strings.Split(tree, "\x00") {
				meta, path, _ := strings.Cut(rec, "\t")
				if f := strings.Fields(meta); path == "LICENSE" && len(f) == 3 && f[1] == "blob" {
					files = append(files, entry{"LICENSE", f[2]})
				}
			}
		}
	}
	cmd := exec.Command("git", "--git-dir", gitDirOf(gitDir), "cat-file", "--batch")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() {
		w := bufio.NewWriter(stdin)
		for _, e := range files {
			fmt.Fprintln(w, e.sha)
		}
		w.Flush()
		stdin.Close()
	}()
	r := bufio.NewReader(stdout)
	for _, e := range files {
		header, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		f := strings.Fields(header)
		if len(f) == 2 && f[1] == "missing" {
			fmt.Fprintf(os.Stderr, "modproxy: %s is not in the git directory, skipped\n", e.path)
			continue
		}
		if len(f) != 3 {
			return fmt.Errorf("git cat-file: %q", header)
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return err
		}
		body := make([]byte, size+1) // and the newline
		if _, err := io.ReadFull(r, body); err != nil {
			return err
		}
		p := filepath.Join(dst, filepath.FromSlash(e.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, body[:size], 0o644); err != nil {
			return err
		}
	}
	return cmd.Wait()
}
