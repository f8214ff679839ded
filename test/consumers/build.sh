#!/usr/bin/env bash
# Builds the consumers' own programs the end-to-end tests run against, once
# per machine, into $NESTATTEST_TOOLS_CACHE (default
# $HOME/.cache/nestattest/tools) under <name>/<version>-<stamp>/, and links
# them into DIR ($1, default <repo>/.tools/bin), so a fresh clone reuses
# them:
#
#   chains-sign    Tekton Chains' controller code (its reconcilers,
#                  ObjectSigner, x509/KMS signers, formats and storage) run on
#                  TaskRun/PipelineRun files; module test/consumers/chains,
#                  built from the newest Chains the go command can have that
#                  the driver supports: v0.29.2 (go.mod), else v0.22.0
#                  (v0.22.0.mod, v0.22.0.sum), chosen by asking the module
#                  proxy (`go mod download`), never by a flag
#   policy-tester  sigstore policy-controller v0.15.1's cmd/tester, built as
#                  is; module test/consumers/policy
#   kyverno-verify Kyverno v1.19.1's image verifiers (ClusterPolicy
#                  verifyImages and ImageValidatingPolicy) run on one image;
#                  module test/consumers/kyverno. Opt-in, not built by
#                  default: `make consumers-kyverno`, or
#                  NESTATTEST_CONSUMERS=kyverno-verify
#
# NESTATTEST_CONSUMERS names the programs to build, space-separated
# (default: chains-sign policy-tester, what `make test` needs).
#
# It prints the version each was built from and records it in
# DIR/<name>.version, which the tests log. Each is its own module with the
# replace directives of the upstream go.mod copied; the main module depends
# on neither. Builds run with GOWORK=off and GOFLAGS=-mod=mod and the go
# command's own GOPROXY: every module comes from the module proxy, checked
# against the committed go.sum. A version the proxy refuses is skipped for
# the next one the driver supports; when none can be had, the build fails
# naming every refusal. A binary is kept when `go version -m` names the
# chosen version; its stamp (a hash of the go.mod used, its go.sum and the
# non-test Go files) is in its cache path, so any change rebuilds it.
#
# Timings: see README.md beside this file.
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

# stamp DIR MODFILE: a hash of what the module's build depends on.
stamp() {
  (cd "$here/$1" && find . -name '*.go' ! -name '*_test.go' | LC_ALL=C sort | xargs cat "$2" "${2%.mod}.sum") | sha256sum | cut -c1-16
}

# served MODULE VERSION: whether the go command can have MODULE@VERSION
# (its module cache, else GOPROXY), as the build will ask for it. Prints
# the go command's answer when it cannot.
served() {
  local out
  if out="$("$GO" mod download -json "$1@$2" 2>&1)" && ! grep -q '"Error"' <<<"$out"; then
    return 0
  fi
  grep -o '"Error": *"[^"]*"' <<<"$out" | head -1 | sed 's/^"Error": *//' || true
  [ -n "$out" ] && tail -1 <<<"$out" >&2
  return 1
}

# modfile DIR VERSION: the go.mod of module DIR that builds VERSION of its
# upstream: go.mod for the newest, VERSION.mod (with VERSION.sum) for an
# older one the driver also supports.
modfile() {
  if [ -f "$here/$1/$2.mod" ]; then echo "$2.mod"; else echo go.mod; fi
}

# build NAME DIR PACKAGE MODULE VERSION: build into the cache, under
# NAME/VERSION-STAMP, unless that binary is there, then link it into DIR.
build() {
  local name="$1" dir="$2" pkg="$3" want="$4 $5" s mod
  mod="$(modfile "$dir" "$5")"
  s="$(stamp "$dir" "$mod")"
  local cached="$cache/$name/$5-$s" log="$cache/$name/$5-$s.log"
  local exe="$cached/$name"
  mkdir -p "$cached"
  if [ -x "$exe" ] && [ "$(built_version "$exe" "$4")" = "$want" ]; then
    echo "consumers: $name ($want) present"
  else
    echo "consumers: building $name ($want, $dir/$mod)"
    local start=$SECONDS
    local extra=()
    # kyverno-verify: as its build time was measured (README.md).
    [ "$name" != kyverno-verify ] || extra=(-trimpath)
    if ! (cd "$here/$dir" && "$GO" build -modfile="$mod" -buildvcs=false "${extra[@]}" -gcflags=all=-dwarf=false -ldflags='-s -w' -o "$exe.tmp" "$pkg") >"$log" 2>&1; then
      echo "consumers: building $name ($want) failed:" >&2
      tail -40 "$log" >&2
      rm -f "$exe.tmp"
      return 1
    fi
    [ "$(built_version "$exe.tmp" "$4")" = "$want" ] || { echo "consumers: $exe is not built from $want" >&2; return 1; }
    mv "$exe.tmp" "$exe"
    echo "consumers: built $name ($want) in $((SECONDS - start))s"
  fi
  echo "$want $s" >"$out/$name.version" # before the link: a test waiting for it reads it next
  ln -sfn "$exe" "$out/$name"
}

