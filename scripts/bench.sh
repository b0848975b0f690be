#!/usr/bin/env bash
# scripts/bench.sh: fpsafe's benchmarks (docs/BENCHMARKS.md), as `make bench` runs them.
#   1. the Go benchmarks (milter path without an MTA, engines), -benchmem;
#   2. memory: peak RSS of `fpsafe serve` with 200 x 10 MB and 1 x 100 MB messages, and VmRSS
#      under a steady load for BENCH_STEADY (default 10m);
#   3. end to end: Postfix + smtp-source against 10 configurations (no milter, fpsafe, the
#      classic milters, spamd alone), repetitions interleaved, BENCH_MESSAGES per rep.
# Needs root and the Debian packages of scripts/install-deps.sh (postfix, clamav-daemon,
# clamav-milter, spamd, spamc, spamass-milter, rspamd). Everything runs on 127.0.0.1 and is
# bounded: smtp-source under `timeout 900`, queue waits capped at 300 s.
#
# Environment: BENCH_MESSAGES (2000; spamd-bound configs get a quarter), BENCH_REPS (3),
# BENCH_LATENCY (200), BENCH_STEADY (10m), BENCHTIME (2s, Go benchmarks),
# BENCH_CONFIGS (comma list to run a subset), BENCH_SKIP (any of: go,memory,steady,e2e),
# BENCH_DIR (results; default a new temp dir), BENCH_SPOOL_MEMORY (fpsafe spool_memory, e.g. 256KiB;
# default fpsafe's 1MiB), BENCH_MEM_SESSIONS (200).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
export BENCH_MESSAGES=${BENCH_MESSAGES:-2000}
export BENCH_REPS=${BENCH_REPS:-3}
export BENCH_STEADY=${BENCH_STEADY:-10m}
BENCHTIME=${BENCHTIME:-2s}
SKIP=${BENCH_SKIP:-}
DIR=${BENCH_DIR:-$(mktemp -d /tmp/fpsafe-bench.XXXXXX)}
mkdir -p "$DIR"
export BENCH_OUT="$DIR/e2e-table.md"
skip() { [[ ",$SKIP," == *",$1,"* ]]; }

echo "# fpsafe benchmarks, results in $DIR"
{
  echo "nproc: $(nproc)"
  grep -m1 'model name' /proc/cpuinfo || true
  grep MemTotal /proc/meminfo || true
  echo "go: $($GO version)"
  echo "postfix: $(postconf -d mail_version 2>/dev/null || echo missing)"
  echo "clamd: $(clamd --version 2>/dev/null || echo missing)"
  echo "clamav-milter: $(clamav-milter --version 2>/dev/null || echo missing)"
  echo "spamd: $(spamd --version 2>/dev/null | head -1 || echo missing)"
  echo "spamass-milter: $(spamass-milter -h 2>&1 | grep -m1 Version || echo missing)"
  echo "rspamd: $(rspamd --version 2>/dev/null | head -1 || echo missing)"
} | tee "$DIR/machine.txt"

status=0
if ! skip go; then
  echo "## Go benchmarks"
  $GO test -tags bench -run '^$' -bench . -benchmem -benchtime "$BENCHTIME" ./... 2>&1 | grep --line-buffered -v 'Error reading milter command' | tee "$DIR/go-bench.txt" || status=1
fi
if ! skip memory; then
  echo "## memory: peak RSS"
  $GO test -tags bench -count=1 -timeout 30m -run 'TestMemoryPeak' -v ./internal/bench/ 2>&1 | grep --line-buffered -E '^BENCH|TARGET|^(---|ok|FAIL|PASS)' | tee "$DIR/memory.txt" || status=1
fi
if ! skip steady; then
  echo "## memory: steady state for $BENCH_STEADY"
  $GO test -tags bench -count=1 -timeout 3h -run 'TestSteadyRSS' -v ./internal/bench/ 2>&1 | grep --line-buffered -E '^BENCH|TARGET|^(---|ok|FAIL|PASS)' | tee "$DIR/steady.txt" || status=1
fi
if ! skip e2e; then
  echo "## end to end: Postfix + smtp-source, $BENCH_REPS reps x $BENCH_MESSAGES messages"
  $GO test -tags bench -count=1 -timeout 4h -run 'TestEndToEnd' -v ./internal/bench/ 2>&1 | grep --line-buffered -vE 'Error reading milter command' | tee "$DIR/e2e.txt" | grep -E '^BENCH|^\||^(---|ok|FAIL|PASS)' || status=1
fi
echo "results in $DIR"
exit $status
