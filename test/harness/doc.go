// Package harness starts what the end-to-end tests run against: the real
// CNCF distribution registry v3.1.2 and Debian's docker-registry 2.8.2 on
// free loopback ports with storage in a temporary directory,
// go-containerregistry's in-memory registry, a counting, refusing and
// fault-injecting proxy, and the nestattest binary, built once per test
// process.
//
// Tools are found in $NESTATTEST_TOOLS, or <module root>/.tools/bin where
// `make tools` (test/tools.sh) puts them. When one is missing a test skips,
// unless NESTATTEST_E2E=require (as `make test` sets), where it fails: CI
// never passes by skipping.
package harness
