#!/usr/bin/env bash
# Unpacks the MIME corpus of the end-to-end test (internal/e2e/corpus_test.go): the 53
# messages (41 real-world, 12 malformed) in the testdata of golang-github-jhillyerd-enmime-dev,
# fetched with `apt-get download` and unpacked with `dpkg-deb -x` into
# $FPSAFE_E2E_CACHE/enmime (default /var/cache/fpsafe-e2e/enmime). Nothing is installed and
# nothing is copied into the repository. The test does the same by itself when the tree is
# missing; this script does it ahead of time (called from scripts/install-deps.sh).
# Idempotent: a complete tree (marker file) is left alone.
set -euo pipefail

me=install-e2e-corpus
. "$(dirname "$0")/lib-debtree.sh"

unpack enmime golang-github-jhillyerd-enmime-dev
n=$(find "$cache/enmime" -path '*/enmime/testdata/*' \( -path '*/mail/*' -o -path '*/low-quality/*' \) -name '*.raw' | wc -l)
echo "install-e2e-corpus: $n enmime messages"
