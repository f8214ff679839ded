// Package shard measures sharded signing at scale: `nestattest plan`, then
// `nestattest sign --plan --shard` processes a few at a time, beside one
// unsharded `nestattest sign` of an identical copy of the tree, on the real
// distribution registry v3.1.2 behind a proxy that counts every request and
// byte by the process that made it. Its tests are built with
// the tag bench, as test/bench's are (`make bench` runs them).
//
// TestShardBench (10,000 nodes by default, sample.Wide 99×100, in 16
// shards 4 at a time) checks that every node is signed exactly once (no
// node in two shards' reports, none missed, one .sig and one .att layer
// each), that `verify` of the whole tree passes, and that the shards'
// requests are the unsharded run's plus what reading the plan costs; it
// prints the per-shard wall times, requests and bytes beside the
// unsharded run. TestPlanBench plans a 100,000-node tree (sample.Wide
// 271×368) and reports its time and peak RSS.
//
// NESTATTEST_SHARD_SHAPE=children,leaves, NESTATTEST_SHARDS and
// NESTATTEST_SHARD_PARALLEL change the first; NESTATTEST_PLAN_SHAPE the
// second.
package shard
