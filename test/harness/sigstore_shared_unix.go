//go:build unix

package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// sharedTSA returns the base URL and the certificate chain of the timestamp
// authority that every test process sharing dir uses, starting it when none
// answers. It runs detached (its own session, not killed with the test
// process that started it): whoever set EnvSharedTSA stops it, by the pid
// in dir/pid (test/ci.sh does, when the suite ends). It inherits the
// machine's TSA lock (see StartSigstore), so a test that starts a TSA of
// its own, from a process without EnvSharedTSA, waits for it to stop.
func sharedTSA(t testing.TB, bin, dir string) (string, []byte) {
	t.Helper()
	mkdir(t, dir)
	dirLock := lockFile(t, filepath.Join(dir, "lock"), tsaLockWait)
	defer dirLock.Close()
	urlPath := filepath.Join(dir, "url")
	if b, err := os.ReadFile(urlPath); err == nil {
		base := strings.TrimSpace(string(b))
		p := &process{exited: make(chan struct{})} // not ours: poll sees no exit
		if body, err := p.poll(base + tsaReady); err == nil {
			return base, body
		} else {
			t.Logf("the shared timestamp authority at %s does not answer (%v): starting another", base, err)
		}
	}
	machine := lockFile(t, filepath.Join(os.TempDir(), tsaMachineLock), tsaLockWait)
	defer machine.Close() // the TSA holds its own copy
	for attempt := 1; ; attempt++ {
		args, web := tsaArgs(t)
		p := launchWith(t, func(cmd *exec.Cmd) {
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			cmd.ExtraFiles = []*os.File{machine}
		}, dir, "timestamp-server", bin, args...)
		base := "http://" + web
		body, err := p.poll(base + tsaReady)
		if err == nil {
			pid := strconv.Itoa(p.cmd.Process.Pid)
			if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(pid+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(urlPath+".tmp", []byte(base+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(urlPath+".tmp", urlPath); err != nil {
				t.Fatal(err)
			}
			t.Logf("started the shared timestamp authority at %s (pid %s, %s)", base, pid, dir)
			return base, body
		}
		p.kill()
		if attempt < 3 && strings.Contains(p.log(), "address already in use") {
			continue
		}
		t.Fatalf("the shared timestamp authority: %v; log:\n%s", err, p.log())
	}
}

// sharedTSADir is the directory EnvSharedTSA names, if any.
func sharedTSADir() string { return os.Getenv(EnvSharedTSA) }
