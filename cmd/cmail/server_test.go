package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"cryptomail/internal/testenv"
	"cryptomail/server"
	"cryptomail/shard"
)

// newServerHarness runs the real cryptomail server on loopback: shards on
// disk, LMTP delivery, the outbound queue (its relay is a port nobody listens
// on, so remote mail stays queued).
func newServerHarness(t *testing.T) *harness {
	t.Helper()
	return newServerHarnessRelay(t, testenv.FreePort(t))
}

// newServerHarnessRelay is newServerHarness with the relay at smarthost
// (plain SMTP, no TLS).
func newServerHarnessRelay(t *testing.T, smarthost string) *harness {
	t.Helper()
	return newServerHarnessConf(t, smarthost, "")
}

// newServerHarnessConf is newServerHarnessRelay with extra lines in the
// config's [lmtp] table.
func newServerHarnessConf(t *testing.T, smarthost, lmtpExtra string) *harness {
	t.Helper()
	dir := t.TempDir()
	conf := fmt.Sprintf(`
[server]
hostname = "mx.example.org"
domains = ["example.org"]
[storage]
homes = ["homes"]
[lmtp]
listen = "127.0.0.1:0"
%s
[http]
listen = "127.0.0.1:0"
[relay]
smarthost = %q
starttls = "off"
`, lmtpExtra, smarthost)
	cfg, err := server.ParseConfig([]byte(conf), "cmail-test.toml", dir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return &harness{
		t:       t,
		url:     "http://" + srv.Addr("http"),
		dataDir: dir,
		real:    srv,
		invite: func(ctx context.Context, address string) (string, error) {
			return server.CreateInvite(ctx, srv.Store(), rand.Reader, address, time.Now().Add(time.Hour))
		},
		// Mail arrives the way it does in production: over LMTP, encrypted by
		// the server to the recipient's key.
		deliver: func(ctx context.Context, address string, raw []byte) (string, error) {
			res := testenv.LMTPSend(t, srv.Addr("lmtp"), "sender@remote.example", []string{address}, raw, false)
			if err := res[address]; err != nil {
				return "", err
			}
			var newest int64
			err := srv.Store().Messages(ctx, address, func(m shard.Message) error {
				if m.Folder == "INBOX" && m.ID > newest {
					newest = m.ID
				}
				return nil
			})
			return strconv.FormatInt(newest, 10), err
		},
	}
}

// External mail over LMTP is read through cmail, and after everything the
// data directory holds no subject, body or passphrase in the clear.
func TestServerExternalMailAndNoPlaintext(t *testing.T) {
	h := newServerHarness(t)
	home := t.TempDir()
	const pass = "PASSMARKER horse staple"
	h.signup(home, "alice@example.org", pass)
	msg := "From: Carol <carol@remote.example>\r\nTo: alice@example.org\r\nSubject: SUBJMARKER from outside\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBODYMARKER Grüße\r\n"
	id, err := h.deliver(t.Context(), "alice@example.org", []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	list := jsonArray(t, h.ok(home, pass, "", "list", "--json"))
	if len(list) != 1 || list[0]["id"] != id || list[0]["subject"] != "SUBJMARKER from outside" {
		t.Fatalf("list: %v", list)
	}
	out := h.ok(home, pass, "", "read", id)
	if !strings.Contains(out, "BODYMARKER Grüße") || !strings.Contains(out, "Carol") {
		t.Errorf("read:\n%s", out)
	}
	// And mail between users.
	h.ok(home, pass, "BODYMARKER to self\n", "send", "--to", "alice@example.org", "--subject", "SUBJMARKER to self")
	if n := len(jsonArray(t, h.ok(home, pass, "", "list", "--json"))); n != 2 {
		t.Errorf("INBOX has %d messages, want 2", n)
	}
	for _, dir := range []string{h.dataDir, home} {
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, m := range []string{"SUBJMARKER", "BODYMARKER", "PASSMARKER"} {
				if bytes.Contains(b, []byte(m)) {
					t.Errorf("%s in the clear in %s", m, p)
				}
			}
			return nil
		})
	}
}

// sink is an SMTP server standing in for the smarthost; it records what it
// is given.
type sink struct {
	mu   sync.Mutex
	msgs []sunk
}

type sunk struct {
	from string
	to   []string
	data []byte
}

func (k *sink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{k: k}, nil }

type sinkSession struct {
	k    *sink
	from string
	to   []string
}

func (s *sinkSession) Mail(from string, _ *smtp.MailOptions) error { s.from = from; return nil }
func (s *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error   { s.to = append(s.to, to); return nil }
func (s *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.k.mu.Lock()
	s.k.msgs = append(s.k.msgs, sunk{s.from, s.to, b})
	s.k.mu.Unlock()
	return nil
}
func (s *sinkSession) Reset()        { s.from, s.to = "", nil }
func (s *sinkSession) Logout() error { return nil }

// Mail to a remote address leaves through the configured relay, from the
// session's own address, encrypted when the client had the key and readable
// only with the user's consent.
func TestServerRelay(t *testing.T) {
	k := &sink{}
	ss := smtp.NewServer(k)
	ss.Domain = "relay.test"
	ss.AllowInsecureAuth = true
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ss.Serve(l)
	t.Cleanup(func() { ss.Close() })

	h := newServerHarnessRelay(t, l.Addr().String())
	home := t.TempDir()
	h.signup(home, "alice@example.org", "pass")
	out := h.ok(home, "pass", "RELAYBODY for Carol\n", "send", "--to", "carol@remote.example", "--subject", "RELAYSUBJECT", "--allow-plaintext")
	if !strings.Contains(out, "carol@remote.example: queued") {
		t.Fatalf("send said %q", out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		k.mu.Lock()
		n := len(k.msgs)
		k.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing reached the relay")
		}
		time.Sleep(20 * time.Millisecond)
	}
	k.mu.Lock()
	got := k.msgs[0]
	k.mu.Unlock()
	if got.from != "alice@example.org" || len(got.to) != 1 || got.to[0] != "carol@remote.example" {
		t.Errorf("envelope %s -> %v", got.from, got.to)
	}
	// Carol has no key here, and alice agreed: the readable copy goes out.
	if !bytes.Contains(got.data, []byte("RELAYBODY for Carol")) {
		t.Errorf("relayed message lacks the body:\n%s", got.data)
	}
	// The queue keeps no readable copy once the message is gone. The relay
	// has the message before the queue records it as sent and wipes it, so
	// wait for that.
	leftover := func() string {
		found := ""
		filepath.Walk(h.dataDir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("RELAYBODY")) {
					found = p
				}
			}
			return nil
		})
		return found
	}
	deadline = time.Now().Add(30 * time.Second)
	for p := leftover(); p != ""; p = leftover() {
		if time.Now().After(deadline) {
			t.Fatalf("relayed body left in %s", p)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
