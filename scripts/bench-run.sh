#!/usr/bin/env bash
# bench-run.sh is `make bench`: CryptoMail measured side by side with Dovecot on this machine, in one
# run, with the same messages and the same load generators. It prints Markdown tables and writes them,
# with the machine, the versions and the exact commands, into docs/PERFORMANCE.md (between the
# bench:results markers; the text around them is kept).
#
#   LMTP delivery   real `cryptomail serve` vs a private Dovecot LMTP (maildir, default mail_fsync),
#                   both fed by Postfix's smtp-source -L.
#   First page      50 summaries of a 666-message, ~100 MB inbox: CryptoMail over SeXMAP with client
#                   decryption (Go client) vs Dovecot IMAP on the same mail as mbox; cold and warm.
#   Requests/s      a small list with 1, 10, 100 concurrent sessions (SeXMAP vs IMAP FETCH).
#   Scale           1k/10k(/100k) users: bulk user creation, delivery rate, RSS, open descriptors.
#
# Knobs (environment; `make bench VAR=...` passes them through):
#   BENCH_PROFILE=full|smoke  full: the documented counts; smoke: small counts to prove the harness
#   SCALE=1000,10000          user counts of the scale rows (100000 works; see docs/PERFORMANCE.md)
#   BENCH_MSGS_4K, BENCH_MSGS_100K, BENCH_MSGS_1M, SCALE_MSGS, BENCH_REPEAT, RPS_SESSIONS,
#   RPS_SECONDS               override the profile's counts
#   BENCH_TMPDIR=/var/tmp     where stores live (put it on the disk you want to measure)
#   BENCH_DROP_CACHES=auto    drop the page cache before cold runs (auto: when root can); 0: never
#   BENCH_OUT=docs/PERFORMANCE.md, BENCH_LABEL="..."  where the results go, and a title for them
#   BENCH_KEEP=1              keep the temp dir (logs, stores) instead of removing it
#   MICRO=1                   also run the Go micro-benchmarks (go test -bench) and append them
#
# Everything listens on 127.0.0.1 only. Dovecot runs as a private instance (own base_dir, config,
# stores) and is stopped, with every other process this script started, on exit.
set -euo pipefail
shopt -s inherit_errexit
export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C

cd "$(dirname "$0")/.."
ROOT=$PWD
GO=${GO:-go}

PROFILE=${BENCH_PROFILE:-full}
case $PROFILE in
full)
	d_4k=2000 d_100k=1000 d_1m=200 d_users=1000 d_repeat=20 d_rps="1,10,100" d_rps_s=10
	d_scale="1000,10000" d_scale_msgs=5000
	;;
smoke)
	d_4k=200 d_100k=100 d_1m=20 d_users=1000 d_repeat=5 d_rps="1,10,100" d_rps_s=3
	d_scale="1000,2000" d_scale_msgs=500
	;;
*)
	echo "bench: BENCH_PROFILE must be full or smoke" >&2
	exit 2
	;;
esac
N4K=${BENCH_MSGS_4K:-$d_4k}
N100K=${BENCH_MSGS_100K:-$d_100k}
N1M=${BENCH_MSGS_1M:-$d_1m}
NUSERS=$d_users
REPEAT=${BENCH_REPEAT:-$d_repeat}
RPS_SESSIONS=${RPS_SESSIONS:-$d_rps}
RPS_SECONDS=${RPS_SECONDS:-$d_rps_s}
SCALE=${SCALE:-$d_scale}
SCALE_MSGS=${SCALE_MSGS:-$d_scale_msgs}
OUT=${BENCH_OUT:-docs/PERFORMANCE.md}
DOMAIN=example.test

for v in N4K N100K N1M REPEAT RPS_SECONDS SCALE_MSGS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || {
		echo "bench: $v must be a positive integer" >&2
		exit 2
	}
