# The full test suite: Debian's docker-registry where apt can install it,
# then test/ci.sh: the pinned tools and the consumers' programs built while
# the unit tests run, then every test with the end-to-end tests required (a
# missing tool fails them instead of skipping them), in parallel jobs.
GO ?= go
TOOLS := $(CURDIR)/.tools/bin

.PHONY: test tools consumers consumers-kyverno test-kyverno docker-registry

test: docker-registry
	GO=$(GO) ./test/ci.sh

# The pinned registry, cosign, crane and oras, built into .tools/bin.
tools:
	GO=$(GO) ./test/tools.sh

# The consumers' own programs, built from their modules: Tekton Chains'
# signer (chains-sign) and policy-controller's policy-tester, into .tools/bin.
consumers:
	GO=$(GO) ./test/consumers/build.sh

# Opt-in, not part of `make test`: Kyverno v1.19.1's image verifiers
# (kyverno-verify, test/consumers/kyverno), into .tools/bin; and the
# end-to-end test that checks signed trees with them (build tag kyverno).
# Cold, the build takes minutes: see test/consumers/README.md.
consumers-kyverno:
	NESTATTEST_CONSUMERS=kyverno-verify GO=$(GO) ./test/consumers/build.sh

test-kyverno: consumers-kyverno tools
	NESTATTEST_E2E=require $(GO) test -tags kyverno -count=1 -timeout 60m -run Kyverno ./test/e2e

# Debian's docker-registry (distribution 2.8.2), a second real registry for
# the end-to-end tests: installed with apt when it can be (as root, or with
# sudo that needs no password); its tests skip otherwise.
docker-registry:
	@command -v docker-registry >/dev/null 2>&1 || { \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo="sudo -n"; \
	  command -v apt-get >/dev/null 2>&1 && \
	  $$sudo apt-get update -qq >/dev/null 2>&1 && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null 2>&1; \
	} || echo "make: docker-registry is not installed; its end-to-end tests will skip"

# The release (docs/releasing.md), against any registry:
#   make release REGISTRY=127.0.0.1:5000/rel VERSION=v0.1.0 KEY=cosign.key
# builds the binaries (with checksums) and the multi-arch image with ko (an
# SBOM per image), pushes the image to $(REGISTRY)/nestattest, signs and
# attests the image index and every platform image with nestattest itself,
# verifies them, and signs the checksums; everything lands in $(DIST).
# COSIGN_PASSWORD is the key's password. CHECK_STAMP=1 (the release
# workflow) refuses a build that is not what the tree was stamped with.
#   make stamp VERSION=v0.1.0
# builds the same, pushes nothing, and stamps the image digest and the
# binaries' sums into the tree; make stamp-samples REVISION=<commit> points
# the samples at the commit that carries them.
VERSION ?= v0.0.0-dev
REGISTRY ?= ghcr.io/nestattest
KEY ?= cosign.key
DIST ?= $(CURDIR)/dist
KO ?= $(firstword $(wildcard $(TOOLS)/ko) ko)
COSIGN ?= $(firstword $(wildcard $(TOOLS)/cosign) cosign)
RELEASE_ENV = GO=$(GO) VERSION=$(VERSION) REGISTRY=$(REGISTRY) KEY=$(KEY) DIST=$(DIST) KO=$(KO) COSIGN=$(COSIGN)

.PHONY: release stamp stamp-samples check-stamp docs

release:
	$(RELEASE_ENV) ./release/release.sh release

stamp:
	$(RELEASE_ENV) ./release/release.sh stamp

stamp-samples:
	@test -n "$(REVISION)" || { echo "make stamp-samples REVISION=<commit>" >&2; exit 2; }
	$(GO) run ./internal/release/stamp -revision $(REVISION)
	$(GO) run ./internal/release/stamp -check

check-stamp:
	$(GO) run ./internal/release/stamp -check

# The command reference, docs/commands/*.md, generated from the cobra
# commands; `go test ./cmd/nestattest` fails when it is out of date.
docs:
	NESTATTEST_UPDATE_DOCS=1 $(GO) test -count=1 -run '^TestCommandDocs$$' ./cmd/nestattest

# The benchmarks on the real registry (docs/testing.md): nestattest against
# cosign loops, keyless against the cosign keyless loop, and sharded
# signing; a few hours in all. NESTATTEST_BENCH_SIZES=10,100,
# NESTATTEST_BENCH_ENVS=memory, NESTATTEST_BENCH_BIG=0 and NESTATTEST_BENCH_JOBS=0 (no --jobs
# series under latency) narrow the first;
# QUICK=1 runs every benchmark once on tiny trees (a few minutes), to check
# they run.
ifdef QUICK
BENCH_ENV := NESTATTEST_BENCH_SIZES=10 NESTATTEST_BENCH_BIG=0 NESTATTEST_BENCH_ENVS=memory,kms \
	NESTATTEST_SHARD_SHAPE=4,4 NESTATTEST_SHARDS=2 NESTATTEST_SHARD_PARALLEL=2 NESTATTEST_PLAN_SHAPE=4,4
endif
.PHONY: bench
bench: tools
	$(BENCH_ENV) NESTATTEST_TOOLS=$(TOOLS) $(GO) test -tags bench -count=1 -timeout 180m -run '^TestBench' -v ./test/bench
	$(BENCH_ENV) NESTATTEST_TOOLS=$(TOOLS) $(GO) test -tags bench -count=1 -timeout 60m -run '^(TestShardBench|TestPlanBench)$$' -v ./test/bench/shard
