#!/usr/bin/env bash
# apt-install.sh installs Debian packages for the project's own scripts (install-test-deps.sh,
# bench-deps.sh) the same careful way: as root only, without a terminal, with recommends off, and
# without letting any package start its system service (the tests and the benchmark run private
# instances, and a system Postfix or Dovecot would hold ports 25, 143 and 993).
#
#   apt-install.sh TAG PACKAGE...      TAG prefixes the messages (the calling script's name)
#
# A service the install started anyway (policy-rc.d not honoured) is stopped and disabled, but only
# for a package this call installed: a Postfix or Dovecot that was already there is left alone.
set -euo pipefail

if [[ $# -lt 2 ]]; then
	echo "usage: apt-install.sh TAG PACKAGE..." >&2
	exit 2
fi
tag=$1
shift
packages=("$@")
export PATH="$PATH:/usr/sbin:/sbin"

if [[ $(id -u) -ne 0 ]]; then
	echo "$tag: missing packages: ${packages[*]}" >&2
	echo "$tag: run as root (or: apt-get install --no-install-recommends ${packages[*]})" >&2
	exit 1
fi

echo "$tag: installing ${packages[*]}"
export DEBIAN_FRONTEND=noninteractive

# Debian's invoke-rc.d honours policy-rc.d (exit 101 = action forbidden). Only add one when the
# machine has none, and remove only our own.
policy=/usr/sbin/policy-rc.d
own_policy=0
cleanup() {
	if [[ $own_policy -eq 1 ]]; then
		rm -f "$policy"
	fi
}
trap cleanup EXIT
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\n# temporary, from %s: no service starts during the install\nexit 101\n' "$tag" >"$policy"
	chmod 0755 "$policy"
	own_policy=1
fi

installing() { [[ " ${packages[*]} " == *" $1 "* ]]; }

# "No configuration" makes the postfix package install without writing main.cf or asking anything.
if installing postfix; then
	if ! command -v debconf-set-selections >/dev/null 2>&1; then
		echo "$tag: debconf-set-selections not found" >&2
		exit 1
	fi
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
fi

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null

units=()
installing postfix && units+=(postfix.service)
installing dovecot-core && units+=(dovecot.service)
if [[ ${#units[@]} -gt 0 ]] && command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
	for unit in "${units[@]}"; do
		systemctl stop "$unit" >/dev/null 2>&1 || true
		systemctl disable "$unit" >/dev/null 2>&1 || true
	done
fi
if installing postfix && [[ -f /etc/postfix/main.cf ]] && postfix status >/dev/null 2>&1; then
	postfix stop >/dev/null 2>&1 || true
fi
