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

"$(dirname "$0")/apt-install.sh" install-test-deps "${missing[@]}"

for pair in "${required[@]}"; do
	cmd=${pair%%:*}
	if ! command -v "$cmd" >/dev/null 2>&1; then
		echo "install-test-deps: $cmd still missing after install" >&2
		exit 1
	fi
done
echo "install-test-deps: done"
