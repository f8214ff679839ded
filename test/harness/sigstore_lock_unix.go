//go:build unix

package harness

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// holdMachineLock takes an exclusive lock on the file name in the
// temporary directory, shared by every process of the machine, waiting up
// to timeout for it, and releases it when the test ends. It guards a
// resource the harness cannot choose per test, such as a fixed port.
func holdMachineLock(t testing.TB, name string, timeout time.Duration) {
	t.Helper()
	f := lockFile(t, filepath.Join(os.TempDir(), name), timeout)
	t.Cleanup(func() { f.Close() }) // closing the file releases the lock
}

// lockFile takes an exclusive lock on the file at path, waiting up to
// timeout for it, and returns the file: the lock is held until every copy
// of its descriptor (a child process may inherit one) is closed.
func lockFile(t testing.TB, path string, timeout time.Duration) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			if waited := time.Since(start); waited > time.Second {
				t.Logf("waited %v for lock %s (held while a test runs a TSA)", waited.Round(time.Second), path)
			}
			return f
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			t.Fatalf("lock %s (held while a test runs a TSA): %v after waiting up to %v", path, err, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
