#!/usr/bin/env bash
# The full test suite, as `make test` runs it (README: the test command;
# .ci/run calls `make test`). On two cores and a cold machine the work is
# CPU-bound throughout: building the pinned tools and the consumers'
# programs, compiling and linking the test binaries, then tests that start
# many processes (registries, cosign, the sigstore services). So the script
# overlaps what can be overlapped and does nothing twice:
#
#   1. the tools (test/tools.sh) and the consumers' programs
#      (test/consumers/build.sh) build in the background; meanwhile
#      `go vet ./...` runs, every package's test binary is compiled and
#      linked once (`go test -c`), the nestattest binary the end-to-end
#      tests run is built once (NESTATTEST_BIN), and the packages whose
#      tests need no tool run;
#   2. as soon as the tools are there, test/expiry starts: it spends ten
#      minutes waiting for a certificate to expire, beside everything else;
#   3. once the consumers are built too, the packages that run the tools go,
#      NESTATTEST_TEST_JOBS at a time (default 4), the longest first, with
#      test/e2e split into NESTATTEST_E2E_SHARDS processes (default 3) of
#      its one binary, balanced by the durations in test/ci-durations.txt.
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
logs="$(cd "$logs" && pwd)"
bins="$logs/bin"
jobs_max="${NESTATTEST_TEST_JOBS:-4}"
shards="${NESTATTEST_E2E_SHARDS:-3}"
export NESTATTEST_E2E=require NESTATTEST_TOOLS="$root/.tools/bin" NESTATTEST_BIN="$bins/nestattest" GO
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
    TIMEFORMAT='%U %S'
    { time "$@" >"$logs/$name.log" 2>&1; } 2>"$logs/$name.cpu"
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

# report NAME: print a finished job's outcome: its summary lines, or its
# whole log when it failed.
report() {
  local name="$1" rc
  rc="$(cat "$logs/$name.rc")"
  if [ "$rc" = 0 ]; then
    echo "test: [$(stamp)] $name passed in $(cat "$logs/$name.time")s"
    grep -E '^(ok|FAIL|--- (FAIL|SKIP)|panic)|^(tools|consumers):' "$logs/$name.log" | sed "s/^/  $name: /"
  else
    echo "test: [$(stamp)] $name FAILED (exit $rc) after $(cat "$logs/$name.time")s; its log:"
    sed "s/^/  $name: /" "$logs/$name.log"
  fi
  return "$rc"
}

# run PACKAGE [ARGS...]: run PACKAGE's test binary (compiled in step 1) in
# the package's directory, as go test does, verbosely, and print go test's
# "ok"/"FAIL" line for it.
run() {
  local pkg="$1" exe s=$SECONDS rc
  shift
  exe="$bins/$(basename "$pkg").test"
  (cd "$root/$pkg" && "$exe" -test.count=1 -test.timeout=60m -test.v "$@")
  rc=$?
  if [ "$rc" = 0 ]; then echo "ok  	$pkg	$((SECONDS - s))s"; else echo "FAIL	$pkg	$((SECONDS - s))s"; fi
  return "$rc"
}

# compile: vet every package, link the test binary of every package with
# tests into $bins (named after its package's directory), and build the
# nestattest binary.
compile() {
  "$GO" vet ./... && "$GO" vet -tags bench ./test/bench/... &&
    "$GO" test -c -o "$bins/" "${unit[@]/#/./}" "${tooled[@]/#/./}" &&
    "$GO" build -o "$NESTATTEST_BIN" ./cmd/nestattest
}

# Packages with tests: those whose tests run none of the tools (they are
# not test/harness and import no test/harness) can go before the tools are
# built.
mapfile -t all < <("$GO" list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.Dir}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}{{end}}' ./... |
  sed "s|^$root/||")
unit=() tooled=()
for line in "${all[@]}"; do
  [ -n "$line" ] || continue
  pkg="${line%% *}"
  case "$pkg $line" in test/harness\ * | *nestattest/test/harness*) tooled+=("$pkg") ;; *) unit+=("$pkg") ;; esac
done
names="$(printf '%s\n' "${unit[@]}" "${tooled[@]}" | xargs -n1 basename | sort | uniq -d)"
[ -z "$names" ] || { echo "test: two test packages share a directory name ($names): rename one (test binaries are named after it)" >&2; exit 2; }

# 1. Builds in the background; compiling and the unit packages meanwhile.
background tools ./test/tools.sh
background consumers ./test/consumers/build.sh
status=0
background compile compile
await compile || { echo "test: the tests do not compile" >&2; exit 1; }
for pkg in "${unit[@]}"; do
  background "unit-$(basename "$pkg")" run "$pkg"
  await "unit-$(basename "$pkg")" || status=1
done

# 2. The expiry test as soon as the tools are there.
await tools || { echo "test: the tools did not build; nothing that needs them can run" >&2; exit 1; }
background expiry run test/expiry

# 3. The rest once the consumers are built: e2e shards, its tests assigned
# greedily, longest first, to the least loaded shard, by the seconds in
# test/ci-durations.txt (60 for a test not there); then every other package
# that needs tools.
await consumers || status=1
mapfile -t e2e_tests < <(cd test/e2e && "$bins/e2e.test" -test.list '.*' | grep -E '^(Test|Example)')
mapfile -t e2e_runs < <(printf '%s\n' "${e2e_tests[@]}" |
  awk -v f=test/ci-durations.txt 'BEGIN { while ((getline l < f) > 0) if (l !~ /^#/) { split(l, a, " "); d[a[1]] = a[2] } }
    { print (($1 in d) ? d[$1] : 60), $1 }' |
  sort -rn | awk -v k="$shards" '
    { best = 0; for (i = 1; i < k; i++) if (load[i] < load[best]) best = i
      load[best] += $1; names[best] = names[best] (names[best] == "" ? "" : "|") $2 }
    END { for (i = 0; i < k; i++) if (names[i] != "") print "^(" names[i] ")$" }')

queue=()
for i in "${!e2e_runs[@]}"; do queue+=("e2e-$i run test/e2e -test.run ${e2e_runs[$i]}"); done
for pkg in test/release ship "${tooled[@]}"; do
  case "$pkg" in test/e2e | test/expiry) continue ;; esac
  [[ " ${queue[*]} " == *" run $pkg "* || " ${queue[*]} " == *" run $pkg" ]] && continue
  queue+=("$(basename "$pkg") run $pkg")
done

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
echo "test: wall and CPU (user + system) times, seconds:"
for f in "$logs"/*.time; do
  read -r u sy <"${f%.time}.cpu" || true
  printf '  %-16s %6s wall %8s CPU\n' "$(basename "$f" .time)" "$(cat "$f")" "$(awk -v u="${u:-0}" -v s="${sy:-0}" 'BEGIN { printf "%.0f", u + s }')"
done
count() { cat "$logs"/*.log | grep -c "^--- $1" || true; }
echo "test: done after $(stamp)"
echo "test: $(count PASS) passed, $(count FAIL) failed, $(count SKIP) skipped"
exit "$status"
