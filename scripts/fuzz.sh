#!/usr/bin/env bash
# fuzz.sh: run every Go fuzz target of fpsafe for FUZZTIME each, one after the other
# (`go test -fuzz` takes one package and one target at a time).
#
#   scripts/fuzz.sh [FUZZTIME] [TARGET-REGEXP]
#
#   scripts/fuzz.sh            # every target, 30s each
#   scripts/fuzz.sh 5s         # a smoke run (make test)
#   scripts/fuzz.sh 10m Lookup # only the targets whose name matches "Lookup"
#
# A crasher is written by go test under the package's testdata/fuzz/FuzzXxx/ and makes
# the run fail; plain `go test ./...` then replays it until the bug is fixed.
# Environment: GO (default go), FUZZFLAGS (extra flags, e.g. "-parallel 4"),
# FUZZMINIMIZETIME (default 10s): how long go test may minimize a new corpus entry or a
# crasher. Go's default, 60s, shows up as long stretches of "0/sec" while workers
# minimize instead of fuzzing.
set -u

FUZZTIME=${1:-${FUZZTIME:-30s}}
FILTER=${2:-}
GO=${GO:-go}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-10s}
cd "$(dirname "$0")/.."

# package target
TARGETS="
./internal/mail FuzzReadMessage
./internal/mail FuzzFold
./scoring/clamd FuzzParseScan
./scoring/spamd FuzzParseReply
./scoring/rspamd FuzzParseReply
./cmd/fpsafe FuzzParseConfig
./allowlist FuzzParseAllowlist
./allowlist FuzzLookup
./allowlist FuzzResultsHeader
./policy FuzzDecide
./milter FuzzSession
"

failed=()
ran=0
while read -r pkg target; do
	[ -z "$pkg" ] && continue
	if [ -n "$FILTER" ] && ! [[ "$target" =~ $FILTER ]]; then
		continue
	fi
	ran=$((ran + 1))
	echo "=== fuzz $pkg $target ($FUZZTIME)"
	# shellcheck disable=SC2086 # FUZZFLAGS is a list of flags
	if ! "$GO" test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" ${FUZZFLAGS:-} "$pkg"; then
		failed+=("$pkg $target")
	fi
done <<<"$TARGETS"

if [ "$ran" -eq 0 ]; then
	echo "fuzz.sh: no target matches \"$FILTER\"" >&2
	exit 2
fi
if [ ${#failed[@]} -gt 0 ]; then
	echo "--- fuzz targets that failed (crashers are under each package's testdata/fuzz/):" >&2
	printf '    %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "--- all $ran fuzz targets passed ($FUZZTIME each)"
