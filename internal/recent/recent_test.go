package recent

import (
	"errors"
	"testing"
)

func TestCacheKeepsTheMostRecent(t *testing.T) {
	c := New[int, string](2)
	c.Add(1, "a")
	c.Add(2, "b")
	c.Add(1, "a2") // an update does not make room
	c.Add(3, "c")  // drops 1, the oldest key
	if _, ok := c.Get(1); ok {
		t.Error("the oldest key kept")
	}
	if v, ok := c.Get(2); !ok || v != "b" {
		t.Errorf("2: %q %v", v, ok)
	}
	calls := 0
	fn := func() (string, error) { calls++; return "x", nil }
	for range 3 {
		if v, err := c.Do(4, fn); err != nil || v != "x" {
			t.Fatal(v, err)
		}
	}
	if calls != 1 {
		t.Errorf("computed %d times", calls)
	}
	failed := errors.New("no")
	if _, err := c.Do(5, func() (string, error) { return "", failed }); !errors.Is(err, failed) {
		t.Error(err)
	}
	if _, ok := c.Get(5); ok {
		t.Error("a failure kept")
	}
	var zero Cache[int, int]
	zero.Add(1, 1)
	if _, ok := zero.Get(1); ok {
		t.Error("the zero cache kept a value")
	}
}