done
[[ $SCALE =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || {
	echo "bench: SCALE must be comma-separated user counts" >&2
	exit 2
}

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "FAILED: $*"
	exit 1
}

# --- dependencies -----------------------------------------------------------------------------------
bash scripts/bench-deps.sh
for c in dovecot smtp-source; do
	command -v "$c" >/dev/null || die "$c not found after scripts/bench-deps.sh"
done

# --- temp dir, processes, cleanup ---------------------------------------------------------------------
T=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/cmbench.XXXXXX")
chmod 0711 "$T" # Dovecot's mail user must reach its homes below
mkdir -p "$T/bin" "$T/logs" "$T/secret"
chmod 0700 "$T/secret"
PIDS=() # every background process we start
DV_CONF=""

stop_pid() { # stop_pid PID: TERM, wait up to 30 s, then KILL; only our own children
	local pid=$1 i rest=()
	# Forget it first, so that cleanup never signals a recycled process id.
	for i in "${PIDS[@]+"${PIDS[@]}"}"; do
		[[ $i == "$pid" ]] || rest+=("$i")
	done
	PIDS=("${rest[@]+"${rest[@]}"}")
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 300; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	declare -F dv_stop >/dev/null && dv_stop
	for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
		stop_pid "$pid"
	done
	if [[ $rc -ne 0 ]]; then
		for f in "$T"/logs/*.log; do
			[[ -s $f ]] || continue
			echo "---- last lines of $(basename "$f")" >&2
			tail -n 15 "$f" >&2
		done
	fi
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then
		log "kept $T"
	else
		rm -rf "$T"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Commands as they were run, with the temp dir shown as $T, for the report.
CMDS=$T/commands.txt
: >"$CMDS"
note() { printf '%s\n' "${*//$T/\$T}" >>"$CMDS"; }

now_ns() { date +%s%N; }
secs_since() { awk -v a="$1" -v b="$(now_ns)" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
# kv LINE KEY: the value of KEY=value in a benchctl result line.
kv() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
fmt1() { awk -v a="$1" 'BEGIN { printf "%.1f", a }'; }

# --- build ------------------------------------------------------------------------------------------
log "building cryptomail and benchctl"
CGO_ENABLED=1 $GO build -o "$T/bin/" ./cmd/cryptomail ./bench/benchctl
CM=$T/bin/cryptomail
BC=$T/bin/benchctl
note "go build -o \$T/bin/ ./cmd/cryptomail ./bench/benchctl"

ports=$($BC freeports -n 5)
read -r P_CM_LMTP P_CM_HTTP P_DV_LMTP P_DV_IMAP P_SC_LMTP <<<"$(tr '\n' ' ' <<<"$ports")"

# Page cache: cold runs start without the mail in memory when we may drop it.
DROP=${BENCH_DROP_CACHES:-auto}
can_drop=0
if [[ $DROP != 0 && -w /proc/sys/vm/drop_caches ]] && (sync && echo 1 >/proc/sys/vm/drop_caches) 2>/dev/null; then
	can_drop=1
fi
[[ $DROP == 1 && $can_drop == 0 ]] && die "BENCH_DROP_CACHES=1 but /proc/sys/vm/drop_caches is not writable"
drop_caches() {
	if [[ $can_drop == 1 ]]; then
		sync
		echo 3 >/proc/sys/vm/drop_caches
	fi
}

# Passphrase of the bench accounts (CryptoMail and Dovecot alike): random, in a 0600 file, never on
# a command line.
PASS=$T/secret/pass
head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$PASS"
chmod 0600 "$PASS"

# --- CryptoMail ---------------------------------------------------------------------------------------
CM_DIR=$T/cm
CM_CONF=$CM_DIR/cryptomail.toml
CM_PID=""
mkdir -p "$CM_DIR"
cat >"$CM_CONF" <<EOF
# cryptomail bench instance: documented defaults but for the ports and paths.
[server]
domains = ["$DOMAIN"]
data_dir = "data"
[storage]
homes = ["homes"]
[lmtp]
listen = "127.0.0.1:$P_CM_LMTP"
[http]
listen = "127.0.0.1:$P_CM_HTTP"
EOF
CM_URL=http://127.0.0.1:$P_CM_HTTP

cm_start() {
	"$CM" serve -config "$CM_CONF" >>"$T/logs/cryptomail.log" 2>&1 &
	CM_PID=$!
	PIDS+=("$CM_PID")
	$BC waitport -timeout 60s "127.0.0.1:$P_CM_LMTP" "127.0.0.1:$P_CM_HTTP" || die "cryptomail did not start"
}
cm_stop() {
	[[ -n $CM_PID ]] && stop_pid "$CM_PID"
	CM_PID=""
}
cm_count() { $BC count -config "$CM_CONF" "$@"; }

# --- Dovecot ------------------------------------------------------------------------------------------
DV_DIR=$T/dovecot
DV_HOME=$DV_DIR/home
DV_USERS=$DV_DIR/users
mkdir -p "$DV_DIR/run" "$DV_DIR/state" "$DV_HOME"
if [[ $(id -u) -eq 0 ]]; then
	# Dovecot will not deliver as root; Debian's "mail" system user owns the bench mail.
	DV_UID=$(id -u mail) DV_GID=$(id -g mail)
	dv_users_line="" # default_internal_user/login_user: Debian's dovecot and dovenull
else
	DV_UID=$(id -u) DV_GID=$(id -g)
	# Rootless Dovecot: every service runs as us, without chroot.
	dv_users_line="default_internal_user = $(id -un)
default_internal_group = $(id -gn)
default_login_user = $(id -un)
service anvil {
  chroot =
}
service imap-login {
  chroot =
}"
fi
chown "$DV_UID:$DV_GID" "$DV_HOME"
DV_CONF=$DV_DIR/dovecot.conf
cat >"$DV_CONF" <<EOF
# Private Dovecot for the CryptoMail benchmark: loopback only, own dirs, default mail_fsync.
instance_name = cmbench-$$
base_dir = $DV_DIR/run
state_dir = $DV_DIR/state
protocols = lmtp imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = $T/logs/dovecot.log
postmaster_address = postmaster@$DOMAIN
first_valid_uid = $DV_UID
mail_location = maildir:~/Maildir
# Enough processes and connections for 100 concurrent IMAP sessions.
default_process_limit = 1000
default_client_limit = 4000
$dv_users_line
passdb {
  driver = passwd-file
  args = username_format=%Lu $DV_USERS
}
userdb {
  driver = passwd-file
  args = username_format=%Lu $DV_USERS
  default_fields = uid=$DV_UID gid=$DV_GID home=$DV_HOME/%Lu
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $P_DV_LMTP
  }
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $P_DV_IMAP
  }
  inet_listener imaps {
    port = 0
  }
}
protocol imap {
  mail_max_userip_connections = 1000
}
EOF

