#!/usr/bin/env bash
# The full test suite, as `make test` runs it (README: the test command;
# .ci/run calls `make test`). On two cores and a cold machine the work is
# CPU-bound throughout: building the pinned tools and the consumers'
# programs, compiling and linking the test binaries, the release's
# cross-builds, then tests that start many processes (registries, cosign,
# the sigstore services). So the script does nothing twice and leaves no
# core idle while there is work:
#
#   1. the tools (test/tools.sh) and the consumers' programs
#      (test/consumers/build.sh) build in the background, at a lower
#      priority (nice 10) than the tests, their compilers with
#      GOGC=400 (less time collecting garbage, memory is plenty); meanwhile `go vet ./...`
#      runs, every package's test binary is compiled and linked once
#      (`go test -c`), and the nestattest binary the end-to-end tests run
#      is built once (NESTATTEST_BIN). Everything of the main module is
#      compiled with the release's flags (CGO_ENABLED=0, -trimpath: .ko.yaml,
#      release/release.sh; and, as everything here, -gcflags=all=-dwarf=false:
#      the compiler writes no DWARF, which nothing here reads and -s -w
#      strips from the release's binaries anyway: about 5% less CPU for
#      a cold build, the same code), so the
#      release's linux/amd64 build and the
#      image tests reuse those compiled packages instead of compiling them
#      again (the release's other platforms are compiled by the release
#      test itself: compiled beside it, they were compiled twice);
#   2. then every package's tests run, NESTATTEST_TEST_JOBS at a time
#      (default 5): first the packages that need no tool, then test/expiry
#      (ten minutes waiting for a certificate to expire, beside everything
#      else), test/release (the longest package), test/e2e split into
#      NESTATTEST_E2E_SHARDS processes (default 3) of its one binary,
#      balanced by the durations in test/ci-durations.txt (its tests that
#      run Chains in a job of their own), and the other packages. They do not wait for the builds: a test that needs a tool
#      not built yet waits for that tool alone (harness.Tool,
#      NESTATTEST_TOOLS_PENDING), and the builds have the cores the waiting
#      tests leave.
#
# Every test runs with NESTATTEST_E2E=require: a missing tool fails it.
# Each job's output goes to a log under NESTATTEST_TEST_LOGS (default a new
# temporary directory); a failed job's log is printed whole, a passed one's
# summary lines. The script ends with each job's wall and CPU time and the
# line "test: N passed, N failed, N skipped" (top-level tests), and exits
# non-zero when a build or a test failed.
set -uo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
GO="${GO:-go}"
logs="${NESTATTEST_TEST_LOGS:-$(mktemp -d -t nestattest-test.XXXXXX)}"
mkdir -p "$logs"
logs="$(cd "$logs" && pwd)"
bins="$logs/bin"
jobs_max="${NESTATTEST_TEST_JOBS:-5}"
shards="${NESTATTEST_E2E_SHARDS:-3}"
export NESTATTEST_E2E=require NESTATTEST_TOOLS="$root/.tools/bin" NESTATTEST_BIN="$bins/nestattest" GO
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath -gcflags=all=-dwarf=false"
# One timestamp authority for every test process (harness.EnvSharedTSA):
# the TSA holds port 2112 whatever it is told, so a TSA per test made the
# tests that need one wait for each other, the expiry test's ten minutes
# included. The first test that needs it starts it; it is stopped here.
export NESTATTEST_SHARED_TSA="$logs/tsa"
stop_tsa() { [ -f "$NESTATTEST_SHARED_TSA/pid" ] && kill "$(cat "$NESTATTEST_SHARED_TSA/pid")" 2>/dev/null; return 0; }
trap stop_tsa EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
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
  (cd "$root/$pkg" && "$exe" -test.count=1 -test.timeout=120m -test.v "$@")
  rc=$?
  if [ "$rc" = 0 ]; then echo "ok  	$pkg	$((SECONDS - s))s"; else echo "FAIL	$pkg	$((SECONDS - s))s"; fi
  return "$rc"
}

# compile: vet every package, link the test binary of every package with
# tests into $bins (named after its package's directory), build the
# nestattest binary, and do the same for the test modules nested in the
# repository ($modules).
compile() {
  export GOGC=400 # the compiler collects less often: about 5% less CPU, cold
  "$GO" vet ./... && "$GO" vet -tags bench ./test/bench/... &&
    "$GO" test -c -ldflags='-s -w' -o "$bins/" "${unit[@]/#/./}" "${tooled[@]/#/./}" &&
    "$GO" build -o "$NESTATTEST_BIN" ./cmd/nestattest &&
    for m in "${modules[@]}"; do
      (cd "$m" && GOWORK=off "$GO" vet ./... && GOWORK=off "$GO" test -c -ldflags='-s -w' -o "$bins/$(basename "$m").test" .) || return 1
    done
}

