package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PostfixOptions configures a private Postfix instance.
type PostfixOptions struct {
	// Domains are the virtual mailbox domains; mail for them is delivered over LMTP. Required.
	Domains []string
	// LMTPAddr is host:port of the LMTP server to deliver to (virtual_transport =
	// lmtp:inet:host:port). Required.
	LMTPAddr string
	// MainCF adds or overrides main.cf parameters after the defaults StartPostfix writes, for
	// example "message_size_limit" or "lmtp_destination_recipient_limit".
	MainCF map[string]string
}

// Postfix is a private Postfix instance for tests: its own config_directory, queue_directory
// and data_directory under a temp dir, its own loopback SMTP port, and its own log file. It
// shares only the installed programs and the postfix/postdrop accounts with any system Postfix,
// and it neither reads nor changes the system's /etc/postfix/main.cf.
type Postfix struct {
	baseDir   string
	configDir string
	queueDir  string
	logFile   string
	smtpAddr  string

	postfixCmd   string
	postqueueCmd string
	sendmailCmd  string

	masterPID int
}

const (
	// postlogd, which lets an instance log to a file without syslog, came with Postfix 3.4.
	postfixMinMajor, postfixMinMinor = 3, 4

	cmdTimeout   = 30 * time.Second
	stopTimeout  = 10 * time.Second
	pollInterval = 25 * time.Millisecond
	startTries   = 3
)

// StartPostfix writes a private configuration, starts the instance's master and returns once its
// smtpd is listening. A cleanup registered on t stops it (postfix stop, then waits until every
// process of the instance is gone) and removes its directories.
//
// The test is skipped when Postfix is not installed or the test is not running as root (Postfix
// starts only as root), or failed instead under CRYPTOMAIL_REQUIRE_TOOLS=1.
func StartPostfix(t testing.TB, opts PostfixOptions) *Postfix {
	t.Helper()
	if runtime.GOOS != "linux" {
		Unavailable(t, "testenv: private Postfix instances are supported on Linux only")
	}
	postfixCmd := RequireTool(t, "postfix")
	postconfCmd := RequireTool(t, "postconf")
	if os.Geteuid() != 0 {
		Unavailable(t, "testenv: a Postfix instance can only be started as root")
	}
	nexthop, lmtpIPv6, err := opts.validate()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), cmdTimeout)
	defer cancel()
	defaults, err := postconfDefaults(ctx, postconfCmd)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	major, minor, err := parseVersion(defaults["mail_version"])
	if err != nil {
		t.Fatalf("testenv: postfix mail_version: %v", err)
	}
	if major < postfixMinMajor || (major == postfixMinMajor && minor < postfixMinMinor) {
		Unavailable(t, "testenv: Postfix %s is too old, need %d.%d or later", defaults["mail_version"], postfixMinMajor, postfixMinMinor)
	}
	owner, err := user.Lookup(defaults["mail_owner"])
	if err != nil {
		Unavailable(t, "testenv: Postfix mail_owner account %q: %v", defaults["mail_owner"], err)
	}
	if _, err := user.LookupGroup(defaults["setgid_group"]); err != nil {
		Unavailable(t, "testenv: Postfix setgid_group %q: %v", defaults["setgid_group"], err)
	}
	ownerUID, err := strconv.Atoi(owner.Uid)
	if err != nil {
		t.Fatalf("testenv: uid of %s: %v", owner.Username, err)
	}

	// Not t.TempDir: that one is 0700, and Postfix daemons running as mail_owner open files in
	// data_directory by absolute path, so every parent must be searchable by them.
	base, err := os.MkdirTemp("", "cryptomail-postfix-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	p := &Postfix{
		baseDir:      base,
		configDir:    filepath.Join(base, "etc"),
		queueDir:     filepath.Join(base, "spool"),
		logFile:      filepath.Join(base, "maillog"),
		postfixCmd:   postfixCmd,
		postqueueCmd: filepath.Join(defaults["command_directory"], "postqueue"),
		sendmailCmd:  defaults["sendmail_path"],
	}
	t.Cleanup(func() { p.shutdown(t) })

	dataDir := filepath.Join(base, "data")
	if err := prepareDirs(base, p.configDir, p.queueDir, dataDir, ownerUID); err != nil {
		t.Fatalf("testenv: %v", err)
	}

	params := mainCF(defaults, mainCFInput{
		queueDir: p.queueDir, dataDir: dataDir, logFile: p.logFile, logPrefix: base,
		domains: opts.Domains, nexthop: nexthop, ipv6: lmtpIPv6,
		compat: compatLevel(major, minor),
	}, opts.MainCF)
	if err := writeConfig(filepath.Join(p.configDir, "main.cf"), params); err != nil {
		t.Fatalf("testenv: %v", err)
	}

	// The port is chosen free just before master binds it; if something else takes it in between,
	// master fails to bind and we try again with another port.
	for try := 1; ; try++ {
		addr, err := freePort()
		if err != nil {
			t.Fatalf("testenv: free port: %v", err)
		}
		if err := writeConfig(filepath.Join(p.configDir, "master.cf"), masterCF(addr)); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		out, err := runCmd(ctx, nil, p.postfixCmd, "-c", p.configDir, "start")
		if err == nil {
			p.smtpAddr = addr
			break
		}
		_, port, _ := net.SplitHostPort(addr)
		if try < startTries && strings.Contains(p.LogTail(20), "port "+port+": Address already in use") {
			continue
		}
		t.Fatalf("testenv: start postfix: %v\n%s\nmaillog:\n%s", err, out, p.LogTail(40))
	}
	pid, err := p.readMasterPID()
	if err != nil {
		t.Fatalf("testenv: postfix started but %v", err)
	}
	p.masterPID = pid
	return p
}