# The password hash (SHA512-CRYPT, as a real install keeps) is made from stdin.
if command -v openssl >/dev/null; then
	DV_PW=$(openssl passwd -6 -stdin <"$PASS")
	DV_PW="{SHA512-CRYPT}$DV_PW"
else
	DV_PW="{PLAIN}$(cat "$PASS")"
fi
dv_user() { # dv_user ADDRESS [EXTRA_FIELDS]
	printf '%s:%s::::::%s\n' "$1" "$DV_PW" "${2:-}" >>"$DV_USERS"
}
: >"$DV_USERS"
if [[ $(id -u) -eq 0 ]]; then
	chown "root:$(id -g dovecot)" "$DV_USERS"
	chmod 0640 "$DV_USERS"
else
	chmod 0600 "$DV_USERS"
fi

dv_pid() { cat "$DV_DIR/run/master.pid" 2>/dev/null || true; }
dv_start() {
	dovecot -c "$DV_CONF" || die "dovecot did not start (see $T/logs/dovecot.log)"
	$BC waitport -timeout 60s "127.0.0.1:$P_DV_LMTP" "127.0.0.1:$P_DV_IMAP" || die "dovecot did not listen"
}
dv_stop() {
	[[ -n $DV_CONF && -d $DV_DIR/run ]] || return 0
	local pid i
	pid=$(dv_pid)
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 300; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}
dv_count_maildir() { find "$DV_HOME" -path '*/Maildir/new/*' -type f -o -path '*/Maildir/cur/*' -type f | wc -l; }

# --- machine and versions -----------------------------------------------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
fs_src=$(findmnt -no SOURCE -T "$T" 2>/dev/null | head -n1 || true)
fs_type=$(findmnt -no FSTYPE -T "$T" 2>/dev/null | head -n1 || true)
rota=$(lsblk -dno ROTA "$fs_src" 2>/dev/null | tr -d ' ' || true)
disk_kind="unknown"
[[ $rota == 0 ]] && disk_kind="non-rotational (SSD/NVMe, as the kernel reports)"
[[ $rota == 1 ]] && disk_kind="rotational as the kernel reports it (a virtual disk often says so)"
v_go=$($GO version | awk '{ print $3 }')
v_dovecot=$(dovecot --version | awk '{ print $1 }')
v_postfix=$(postconf -d -h mail_version 2>/dev/null || dpkg-query -W -f '${Version}' postfix)
v_cm=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain 2>/dev/null) ]]; then
	v_cm="$v_cm + uncommitted changes"
