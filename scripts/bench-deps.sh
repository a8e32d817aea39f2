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

"$(dirname "$0")/apt-install.sh" bench-deps "${missing[@]}"

for pair in "${required[@]}"; do
	file=${pair#*:}
	if [[ ! -e $file ]]; then
		echo "bench-deps: $file still missing after install" >&2
		exit 1
	fi
done
echo "bench-deps: done"
