package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	cmcrypto "cryptomail/crypto"
	"cryptomail/internal/testenv"
	"cryptomail/server"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the cryptomail command once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cryptomail-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "cryptomail")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	// No test reads the machine's config: not /etc, not the caller's
	// $CRYPTOMAIL_CONFIG. Tests that want one set them.
	etc, err := os.MkdirTemp("", "cryptomail-etc-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	systemConfig = filepath.Join(etc, "cryptomail.toml")
	os.Unsetenv(configEnv)
	code := m.Run()
	os.RemoveAll(etc)
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func waitListening(t *testing.T, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listening on %s after %v", addr, within)
}

// startInProcess runs the server from a config file in this process.
func startInProcess(t *testing.T, cfgPath string) *server.Server {
	t.Helper()
	cfg, err := server.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s
}

func addGeneratedUser(t *testing.T, cfgPath, addr string) openpgp.EntityList {
	t.Helper()
	ent, err := cmcrypto.GenerateKey("Test", addr, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	kf := keyFile(t, "key.asc", armoredPublic(t, ent))
	if r := runCLI("user", "add", "-config", cfgPath, "--public-key", kf, addr); r.code != 0 {
		t.Fatalf("user add: %+v", r)
	}
	return openpgp.EntityList{ent}
}

func exportDecrypted(t *testing.T, cfgPath, addr string, keys openpgp.EntityList) [][]byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "export.mbox")
	if r := runCLI("export", "-config", cfgPath, "--out", out, addr); r.code != 0 {
		t.Fatalf("export: %+v", r)
	}
	mbox, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var msgs [][]byte
	for _, a := range testenv.SplitArmor(t, mbox) {
		pt, err := cmcrypto.Decrypt(keys, a)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, pt)
	}
	return msgs
}

