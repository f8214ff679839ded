package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/spf13/cobra"

	"github.com/nestattest/nestattest/attest/identity"
	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/walk"
)

func newDemo(s streams) *cobra.Command {
	var keep string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole job on a sample tree in an in-process registry",
		Long: `demo starts a registry inside this process on a loopback port, pushes a
ko-shaped sample (app1, app2 and app3 in org/ko-build/<app>, each a
two-platform index, app2 listing app2/plugins), composes the parent
org/ko-build from the references ko would print, shows the tree, signs and
attests every node with a throw-away key file (cosign.key), twice (the
second run writes nothing), and verifies the whole tree. Nothing leaves the
machine: no transparency log is written (--tlog-upload=false) or checked
(--insecure-ignore-tlog). Real builds sign keylessly or with a KMS key
(docs/trust.md); the key file is for trying things out.

With --keep DIR the key pair and the reference file stay in DIR, and the
registry keeps serving until Ctrl-C, so you can run the commands the demo
suggests at its end.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error { return runDemo(cmd.Context(), s, keep) },
	}
	cmd.Flags().StringVar(&keep, "keep", "", "keep the key pair and references in this directory, and the registry serving until interrupted")
	return cmd
}

func runDemo(ctx context.Context, s streams, keep string) error {
	host, stop, err := startRegistry()
	if err != nil {
		return err
	}
	defer stop()
	fmt.Fprintf(s.out, "==> in-process registry at %s\n", host)

	parent, err := name.NewRepository(host + "/org/ko-build")
	if err != nil {
		return err
	}
	children, err := sample.KoChildren(walk.AnnotationRepository)
	if err != nil {
		return err
	}
	work, err := demoDir(keep)
	if err != nil {
		return err
	}
	if keep == "" {
		defer os.RemoveAll(work)
	}
	refs, err := pushChildren(parent, children, filepath.Join(work, "ko-refs.txt"))
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "==> pushed app1, app2 (listing app2/plugins) and app3 into %s/<app>; as ko prints them:\n%s", parent, refs)

	key, password, err := demoKey(work)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "==> throw-away cosign key pair %s (cosign.pub beside it), its random password in %s\n", key, password)

	root := parent.Tag("latest").String()
	for _, args := range [][]string{
		{"catalog", "--from", filepath.Join(work, "ko-refs.txt"), root},
		{"tree", root},
		{"sign", "--key", key, "--password-file", password, "--tlog-upload=false", root},
		{"sign", "--key", key, "--password-file", password, "--tlog-upload=false", root},
		{"verify", "--key", filepath.Join(work, "cosign.pub"), "--insecure-ignore-tlog", "--require-root", root},
	} {
		fmt.Fprintf(s.out, "\n$ nestattest %s\n", strings.Join(args, " "))
		if code := Execute(ctx, args, strings.NewReader(""), s.out, s.err); code != ExitOK {
			return fmt.Errorf("nestattest %s exited %d", args[0], code)
		}
	}
	return demoNext(ctx, s, keep, key, password, root)
}

// demoDir is where the demo's files go: DIR with --keep, made if need be,
// else a temporary directory.
func demoDir(keep string) (string, error) {
	if keep == "" {
		return os.MkdirTemp("", "nestattest-demo-")
	}
	if err := os.MkdirAll(keep, 0o700); err != nil {
		return "", fmt.Errorf("--keep %s: %w", keep, err)
	}
	if entries, err := os.ReadDir(keep); err != nil || len(entries) > 0 {
		return "", fmt.Errorf("--keep %s: want a new or empty directory", keep)
	}
	return keep, nil
}

// demoNext says what to try next; with --keep it serves until interrupted.
func demoNext(ctx context.Context, s streams, keep, key, password, root string) error {
	pub := filepath.Join(filepath.Dir(key), "cosign.pub")
	fmt.Fprintf(s.out, "\n==> done. Next, try:\n")
	if keep == "" {
		fmt.Fprintf(s.out, "  go run ./cmd/nestattest demo --keep ./demo   # keep the key and the registry running, to try the commands below\n")
	}
	fmt.Fprintf(s.out, "  nestattest tree -o json %s\n", root)
	fmt.Fprintf(s.out, "  nestattest sign --key %s --password-file %s --tlog-upload=false --format bundle %s   # add sigstore bundles, as cosign v3 stores them\n", key, password, root)
	fmt.Fprintf(s.out, "  nestattest verify --key %s --insecure-ignore-tlog -v %s\n", pub, root)
	fmt.Fprintf(s.out, "  cosign verify --key %s --insecure-ignore-tlog --allow-insecure-registry %s\n", pub, root)
	fmt.Fprintf(s.out, "A key file is for trying things out. Real builds sign keylessly (an OIDC identity: GitHub Actions' token,\n"+
		"a projected service-account token) or with a KMS key (--key awskms://…, gcpkms://…), so no key sits beside a\n"+
		"build step; see docs/trust.md.\n")
	if keep == "" {
		return nil
	}
	fmt.Fprintf(s.out, "the registry at %s serves until Ctrl-C; the key and references stay in %s\n", strings.SplitN(root, "/", 2)[0], keep)
	<-ctx.Done()
	return nil
}

// pushChildren pushes each child into parent/<path>, tagged latest, and
// writes their digest references to file, one a line, as ko prints them.
// The in-process registry wants an index's children in its repository, so
// app2/plugins is also put, manifests only, into app2.
func pushChildren(parent name.Repository, children []sample.Child, file string) (string, error) {
	p := sample.Pusher{Annotation: walk.AnnotationRepository, MirrorManifests: true}
	var refs strings.Builder
	for _, c := range children {
		d, err := p.Push(parent.Registry.Repo(parent.RepositoryStr(), c.Path), c.Index, "latest")
		if err != nil {
			return "", fmt.Errorf("push %s: %w", c.Path, err)
		}
		fmt.Fprintln(&refs, d)
	}
	return refs.String(), os.WriteFile(file, []byte(refs.String()), 0o644)
}

// demoKey writes a throw-away key pair into dir, cosign.key and
// cosign.pub, encrypted with a random password kept in demo-password.txt
// for --password-file.
func demoKey(dir string) (key, password string, err error) {
	pass := []byte(randomHex())
	key, _, err = identity.GenerateKeyPair(filepath.Join(dir, "cosign"), func(bool) ([]byte, error) { return pass, nil })
	if err != nil {
		return "", "", err
	}
	password = filepath.Join(dir, "demo-password.txt")
	return key, password, os.WriteFile(password, pass, 0o600)
}

// startRegistry serves go-containerregistry's in-memory registry on a
// loopback port.
func startRegistry() (host string, stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("in-process registry: %w", err)
	}
	srv := &http.Server{
		Handler:           ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("in-process registry: %v", err)
		}
	}()
	return l.Addr().String(), func() { _ = srv.Close() }, nil
}
