//go:build buildah

package ship

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildah runs Debian's buildah with chroot isolation and vfs storage in
// directories of the test's own.
type buildah struct {
	t         *testing.T
	root, run string
}

func (b buildah) cmd(args ...string) string {
	b.t.Helper()
	all := append([]string{"--root", b.root, "--runroot", b.run, "--storage-driver", "vfs"}, args...)
	cmd := exec.Command("buildah", all...)
	cmd.Env = append(os.Environ(), "BUILDAH_ISOLATION=chroot")
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if e, ok := err.(*exec.ExitError); ok {
			stderr = string(e.Stderr)
		}
		b.t.Fatalf("buildah %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return strings.TrimSpace(string(out))
}

// image commits a scratch image holding files (path in the image: path
// here) and the given config.
func (b buildah) image(tag string, files map[string]string, config ...string) {
	c := b.cmd("from", "scratch")
	m := b.cmd("mount", c)
	for to, from := range files {
		data, err := os.ReadFile(from)
		if err != nil {
			b.t.Fatal(err)
		}
		write(b.t, filepath.Join(m, to), string(data), 0o755)
	}
	for _, d := range []string{"tmp", "home/nonroot"} {
		mkdir(b.t, filepath.Join(m, d), 0o1777)
	}
	b.cmd("umount", c)
	if len(config) > 0 {
		b.cmd(append(append([]string{"config"}, config...), c)...)
	}
	b.cmd("commit", "--rm", c, tag)
}

// TestDockerfileBuildsWithBuildah builds the Dockerfile with a real builder:
// Debian's buildah, chroot isolation, vfs storage, the two base images made
// here (this machine reaches no image registry): a Go image of the
// machine's toolchain with busybox's sh, and a static image of CA
// certificates and the nonroot user, as distroless static has them. It
// takes minutes (modules downloaded inside the build), so it is built with
// the tag buildah only: `go test -tags buildah -run Buildah ./ship`, as
// root, with buildah and busybox-static installed.
func TestDockerfileBuildsWithBuildah(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"buildah", "busybox", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
	}
	dir := t.TempDir()
	b := buildah{t: t, root: filepath.Join(dir, "root"), run: filepath.Join(dir, "run")}
	goroot := goEnv(t, "GOROOT")
	busybox, _ := exec.LookPath("busybox")

	golang := map[string]string{"bin/busybox": busybox, "bin/sh": busybox, "etc/ssl/certs/ca-certificates.crt": "/etc/ssl/certs/ca-certificates.crt"}
	err := filepath.WalkDir(goroot, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			golang[filepath.Join("usr/local/go", strings.TrimPrefix(p, goroot))] = p
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	b.image("localhost/golang:local", golang, "--env", "PATH=/usr/local/go/bin:/bin", "--env", "HOME=/tmp", "--env", "GOPATH=/tmp/go",
		"--env", "GOPROXY="+goEnv(t, "GOPROXY"))
	passwd := filepath.Join(dir, "passwd")
	write(t, passwd, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n", 0o644)
	b.image("localhost/static:nonroot", map[string]string{"etc/passwd": passwd, "etc/ssl/certs/ca-certificates.crt": "/etc/ssl/certs/ca-certificates.crt"})

	b.cmd("bud", "--isolation", "chroot", "--layers=false",
		"--build-arg", "GO_IMAGE=localhost/golang:local", "--build-arg", "BASE_IMAGE=localhost/static:nonroot",
		"--build-arg", "VERSION=v0.0.0-buildah", "--build-arg", "REVISION=test",
		"-t", "localhost/nestattest:test", moduleRoot(t))

	var inspect struct {
		OCIv1 struct {
			Config struct {
				User       string
				Entrypoint []string
				Labels     map[string]string
			}
		}
	}
	if err := json.Unmarshal([]byte(b.cmd("inspect", "--type", "image", "localhost/nestattest:test")), &inspect); err != nil {
		t.Fatal(err)
	}
	cfg := inspect.OCIv1.Config
	if cfg.User != "65532:65532" || strings.Join(cfg.Entrypoint, " ") != "/usr/local/bin/nestattest" ||
		cfg.Labels["org.opencontainers.image.version"] != "v0.0.0-buildah" {
		t.Errorf("image config: user %q, entrypoint %v, labels %v", cfg.User, cfg.Entrypoint, cfg.Labels)
	}
	c := b.cmd("from", "localhost/nestattest:test")
	if out := b.cmd("run", "--isolation", "chroot", "--user", "65532:65532", c, "--", "/usr/local/bin/nestattest", "version"); !strings.HasPrefix(out, "nestattest v0.0.0-buildah ") {
		t.Errorf("nestattest version in the image: %q", out)
	}
	b.cmd("rm", c)
}

func goEnv(t *testing.T, key string) string {
	t.Helper()
	out, err := exec.Command("go", "env", key).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", key, err)
	}
	return strings.TrimSpace(string(out))
}
