#!/usr/bin/env bash
# Unpacks Sendmail for the end-to-end test (internal/e2e, internal/daemontest/sendmail.go):
# sendmail-bin, sendmail-base and sendmail-cf are fetched with `apt-get download` and
# unpacked with `dpkg-deb -x` into $FPSAFE_E2E_CACHE/sendmail (default
# /var/cache/fpsafe-e2e/sendmail). Nothing is installed: sendmail-bin conflicts with postfix.
# The test does the same by itself when the tree is missing; this script does it ahead of
# time (called from scripts/install-deps.sh). Needs m4 and liblockfile1 installed to run
# sendmail. Idempotent: a complete tree (marker file) is left alone.
set -euo pipefail

cache=${FPSAFE_E2E_CACHE:-/var/cache/fpsafe-e2e}

# unpack NAME PKG...: the same layout and marker as daemontest.DebTree.
unpack() {
  local name=$1; shift
  local tree=$cache/$name want="$*"
  if [ -f "$tree/.fpsafe-unpacked" ] && [ "$(cat "$tree/.fpsafe-unpacked")" = "$want" ]; then
    echo "install-sendmail: $tree present"
    return
  fi
  mkdir -p "$cache"
  local tmp
  tmp=$(mktemp -d "$cache/$name.tmp-XXXXXX")
  mkdir "$tmp/debs"
  if ! (cd "$tmp/debs" && apt-get download -q "$@"); then
    # no package lists yet (fresh container): fetch them once and retry
    apt-get update -qq
    (cd "$tmp/debs" && apt-get download -q "$@")
  fi
  for deb in "$tmp"/debs/*.deb; do
    dpkg-deb -x "$deb" "$tmp/root"
  done
  printf '%s\n' "$want" >"$tmp/root/.fpsafe-unpacked"
  rm -rf "$tree"
  mv "$tmp/root" "$tree"
  rm -rf "$tmp"
  echo "install-sendmail: unpacked $want into $tree"
}

unpack sendmail sendmail-bin sendmail-base sendmail-cf
bin=$cache/sendmail/usr/libexec/sendmail/sendmail
if ldd "$bin" | grep 'not found'; then
  echo "install-sendmail: $bin misses libraries (install liblockfile1)" >&2
  exit 1
fi