fi
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
t_start=$(now_ns)
log "profile $PROFILE; temp dir $T (${fs_type:-?} on ${fs_src:-?}); page-cache drop: $([[ $can_drop == 1 ]] && echo yes || echo no)"

# --- accounts -----------------------------------------------------------------------------------------
# Delivery users: bench@ (one-user rows) and 1user@..1000user@ (smtp-source -N numbering).
log "creating $NUSERS+1 users on both servers"
$BC keyring -n "$NUSERS" -addr "%duser@$DOMAIN" -extra "bench@$DOMAIN" -out "$T/users.asc"
note "benchctl keyring -n $NUSERS -addr '%duser@$DOMAIN' -extra bench@$DOMAIN -out \$T/users.asc"
"$CM" init -config "$CM_CONF" >"$T/logs/init.log"
note "cryptomail init -config \$T/cm/cryptomail.toml"
t0=$(now_ns)
"$CM" user add -config "$CM_CONF" --from-file "$T/users.asc" >"$T/logs/useradd.log"
main_add_s=$(secs_since "$t0")
note "cryptomail user add -config \$T/cm/cryptomail.toml --from-file \$T/users.asc"
dv_user "bench@$DOMAIN"
for ((i = 1; i <= NUSERS; i++)); do dv_user "${i}user@$DOMAIN"; done
# The inbox user reads mbox in Dovecot (index apart, so "cold" can remove it); small@ has 10 messages.
dv_user "inbox@$DOMAIN" "userdb_mail=mbox:~/mail:INBOX=~/mail/inbox:INDEX=~/index"
dv_user "small@$DOMAIN"

cm_start
dv_start
note "cryptomail serve -config \$T/cm/cryptomail.toml"
note "dovecot -c \$T/dovecot/dovecot.conf"

# --- 1. LMTP delivery ---------------------------------------------------------------------------------
LMTP_ROWS=() # "label|sessions|users|count|cm_rate|dv_rate"

# deliver_rate PORT SIZE SESSIONS USERS COUNT: runs smtp-source, prints msgs/s. USERS=1 sends to bench@;
# otherwise -N numbers the recipients 1user@..USERSuser@, one smtp-source run per USERS messages.
deliver_rate() {
	local port=$1 size=$2 sessions=$3 users=$4 count=$5 left chunk t0 args
	left=$count
	t0=$(now_ns)
	while ((left > 0)); do
		if ((users == 1)); then
			chunk=$left
			args=(-t "bench@$DOMAIN")
		else
			chunk=$((left < users ? left : users))
			args=(-N -t "user@$DOMAIN")
		fi
		timeout 3600 smtp-source -L -d -s "$sessions" -m "$chunk" -l "$size" -f "load@bench.example" \
			-S "bench $size" "${args[@]}" "127.0.0.1:$port" >>"$T/logs/smtp-source.log" 2>&1 ||
			die "smtp-source to port $port failed (size $size, $sessions sessions, $users users)"
		left=$((left - chunk))
	done
	awk -v n="$count" -v a="$t0" -v b="$(now_ns)" 'BEGIN { printf "%.1f", n / ((b - a) / 1e9) }'
}

