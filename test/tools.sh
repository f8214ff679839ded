#!/usr/bin/env bash
# Installs the pinned tools the end-to-end tests run against into .tools/bin,
# built from the Go module proxy with `go install`, outside the main module.
# A tool already there at the pinned version (read from the binary's build
# information) is kept, so this is cheap after the first run (about ten
# minutes cold, most of it cosign).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$PWD/.tools/bin"
mkdir -p "$bin"

# name package version
tools=(
  "registry github.com/distribution/distribution/v3/cmd/registry v3.1.2"
  "crane github.com/google/go-containerregistry/cmd/crane v0.22.1"
  "oras oras.land/oras/cmd/oras v1.3.6"
  "cosign github.com/sigstore/cosign/v2/cmd/cosign v2.6.5"
)

installed() { # name version
  [ -x "$bin/$1" ] && go version -m "$bin/$1" 2>/dev/null | awk '$1 == "mod" {print $3}' | grep -qx "$2"
}

pids=()
for t in "${tools[@]}"; do
  read -r name pkg version <<<"$t"
  if installed "$name" "$version"; then
    echo "tools: $name $version present"
    continue
  fi
  echo "tools: building $name $version"
  (GOBIN="$bin" GOFLAGS=-mod=mod go install "$pkg@$version" >"$bin/$name.log" 2>&1 ||
    { echo "tools: building $name failed:"; cat "$bin/$name.log"; exit 1; }) &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
for t in "${tools[@]}"; do
  read -r name _ version <<<"$t"
  installed "$name" "$version" || { echo "tools: $name $version missing after the build"; status=1; }
done
exit $status
