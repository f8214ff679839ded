package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
)

// Names of the Tekton results Chains reads as a type-hinted image.
const (
	resultImageURL    = "IMAGE_URL"
	resultImageDigest = "IMAGE_DIGEST"
	// resultImages lists more images, comma-separated, each
	// repository@digest: Chains signs and attests each, and makes each a
	// subject of the provenance; Conforma reads it split at commas.
	resultImages = "IMAGES"
)

// resultOptions say where a run's results go besides the terminal.
type resultOptions struct {
	dir    string
	report string
	images imagesOptions
}

func (o *resultOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.dir, "results-dir", "",
		"write the root's IMAGE_URL and IMAGE_DIGEST (and, for sign, IMAGES) into this directory (a Tekton results path such as /tekton/results)")
	cmd.Flags().StringVar(&o.report, "report", "", "write the JSON report of every node to this file")
}

// results are what a run hands on: the root as Tekton results and GitHub
// outputs, more outputs, a Markdown step summary and the JSON report.
type results struct {
	root    name.Reference // as the user named it
	digest  string
	outputs map[string]string
	summary string
	report  any
	// images are the nodes below the root, each repository@digest in its
	// own repository, for the IMAGES result when --images allows it; nil
	// where a run emits no IMAGES (catalog, verify, propagate).
	images []string
	// log is where the run says what became of IMAGES.
	log io.Writer
	// counts, instead of IMAGE_URL and IMAGE_DIGEST, are the Tekton results:
	// NODES and WRITTEN, for a run whose root Chains must not sign again
	// (propagate).
	counts bool
}

// imageURL is the IMAGE_URL result for a root: its repository and tag, or
// the repository alone when it was named by digest. Chains reads
// IMAGE_URL@IMAGE_DIGEST.
func imageURL(ref name.Reference) string {
	if t, ok := ref.(name.Tag); ok {
		return t.Name()
	}
	return ref.Context().Name()
}

// write hands the results on: files in the results directory, the report,
// and under GitHub Actions $GITHUB_OUTPUT and $GITHUB_STEP_SUMMARY.
func (o *resultOptions) write(r results) error {
	files := map[string]string{resultImageURL: imageURL(r.root), resultImageDigest: r.digest}
	if r.counts {
		files = map[string]string{"NODES": r.outputs["nodes"], "WRITTEN": r.outputs["written"]}
	}
	images, err := o.images.value(r, o.dir, files)
	if err != nil {
		return err
	}
	if r.images != nil && o.dir != "" {
		files[resultImages] = images
	}
	for name, value := range files {
		if o.dir == "" {
			break
		}
		if err := writeFileAtomic(filepath.Join(o.dir, name), []byte(value)); err != nil {
			return err
		}
	}
	if err := o.writeReport(r.report); err != nil {
		return err
	}
	if p := os.Getenv("GITHUB_OUTPUT"); p != "" {
		out := map[string]string{"url": imageURL(r.root), "digest": r.digest, "reference": r.root.Context().Digest(r.digest).String()}
		for k, v := range r.outputs {
			out[k] = v
		}
		if r.images != nil && o.images.mode != imagesNever {
			out["images"] = strings.Join(r.images, ",")
		}
		if err := appendFile(p, githubOutputs(out)); err != nil {
			return err
		}
	}
	if p := os.Getenv("GITHUB_STEP_SUMMARY"); p != "" && r.summary != "" {
		return appendFile(p, []byte(r.summary))
	}
	return nil
}

// writeReport writes the JSON report, if one was asked for.
func (o *resultOptions) writeReport(report any) error {
	if o.report == "" || report == nil {
		return nil
	}
	var b bytes.Buffer
	if err := writeJSON(&b, report); err != nil {
		return err
	}
	return writeFileAtomic(o.report, b.Bytes())
}

// githubOutputs formats outputs for $GITHUB_OUTPUT, sorted, multi-line
// values in the delimiter form.
func githubOutputs(out map[string]string) []byte {
	keys := make([]string, 0, len(out))
	for k := range out {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	for _, k := range keys {
		v := out[k]
		if !strings.ContainsAny(v, "\r\n") {
			fmt.Fprintf(&b, "%s=%s\n", k, v)
			continue
		}
		delim := "NESTATTEST_" + randomHex()
		fmt.Fprintf(&b, "%s<<%s\n%s\n%s\n", k, delim, v, delim)
	}
	return b.Bytes()
}

func randomHex() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// writeFileAtomic writes a file through a temporary file and a rename, so a
// reader never sees half of it.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func appendFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
