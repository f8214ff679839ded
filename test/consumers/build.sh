#!/usr/bin/env bash
# Builds the consumers' own programs the end-to-end tests run against, into
# DIR ($1, default <repo>/.tools/bin):
#
#   chains-sign    Tekton Chains v0.29.2's controller code (its reconcilers,
#                  ObjectSigner, x509/KMS signers, formats and storage) run on
#                  TaskRun/PipelineRun files; module test/consumers/chains
#   policy-tester  sigstore policy-controller v0.15.1's cmd/tester, built as
#                  is; module test/consumers/policy
#
# Each is its own module (their dependency graphs cannot share one: Chains
# needs knative.dev/pkg 2026 and k8s 0.36, policy-controller knative.dev/pkg
# 2023 and k8s 0.35), with the replace directives of the upstream go.mod
# copied; the main module depends on neither. Builds run with GOWORK=off and
# GOFLAGS=-mod=mod. A binary is kept when `go version -m` names the pinned
# version and its stamp (a hash of its module's go.mod, go.sum and non-test Go
# files) is unchanged.
#
# proxy.golang.org answers "403 This module version is not available" for a
# few versions these builds need, though sum.golang.org and the upstream
# go.sum files know them. They are served from a file-system proxy,
# $NESTATTEST_TOOLS_CACHE/goproxy (GOPROXY=file://...,<your GOPROXY>), made by
# test/consumers/modproxy from the upstream git repository: from
# $NESTATTEST_MODULE_GIT/<owner>+<name>[/repo] when set (any clone or bare
# mirror), else cloned from GitHub. The go command checks each against the
# committed go.sum, so nothing but the tagged source is accepted.
#
# Cold, on two busy cores, chains-sign took 19 minutes and policy-tester
# about 40; warm, a rebuild takes a few minutes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/.tools/bin}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
GO="${GO:-go}"
cache="${NESTATTEST_TOOLS_CACHE:-$HOME/.cache/nestattest/tools}"
proxy="$cache/goproxy"
mkdir -p "$proxy"
export GOWORK=off GOFLAGS=-mod=mod
upstream="$("$GO" env GOPROXY)"
export GOPROXY="file://$proxy,$upstream"

# module dir, module, version, GitHub repository, subdirectory: the versions
# proxy.golang.org refuses.
seeds=(
  "chains github.com/tektoncd/chains v0.29.2 tektoncd/chains ."
  "policy github.com/google/go-containerregistry/pkg/authn/kubernetes v0.0.0-20260317232201-3888fb8f8738 google/go-containerregistry pkg/authn/kubernetes"
  "policy github.com/google/go-containerregistry/pkg/authn/k8schain v0.0.0-20260317232201-3888fb8f8738 google/go-containerregistry pkg/authn/k8schain"
)

# gitdir REPO: a git directory holding REPO's history.
gitdir() {
  local key="${1/\//+}" c
  for c in ${NESTATTEST_MODULE_GIT:+"$NESTATTEST_MODULE_GIT/$key/repo" "$NESTATTEST_MODULE_GIT/$key"} "$cache/git/$key"; do
    if git --git-dir "$c" rev-parse --git-dir >/dev/null 2>&1 || git -C "$c" rev-parse --git-dir >/dev/null 2>&1; then
      echo "$c"
      return 0
    fi
  done
  echo "consumers: cloning https://github.com/$1" >&2
  git clone -q --bare "https://github.com/$1" "$cache/git/$key" >&2 || {
    echo "consumers: no git source for $1; set NESTATTEST_MODULE_GIT to a directory holding $key (a clone or bare mirror)" >&2
    return 1
  }
  echo "$cache/git/$key"
}

# seed DIR MODULE VERSION REPO SUBDIR: make MODULE@VERSION downloadable.
seed() {
  local dir="$1" mod="$2" ver="$3" repo="$4" sub="$5" git
  if (cd "$here/$dir" && "$GO" mod download "$mod@$ver") >/dev/null 2>&1; then
    return 0
  fi
  git="$(gitdir "$repo")" || return 1
  echo "consumers: $mod@$ver from $git"
  [ "$sub" = . ] && sub=""
  (cd "$here/modproxy" && "$GO" run . -git "$git" -module "$mod" -version "$ver" -subdir "$sub" -sum "$here/$dir/go.sum" -out "$proxy")
  (cd "$here/$dir" && "$GO" mod download "$mod@$ver")
}

# built_version FILE MODULE: MODULE and its version as FILE's build information names them.
built_version() {
  "$GO" version -m "$1" 2>/dev/null | awk -v m="$2" '($1 == "mod" || $1 == "dep") && $2 == m { print $2, $3; exit }'
}

# stamp DIR: a hash of what the module's build depends on.
stamp() {
  (cd "$here/$1" && find . -name '*.go' ! -name '*_test.go' | LC_ALL=C sort | xargs cat go.mod go.sum) | sha256sum | cut -c1-16
}

# build NAME DIR PACKAGE MODULE VERSION
build() {
  local name="$1" dir="$2" pkg="$3" want="$4 $5" exe="$out/$1" s log="$cache/consumers-$1.log"
  s="$(stamp "$dir")"
  if [ -x "$exe" ] && [ "$(built_version "$exe" "$4")" = "$want" ] && [ "$(cat "$exe.version" 2>/dev/null)" = "$want $s" ]; then
    echo "consumers: $name ($want) present"
    return 0
  fi
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
  echo "$want $s" >"$exe.version"
  echo "consumers: built $name in $((SECONDS - start))s"
}

for s in "${seeds[@]}"; do
  # shellcheck disable=SC2086
  seed $s
done

build chains-sign chains ./cmd/chains-sign github.com/tektoncd/chains v0.29.2 &
first=$!
status=0
build policy-tester policy github.com/sigstore/policy-controller/cmd/tester github.com/sigstore/policy-controller v0.15.1 || status=1
wait "$first" || status=1
[ "$status" = 0 ] || { echo "consumers: FAILED" >&2; exit 1; }
