#!/usr/bin/env bash
# The full test suite, as `make test` runs it (README: the test command;
# .ci/run calls `make test`). On two cores and a cold machine the work is:
# building the pinned tools and the consumers' programs (CPU-bound, about
# 25 minutes), then tests that wait more than they compute (processes,
# registries, a 10-minute certificate expiry). So it overlaps them:
#
#   1. the tools (test/tools.sh) and the consumers' programs
#      (test/consumers/build.sh) build in the background, while the packages
#      whose tests need no tool run, and every test binary is compiled once;
#   2. as soon as the tools are there, test/expiry starts: it spends ten
#      minutes waiting for a certificate to expire, beside everything else;
#   3. once the consumers are built too, the packages that run the tools go,
#      NESTATTEST_TEST_JOBS at a time (default 4), the longest first, with
#      test/e2e split into NESTATTEST_E2E_SHARDS processes (default 3)
#      balanced by the durations in test/ci-durations.txt.
#
# Every test runs with NESTATTEST_E2E=require: a missing tool fails it.
# Each job's output goes to a log under NESTATTEST_TEST_LOGS (default a new
# temporary directory); a failed job's log is printed whole, a passed one's
# summary lines. The script ends with each job's wall time and the line
# "test: N passed, N failed" (top-level tests), and exits non-zero when a
# build or a test failed.
set -uo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
GO="${GO:-go}"
logs="${NESTATTEST_TEST_LOGS:-$(mktemp -d -t nestattest-test.XXXXXX)}"
mkdir -p "$logs"
jobs_max="${NESTATTEST_TEST_JOBS:-4}"
shards="${NESTATTEST_E2E_SHARDS:-3}"
export NESTATTEST_E2E=require NESTATTEST_TOOLS="$root/.tools/bin" GO
start=$SECONDS
echo "test: logs in $logs"

stamp() { printf '%dm%02ds' $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)); }

# background NAME CMD...: run CMD in the background, its output in
# $logs/NAME.log, its exit code in $logs/NAME.rc, its wall time in
# $logs/NAME.time.
background() {
  local name="$1"
  shift
  (
    s=$SECONDS
    "$@" >"$logs/$name.log" 2>&1
    rc=$?
    echo $((SECONDS - s)) >"$logs/$name.time"
    echo "$rc" >"$logs/$name.rc"
  ) &
  echo "test: [$(stamp)] started $name"
}

# await NAME: wait until job NAME has finished, then report it; returns its
# exit code.
await() {
  local name="$1"
  while [ ! -f "$logs/$name.rc" ]; do sleep 2; done
  report "$name"
}

# report NAME: print a finished job's outcome: its go test summary lines,
# or its whole log when it failed.
report() {
  local name="$1" rc
  rc="$(cat "$logs/$name.rc")"
  if [ "$rc" = 0 ]; then
    echo "test: [$(stamp)] $name passed in $(cat "$logs/$name.time")s"
    grep -E '^(ok|FAIL|---|panic)|^(tools|consumers):' "$logs/$name.log" | grep -v -- '^--- PASS' | sed "s/^/  $name: /"
  else
    echo "test: [$(stamp)] $name FAILED (exit $rc) after $(cat "$logs/$name.time")s; its log:"
    sed "s/^/  $name: /" "$logs/$name.log"
  fi
  return "$rc"
}

gotest() { "$GO" test -count=1 -timeout 60m -v "$@"; }

# Packages: those whose tests run none of the tools (they import no
# test/harness) go first; the rest need the tools.
mapfile -t unit < <("$GO" list -f '{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}' ./... |
  awk '$0 !~ /nestattest\/test\/harness/ { print $1 }')

# 1. Builds in the background; the unit packages and vet meanwhile.
background tools ./test/tools.sh
background consumers ./test/consumers/build.sh
background unit bash -c "'$GO' vet -tags bench ./test/bench/... && '$GO' test -count=1 -timeout 30m -v ${unit[*]}"
status=0
await unit || status=1
# Compile every test binary once, so the jobs below do not race to build
# the same packages.
"$GO" test -count=1 -run '^$' ./... >"$logs/compile.log" 2>&1 || { echo "test: compiling the tests failed:"; cat "$logs/compile.log"; status=1; }
echo "test: [$(stamp)] test binaries compiled"

# 2. The expiry test as soon as the tools are there.
await tools || { echo "test: the tools did not build; nothing that needs them can run" >&2; exit 1; }
background expiry gotest ./test/expiry

# 3. The rest once the consumers are built.
await consumers || status=1

# e2e shards: tests assigned greedily, longest first, to the least loaded
# shard, by the seconds in test/ci-durations.txt (60 for a test not there).
mapfile -t e2e_tests < <("$GO" test -list '.*' ./test/e2e | grep -E '^(Test|Example)')
mapfile -t e2e_runs < <(printf '%s\n' "${e2e_tests[@]}" |
  awk -v f=test/ci-durations.txt 'BEGIN { while ((getline l < f) > 0) if (l !~ /^#/) { split(l, a, " "); d[a[1]] = a[2] } }
    { print (($1 in d) ? d[$1] : 60), $1 }' |
  sort -rn | awk -v k="$shards" '
    { best = 0; for (i = 1; i < k; i++) if (load[i] < load[best]) best = i
      load[best] += $1; names[best] = names[best] (names[best] == "" ? "" : "|") $2 }
    END { for (i = 0; i < k; i++) if (names[i] != "") print "^(" names[i] ")$" }')

queue=()
for i in "${!e2e_runs[@]}"; do queue+=("e2e-$i gotest ./test/e2e -run ${e2e_runs[$i]}"); done
queue+=("release gotest ./test/release" "ship gotest ./ship" "harness gotest ./test/harness" "driver gotest ./test/consumers/driver")

running=()
for q in "${queue[@]}"; do
  read -r -a cmd <<<"$q"
  while [ ${#running[@]} -ge "$jobs_max" ]; do
    for i in "${!running[@]}"; do
      if [ -f "$logs/${running[$i]}.rc" ]; then
        report "${running[$i]}" || status=1
        unset 'running[i]'
      fi
    done
    running=("${running[@]}")
    [ ${#running[@]} -ge "$jobs_max" ] && sleep 2
  done
  background "${cmd[@]}"
  running+=("${cmd[0]}")
done
for name in "${running[@]}" expiry; do await "$name" || status=1; done

# The summary: wall time per job, and the top-level tests.
echo "test: wall times (s):"
for f in "$logs"/*.time; do printf '  %-12s %s\n' "$(basename "$f" .time)" "$(cat "$f")"; done
passed=$(cat "$logs"/*.log | grep -c '^--- PASS')
failed=$(cat "$logs"/*.log | grep -c '^--- FAIL')
skipped=$(cat "$logs"/*.log | grep -c '^--- SKIP')
echo "test: done after $(stamp)"
echo "test: $passed passed, $failed failed, $skipped skipped"
exit "$status"