# module_test DIR: vet and test the module at DIR, one of its own whose
# tests need the tools (ship/conforma: OPA is compiled here, in a job of
# the queue, not in the compile step every test waits for).
module_test() {
  (cd "$root/$1" && GOWORK=off "$GO" vet ./... && GOWORK=off "$GO" test -count=1 -timeout=60m -v ./...)
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
# Modules of their own whose tests need no tool, each one test package
# (docs/testing.md: the modules).
modules=(ship/triggers)
names="$(printf '%s\n' "${unit[@]}" "${tooled[@]}" "${modules[@]}" | xargs -n1 basename | sort | uniq -d)"
[ -z "$names" ] || { echo "test: two test packages share a directory name ($names): rename one (test binaries are named after it)" >&2; exit 2; }

# 1. The builds in the background, a link in .tools/bin for each tool as
# it is built (none from an earlier run: a test must not run an old one);
# compiling meanwhile.
rm -rf "$NESTATTEST_TOOLS" && mkdir -p "$NESTATTEST_TOOLS"
background tools env GOGC=400 nice -n 10 ./test/tools.sh
background consumers env GOGC=400 nice -n 10 ./test/consumers/build.sh
status=0
background compile compile
await compile || { echo "test: the tests do not compile" >&2; exit 1; }
export NESTATTEST_TOOLS_PENDING="$logs/tools.rc $logs/consumers.rc"

# 2. The tests, the unit packages first, then test/expiry, then test/e2e's
# shards: its tests assigned greedily, longest first, to the least loaded
# shard, by the seconds in test/ci-durations.txt (60 for a test not
# there); then every other package.
queue=()
for pkg in "${unit[@]}" "${modules[@]}"; do queue+=("unit-$(basename "$pkg") run $pkg"); done
queue+=("expiry run test/expiry" "release run test/release")
mapfile -t e2e_tests < <(cd test/e2e && "$bins/e2e.test" -test.list '.*' | grep -E '^(Test|Example)' | grep -v '^TestPropagate')
mapfile -t e2e_runs < <(printf '%s\n' "${e2e_tests[@]}" |
  awk -v f=test/ci-durations.txt 'BEGIN { while ((getline l < f) > 0) if (l !~ /^#/) { split(l, a, " "); d[a[1]] = a[2] } }
    { print (($1 in d) ? d[$1] : 60), $1 }' |
  sort -rn | awk -v k="$shards" '
    { best = 0; for (i = 1; i < k; i++) if (load[i] < load[best]) best = i
      load[best] += $1; names[best] = names[best] (names[best] == "" ? "" : "|") $2 }
    END { for (i = 0; i < k; i++) if (names[i] != "") print "^(" names[i] ")$" }')
for i in "${!e2e_runs[@]}"; do queue+=("e2e-$i run test/e2e -test.run ${e2e_runs[$i]}"); done
# The e2e tests that run Chains' code (propagate_test.go) in a job of their
# own: waiting for the consumers' build, they hold no shard's other tests.
queue+=("e2e-chains run test/e2e -test.run ^TestPropagate")
queue+=("conforma module_test ship/conforma")
for pkg in ship "${tooled[@]}"; do
  case "$pkg" in test/e2e | test/expiry | test/release) continue ;; esac
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
for name in "${running[@]}" tools consumers; do await "$name" || status=1; done

# The summary: wall time per job, and the top-level tests.
echo "test: wall and CPU (user + system) times, seconds:"
for f in "$logs"/*.time; do
  read -r u sy <"${f%.time}.cpu" || true
  printf '  %-16s %6s wall %8s CPU\n' "$(basename "$f" .time)" "$(cat "$f")" "$(awk -v u="${u:-0}" -v s="${sy:-0}" 'BEGIN { printf "%.0f", u + s }')"
done
count() { cat "$logs"/*.log | grep -c "^--- $1" || true; }
echo "test: done after $(stamp)"
echo "test: $(count PASS) passed, $(count FAIL) failed, $(count SKIP) skipped"
# The failures again, last, where a reader of the log's tail sees them: each
# failed top-level test with the lines its failing subtests printed (the
# registry's and services' own log lines left out), cut short.
for f in "$logs"/*.log; do
  grep -q '^--- FAIL' "$f" || continue
  echo "test: failed in job $(basename "$f" .log) (its whole log is above):"
  grep -v -E 'level=|^\s+time=' "$f" | awk '
    /^=== RUN/ { n = 0 }
    { buf[n++ % 12] = $0 }
    /^ *--- FAIL/ { for (i = (n > 12 ? n - 12 : 0); i < n; i++) print substr(buf[i % 12], 1, 300); n = 0 }' | head -40 | sed 's/^/  /'
done
exit "$status"
