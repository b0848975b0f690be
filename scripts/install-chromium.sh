#!/usr/bin/env bash
# Installs Debian's chromium, which the `fpsafe replay --html` test uses to render the report
# headless (cmd/fpsafe/replay_test.go). Idempotent: nothing is fetched when it is installed.
# Needs root on Debian when it is missing.
set -euo pipefail

if dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q 'install ok installed'; then
  echo "install-chromium: chromium present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-chromium: chromium missing and not root; install it (apt-get install chromium) or run as root" >&2
  exit 1
fi
echo "install-chromium: installing chromium"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium
