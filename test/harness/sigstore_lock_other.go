//go:build !unix

package harness

import (
	"testing"
	"time"
)

// holdMachineLock does nothing where flock(2) is missing: tests that need
// the guarded resource may collide there.
func holdMachineLock(testing.TB, string, time.Duration) {}

// sharedTSADir is empty where flock(2) is missing: every Sigstore starts
// its own timestamp authority there.
func sharedTSADir() string { return "" }

// sharedTSA is never called where sharedTSADir is empty.
func sharedTSA(t testing.TB, _, _ string) (string, []byte) {
	t.Helper()
	t.Fatal("no shared timestamp authority on this platform")
	return "", nil
}
