// Package harness starts what the end-to-end tests of nestattest run
// against, each piece owned by one test and gone when it ends.
//
// Registries, all plain HTTP on 127.0.0.1 with a free port:
//   - [Distribution]: the CNCF distribution registry v3.1.2 (the pinned
//     "registry" tool), filesystem storage in t.TempDir(), deletes enabled.
//     By default it refuses an index whose children are not in the index's
//     repository (400 MANIFEST_BLOB_UNKNOWN); DistributionOptions.SparseIndexes
//     sets validation.manifests.indexes.platforms: none to accept it.
//   - [DockerRegistry]: Debian's docker-registry (distribution 2.8.2),
//     configured the same way; the test skips when it is not installed.
//   - [InMemory]: go-containerregistry's registry in the test process,
//     with or without the referrers API, for fast tests.
//
// A registry process answers GET /v2/ before the start function returns
// (within a minute), is killed when the test ends (or, on Linux, when the
// test process dies), and has its log printed if the test failed.
//
// [NewProxy] puts a reverse proxy in front of any of them. It counts the
// requests by method and kind and the bytes uploaded ([Proxy.Counts],
// [Proxy.Requests]), refuses the ones a hook picks with a DENIED error
// ([RefuseWritesTo]), and injects seeded, bounded faults ([Faults]): error
// statuses, a 429 with Retry-After, connections reset or closed halfway
// through a response, slow answers. Absolute Location headers are pointed
// back at the proxy, so upload sessions keep going through it.
//
// [Binary] builds ./cmd/nestattest once per test process; [Run] and
// [RunEnv] run a command and return its output and exit code.
//
// # Environment
//
// The pinned tools (registry, cosign, crane, oras) are looked up in
// $NESTATTEST_TOOLS, or in <module root>/.tools/bin where `make tools`
// (test/tools.sh) installs them. When a tool is missing, a test skips with
// a hint to run `make tools`, unless NESTATTEST_E2E=require, where it
// fails: `make test` sets it, so CI never passes by skipping.
package harness
