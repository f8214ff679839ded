package harness

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startTimeout bounds how long a registry may take to answer its first
// GET /v2/: generous, for a busy two-core machine.
const startTimeout = 60 * time.Second

// logTail is how much of a registry's log a failed test prints.
const logTail = 8 << 10

// serve runs `bin serve config.yml` with filesystem storage, configuration
// and log in dir, and extra appended to the configuration, waits until it answers
// GET /v2/, stops it when the test ends and prints its log if the test
// failed. It returns the registry's host:port. A port taken between choosing
// it and the registry binding it is retried with another. env is added to
// the registry's environment.
func serve(t testing.TB, bin, dir, extra string, env ...string) string {
	t.Helper()
	for attempt := 1; ; attempt++ {
		addr := freeAddr(t)
		p := start(t, bin, dir, registryConfig(filepath.Join(dir, "data"), addr)+extra, env...)
		err := p.waitReady(addr)
		if err == nil {
			t.Cleanup(func() { p.stop(t) })
			return addr
		}
		p.kill()
		if attempt < 3 && strings.Contains(p.log(), "address already in use") {
			continue
		}
		t.Fatalf("%s: %v; log:\n%s", filepath.Base(bin), err, p.log())
	}
}

// registryConfig is the part of the configuration every registry shares:
// the 0.1 schema, warnings and errors logged (no access log), filesystem
// storage with deletes enabled and the in-memory blob descriptor cache (as
// distribution's example configuration and Debian's package ship it), plain
// HTTP.
func registryConfig(root, addr string) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: nestattest-test-upload-state
`, root, addr)
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// process is a registry running as a child process.
type process struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed once the process has exited
	err     error         // why it exited, once exited is closed
}

// start writes cfg to dir/config.yml and starts `bin serve` on it with env
// added to its environment, its output going to dir/registry.log.
func start(t testing.TB, bin, dir, cfg string, env ...string) *process {
	t.Helper()
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &process{logPath: filepath.Join(dir, "registry.log"), exited: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "serve", cfgPath)
	// distribution v3 exports traces over OTLP by default.
	p.cmd.Env = append(append(os.Environ(), "OTEL_TRACES_EXPORTER=none"), env...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	dieWithParent(p.cmd)
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p
}

// waitReady polls GET /v2/ until it answers 200, the process exits or
// startTimeout passes.
func (p *process) waitReady(addr string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if resp, err := client.Get("http://" + addr + "/v2/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p.running()
			}
		}
		select {
		case <-p.exited:
			return p.running()
		case <-deadline.C:
			return fmt.Errorf("no answer to GET http://%s/v2/ within %v", addr, startTimeout)
		case <-tick.C:
		}
	}
}

// running returns why the process exited, or nil while it runs.
func (p *process) running() error {
	select {
	case <-p.exited:
		return fmt.Errorf("exited: %v", p.err)
	default:
		return nil
	}
}

// kill stops the process and waits for it.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// stop kills the process and, if the test failed, prints the end of its log.
func (p *process) stop(t testing.TB) {
	p.kill()
	if t.Failed() {
		t.Logf("%s log (%s):\n%s", filepath.Base(p.cmd.Path), p.logPath, p.log())
	}
}

// log returns the end of the process's log.
func (p *process) log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > logTail {
		b = b[len(b)-logTail:]
	}
	return string(b)
}
