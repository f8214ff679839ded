// Package e2e holds the end-to-end tests: the nestattest binary against real
// registries (the CNCF distribution registry v3.1.2, Debian's
// docker-registry 2.8.2) with results checked by the real cosign CLI v2.6.5
// and crane. test/harness starts what they need; `make test` builds the tools.
package e2e
