//go:build !unix

package harness

import (
	"testing"
	"time"
)

// holdMachineLock does nothing where flock(2) is missing: tests that need
// the guarded resource may collide there.
func holdMachineLock(testing.TB, string, time.Duration) {}
