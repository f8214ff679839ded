package plan

import (
	"container/heap"
	"sort"
)

// Assign gives each node a shard. repos names each node's repository, in
// tree order; shards is at most len(repos). Shard s gets exactly
// ⌈n/shards⌉ nodes when s < n mod shards, else ⌊n/shards⌋. Repositories
// are placed largest first (ties in tree order), each whole on the shard
// with most room left (ties to the lower id) when it fits there; one that
// does not fit fills that shard and goes on, in tree order, to the next
// with most room. Every split fills a shard, so at most shards−1
// repositories are split. Nodes of one repository keep their tree order
// across the shards they are split over.
func Assign(repos []string, shards int) []int {
	out := make([]int, len(repos))
	if len(repos) == 0 || shards < 1 {
		return out
	}
	rooms := newRooms(len(repos), shards)
	for _, g := range groups(repos) {
		for len(g) > 0 {
			r := heap.Pop(rooms).(room)
			take := min(r.left, len(g))
			for _, id := range g[:take] {
				out[id] = r.shard
			}
			g, r.left = g[take:], r.left-take
			if r.left > 0 {
				heap.Push(rooms, r)
			}
		}
	}
	return out
}

// groups returns the node ids of each repository, largest first, ties in
// the order the repositories are first met.
func groups(repos []string) [][]int {
	index := map[string]int{}
	var gs [][]int
	for id, r := range repos {
		i, ok := index[r]
		if !ok {
			i = len(gs)
			index[r] = i
			gs = append(gs, nil)
		}
		gs[i] = append(gs[i], id)
	}
	sort.SliceStable(gs, func(i, j int) bool { return len(gs[i]) > len(gs[j]) })
	return gs
}

// room is how many more nodes a shard takes.
type room struct{ shard, left int }

// rooms is a heap of shards, the one with most room first, ties to the
// lower id.
type rooms []room

func newRooms(n, shards int) *rooms {
	rs := make(rooms, shards)
	for s := range rs {
		rs[s] = room{shard: s, left: n / shards}
		if s < n%shards {
			rs[s].left++
		}
	}
	heap.Init(&rs)
	return &rs
}

func (r rooms) Len() int { return len(r) }
func (r rooms) Less(i, j int) bool {
	if r[i].left != r[j].left {
		return r[i].left > r[j].left
	}
	return r[i].shard < r[j].shard
}
func (r rooms) Swap(i, j int) { r[i], r[j] = r[j], r[i] }
func (r *rooms) Push(x any)   { *r = append(*r, x.(room)) }
func (r *rooms) Pop() any {
	old := *r
	x := old[len(old)-1]
	*r = old[:len(old)-1]
	return x
}
