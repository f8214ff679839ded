package trees

import (
	"slices"
	"testing"
)

func TestByTurns(t *testing.T) {
	keys := []string{"a", "a", "a", "b", "c", "c"}
	got := byTurns(len(keys), func(i int) string { return keys[i] })
	if want := []int{0, 3, 4, 1, 5, 2}; !slices.Equal(got, want) {
		t.Errorf("byTurns = %v, want %v", got, want)
	}
	if got := byTurns(0, func(int) string { return "" }); len(got) != 0 {
		t.Errorf("byTurns(0) = %v", got)
	}
}
