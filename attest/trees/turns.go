package trees

import (
	"github.com/nestattest/nestattest/internal/pool"
	"github.com/nestattest/nestattest/walk"
)

// forEachNode calls fn for each index of nodes on at most jobs goroutines,
// the nodes' repositories taking turns (byTurns).
func forEachNode(nodes []*walk.Node, jobs int, fn func(i int)) {
	order := byTurns(len(nodes), func(i int) string { return nodes[i].Repository.Name() })
	pool.ForEach(len(order), jobs, func(k int) { fn(order[k]) })
}

// byTurns returns 0..n-1 reordered so that the keys take turns: the
// first item of each key (in the order keys first appear), then the
// second of each, and so on. Work over a tree in tree order reaches a
// repository's items one after another, so a run's workers would all
// wait at once for what each repository needs first (its tag listing,
// its blobs mounted); taking repositories in turns spreads them.
func byTurns(n int, key func(i int) string) []int {
	var keys []string
	groups := map[string][]int{}
	for i := range n {
		k := key(i)
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], i)
	}
	out := make([]int, 0, n)
	for turn := 0; len(out) < n; turn++ {
		for _, k := range keys {
			if g := groups[k]; turn < len(g) {
				out = append(out, g[turn])
			}
		}
	}
	return out
}
