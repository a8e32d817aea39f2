#!/usr/bin/env bash
# install-test-deps.sh installs the outside programs the test suite drives for real: GnuPG (decrypting
# exports), Postfix (a real MTA delivering over LMTP), Chromium (the web client's browser tests, driven
# by playwright-core from npm) and, optionally, the sqlite3 shell. Meant for a fresh Debian 12 machine
# (CI) run as root without a terminal; quick and silent when all is present.
#
# Node.js (20.19 or later) and npm are needed too, for the web client's tests (`npm ci` from the npm
# registry); Debian 12's own nodejs is too old, so they are checked here, not installed.
#
# The system Postfix is installed but never configured or started: the tests run private instances
# (internal/testenv) with their own config, queue and port.
set -euo pipefail

# command:package pairs. A command missing from PATH means its package must be installed.
required=(gpg:gnupg postfix:postfix postconf:postfix sendmail:postfix chromium:chromium)
optional=(sqlite3:sqlite3)

missing=()
add_missing() {
	local pkg=$1 p
	for p in "${missing[@]+"${missing[@]}"}"; do
		[[ $p == "$pkg" ]] && return 0
	done
	missing+=("$pkg")
}

# Postfix's tools live in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

for pair in "${required[@]}" "${optional[@]}"; do
	cmd=${pair%%:*} pkg=${pair#*:}
	if ! command -v "$cmd" >/dev/null 2>&1 || ! dpkg -s "$pkg" >/dev/null 2>&1; then
		add_missing "$pkg"
	fi
done

# Node.js and npm come with the machine (or from nodejs.org's packages), not from here.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "install-test-deps: node and npm are missing: the web client's tests need Node.js 20.19 or later" >&2
elif ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
	echo "install-test-deps: node $(node --version) is too old: the web client's tests need Node.js 20.19 or later" >&2
fi

if [[ ${#missing[@]} -eq 0 ]]; then
	exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
	echo "install-test-deps: missing packages: ${missing[*]}" >&2
	echo "install-test-deps: run as root (or: apt-get install --no-install-recommends ${missing[*]})" >&2
	exit 1
fi

echo "install-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

# Keep package scripts from starting the system Postfix: Debian's invoke-rc.d honours policy-rc.d
# (exit 101 = action forbidden). Only add one when the machine has none, and remove only our own.
policy=/usr/sbin/policy-rc.d
own_policy=0
cleanup() {
	if [[ $own_policy -eq 1 ]]; then
		rm -f "$policy"
	fi
}
trap cleanup EXIT
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\n# temporary, from install-test-deps.sh: no service starts during the install\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	own_policy=1
fi

# "No configuration" makes the postfix package install without writing main.cf or asking anything.
if ! command -v debconf-set-selections >/dev/null 2>&1; then
	echo "install-test-deps: debconf-set-selections not found" >&2
	exit 1
fi
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# If installing Postfix started the system instance anyway (policy-rc.d not honoured, a systemd unit
# enabled), stop it: the tests need none, and it would hold port 25. A Postfix that was already
# installed is left alone.
if [[ " ${missing[*]} " == *" postfix "* ]]; then
	if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
		systemctl stop postfix.service >/dev/null 2>&1 || true
		systemctl disable postfix.service >/dev/null 2>&1 || true
	fi
	if [[ -f /etc/postfix/main.cf ]] && postfix status >/dev/null 2>&1; then
		postfix stop >/dev/null 2>&1 || true
	fi
fi

for pair in "${required[@]}"; do
	cmd=${pair%%:*}
	if ! command -v "$cmd" >/dev/null 2>&1; then
		echo "install-test-deps: $cmd still missing after install" >&2
		exit 1
	fi
done
echo "install-test-deps: done"
