#!/usr/bin/env bash
# Installs the Debian packages that fpsafe's tests run for real: the engines (clamd, spamd,
# rspamd), redis-server, Postfix, opendkim's miltertest, and a private, unpacked Sendmail.
# Idempotent: packages already installed are not fetched again. Needs root on Debian.
set -euo pipefail

pkgs=(
  postfix clamav-daemon clamav-milter clamdscan clamav-testfiles
  spamd spamassassin spamc spamass-milter rspamd
  redis-server redis-tools miltertest swaks socat netcat-openbsd m4 liblockfile1
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
else
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing ${missing[*]} and not root; install them or run as root" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq
  # policy-rc.d keeps the packages' init scripts from starting system daemons: the tests
  # start their own, on loopback, in temp dirs.
  prc=/usr/sbin/policy-rc.d
  created_prc=0
  if [ ! -e "$prc" ]; then printf '#!/bin/sh\nexit 101\n' >"$prc"; chmod +x "$prc"; created_prc=1; fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  [ "$created_prc" = 1 ] && rm -f "$prc"
  # spamassassin's postinst leaves a gpg-agent running; end it so CI has no stray process.
  pkill -f 'gpg-agent --homedir /var/lib/spamassassin' 2>/dev/null || true
fi

# Sendmail (unpacked privately: it conflicts with postfix) and the enmime MIME corpus for the
# end-to-end run, both into ${FPSAFE_E2E_CACHE:-/var/cache/fpsafe-e2e}.
here=$(dirname "$0")
bash "$here/install-icap.sh"
bash "$here/install-chromium.sh"
bash "$here/install-sendmail.sh"
bash "$here/install-e2e-corpus.sh"
