// Command stamp writes a release's identity into the tree (the Task, the
// StepAction, their samples and READMEs, the action, the docs), checks that
// nothing names it by tag, or compares a build with what the tree carries.
//
//	go run ./internal/release/stamp -version v0.2.0 -image ghcr.io/nestattest/nestattest@sha256:… -checksums dist/checksums.txt
//	go run ./internal/release/stamp -revision $(git rev-parse HEAD)
//	go run ./internal/release/stamp -check
//	go run ./internal/release/stamp -compare -image … -checksums dist/checksums.txt
//
// Flags left out keep what the tree carries.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/nestattest/nestattest/internal/release"
)

func main() {
	root := flag.String("root", ".", "the repository root")
	version := flag.String("version", "", "the release, vX.Y.Z")
	image := flag.String("image", "", "the image index, <repository>@sha256:…")
	revision := flag.String("revision", "", "the commit the samples resolve the Task and StepAction at")
	checksums := flag.String("checksums", "", "sha256sum lines of the release's files; the nestattest-<os>-<arch> ones are stamped")
	check := flag.Bool("check", false, "report what names the release by tag, or another release")
	compare := flag.Bool("compare", false, "fail unless -version, -image and -checksums equal what the tree carries")
	flag.Parse()
	if err := run(*root, *version, *image, *revision, *checksums, *check, *compare); err != nil {
		fmt.Fprintln(os.Stderr, "stamp:", err)
		os.Exit(1)
	}
}

func run(root, version, image, revision, checksums string, check, compare bool) error {
	if check {
		return release.Check(root)
	}
	cur, err := release.Read(root)
	if err != nil {
		return err
	}
	next := cur
	if version != "" {
		next.Version = version
	}
	if image != "" {
		next.Image = image
	}
	if revision != "" {
		next.Revision = revision
	}
	if checksums != "" {
		if next.Binaries, err = binaries(checksums); err != nil {
			return err
		}
	}
	if compare {
		return same(cur, next)
	}
	changed, err := release.Apply(root, next)
	for _, f := range changed {
		fmt.Println("stamped", f)
	}
	return err
}

// binaries reads the sums of the nestattest binaries from sha256sum lines.
func binaries(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if ok && strings.HasPrefix(name, "nestattest-") && !strings.Contains(name, ".") {
			out[name] = sum
		}
	}
	return out, sc.Err()
}

// same fails unless the build is what the tree was stamped with: the
// release is reproducible and the tree names what was built.
func same(stamped, built release.Stamp) error {
	var diff []string
	if stamped.Version != built.Version {
		diff = append(diff, fmt.Sprintf("version: stamped %q, built %q", stamped.Version, built.Version))
	}
	if stamped.Image != built.Image {
		diff = append(diff, fmt.Sprintf("image: stamped %s, built %s", stamped.Image, built.Image))
	}
	for name, sum := range built.Binaries {
		if stamped.Binaries[name] != sum {
			diff = append(diff, fmt.Sprintf("%s: stamped %q, built %s", name, stamped.Binaries[name], sum))
		}
	}
	if len(stamped.Binaries) != len(built.Binaries) {
		diff = append(diff, fmt.Sprintf("%d binaries stamped, %d built", len(stamped.Binaries), len(built.Binaries)))
	}
	if len(diff) > 0 {
		return fmt.Errorf("the build is not what the tree was stamped with (run `make stamp` and commit, or the build is not reproducible):\n  %s", strings.Join(diff, "\n  "))
	}
	fmt.Println("the build is what the tree was stamped with:", built.Image)
	return nil
}