lmtp_row() { # lmtp_row LABEL SIZE SESSIONS USERS COUNT
	local label=$1 size=$2 sessions=$3 users=$4 count=$5 before after cm dv nflag=""
	((users > 1)) && nflag="-N "
	log "LMTP $label: $sessions sessions, $users users, $count messages"
	before=$(cm_count -addr "bench@$DOMAIN" -pattern "%duser@$DOMAIN" -n "$NUSERS")
	cm=$(deliver_rate "$P_CM_LMTP" "$size" "$sessions" "$users" "$count")
	after=$(cm_count -addr "bench@$DOMAIN" -pattern "%duser@$DOMAIN" -n "$NUSERS")
	((after - before == count)) || die "CryptoMail stored $((after - before)) of $count messages"
	before=$(dv_count_maildir)
	dv=$(deliver_rate "$P_DV_LMTP" "$size" "$sessions" "$users" "$count")
	after=$(dv_count_maildir)
	((after - before == count)) || die "Dovecot stored $((after - before)) of $count messages"
	LMTP_ROWS+=("$label|$sessions|$users|$count|$cm|$dv")
	note "smtp-source -L -d -s $sessions -m $((users > 1 && count > users ? users : count)) -l $size -f load@bench.example -S 'bench $size' ${nflag}-t $([[ $users == 1 ]] && echo "bench@$DOMAIN" || echo "user@$DOMAIN") 127.0.0.1:PORT   # $label row$([[ $users -gt 1 && $count -gt $users ]] && echo ", run $((count / users)) times")"
	log "  CryptoMail $cm msgs/s, Dovecot $dv msgs/s"
}

lmtp_row "4 KB" 4096 1 1 "$N4K"
lmtp_row "4 KB" 4096 10 1 "$N4K"
lmtp_row "4 KB" 4096 10 "$NUSERS" "$N4K"
lmtp_row "100 KB" 102400 10 "$NUSERS" "$N100K"
lmtp_row "1 MB" 1048576 10 "$NUSERS" "$N1M"

# --- 2. First page of 50 of the 666-message inbox ---------------------------------------------------------
log "making the 666-message inbox"
inbox_info=$($BC inbox -n 666 -total 100000000 -to "inbox@$DOMAIN" -out "$T/inbox")
note "benchctl inbox -n 666 -total 100000000 -to inbox@$DOMAIN -out \$T/inbox   # msgs/*.eml and inbox.mbox"
inbox_bytes=$(kv "$inbox_info" bytes)
inbox_att=$(kv "$inbox_info" with_attachments)

signup() { # signup ADDRESS: invite + client sign-up (Argon2id login key, sealed private key)
	"$CM" user invite -config "$CM_CONF" "$1" | tail -n 1 >"$T/secret/invite"
	$BC signup -server "$CM_URL" -address "$1" -pass-file "$PASS" -invite-file "$T/secret/invite" >>"$T/logs/signup.log"
	rm -f "$T/secret/invite"
}
signup "inbox@$DOMAIN"
note "cryptomail user invite -config \$T/cm/cryptomail.toml inbox@$DOMAIN; benchctl signup -server $CM_URL -address inbox@$DOMAIN -pass-file \$T/secret/pass -invite-file \$T/secret/invite"
load=$($BC deliver -lmtp "127.0.0.1:$P_CM_LMTP" -rcpt "inbox@$DOMAIN" -dir "$T/inbox/msgs")
note "benchctl deliver -lmtp 127.0.0.1:$P_CM_LMTP -rcpt inbox@$DOMAIN -dir \$T/inbox/msgs"
inbox_load_s=$(kv "$load" seconds)
DV_INBOX_HOME=$DV_HOME/inbox@$DOMAIN
install -d -o "$DV_UID" -g "$DV_GID" "$DV_INBOX_HOME" "$DV_INBOX_HOME/mail"

# Cold: a fresh server process, no Dovecot index, the page cache dropped (when allowed).
log "first page, cold then warm: CryptoMail"
cm_stop
drop_caches
cm_start
fp_cm=$($BC firstpage -server "$CM_URL" -address "inbox@$DOMAIN" -pass-file "$PASS" -repeat "$REPEAT")
note "benchctl firstpage -server $CM_URL -address inbox@$DOMAIN -pass-file \$T/secret/pass -repeat $REPEAT   # after a server restart"
log "  $fp_cm"
log "first page, cold then warm: Dovecot"
dv_stop
rm -rf "$DV_INBOX_HOME/index"
install -o "$DV_UID" -g "$DV_GID" -m 0600 "$T/inbox/inbox.mbox" "$DV_INBOX_HOME/mail/inbox"
drop_caches
dv_start
fp_dv=$($BC imapfirst -imap "127.0.0.1:$P_DV_IMAP" -user "inbox@$DOMAIN" -pass-file "$PASS" -repeat "$REPEAT")
note "benchctl imapfirst -imap 127.0.0.1:$P_DV_IMAP -user inbox@$DOMAIN -pass-file \$T/secret/pass -repeat $REPEAT   # after a Dovecot restart, index removed: LOGIN, SELECT INBOX, FETCH 1:50 (ENVELOPE FLAGS)"
log "  $fp_dv"
[[ $(kv "$fp_cm" messages) == 666 ]] || die "CryptoMail inbox holds $(kv "$fp_cm" messages) messages, want 666"
[[ $(kv "$fp_dv" messages) == 666 ]] || die "Dovecot inbox holds $(kv "$fp_dv" messages) messages, want 666"

