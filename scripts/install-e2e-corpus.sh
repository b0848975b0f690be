#!/usr/bin/env bash
# Unpacks the MIME corpus of the end-to-end test (internal/e2e/corpus_test.go): the 53
# messages (41 real-world, 12 malformed) in the testdata of golang-github-jhillyerd-enmime-dev,
# fetched with `apt-get download` and unpacked with `dpkg-deb -x` into
# $FPSAFE_E2E_CACHE/enmime (default /var/cache/fpsafe-e2e/enmime). Nothing is installed and
# nothing is copied into the repository. The test does the same by itself when the tree is
# missing; this script does it ahead of time (called from scripts/install-deps.sh).
# Idempotent: a complete tree (marker file) is left alone.
set -euo pipefail

cache=${FPSAFE_E2E_CACHE:-/var/cache/fpsafe-e2e}

# unpack NAME PKG...: the same layout and marker as daemontest.DebTree.
unpack() {
  local name=$1; shift
  local tree=$cache/$name want="$*"
  if [ -f "$tree/.fpsafe-unpacked" ] && [ "$(cat "$tree/.fpsafe-unpacked")" = "$want" ]; then
    echo "install-e2e-corpus: $tree present"
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
  echo "install-e2e-corpus: unpacked $want into $tree"
}

unpack enmime golang-github-jhillyerd-enmime-dev
n=$(find "$cache/enmime" -path '*/enmime/testdata/*' \( -path '*/mail/*' -o -path '*/low-quality/*' \) -name '*.raw' | wc -l)
echo "install-e2e-corpus: $n enmime messages"