// SMTPAddr is the loopback host:port on which the instance's smtpd listens.
func (p *Postfix) SMTPAddr() string { return p.smtpAddr }

// ConfigDir is the instance's config_directory (for postfix -c, postqueue -c, sendmail -C). Each
// of the instance's processes carries MAIL_CONFIG=ConfigDir() in its environment.
func (p *Postfix) ConfigDir() string { return p.configDir }

// Sendmail injects msg through the instance's own sendmail(1) (sendmail -C DIR -i -f from --
// to...), that is through postdrop, the maildrop queue and pickup, as a local program would.
// -i keeps a line holding a lone "." as data instead of end of input. An empty from gives the
// null sender. Line endings are normalised by Postfix (sendmail_fix_line_endings).
func (p *Postfix) Sendmail(t testing.TB, from string, to []string, msg []byte) {
	t.Helper()
	if len(to) == 0 {
		t.Fatalf("testenv: Sendmail needs at least one recipient")
	}
	args := append([]string{"-C", p.configDir, "-i", "-f", from, "--"}, to...)
	ctx, cancel := context.WithTimeout(t.Context(), cmdTimeout)
	defer cancel()
	if out, err := runCmd(ctx, msg, p.sendmailCmd, args...); err != nil {
		t.Fatalf("testenv: %v\n%s\nmaillog:\n%s", err, out, p.LogTail(20))
	}
}

// WaitQueueEmpty polls the instance's queue (maildrop, incoming, active, deferred, hold) until it
// is empty, which after a submission means every message was delivered or bounced. When timeout
// passes first it fails the test with the queue listing and the end of the log.
func (p *Postfix) WaitQueueEmpty(t testing.TB, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout+cmdTimeout)
	defer cancel()
	deadline := time.Now().Add(timeout)
	for {
		out, err := runCmd(ctx, nil, p.postqueueCmd, "-c", p.configDir, "-j")
		if err != nil {
			t.Fatalf("testenv: %v\n%s", err, out)
		}
		if len(bytes.TrimSpace(out)) == 0 {
			return
		}
		if time.Now().After(deadline) {
			listing, err := runCmd(ctx, nil, p.postqueueCmd, "-c", p.configDir, "-p")
			if err != nil {
				listing = append(listing, []byte(err.Error())...)
			}
			t.Fatalf("testenv: postfix queue not empty after %v:\n%s\nmaillog:\n%s", timeout, listing, p.LogTail(40))
		}
		time.Sleep(pollInterval)
	}
}

