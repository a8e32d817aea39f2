package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"cryptomail/internal/testenv"
	"cryptomail/server"
	"cryptomail/server/accounts"
	"cryptomail/shard"
)

// newServerHarness runs the real cryptomail server on loopback: shards on
// disk, LMTP delivery, the outbound queue (its relay is a port nobody listens
// on, so remote mail stays queued).
func newServerHarness(t *testing.T) *harness {
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
[http]
listen = "127.0.0.1:0"
[relay]
smarthost = %q
starttls = "off"
`, testenv.FreePort(t))
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
		invite: func(ctx context.Context, address string) (string, error) {
			return accounts.CreateInvite(ctx, srv.Store(), rand.Reader, address, time.Now().Add(time.Hour))
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
