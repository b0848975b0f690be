#!/usr/bin/env bash
# Shared by the install scripts: unpack Debian packages into a private tree under
# ${FPSAFE_E2E_CACHE:-/var/cache/fpsafe-e2e} without installing them (same layout and marker
# file as internal/daemontest.DebTree). Source it; set `me` to the calling script's name.
cache=${FPSAFE_E2E_CACHE:-/var/cache/fpsafe-e2e}

# unpack NAME PKG...: the same layout and marker as daemontest.DebTree.
unpack() {
  local name=$1; shift
  local tree=$cache/$name want="$*"
  if [ -f "$tree/.fpsafe-unpacked" ] && [ "$(cat "$tree/.fpsafe-unpacked")" = "$want" ]; then
    echo "$me: $tree present"
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
  echo "$me: unpacked $want into $tree"
}

