package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/emersion/go-smtp"

	cmcrypto "cryptomail/crypto"
	"cryptomail/internal/testenv"
	"cryptomail/server"
)

// testServer is a real server on loopback ports with its own data dir.
type testServer struct {
	*server.Server
	cfg  *server.Config
	dir  string
	logs *testenv.SyncBuffer
	keys map[string]openpgp.EntityList
}

func startServer(t *testing.T, users ...string) *testServer {
	t.Helper()
	dir := t.TempDir()
	conf := `
[server]
hostname = "mx.example.test"
domains = ["example.test", "second.test"]
data_dir = "data"
[storage]
homes = ["homes/a", "homes/b"]
max_open_shards = 4
[lmtp]
listen = "127.0.0.1:0"
max_message_bytes = 1048576
[http]
listen = "127.0.0.1:0"
[log]
level = "debug"
`
	cfg, err := server.ParseConfig([]byte(conf), "test.toml", dir)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.SyncBuffer{}
	ctx := context.Background()
	s, err := server.New(ctx, cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: s, cfg: cfg, dir: dir, logs: logs, keys: map[string]openpgp.EntityList{}}
	for _, u := range users {
		ts.addUser(t, u)
	}
	s.Start()
	t.Cleanup(func() { ts.Shutdown(context.Background()) })
	return ts
}

