// Package bench measures nestattest against what a user would otherwise
// run: loops of the real cosign CLI over every node of a tree. Its tests are
// built with the tag bench (`make bench`; `go test -tags bench -run
// '^TestBench' -v ./test/bench`), so `go test ./...` leaves them out. They
// run on the real distribution registry v3.1.2 behind a counting proxy.
//
// For each environment (the registry's storage in memory, on disk, and in
// memory with 20ms added to every request, as a remote registry would
// take) and for trees of 100 and 1,000 nodes it prints, in one run: the
// time of `nestattest sign` and of a `cosign sign` + `cosign attest` loop
// over the same nodes (on a copy of the tree), the time of `nestattest
// verify` and of a `cosign verify` + `cosign verify-attestation` loop,
// their ratios, requests a node, under latency the floor (requests x
// latency / --jobs) and signing at several --jobs, the writes of a re-run
// and peak RSS. A 10,000-node tree measures peak RSS of tree, sign and
// verify. NESTATTEST_BENCH_SIZES (e.g. "100"), NESTATTEST_BENCH_ENVS
// (e.g. "memory,20ms"; "keyless" is TestBenchKeyless) and
// NESTATTEST_BENCH_BIG=0 narrow the run; NESTATTEST_BENCH_COSIGN_SAMPLE=k
// times the cosign loops on k nodes spread over each tree and scales their
// time to the tree (each cosign command handles one node), which the table
// says.
package bench