# --- 3. Requests/s on a small list ----------------------------------------------------------------------
log "requests/s: sessions $RPS_SESSIONS, ${RPS_SECONDS}s each"
signup "small@$DOMAIN"
timeout 600 smtp-source -L -d -m 10 -l 4096 -f load@bench.example -S "small" -t "small@$DOMAIN" "127.0.0.1:$P_CM_LMTP" || die "delivery to small@ failed"
timeout 600 smtp-source -L -d -m 10 -l 4096 -f load@bench.example -S "small" -t "small@$DOMAIN" "127.0.0.1:$P_DV_LMTP" || die "delivery to small@ failed"
note "smtp-source -L -d -m 10 -l 4096 -f load@bench.example -S small -t small@$DOMAIN 127.0.0.1:PORT   # both servers"
rps_cm=$($BC rps -server "$CM_URL" -address "small@$DOMAIN" -pass-file "$PASS" -sessions "$RPS_SESSIONS" -duration "${RPS_SECONDS}s" -limit 10)
note "benchctl rps -server $CM_URL -address small@$DOMAIN -pass-file \$T/secret/pass -sessions $RPS_SESSIONS -duration ${RPS_SECONDS}s -limit 10"
rps_dv=$($BC imaprps -imap "127.0.0.1:$P_DV_IMAP" -user "small@$DOMAIN" -pass-file "$PASS" -sessions "$RPS_SESSIONS" -duration "${RPS_SECONDS}s" -limit 10)
note "benchctl imaprps -imap 127.0.0.1:$P_DV_IMAP -user small@$DOMAIN -pass-file \$T/secret/pass -sessions $RPS_SESSIONS -duration ${RPS_SECONDS}s -limit 10"
log "  CryptoMail: $(tr '\n' ' ' <<<"$rps_cm")"
log "  Dovecot:    $(tr '\n' ' ' <<<"$rps_dv")"

cm_stop
dv_stop

# --- 4. Scale ---------------------------------------------------------------------------------------------
SCALE_ROWS=() # "users|add_s|rate|peak_rss|end_rss|peak_fds|end_fds|disk"
IFS=, read -r -a scale_sizes <<<"$SCALE"
for S in "${scale_sizes[@]}"; do
	log "scale: $S users"
	SD=$T/scale-$S
	mkdir -p "$SD"
	cat >"$SD/cryptomail.toml" <<EOF
# Default max_open_shards; no HTTP listener.
[server]
domains = ["$DOMAIN"]
data_dir = "data"
[storage]
homes = ["homes"]
[lmtp]
listen = "127.0.0.1:$P_SC_LMTP"
[http]
listen = ""
EOF
	$BC keyring -n "$S" -addr "%duser@$DOMAIN" -out "$SD/users.asc"
	"$CM" init -config "$SD/cryptomail.toml" >>"$T/logs/init.log"
	t0=$(now_ns)
	"$CM" user add -config "$SD/cryptomail.toml" --from-file "$SD/users.asc" >>"$T/logs/useradd.log"
	add_s=$(secs_since "$t0")
	rm -f "$SD/users.asc"
	"$CM" serve -config "$SD/cryptomail.toml" >>"$T/logs/cryptomail-scale.log" 2>&1 &
	spid=$!
	PIDS+=("$spid")
	$BC waitport -timeout 120s "127.0.0.1:$P_SC_LMTP" || die "cryptomail (scale $S) did not start"
	$BC sample -pid "$spid" -out "$SD/sample" &
	sampler=$!
	PIDS+=("$sampler")
	rate=$(deliver_rate "$P_SC_LMTP" 4096 10 "$S" "$SCALE_MSGS")
	stop_pid "$sampler"
	stored=$($BC count -config "$SD/cryptomail.toml" -pattern "%duser@$DOMAIN" -n $((S < SCALE_MSGS ? S : SCALE_MSGS)))
	((stored == SCALE_MSGS)) || die "scale $S: stored $stored of $SCALE_MSGS messages"
	stop_pid "$spid"
	smp=$(cat "$SD/sample")
	disk=$(du -sh "$SD" | cut -f1)
	SCALE_ROWS+=("$S|$add_s|$rate|$(kv "$smp" peak_rss_kb)|$(kv "$smp" end_rss_kb)|$(kv "$smp" peak_fds)|$(kv "$smp" end_fds)|$disk")
	log "  add ${add_s}s, $rate msgs/s, $smp, $disk on disk"
	rm -rf "$SD"
