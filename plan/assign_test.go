package plan

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// repos makes a node list: sizes[i] nodes in repository r<i>, the
// repositories one after another in tree order.
func repos(sizes ...int) []string {
	var out []string
	for i, n := range sizes {
		for range n {
			out = append(out, fmt.Sprintf("r%d", i))
		}
	}
	return out
}

// wide is sample.Wide's shape: the root alone, then children repositories
// of 1+leaves nodes.
func wide(children, leaves int) []string {
	sizes := []int{1}
	for range children {
		sizes = append(sizes, 1+leaves)
	}
	return repos(sizes...)
}

// stats checks Assign's contract and returns the shard sizes and the
// repositories split across shards.
func stats(t *testing.T, nodes []string, shards int, got []int) (sizes []int, split int) {
	t.Helper()
	sizes = make([]int, shards)
	where := map[string]map[int]bool{}
	for id, s := range got {
		if s < 0 || s >= shards {
			t.Fatalf("node %d in shard %d of %d", id, s, shards)
		}
		sizes[s]++
		if where[nodes[id]] == nil {
			where[nodes[id]] = map[int]bool{}
		}
		where[nodes[id]][s] = true
	}
	lo, hi := len(nodes)/shards, (len(nodes)+shards-1)/shards
	for s, n := range sizes {
		if n < lo || n > hi {
			t.Errorf("shard %d has %d nodes, want %d to %d", s, n, lo, hi)
		}
	}
	for _, ss := range where {
		if len(ss) > 1 {
			split++
		}
	}
	if split > shards-1 {
		t.Errorf("%d repositories split across %d shards, want at most %d", split, shards, shards-1)
	}
	return sizes, split
}

func TestAssign(t *testing.T) {
	for _, tc := range []struct {
		name   string
		nodes  []string
		shards int
		split  int // repositories split across shards
		sizes  []int
	}{
		{"one shard", repos(3, 2), 1, 0, []int{5}},
		{"whole repositories fit", repos(4, 4, 4, 4), 4, 0, []int{4, 4, 4, 4}},
		{"largest first, most room first", repos(1, 3, 2, 2), 2, 0, []int{4, 4}},
		{"a repository larger than a shard", repos(10), 3, 1, []int{4, 3, 3}},
		{"a node a shard", repos(1, 1, 1), 3, 0, []int{1, 1, 1}},
		{"the 10,000-node tree in 16", wide(99, 100), 16, 3, slices.Repeat([]int{625}, 16)},
		{"the ko sample in 3", repos(1, 3, 3, 3), 3, 0, []int{4, 3, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Assign(tc.nodes, tc.shards)
			sizes, split := stats(t, tc.nodes, tc.shards, got)
			if !slices.Equal(sizes, tc.sizes) || split != tc.split {
				t.Errorf("sizes %v, %d split; want %v, %d split", sizes, split, tc.sizes, tc.split)
			}
			if again := Assign(tc.nodes, tc.shards); !slices.Equal(again, got) {
				t.Error("Assign is not deterministic")
			}
		})
	}
}

// TestAssignKeepsTreeOrder: a repository split across shards is cut in
// tree order, and a shard's nodes of one repository are contiguous.
func TestAssignKeepsTreeOrder(t *testing.T) {
	nodes := repos(10)
	got := Assign(nodes, 3)
	if !slices.IsSorted(got) {
		t.Errorf("a repository split out of tree order: %v", got)
	}
}

// TestAssignRandom checks the contract on random shapes.
func TestAssignRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		sizes := make([]int, 1+r.IntN(40))
		for i := range sizes {
			sizes[i] = 1 + r.IntN(200)
		}
		nodes := repos(sizes...)
		shards := 1 + r.IntN(min(MaxShards, len(nodes)))
		stats(t, nodes, shards, Assign(nodes, shards))
	}
}
