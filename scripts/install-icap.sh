#!/usr/bin/env bash
# Installs what the icap and command engine tests run for real: Debian's c-icap server with
# its virus_scan service (libc-icap-mod-virus-scan, whose clamd_mod talks to the test clamd),
# and clamdscan for the command engine. clamd itself comes from install-deps.sh.
# Idempotent: packages already installed are not fetched again. Needs root on Debian.
set -euo pipefail

pkgs=(c-icap libc-icap-mod-virus-scan clamdscan)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-icap: all ${#pkgs[@]} packages present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-icap: missing ${missing[*]} and not root; install them or run as root" >&2
  exit 1
fi
echo "install-icap: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps c-icap's init script from starting a system daemon: the tests start
# their own, on loopback, in a temp dir.
prc=/usr/sbin/policy-rc.d
created_prc=0
if [ ! -e "$prc" ]; then printf '#!/bin/sh\nexit 101\n' >"$prc"; chmod +x "$prc"; created_prc=1; fi
apt-get install -y -qq --no-install-recommends "${missing[@]}"
if [ "$created_prc" = 1 ]; then rm -f "$prc"; fi
