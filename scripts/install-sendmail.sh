#!/usr/bin/env bash
# Unpacks Sendmail for the end-to-end test (internal/e2e, internal/daemontest/sendmail.go):
# sendmail-bin, sendmail-base and sendmail-cf are fetched with `apt-get download` and
# unpacked with `dpkg-deb -x` into $FPSAFE_E2E_CACHE/sendmail (default
# /var/cache/fpsafe-e2e/sendmail). Nothing is installed: sendmail-bin conflicts with postfix.
# The test does the same by itself when the tree is missing; this script does it ahead of
# time (called from scripts/install-deps.sh). Needs m4 and liblockfile1 installed to run
# sendmail. Idempotent: a complete tree (marker file) is left alone.
set -euo pipefail

me=install-sendmail
. "$(dirname "$0")/lib-debtree.sh"

unpack sendmail sendmail-bin sendmail-base sendmail-cf
bin=$cache/sendmail/usr/libexec/sendmail/sendmail
if ldd "$bin" | grep 'not found'; then
  echo "install-sendmail: $bin misses libraries (install liblockfile1)" >&2
  exit 1
fi