# pick NAME MODULE VERSION...: the first VERSION (newest first) the go
# command can have, said on stderr; fails naming every refusal when none.
pick() {
  local name="$1" module="$2" v why refused=()
  shift 2
  for v in "$@"; do
    if why="$(served "$module" "$v" 2>/dev/null)"; then
      [ ${#refused[@]} -eq 0 ] || echo "consumers: $name: ${refused[*]}; falling back to $module@$v" >&2
      echo "$v"
      return 0
    fi
    refused+=("$module@$v is not served (${why:-no answer})")
  done
  echo "consumers: $name: no version the driver supports can be had: ${refused[*]}." >&2
  echo "consumers: add a served version to test/consumers/$name (a <version>.mod and .sum beside go.mod) and to CHAINS_VERSIONS/POLICY_VERSIONS in build.sh" >&2
  return 1
}

# The upstream versions each driver builds against, newest first: the
# newest the go command can have (module cache, else GOPROXY) is built.
# NESTATTEST_CHAINS_VERSIONS narrows the list (for testing the fallback:
# NESTATTEST_CHAINS_VERSIONS=v0.22.0). Chains v0.29.2's zip is refused by
# the module proxy on some days (403 "This module version is not
# available"); v0.22.0 is served.
read -r -a chains_versions <<<"${NESTATTEST_CHAINS_VERSIONS:-v0.29.2 v0.22.0}"
read -r -a policy_versions <<<"v0.15.1"

read -r -a kyverno_versions <<<"v1.19.1"

# The programs to build: NESTATTEST_CONSUMERS, default what `make test`
# needs. kyverno-verify is opt-in (`make consumers-kyverno`).
read -r -a wanted <<<"${NESTATTEST_CONSUMERS:-chains-sign policy-tester}"
wants() { [[ " ${wanted[*]} " == *" $1 "* ]]; }
for name in "${wanted[@]}"; do
  case "$name" in
  chains-sign | policy-tester | kyverno-verify) ;;
  *) echo "consumers: NESTATTEST_CONSUMERS names $name; the programs are chains-sign, policy-tester and kyverno-verify" >&2; exit 1 ;;
  esac
done

status=0
said=()
if wants chains-sign; then
  chains="$(pick chains github.com/tektoncd/chains "${chains_versions[@]}")" || status=1
  said+=("chains-sign from Tekton Chains $chains")
fi
if wants policy-tester; then
  policy="$(pick policy github.com/sigstore/policy-controller "${policy_versions[@]}")" || status=1
  said+=("policy-tester from policy-controller $policy")
fi
if wants kyverno-verify; then
  kyverno="$(pick kyverno github.com/kyverno/kyverno "${kyverno_versions[@]}")" || status=1
  said+=("kyverno-verify from Kyverno $kyverno")
fi
[ "$status" = 0 ] || { echo "consumers: FAILED" >&2; exit 1; }
line=""
for s in "${said[@]}"; do line+="${line:+, }$s"; done
echo "consumers: $line"

pids=()
if wants chains-sign; then
  build chains-sign chains ./cmd/chains-sign github.com/tektoncd/chains "$chains" &
  pids+=($!)
fi
if wants policy-tester; then
  build policy-tester policy github.com/sigstore/policy-controller/cmd/tester github.com/sigstore/policy-controller "$policy" &
  pids+=($!)
fi
if wants kyverno-verify; then
  build kyverno-verify kyverno ./cmd/kyverno-verify github.com/kyverno/kyverno "$kyverno" &
  pids+=($!)
fi
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
[ "$status" = 0 ] || { echo "consumers: FAILED" >&2; exit 1; }
