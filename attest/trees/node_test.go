package trees

import (
	"errors"
	"testing"
)

// TestOnceMapForgetsFailures: a value is computed once, but a failure is
// not kept: a node's retry asks again rather than meeting the old error.
func TestOnceMapForgetsFailures(t *testing.T) {
	var m onceMap[string, int]
	calls := 0
	fail := errors.New("reset")
	fn := func() (int, error) {
		calls++
		if calls == 1 {
			return 0, fail
		}
		return calls, nil
	}
	if _, err := m.do("k", fn); !errors.Is(err, fail) {
		t.Fatalf("first call: %v", err)
	}
	for range 2 {
		if v, err := m.do("k", fn); err != nil || v != 2 {
			t.Fatalf("after a failure: %d, %v; want 2, nil", v, err)
		}
	}
	if calls != 2 {
		t.Errorf("%d calls, want 2", calls)
	}
}