done
note "benchctl keyring -n S -addr '%duser@$DOMAIN' -out users.asc; cryptomail init; cryptomail user add --from-file users.asc; cryptomail serve; smtp-source -L -d -s 10 -m min(S,$SCALE_MSGS) -l 4096 -N -t user@$DOMAIN ... (repeated up to $SCALE_MSGS messages)   # per scale row, fresh data dir"

# --- 5. optional micro-benchmarks ------------------------------------------------------------------------
micro=""
if [[ ${MICRO:-0} == 1 ]]; then
	log "micro-benchmarks"
	micro=$($GO test -run '^$' -bench . -benchmem ./crypto/ ./shard/ ./lmtp/ ./server/ ./server/internal/mailback/ 2>&1 | grep -E '^(Benchmark|ok|FAIL|goos|cpu)' || true)
	note "go test -run '^\$' -bench . -benchmem ./crypto/ ./shard/ ./lmtp/ ./server/ ./server/internal/mailback/"
fi

total_s=$(secs_since "$t_start")
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report -------------------------------------------------------------------------------------------------
report() {
	local label=${BENCH_LABEL:-"\`make bench\` ($PROFILE profile)"}
	echo "### $label, $(date -u +'%Y-%m-%d %H:%M UTC')"
	echo
	echo "Machine: $(nproc) CPUs ($cpu), $mem RAM, stores on ${fs_type:-?} (${fs_src:-?}, $disk_kind)."
	echo "Load average at start / end: $load_start / $load_end. Total run time: $(fmt1 "$total_s") s."
	echo "Versions: $v_go, Dovecot $v_dovecot, Postfix $v_postfix (smtp-source), CryptoMail $v_cm."
	echo "Cold runs dropped the page cache: $([[ $can_drop == 1 ]] && echo yes || echo "no (not permitted here)")."
	echo
	echo "#### LMTP delivery (smtp-source -L, msgs/s; ratio = CryptoMail / Dovecot)"
	echo
	echo "| message | sessions | users | messages | CryptoMail | Dovecot (maildir) | ratio |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	local r label sessions users count cm dv
	for r in "${LMTP_ROWS[@]}"; do
		IFS='|' read -r label sessions users count cm dv <<<"$r"
		echo "| $label | $sessions | $users | $count | $cm | $dv | $(ratio "$cm" "$dv")× |"
	done
	echo
	echo "#### First page of 50 summaries: 666 messages, $((inbox_bytes / 1000000)) MB ($inbox_att with attachments)"
	echo
	echo "CryptoMail: SeXMAP list-messages + client-side decryption of the 50 summaries (Go client)."
	echo "Dovecot: IMAP SELECT INBOX + FETCH 1:50 (ENVELOPE FLAGS), mailbox stored as mbox."
	echo "Times in ms; ratio = Dovecot / CryptoMail (above 1: CryptoMail faster). Login is timed apart."
	echo
	echo "| | CryptoMail | Dovecot | ratio |"
	echo "|---|---:|---:|---:|"
	echo "| cold (fresh process; Dovecot without index) | $(kv "$fp_cm" first_ms) | $(kv "$fp_dv" first_ms) | $(ratio "$(kv "$fp_dv" first_ms)" "$(kv "$fp_cm" first_ms)")× |"
	echo "| warm (median of $REPEAT in the same session) | $(kv "$fp_cm" warm_ms) | $(kv "$fp_dv" warm_ms) | $(ratio "$(kv "$fp_dv" warm_ms)" "$(kv "$fp_cm" warm_ms)")× |"
	echo "| login (CryptoMail: Argon2id + Noise XK + get-account; IMAP LOGIN) | $(kv "$fp_cm" login_ms) | $(kv "$fp_dv" login_ms) | |"
	echo
	echo "Loading the inbox into CryptoMail over LMTP took $inbox_load_s s ($(awk -v b="$inbox_bytes" -v s="$inbox_load_s" 'BEGIN { printf "%.1f", b / 1e6 / s }') MB/s, encrypting each message and its summary)."
	echo
	echo "#### Requests/s on a small list (10 messages), ${RPS_SECONDS} s per row"
	echo
	echo "CryptoMail: SeXMAP list-messages limit=10 (encrypted summaries returned, not decrypted)."
	echo "Dovecot: IMAP FETCH 1:10 (ENVELOPE FLAGS) on a selected maildir INBOX. Ratio = CryptoMail / Dovecot."
	echo
	echo "| sessions | CryptoMail req/s | Dovecot req/s | ratio |"
	echo "|---:|---:|---:|---:|"
	local k a b
	IFS=, read -r -a rs <<<"$RPS_SESSIONS"
	for k in "${rs[@]}"; do
		a=$(sed -n "s/^sessions=$k rps=//p" <<<"$rps_cm")
		b=$(sed -n "s/^sessions=$k rps=//p" <<<"$rps_dv")
		echo "| $k | $a | $b | $(ratio "$a" "$b")× |"
	done
	echo
	echo "#### Scale (CryptoMail; default max_open_shards = 1024; $SCALE_MSGS messages of 4 KB, 10 sessions)"
	echo
	echo "| users | bulk add (s) | users/s | delivery msgs/s | peak RSS (MB) | end RSS (MB) | peak fds | end fds | disk |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	local s add rate prss erss pfd efd disk
	for r in "${SCALE_ROWS[@]}"; do
		IFS='|' read -r s add rate prss erss pfd efd disk <<<"$r"
		echo "| $s | $(fmt1 "$add") | $(awk -v a="$s" -v b="$add" 'BEGIN { if (b > 0) printf "%.0f", a / b; else print "n/a" }') | $rate | $(fmt1 "$(awk -v k="$prss" 'BEGIN{print k/1024}')") | $(fmt1 "$(awk -v k="$erss" 'BEGIN{print k/1024}')") | $pfd | $efd | $disk |"
	done
	if ((${#SCALE_ROWS[@]} > 1)); then
		IFS='|' read -r s add rate _ <<<"${SCALE_ROWS[0]}"
		IFS='|' read -r s2 add2 rate2 _ <<<"${SCALE_ROWS[-1]}"
		echo
		echo "Delivery rate at $s2 users is $(awk -v a="$rate2" -v b="$rate" 'BEGIN { printf "%.0f", 100 * a / b }')% of the rate at $s users."
	fi
	if [[ -n $micro ]]; then
		echo
		echo "#### Go micro-benchmarks"
		echo
		echo '```'
		echo "$micro"
		echo '```'
	fi
	echo
	echo "#### Commands (\$T is the run's temp dir; PORT the server's loopback port)"
	echo
	echo '```sh'
	echo "make bench BENCH_PROFILE=$PROFILE SCALE=$SCALE   # = bash scripts/bench-run.sh"
	cat "$CMDS"
	echo '```'
	echo
	echo "Dovecot configuration used (\`dovecot -c\`, paths under \$T):"
	echo
	echo '```'
	sed -e "s|$T|\$T|g" -e '/^$/d' "$DV_CONF"
	echo '```'
}

report >"$T/report.md"
cat "$T/report.md"

# Into docs/PERFORMANCE.md between the markers, replacing the previous results.
begin='<!-- bench:results:begin -->'
end='<!-- bench:results:end -->'
if [[ ! -f $OUT ]] || ! grep -qF "$begin" "$OUT" || ! grep -qF "$end" "$OUT"; then
	mkdir -p "$(dirname "$OUT")"
	printf '# Performance\n\nWritten by `make bench` (scripts/bench-run.sh).\n\n%s\n%s\n' "$begin" "$end" >"$OUT"
fi
awk -v b="$begin" -v e="$end" -v f="$T/report.md" '
	$0 == b { print; while ((getline l < f) > 0) print l; skip = 1; next }
	$0 == e { skip = 0 }
	!skip { print }
' "$OUT" >"$T/perf.md"
cat "$T/perf.md" >"$OUT"
log "results written to $OUT"
