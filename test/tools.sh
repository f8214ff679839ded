#!/usr/bin/env bash
# Installs the pinned tools the end-to-end tests run against. Each is built
# once per machine with `go install <package>@<version>`, outside the main
# module, into $NESTATTEST_TOOLS_CACHE (default $HOME/.cache/nestattest/tools)
# under <name>/<version>/, and linked into <repo>/.tools/bin, so a fresh clone
# reuses what an earlier one built. A tool is kept when its binary's build
# information (`go version -m`) names the pinned module version. They are
# linked without symbol tables and DWARF (-ldflags='-s -w'): nothing here
# debugs them, and linking a dozen large binaries is minutes of CPU cold.
# For the same reason the compiler writes no DWARF either
# (-gcflags=all=-dwarf=false; the linker would strip it): the same code,
# about 5% less CPU for a cold build (crane: 68.3 CPU-s, 64.9 without).
#
# The builds run in two lanes.
set -euo pipefail
cd "$(dirname "$0")/.."
GO="${GO:-go}"
cache="${NESTATTEST_TOOLS_CACHE:-$HOME/.cache/nestattest/tools}"
bin="$PWD/.tools/bin"
mkdir -p "$bin" "$cache"

# name module package version
# In the order the tests need them (test/ci.sh starts the tests while the
# tools build; a test waits for the tools it runs): the registry and the
# clients first, the sigstore services and ko later.
lane1=(
  "registry github.com/distribution/distribution/v3 github.com/distribution/distribution/v3/cmd/registry v3.1.2"
  "cosign github.com/sigstore/cosign/v2 github.com/sigstore/cosign/v2/cmd/cosign v2.6.5"
  "fulcio github.com/sigstore/fulcio github.com/sigstore/fulcio v1.8.8"
  "local-kms github.com/nsmithuk/local-kms github.com/nsmithuk/local-kms v0.0.0-20260228092603-2a5e92d09ab6"
)
lane2=(
  "crane github.com/google/go-containerregistry github.com/google/go-containerregistry/cmd/crane v0.22.1"
  "oras oras.land/oras oras.land/oras/cmd/oras v1.3.6"
  "cosign3 github.com/sigstore/cosign/v3 github.com/sigstore/cosign/v3/cmd/cosign v3.1.3"
  "rekor-server github.com/sigstore/rekor-tiles/v2 github.com/sigstore/rekor-tiles/v2/cmd/rekor-server/posix v2.2.1"
  "timestamp-server github.com/sigstore/timestamp-authority/v2 github.com/sigstore/timestamp-authority/v2/cmd/timestamp-server v2.1.3"
  "ko github.com/google/ko github.com/google/ko v0.19.1"
)

# built_version FILE: the module and version the binary was built from.
built_version() {
  "$GO" version -m "$1" 2>/dev/null | awk '$1 == "mod" { print $2, $3; exit }'
}

# build NAME MODULE PACKAGE VERSION: go install into the cache unless the
# cached binary is that version, then link it into .tools/bin.
build() {
  local dir="$cache/$1/$4" exe
  exe="$dir/$(basename "$3")"
  mkdir -p "$dir"
  if [ "$(built_version "$exe")" != "$2 $4" ]; then
    echo "tools: building $1 $4"
    if ! GOBIN="$dir" GOFLAGS=-mod=mod GOWORK=off "$GO" install -gcflags=all=-dwarf=false -ldflags='-s -w' "$3@$4" >"$dir/build.log" 2>&1; then
      echo "tools: building $1 $4 failed:" >&2
      tail -40 "$dir/build.log" >&2
      refused "$1" "$2@$4" "$dir/build.log"
      return 1
    fi
    [ "$(built_version "$exe")" = "$2 $4" ] || { echo "tools: $exe is not $2 $4 after the build" >&2; return 1; }
    echo "tools: built $1 $4"
  else
    echo "tools: $1 $4 present"
  fi
  echo "$2 $4" >"$bin/$1.version" # before the link: a test waiting for the tool reads it next
  ln -sfn "$exe" "$bin/$1"
}

# refused NAME MODULE@VERSION LOG: when the build failed because the module
# proxy refused a module (403/404/410: "not available", "not found"), say
# so plainly: no fallback is named for the tools (each pin was chosen for
# a behaviour the tests rely on: docs/testing.md), so the fix is a served
# version pinned here.
refused() {
  local what
  what="$(grep -Eo '[^ ]+@v[^ :]+: (reading|verifying) [^ ]+: (403|404|410)[^"]*' "$3" | head -1)"
  [ -n "$what" ] || return 0
  echo "tools: $1: the module proxy (GOPROXY=$("$GO" env GOPROXY)) refuses a module $2 needs: $what" >&2
  echo "tools: no fallback is named for $1; pin a version the proxy serves in test/tools.sh (its list: $("$GO" env GOPROXY | cut -d, -f1)/<module>/@v/list)" >&2
}

# lane TOOL...: build one after another; fails if any failed.
lane() {
  local t name module pkg version rc=0
  for t in "$@"; do
    read -r name module pkg version <<<"$t"
    build "$name" "$module" "$pkg" "$version" || rc=1
  done
  return "$rc"
}

lane "${lane1[@]}" &
first=$!
status=0
lane "${lane2[@]}" || status=1
wait "$first" || status=1
[ "$status" = 0 ] || { echo "tools: FAILED" >&2; exit 1; }