// LogTail returns the last n lines of the instance's log (maillog_file, written by postlogd).
func (p *Postfix) LogTail(n int) string {
	data, err := os.ReadFile(p.logFile)
	if err != nil {
		return fmt.Sprintf("(maillog unreadable: %v)", err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if n >= 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

// shutdown stops the instance and makes sure none of its processes outlive the test. Postfix's
// master is a session leader (setsid), and every daemon it spawns stays in its session, so the
// session id finds them all.
func (p *Postfix) shutdown(t testing.TB) {
	t.Helper()
	// t.Context is already cancelled when cleanups run.
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()

	pid := p.masterPID
	if pid == 0 {
		// Start failed half-way; a master may still have come up.
		pid, _ = p.readMasterPID()
	}
	if pid > 0 {
		out, stopErr := runCmd(ctx, nil, p.postfixCmd, "-c", p.configDir, "stop")
		left, err := waitSessionGone(pid, stopTimeout)
		if err != nil {
			t.Errorf("testenv: checking for postfix processes: %v", err)
		}
		if len(left) > 0 {
			// Kill only a session whose leader we saw start: a pid file left by a master that
			// failed to start could name a pid reused since.
			if p.masterPID != 0 {
				for _, q := range left {
					_ = syscall.Kill(q, syscall.SIGKILL) // already reported below; best effort
				}
			}
			t.Errorf("testenv: postfix processes %v still running %v after stop (stop: %v %s)\nmaillog:\n%s",
				left, stopTimeout, stopErr, out, p.LogTail(20))
		}
	}
	if err := os.RemoveAll(p.baseDir); err != nil {
		t.Errorf("testenv: remove postfix instance: %v", err)
	}
}

func (p *Postfix) readMasterPID() (int, error) {
	data, err := os.ReadFile(filepath.Join(p.queueDir, "pid", "master.pid"))
	if err != nil {
		return 0, fmt.Errorf("master pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("master pid file holds %q", bytes.TrimSpace(data))
	}
	return pid, nil
}

// waitSessionGone polls until no process is left in session sid, or timeout passes; it returns
// the processes still there.
func waitSessionGone(sid int, timeout time.Duration) ([]int, error) {
	deadline := time.Now().Add(timeout)
	for {
		left, err := sessionMembers(sid)
		if err != nil || len(left) == 0 || time.Now().After(deadline) {
			return left, err
		}
		time.Sleep(pollInterval)
	}
}

// sessionMembers lists the processes whose session id is sid, from /proc/PID/stat.
func sessionMembers(sid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		s, state, ok := statSession(stat)
		// A zombie has exited; only its parent's wait is missing. A daemon whose master is gone is
		// reaped by init, which may take its time.
		if ok && s == sid && state != "Z" && state != "X" {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// statSession extracts the session id and state from /proc/PID/stat: "pid (comm) state ppid pgrp
// session ...", where comm may itself hold spaces and parentheses, so fields count from the last
// ')'.
func statSession(stat []byte) (sid int, state string, ok bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, "", false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 4 {
		return 0, "", false
	}
	sid, err := strconv.Atoi(f[3])
	if err != nil {
		return 0, "", false
	}
	return sid, f[0], true
}

var (
	domainRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)
	paramRE  = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// validate checks the options and returns the LMTP nexthop in Postfix syntax and whether it is
// an IPv6 address.
func (o PostfixOptions) validate() (nexthop string, ipv6 bool, err error) {
	if len(o.Domains) == 0 {
		return "", false, errors.New("PostfixOptions.Domains is empty")
	}
	for _, d := range o.Domains {
		if !domainRE.MatchString(d) {
			return "", false, fmt.Errorf("PostfixOptions.Domains: invalid domain %q", d)
		}
	}
	host, port, err := net.SplitHostPort(o.LMTPAddr)
	if err != nil {
		return "", false, fmt.Errorf("PostfixOptions.LMTPAddr %q: %w", o.LMTPAddr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", false, fmt.Errorf("PostfixOptions.LMTPAddr %q: bad port", o.LMTPAddr)
	}
	for k, v := range o.MainCF {
		if !paramRE.MatchString(k) {
			return "", false, fmt.Errorf("PostfixOptions.MainCF: invalid parameter name %q", k)
		}
		if strings.ContainsAny(v, "\r\n") {
			return "", false, fmt.Errorf("PostfixOptions.MainCF[%s]: value spans lines", k)
		}
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return "inet:[" + host + "]:" + port, true, nil
	}
	if host == "" || (!domainRE.MatchString(host) && net.ParseIP(host) == nil) {
		return "", false, fmt.Errorf("PostfixOptions.LMTPAddr %q: bad host", o.LMTPAddr)
	}
	return "inet:" + host + ":" + port, false, nil
}

// postconfDefaults returns Postfix's built-in parameter defaults (postconf -d), which hold the
// installation's directories. It does not read the system main.cf, which may not even exist.
func postconfDefaults(ctx context.Context, postconf string) (map[string]string, error) {
	out, err := runCmd(ctx, nil, postconf, "-d")
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, out)
	}
	m := make(map[string]string)
	for line := range strings.Lines(string(out)) {
		name, value, ok := strings.Cut(strings.TrimRight(line, "\n"), " = ")
		if !ok {
			name, ok = strings.CutSuffix(strings.TrimRight(line, "\n"), " =")
		}
		if ok {
			m[name] = value
		}
	}
	for _, k := range []string{"mail_version", "command_directory", "daemon_directory", "meta_directory", "mail_owner", "setgid_group", "sendmail_path"} {
		if m[k] == "" {
			return nil, fmt.Errorf("postconf -d gives no %s", k)
		}
	}
	return m, nil
}

func parseVersion(v string) (major, minor int, err error) {
	f := strings.SplitN(v, ".", 3)
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("unparsable version %q", v)
	}
	if major, err = strconv.Atoi(f[0]); err != nil {
		return 0, 0, fmt.Errorf("unparsable version %q", v)
	}
	if minor, err = strconv.Atoi(f[1]); err != nil {
		return 0, 0, fmt.Errorf("unparsable version %q", v)
	}
	return major, minor, nil
}

// compatLevel picks the newest compatibility_level syntax the installed Postfix knows, so it
// logs no "backwards-compatible default" warnings.
func compatLevel(major, minor int) string {
	if major > 3 || (major == 3 && minor >= 6) {
		return "3.6"
	}
	return "2"
}

// prepareDirs lays out the instance: base and config root-owned and not writable by others (as
// postfix check wants), data_directory owned by mail_owner. The queue directory's subdirectories
// and their owners are created by "postfix start" (post-install create-missing).
func prepareDirs(base, configDir, queueDir, dataDir string, ownerUID int) error {
	if err := os.Chmod(base, 0o755); err != nil {
		return err
	}
	if err := checkSearchable(base); err != nil {
		return err
	}
	// Chmod after Mkdir so the process umask does not matter.
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{configDir, 0o755}, {queueDir, 0o755}, {dataDir, 0o700}} {
		if err := os.Mkdir(d.path, d.mode); err != nil {
			return err
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			return err
		}
	}
	return os.Chown(dataDir, ownerUID, 0)
}

// checkSearchable makes sure mail_owner can reach dir, so a TMPDIR under a 0700 home fails with
// a clear message rather than a cryptic "Permission denied" in the maillog.
func checkSearchable(dir string) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("temp dir %s is under %s, which other users cannot search; Postfix's mail_owner needs to: set TMPDIR elsewhere", dir, d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

type mainCFInput struct {
	queueDir, dataDir, logFile, logPrefix string
	domains                               []string
	nexthop                               string
	ipv6                                  bool
	compat                                string
}

// mainCF renders main.cf: the defaults below, then overrides (replacing a default of the same
// name, or appended in name order).
func mainCF(defaults map[string]string, in mainCFInput, overrides map[string]string) string {
	protocols := "ipv4"
	if in.ipv6 {
		protocols = "ipv4, ipv6"
	}
	params := [][2]string{
		{"compatibility_level", in.compat},
		// Own queue, data and log; the installed programs and accounts are the system's.
		{"queue_directory", in.queueDir},
		{"data_directory", in.dataDir},
		{"command_directory", defaults["command_directory"]},
		{"daemon_directory", defaults["daemon_directory"]},
		{"meta_directory", defaults["meta_directory"]},
		{"mail_owner", defaults["mail_owner"]},
		{"setgid_group", defaults["setgid_group"]},
		{"maillog_file", in.logFile},
		{"maillog_file_prefixes", in.logPrefix},
		// Loopback only, and no DNS: tests have no network.
		{"inet_interfaces", "127.0.0.1"},
		{"inet_protocols", protocols},
		{"myhostname", "mx.cryptomail.test"},
		{"mydomain", "cryptomail.test"},
		{"myorigin", "$myhostname"},
		{"smtp_host_lookup", "native"},
		{"lmtp_host_lookup", "native"},
		// No local delivery: nothing is for this host.
		{"mydestination", ""},
		{"local_recipient_maps", ""},
		{"local_transport", "error:5.1.1 local delivery is disabled in this test instance"},
		{"alias_maps", ""},
		{"alias_database", ""},
		{"biff", "no"},
		// No relaying, and nothing leaves the machine: other domains (bounces included) fail at once,
		// so the queue always drains.
		{"mynetworks", "127.0.0.0/8"},
		{"relay_domains", ""},
		{"relayhost", ""},
		{"smtpd_relay_restrictions", "reject_unauth_destination"},
		{"default_transport", "error:5.7.1 outbound mail is disabled in this test instance"},
		{"relay_transport", "error:5.7.1 outbound mail is disabled in this test instance"},
		{"append_dot_mydomain", "no"},
		// The domains under test, delivered over LMTP.
		{"virtual_mailbox_domains", strings.Join(in.domains, ", ")},
		{"virtual_mailbox_maps", ""},
		{"virtual_alias_maps", ""},
		{"virtual_transport", "lmtp:" + in.nexthop},
		{"smtputf8_enable", "yes"},
		// Retry deferred mail within seconds, so a test of a temporary LMTP failure need not wait
		// the production minutes.
		{"queue_run_delay", "1s"},
		{"minimal_backoff_time", "1s"},
		{"maximal_backoff_time", "2s"},
	}
	if v, ok := defaults["shlib_directory"]; ok {
		params = append(params, [2]string{"shlib_directory", v})
	}
	if _, ok := defaults["smtpd_peername_lookup"]; ok {
		params = append(params, [2]string{"smtpd_peername_lookup", "no"})
	}

	names := make([]string, 0, len(overrides))
	for k := range overrides {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		i := slices.IndexFunc(params, func(p [2]string) bool { return p[0] == k })
		if i >= 0 {
			params[i][1] = overrides[k]
		} else {
			params = append(params, [2]string{k, overrides[k]})
		}
	}

	var b strings.Builder
	b.WriteString("# Private Postfix instance for one test, written by cryptomail/internal/testenv.\n")
	for _, p := range params {
		fmt.Fprintf(&b, "%s = %s\n", p[0], p[1])
	}
	return b.String()
}

// writeConfig writes a configuration file dated a minute back. Postfix waits (in 300 ms steps,
// for seconds) while a table or main.cf it loads is younger than a second, in case an editor is
// still writing it; a fresh file would cost every start about two seconds.
func writeConfig(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return err
	}
	past := time.Now().Add(-time.Minute)
	return os.Chtimes(path, past, past)
}

// masterCF renders master.cf. It is written out rather than copied from the system because the
// system's may chroot daemons (Debian chroots most into the queue directory, which would then need
// copies of /etc and libraries) and may carry site-local listeners (submission, smtps, postscreen)
// on fixed ports that would clash between instances. Only smtpd listens on the network.
func masterCF(smtpAddr string) string {
	return `# service type  private unpriv  chroot  wakeup  maxproc command + args
` + smtpAddr + ` inet n - n - - smtpd
pickup     unix n - n 60    1 pickup
cleanup    unix n - n -     0 cleanup
qmgr       unix n - n 300   1 qmgr
tlsmgr     unix - - n 1000? 1 tlsmgr
rewrite    unix - - n -     - trivial-rewrite
bounce     unix - - n -     0 bounce
defer      unix - - n -     0 bounce
trace      unix - - n -     0 bounce
verify     unix - - n -     1 verify
flush      unix n - n 1000? 0 flush
proxymap   unix - - n -     - proxymap
proxywrite unix - - n -     1 proxymap
smtp       unix - - n -     - smtp
relay      unix - - n -     - smtp
showq      unix n - n -     - showq
error      unix - - n -     - error
retry      unix - - n -     - error
discard    unix - - n -     - discard
lmtp       unix - - n -     - lmtp
anvil      unix - - n -     1 anvil
scache     unix - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
`
}

// runCmd runs a Postfix program and returns its combined output. The output never holds message
// content: Postfix programs do not echo their input.
func runCmd(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	// master detaches from our stdout and stderr, but a stray daemon holding the pipe must not
	// hang the test.
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w", filepath.Base(name), strings.Join(args, " "), err)
	}
	return out, nil
}