// The real binary: admin commands work while serve runs, a delivery in the
// middle of DATA when SIGTERM arrives still completes, and serve exits 0.
func TestServeGracefulShutdown(t *testing.T) {
	bin := binary(t)
	lmtpAddr := testenv.FreePort(t)
	cfgPath := writeConfig(t, lmtpAddr)
	cmd := exec.Command(bin, "serve", "-config", cfgPath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	waitListening(t, lmtpAddr, 20*time.Second)

	keys := addGeneratedUser(t, cfgPath, "alice@example.test")
	res := testenv.LMTPSend(t, lmtpAddr, "s@elsewhere.test", []string{"alice@example.test"}, []byte("Subject: one\r\n\r\nfirst\r\n"), false)
	if err := res["alice@example.test"]; err != nil {
		t.Fatal(err)
	}
	if r := runCLI("user", "list", "-config", cfgPath); r.code != 0 || !strings.Contains(r.stdout, "alice@example.test") {
		t.Fatalf("user list while serving: %+v", r)
	}
	if got := exportDecrypted(t, cfgPath, "alice@example.test", keys); len(got) != 1 {
		t.Fatalf("export while serving: %d messages", len(got))
	}

	// Start a transaction, signal in the middle of DATA, then finish it.
	conn, err := net.Dial("tcp", lmtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	expect := func(prefix string) {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("waiting for %q: %v (server log:\n%s)", prefix, err, stderr.String())
			}
			if len(line) >= 4 && line[3] == '-' {
				continue // multi-line reply
			}
			if !strings.HasPrefix(line, prefix) {
				t.Fatalf("got %q, want %q", line, prefix)
			}
			return
		}
	}
	expect("220 ")
	fmt.Fprintf(conn, "LHLO client.test\r\n")
	expect("250 ")
	fmt.Fprintf(conn, "MAIL FROM:<s@elsewhere.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
	expect("250 ")
	expect("250 ")
	expect("354 ")
	fmt.Fprintf(conn, "Subject: two\r\n\r\nsecond, half")
	time.Sleep(100 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	fmt.Fprintf(conn, " and the rest\r\n.\r\n")
	expect("250 2.0.0 ")

	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("serve exited with %v; log:\n%s", waitErr, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not exit after SIGTERM; log:\n%s", stderr.String())
	}
	if _, err := net.DialTimeout("tcp", lmtpAddr, time.Second); err == nil {
		t.Error("still listening after exit")
	}
	got := exportDecrypted(t, cfgPath, "alice@example.test", keys)
	if len(got) != 2 || !bytes.HasSuffix(got[1], []byte("\r\n\r\nsecond, half and the rest\r\n")) {
		t.Fatalf("after shutdown: %d messages, last %q", len(got), got[len(got)-1])
	}
}

// GnuPG interop: a key made by GnuPG 2.2's `future-default`, registered with
// `user add`, and the export decrypted by `gpg --decrypt`, byte-equal.
func TestGnuPGInterop(t *testing.T) {
	gpg := testenv.RequireTool(t, "gpg")
	gpgconf := testenv.RequireTool(t, "gpgconf")
	// Short path: gpg-agent's socket path has a length limit.
	home, err := os.MkdirTemp("", "g")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(home, 0o700)
	t.Cleanup(func() {
		c := exec.Command(gpgconf, "--kill", "all")
		c.Env = append(os.Environ(), "GNUPGHOME="+home)
		c.Run()
		os.RemoveAll(home)
	})
	gpgRun := func(stdin []byte, args ...string) []byte {
		t.Helper()
		c := exec.Command(gpg, append([]string{"--batch", "--quiet", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
		c.Env = append(os.Environ(), "GNUPGHOME="+home)
		c.Stdin = bytes.NewReader(stdin)
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		if err := c.Run(); err != nil {
			t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, errb.String())
		}
		return out.Bytes()
	}
	gpgRun(nil, "--quick-gen-key", "Alice <alice@example.test>", "future-default", "default", "never")
	pub := keyFile(t, "alice.asc", gpgRun(nil, "--export", "--armor", "alice@example.test"))

	lmtpAddr := testenv.FreePort(t)
	cfgPath := writeConfig(t, lmtpAddr)
	if r := runCLI("user", "add", "-config", cfgPath, "--public-key", pub, "alice@example.test"); r.code != 0 {
		t.Fatalf("user add of a GnuPG key: %+v", r)
	}
	s := startInProcess(t, cfgPath)
	for _, m := range testenv.OddMessages {
		res := testenv.LMTPSend(t, s.Addr("lmtp"), "bob@elsewhere.test", []string{"alice@example.test"}, []byte(m.Msg), m.UTF8)
		if err := res["alice@example.test"]; err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
	}
	s.Shutdown(context.Background())

	out := filepath.Join(t.TempDir(), "alice.mbox")
	if r := runCLI("export", "-config", cfgPath, "--out", out, "alice@example.test"); r.code != 0 {
		t.Fatalf("export: %+v", r)
	}
	mbox, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// gpg finds the armored message inside each PGP/MIME mbox entry.
	entries := strings.Split(string(mbox), "\nFrom MAILER-DAEMON ")
	if len(entries) != len(testenv.OddMessages) {
		t.Fatalf("%d mbox entries, want %d", len(entries), len(testenv.OddMessages))
	}
	for i, m := range testenv.OddMessages {
		plain := gpgRun([]byte(entries[i]), "--decrypt")
		if got := testenv.StripTrace(t, plain, "alice@example.test"); !bytes.Equal(got, []byte(m.Msg)) {
			t.Errorf("%s: gpg --decrypt gave %q, want %q", m.Name, got, m.Msg)
		}
	}
}

// Postfix end to end: a private Postfix instance delivers to CryptoMail over
// LMTP; the message arrives encrypted and decrypts to what was sent.
func TestPostfixEndToEnd(t *testing.T) {
	lmtpAddr := testenv.FreePort(t)
	cfgPath := writeConfig(t, lmtpAddr)
	keys := addGeneratedUser(t, cfgPath, "alice@example.test")
	s := startInProcess(t, cfgPath)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{Domains: []string{"example.test"}, LMTPAddr: s.Addr("lmtp")})

	body := "Grüße aus Köln.\r\n.\r\n..two dots\r\nFrom the start of a line\r\n"
	viaSendmail := "From: Bob <bob@elsewhere.test>\r\nTo: alice@example.test\r\nSubject: via sendmail POSTFIXMARK\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body
	pf.Sendmail(t, "bob@elsewhere.test", []string{"alice+lists@example.test", "nobody@example.test"}, []byte(viaSendmail))
	pf.WaitQueueEmpty(t, 60*time.Second)

	msgs := exportDecrypted(t, cfgPath, "alice@example.test", keys)
	if len(msgs) != 1 {
		t.Fatalf("alice has %d messages, want 1; postfix log:\n%s", len(msgs), pf.LogTail(40))
	}
	got := testenv.StripTrace(t, msgs[0], "alice@example.test")
	if !bytes.HasSuffix(got, []byte("\r\n\r\n"+body)) || !bytes.Contains(got, []byte("Subject: via sendmail POSTFIXMARK\r\n")) {
		t.Errorf("decrypted message differs from what was sent:\n%q", got)
	}
	if !bytes.Contains(got, []byte("Received: ")) {
		t.Errorf("no Postfix Received header: %q", got)
	}
	log := pf.LogTail(200)
	if !strings.Contains(log, "nobody@example.test") || !strings.Contains(log, "5.1.1") {
		t.Errorf("unknown user not refused with 5.1.1 in the Postfix log:\n%s", log)
	}
	// The shard holds ciphertext only.
	filepath.Walk(filepath.Dir(cfgPath), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("POSTFIXMARK")) {
				t.Errorf("plaintext marker in %s", p)
			}
		}
		return nil
	})
}