func (ts *testServer) addUser(t *testing.T, addr string) {
	t.Helper()
	ent, err := cmcrypto.GenerateKey("Test User", addr, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	if err := ent.Serialize(&pub); err != nil {
		t.Fatal(err)
	}
	key, err := cmcrypto.ParsePublicKey(pub.Bytes(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	armored, err := key.Armored()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Store().CreateUser(context.Background(), addr, armored); err != nil {
		t.Fatal(err)
	}
	ts.keys[addr] = openpgp.EntityList{ent}
}

// exported returns every decrypted message of addr, in stored order.
func (ts *testServer) exported(t *testing.T, addr string) [][]byte {
	t.Helper()
	var mbox bytes.Buffer
	if _, err := server.ExportMbox(context.Background(), ts.Store(), addr, &mbox); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, armored := range testenv.SplitArmor(t, mbox.Bytes()) {
		pt, err := cmcrypto.Decrypt(ts.keys[addr], armored)
		if err != nil {
			t.Fatalf("decrypt export of %s: %v", addr, err)
		}
		out = append(out, pt)
	}
	return out
}

func TestDeliverExportRoundTrip(t *testing.T) {
	ts := startServer(t, "alice@example.test", "bob@second.test")
	lmtpAddr := ts.Addr("lmtp")
	for _, m := range testenv.OddMessages {
		res := testenv.LMTPSend(t, lmtpAddr, "sender@elsewhere.test", []string{"alice@example.test", "Bob+Tag@Second.Test"}, []byte(m.Msg), m.UTF8)
		for r, err := range res {
			if err != nil {
				t.Fatalf("%s: %s: %v", m.Name, r, err)
			}
		}
	}
	for _, who := range []string{"alice@example.test", "bob@second.test"} {
		got := ts.exported(t, who)
		if len(got) != len(testenv.OddMessages) {
			t.Fatalf("%s: %d messages exported, want %d", who, len(got), len(testenv.OddMessages))
		}
		for i, m := range testenv.OddMessages {
			body := testenv.StripTrace(t, got[i], who)
			if !bytes.Equal(body, []byte(m.Msg)) {
				t.Errorf("%s: %s: got %q\nwant %q", who, m.Name, body, m.Msg)
			}
		}
	}
	// Delivered-To names the canonical mailbox; Received names the address as given.
	if got := ts.exported(t, "bob@second.test")[0]; !bytes.Contains(got, []byte("for <Bob+Tag@Second.Test>")) {
		t.Errorf("Received header does not name the original recipient: %q", got[:200])
	}
}

func TestRecipientReplies(t *testing.T) {
	ts := startServer(t, "alice@example.test", "carol@example.test")
	msg := []byte("Subject: x\r\n\r\nbody\r\n")
	res := testenv.LMTPSend(t, ts.Addr("lmtp"), "s@elsewhere.test",
		[]string{"alice@example.test", "nobody@example.test", "carol@example.test", "eve@elsewhere.test", "bad address@example.test"}, msg, false)
	want := map[string]string{
		"alice@example.test":       "250",
		"carol@example.test":       "250",
		"nobody@example.test":      "550 5.1.1",
		"eve@elsewhere.test":       "550 5.1.2",
		"bad address@example.test": "501",
	}
	for r, w := range want {
		if got := testenv.SMTPCode(res[r]); !strings.HasPrefix(got, w) {
			t.Errorf("%s: got %s, want %s", r, got, w)
		}
	}
	big := append([]byte("Subject: big\r\n\r\n"), bytes.Repeat([]byte("0123456789abcdef\r\n"), 70000)...)
	res = testenv.LMTPSend(t, ts.Addr("lmtp"), "s@elsewhere.test", []string{"alice@example.test"}, big, false)
	if got := testenv.SMTPCode(res["alice@example.test"]); got != "552 5.3.4" {
		t.Errorf("oversized: got %s, want 552 5.3.4", got)
	}
	if n := len(ts.exported(t, "alice@example.test")); n != 1 {
		t.Errorf("alice has %d messages, want 1 (the oversized one must not be stored)", n)
	}
}

// Nothing readable may reach the disk: deliver messages with markers in the
// subject, body and attachment name, then scan every file under the test's
// directory (meta.db, shards, -wal, -shm) and the logs.
func TestNoPlaintextOnDisk(t *testing.T) {
	ts := startServer(t, "alice@example.test")
	markers := []string{"SUBJECTMARKER7f3a", "BODYMARKER91c2", "SNIPPETMARKERe5d0", "ATTACHMARKER2b8e"}
	for i := range 20 {
		msg := fmt.Sprintf("From: bob@elsewhere.test\r\nSubject: %s %d\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n%s %s\r\n--b\r\nContent-Type: application/octet-stream; name=%s.txt\r\n\r\n%s\r\n--b--\r\n",
			markers[0], i, markers[2], markers[1], markers[3], strings.Repeat(markers[1]+" ", 100))
		res := testenv.LMTPSend(t, ts.Addr("lmtp"), "bob@elsewhere.test", []string{"alice@example.test"}, []byte(msg), false)
		if err := res["alice@example.test"]; err != nil {
			t.Fatal(err)
		}
	}
	scan := func(when string) {
		err := filepath.WalkDir(ts.dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range markers {
				if bytes.Contains(bytes.ToLower(b), bytes.ToLower([]byte(m))) {
					t.Errorf("%s: marker %s found in %s", when, m, p)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	scan("while running") // WAL not yet checkpointed
	if err := ts.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	scan("after shutdown")
	for _, m := range markers {
		if strings.Contains(ts.logs.String(), m) {
			t.Errorf("marker %s found in the logs", m)
		}
	}
	st, err := server.OpenStore(context.Background(), ts.cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n, err := server.ExportMbox(context.Background(), st, "alice@example.test", io.Discard)
	if err != nil || n != 20 {
		t.Errorf("after restart: %d messages, %v; want 20", n, err)
	}
}

func TestHealthz(t *testing.T) {
	ts := startServer(t)
	c, err := net.Dial("tcp", ts.Addr("http"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /healthz HTTP/1.0\r\n\r\n")
	b, _ := io.ReadAll(c)
	if !bytes.HasPrefix(b, []byte("HTTP/1.0 200")) || !bytes.Contains(b, []byte("Content-Security-Policy")) {
		t.Errorf("healthz: %q", b)
	}
}

// The SMTP listener is the MX for the served domains: local users only,
// STARTTLS with the configured certificate, the same encrypted storage.
func TestSMTPListener(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := testenv.SelfSignedFiles(t, dir)
	conf := fmt.Sprintf(`
[server]
domains = ["example.test"]
[storage]
homes = ["homes"]
[lmtp]
listen = "127.0.0.1:0"
[smtp]
listen = "127.0.0.1:0"
tls_cert = %q
tls_key = %q
max_recipients = 2
[http]
listen = ""
`, certFile, keyFile)
	cfg, err := server.ParseConfig([]byte(conf), "smtp.toml", dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: s, cfg: cfg, dir: dir, keys: map[string]openpgp.EntityList{}}
	ts.addUser(t, "alice@example.test")
	s.Start()
	t.Cleanup(func() { s.Shutdown(context.Background()) })

	c, err := smtp.Dial(s.Addr("smtp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("sender.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatal("STARTTLS not offered although a certificate is configured")
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered by an MX")
	}
	c.Quit()
	conn, err := net.Dial("tcp", s.Addr("smtp"))
	if err != nil {
		t.Fatal(err)
	}
	c, err = smtp.NewClientStartTLS(conn, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("bob@elsewhere.test", nil); err != nil {
		t.Fatal(err)
	}
	if code := testenv.SMTPCode(c.Rcpt("eve@elsewhere.test", nil)); code != "550 5.7.1" {
		t.Errorf("relaying: got %s, want 550 5.7.1", code)
	}
	if code := testenv.SMTPCode(c.Rcpt("nobody@example.test", nil)); code != "550 5.1.1" {
		t.Errorf("unknown user: got %s, want 550 5.1.1", code)
	}
	if err := c.Rcpt("alice@example.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("alice+x@example.test", nil); err != nil {
		t.Fatal(err)
	}
	if code := testenv.SMTPCode(c.Rcpt("ALICE@example.test", nil)); code != "452 4.5.3" {
		t.Errorf("third recipient with max_recipients = 2: got %s, want 452 4.5.3", code)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: bob@elsewhere.test\r\nSubject: over SMTP\r\n\r\nhello\r\n"
	io.WriteString(w, msg)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	got := ts.exported(t, "alice@example.test")
	// The same mailbox named twice is delivered once.
	if len(got) != 1 {
		t.Fatalf("alice has %d messages, want 1", len(got))
	}
	if body := testenv.StripTrace(t, got[0], "alice@example.test"); string(body) != msg {
		t.Errorf("got %q, want %q", body, msg)
	}
	if !bytes.Contains(got[0], []byte("with ESMTPS")) {
		t.Errorf("Received header does not record ESMTPS: %q", got[0][:200])
	}
}
