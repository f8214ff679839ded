# The full test suite: the pinned tools, Debian's docker-registry where apt
# can install it, and every test with the end-to-end tests required (a
# missing tool fails them instead of skipping them).
GO ?= go
TOOLS := $(CURDIR)/.tools/bin

.PHONY: test tools docker-registry

test: tools docker-registry
	NESTATTEST_E2E=require NESTATTEST_TOOLS=$(TOOLS) $(GO) test -count=1 -timeout 60m ./...

# The pinned registry, cosign, crane and oras, built into .tools/bin.
tools:
	GO=$(GO) ./test/tools.sh

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
