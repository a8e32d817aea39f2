#!/usr/bin/env bash
# bench-deps.sh installs what `make bench` drives for real: Dovecot (the LMTP and IMAP servers
# CryptoMail is compared with) and Postfix (for smtp-source, which feeds both). Quick and silent when
# everything is present; installing needs root (Debian 12, as scripts/install-test-deps.sh).
#
# Neither system service is configured or started: the benchmark runs a private Dovecot instance with
# its own config, and uses only Postfix's smtp-source.
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"

# package:file pairs: the file proves the part we use is installed.
required=(
	dovecot-core:/usr/sbin/dovecot
	dovecot-lmtpd:/usr/lib/dovecot/lmtp
	dovecot-imapd:/usr/lib/dovecot/imap
	postfix:/usr/sbin/smtp-source
)

missing=()
for pair in "${required[@]}"; do
	pkg=${pair%%:*} file=${pair#*:}
	if [[ ! -e $file ]] || ! dpkg -s "$pkg" >/dev/null 2>&1; then
		missing+=("$pkg")
	fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
	exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
	echo "bench-deps: missing packages: ${missing[*]}" >&2
	echo "bench-deps: run as root (or: apt-get install --no-install-recommends ${missing[*]})" >&2
	exit 1
fi

echo "bench-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

# Keep package scripts from starting the system Dovecot or Postfix (Debian's invoke-rc.d honours
# policy-rc.d; 101 = action forbidden). Only add one when the machine has none; remove only ours.
policy=/usr/sbin/policy-rc.d
own_policy=0
cleanup() {
	if [[ $own_policy -eq 1 ]]; then
		rm -f "$policy"
	fi
}
trap cleanup EXIT
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\n# temporary, from bench-deps.sh: no service starts during the install\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	own_policy=1
fi
if command -v debconf-set-selections >/dev/null 2>&1; then
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
fi

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# If a system instance got started anyway (policy-rc.d not honoured), stop the ones we installed:
# the benchmark needs neither, and they would hold ports 25, 143 and 993.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
	for pkg in "${missing[@]}"; do
		case $pkg in
		dovecot-core) unit=dovecot.service ;;
		postfix) unit=postfix.service ;;
		*) continue ;;
		esac
		systemctl stop "$unit" >/dev/null 2>&1 || true
		systemctl disable "$unit" >/dev/null 2>&1 || true
	done
fi

for pair in "${required[@]}"; do
	file=${pair#*:}
	if [[ ! -e $file ]]; then
		echo "bench-deps: $file still missing after install" >&2
		exit 1
	fi
done
echo "bench-deps: done"
