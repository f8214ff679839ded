#!/usr/bin/env bash
# Builds the consumers' own programs the end-to-end tests run against, once
# per machine, into $NESTATTEST_TOOLS_CACHE (default
# $HOME/.cache/nestattest/tools) under <name>/<version>-<stamp>/, and links
# them into DIR ($1, default <repo>/.tools/bin), so a fresh clone reuses
# them:
#
#   chains-sign    Tekton Chains v0.29.2's controller code (its reconcilers,
#                  ObjectSigner, x509/KMS signers, formats and storage) run on
#                  TaskRun/PipelineRun files; module test/consumers/chains
#   policy-tester  sigstore policy-controller v0.15.1's cmd/tester, built as
#                  is; module test/consumers/policy
#
# Each is its own module (Chains v0.29.2 needs k8s 0.36, tektoncd/pipeline
# v1.15.0 and knative.dev/pkg 2026-06, policy-controller k8s 0.35 and
# knative.dev/pkg 2023-06), with the replace directives of the upstream
# go.mod copied; the main module depends on neither. Builds run with
# GOWORK=off and GOFLAGS=-mod=mod and the go command's own GOPROXY: every
# module comes from the module proxy, checked against the committed go.sum.
# Versions the proxy refuses are not used (see README.md). A binary is kept
# when `go version -m` names the pinned version; its stamp (a hash of its
# module's go.mod, go.sum and non-test Go files) is in its cache path, so any
# change rebuilds it.
#
# Cold (empty module and build caches, GOPROXY=https://proxy.golang.org,direct),
# the two builds, run together on two cores shared with other work (load
# average about 20), took 54 minutes (chains-sign, then from Chains v0.22.0)
# and 62 (policy-tester); warm, a rebuild takes a few minutes. Chains-sign
# from Chains v0.29.2: 14.5 minutes with its modules downloaded and an empty
# build cache (nice -n 19, load average 5 to 9), about 20 seconds warm.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/.tools/bin}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
GO="${GO:-go}"
cache="${NESTATTEST_TOOLS_CACHE:-$HOME/.cache/nestattest/tools}"
mkdir -p "$cache"
export GOWORK=off GOFLAGS=-mod=mod

# built_version FILE MODULE: MODULE and its version as FILE's build information names them.
built_version() {
  "$GO" version -m "$1" 2>/dev/null | awk -v m="$2" '($1 == "mod" || $1 == "dep") && $2 == m { print $2, $3; exit }'
}

# stamp DIR: a hash of what the module's build depends on.
stamp() {
  (cd "$here/$1" && find . -name '*.go' ! -name '*_test.go' | LC_ALL=C sort | xargs cat go.mod go.sum) | sha256sum | cut -c1-16
}

# build NAME DIR PACKAGE MODULE VERSION: build into the cache, under
# NAME/VERSION-STAMP, unless that binary is there, then link it into DIR.
build() {
  local name="$1" dir="$2" pkg="$3" want="$4 $5" s
  s="$(stamp "$dir")"
  local cached="$cache/$name/$5-$s" log="$cache/$name/$5-$s.log"
  local exe="$cached/$name"
  mkdir -p "$cached"
  if [ -x "$exe" ] && [ "$(built_version "$exe" "$4")" = "$want" ]; then
    echo "consumers: $name ($want) present"
  else
    echo "consumers: building $name ($want)"
    local start=$SECONDS
    if ! (cd "$here/$dir" && "$GO" build -buildvcs=false -o "$exe.tmp" "$pkg") >"$log" 2>&1; then
      echo "consumers: building $name failed:" >&2
      tail -40 "$log" >&2
      rm -f "$exe.tmp"
      return 1
    fi
    [ "$(built_version "$exe.tmp" "$4")" = "$want" ] || { echo "consumers: $exe is not built from $want" >&2; return 1; }
    mv "$exe.tmp" "$exe"
    echo "consumers: built $name in $((SECONDS - start))s"
  fi
  ln -sfn "$exe" "$out/$name"
  echo "$want $s" >"$out/$name.version"
}

build chains-sign chains ./cmd/chains-sign github.com/tektoncd/chains v0.29.2 &
first=$!
status=0
build policy-tester policy github.com/sigstore/policy-controller/cmd/tester github.com/sigstore/policy-controller v0.15.1 || status=1
wait "$first" || status=1
[ "$status" = 0 ] || { echo "consumers: FAILED" >&2; exit 1; }
