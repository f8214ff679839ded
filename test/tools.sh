#!/usr/bin/env bash
# Installs the pinned tools the end-to-end tests run against into
# <repo>/.tools/bin with `go install <package>@<version>`, outside the main
# module. A tool is kept when its binary's build information (`go version -m`)
# names the pinned module version; <name>.version next to it records what was
# verified. Cold, this takes about ten minutes on two cores, most of it cosign,
# which is built alongside the others.
set -euo pipefail
cd "$(dirname "$0")/.."
GO="${GO:-go}"
bin="$PWD/.tools/bin"
logs="$PWD/.tools/log"
mkdir -p "$bin" "$logs"

# name module package version; cosign first: it is the long one.
tools=(
  "cosign github.com/sigstore/cosign/v2 github.com/sigstore/cosign/v2/cmd/cosign v2.6.5"
  "registry github.com/distribution/distribution/v3 github.com/distribution/distribution/v3/cmd/registry v3.1.2"
  "crane github.com/google/go-containerregistry github.com/google/go-containerregistry/cmd/crane v0.22.1"
  "oras oras.land/oras oras.land/oras/cmd/oras v1.3.6"
)

# built_version NAME: the module and version the binary was built from.
built_version() {
  "$GO" version -m "$bin/$1" 2>/dev/null | awk '$1 == "mod" { print $2, $3; exit }'
}

# present NAME MODULE VERSION: the binary is there at the pinned version; the
# marker is (re)written from what the binary says, never trusted alone.
present() {
  local want="$2 $3"
  [ -x "$bin/$1" ] && [ "$(built_version "$1")" = "$want" ] || return 1
  [ "$(cat "$bin/$1.version" 2>/dev/null)" = "$want" ] || echo "$want" >"$bin/$1.version"
}

# build NAME MODULE PACKAGE VERSION: go install, then check what was built.
build() {
  echo "tools: building $1 $4"
  rm -f "$bin/$1.version"
  if ! GOBIN="$bin" GOFLAGS=-mod=mod GOWORK=off "$GO" install "$3@$4" >"$logs/$1.log" 2>&1; then
    echo "tools: building $1 $4 failed:" >&2
    cat "$logs/$1.log" >&2
    return 1
  fi
  present "$1" "$2" "$4" || { echo "tools: $1 is not $2 $4 after the build" >&2; return 1; }
  echo "tools: built $1 $4"
}

# lane TOOL...: build the missing tools one after another; fails if any
# failed (errexit does not apply inside a function called with ||).
lane() {
  local t name module pkg version rc=0
  for t in "$@"; do
    read -r name module pkg version <<<"$t"
    if present "$name" "$module" "$version"; then
      echo "tools: $name $version present"
    else
      build "$name" "$module" "$pkg" "$version" || rc=1
    fi
  done
  return "$rc"
}

# Two lanes for two cores: cosign alone, the three others in turn.
lane "${tools[0]}" &
cosign=$!
status=0
lane "${tools[@]:1}" || status=1
wait "$cosign" || status=1
[ "$status" = 0 ] || { echo "tools: FAILED" >&2; exit 1; }
