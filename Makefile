# The full test suite: the pinned tools, Debian's docker-registry where apt
# can install it, and every test with the end-to-end tests required.
GO ?= go
TOOLS := $(CURDIR)/.tools/bin

.PHONY: test tools docker-registry bench

test: tools docker-registry
	NESTATTEST_E2E=require NESTATTEST_TOOLS=$(TOOLS) $(GO) test -count=1 -timeout 60m ./...

tools:
	./test/tools.sh

# Debian's docker-registry (distribution 2.8.2) is a third registry the
# end-to-end tests run against when it is installed; best effort.
docker-registry:
	@command -v docker-registry >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y docker-registry >/dev/null 2>&1 || \
	    echo "docker-registry not installed: its end-to-end tests will be skipped"; }

# nestattest against loops of the real cosign CLI on trees of 10, 100 and
# 1,000 nodes, and peak RSS on 10,000 nodes (about an hour; see
# test/bench). NESTATTEST_BENCH_SIZES=10,100 NESTATTEST_BENCH_BIG=0 narrow it.
bench: tools
	NESTATTEST_BENCH=1 NESTATTEST_TOOLS=$(TOOLS) $(GO) test -count=1 -timeout 180m -run TestBench -v ./test/bench
