package client_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"

	"cryptomail/client"
	"cryptomail/internal/testenv"
	"cryptomail/server"
	"cryptomail/xmap"
	"cryptomail/xmap/sexmap"
)

// realServer starts the cryptomail server on loopback in a temp dir.
func realServer(b *testing.B) *server.Server {
	b.Helper()
	cfg, err := server.ParseConfig([]byte("[server]\ndomains = [\"example.test\"]\n[storage]\nhomes = [\"homes\"]\n[lmtp]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n"), "bench.toml", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	s, err := server.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	s.Start()
	b.Cleanup(func() { s.Shutdown(context.Background()) })
	return s
}

func signedUp(b *testing.B, s *server.Server, addr string, kdf sexmap.KDFParams) (*client.Client, []byte) {
	b.Helper()
	ctx := context.Background()
	code, err := server.CreateInvite(ctx, s.Store(), rand.Reader, addr, time.Now().Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	c, err := client.New(client.Options{Server: "http://" + s.Addr("http"), KDFParams: kdf})
	if err != nil {
		b.Fatal(err)
	}
	pass := []byte("benchmark passphrase")
	if _, err := c.Signup(ctx, client.SignupParams{Invite: code, Address: addr, Passphrase: pass}); err != nil {
		b.Fatal(err)
	}
	return c, pass
}

// inboxMessage makes a message of about size bytes: text, plus a base64
// attachment for the large ones.
func inboxMessage(i, size int) []byte {
	var m bytes.Buffer
	fmt.Fprintf(&m, "From: Sender %d <s%d@remote.example>\r\nTo: alice@example.test\r\nSubject: message %d of the white paper's inbox\r\nDate: %s\r\nMessage-ID: <%d@remote.example>\r\nMIME-Version: 1.0\r\n", i, i%37, i, time.Now().Add(-time.Duration(i)*time.Hour).Format(time.RFC1123Z), i)
	fmt.Fprintf(&m, "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n", strings.Repeat("Some words of a realistic mail body. ", 40))
	if rest := size - m.Len(); rest > 200 {
		raw := make([]byte, rest*3/4)
		rand.Read(raw)
		fmt.Fprintf(&m, "--b\r\nContent-Type: application/octet-stream; name=file%d.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n", i)
		enc := base64.StdEncoding.EncodeToString(raw)
		for len(enc) > 0 {
			n := min(76, len(enc))
			m.WriteString(enc[:n])
			m.WriteString("\r\n")
			enc = enc[n:]
		}
	}
	m.WriteString("--b--\r\n")
	return m.Bytes()
}

// The white paper's example: an inbox of 666 messages, about 100 MB, and the
// time to the first page of 50 summaries, decrypted by the client.
func BenchmarkFirstPage666(b *testing.B) {
	s := realServer(b)
	c, pass := signedUp(b, s, "alice@example.test", sexmap.MinKDFParams)
	total := 0
	for i := range 666 {
		size := 20 << 10 // most mail is small...
		switch {
		case i%50 == 7:
			size = 3 << 20 // ...some has multi-MB attachments
		case i%5 == 0:
			n, _ := rand.Int(rand.Reader, big.NewInt(400<<10))
			size = 100<<10 + int(n.Int64())
		}
		msg := inboxMessage(i, size)
		total += len(msg)
		res := testenv.LMTPSend(b, s.Addr("lmtp"), "s@remote.example", []string{"alice@example.test"}, msg, false)
		if err := res["alice@example.test"]; err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("inbox: 666 messages, %.1f MB", float64(total)/1e6)
	// cache=on: the warm page of a session that has shown it before;
	// cache=off: every summary decrypted, as the first page of a session.
	for _, tt := range []struct {
		name  string
		cache int
	}{{"cache=on", 0}, {"cache=off", -1}} {
		b.Run(tt.name, func(b *testing.B) {
			c, err := client.New(client.Options{Server: c.Server(), SummaryCacheSize: tt.cache})
			if err != nil {
				b.Fatal(err)
			}
			sess, err := c.Login(context.Background(), "alice@example.test", pass)
			if err != nil {
				b.Fatal(err)
			}
			defer sess.Logout(context.Background())
			for b.Loop() {
				p, err := sess.List(context.Background(), xmap.FolderRef{Name: "INBOX"}, client.ListOptions{Limit: 50})
				if err != nil {
					b.Fatal(err)
				}
				if len(p.Messages) != 50 || p.Total != 666 {
					b.Fatalf("page of %d of %d", len(p.Messages), p.Total)
				}
			}
		})
	}
}

// Login cost with the default Argon2id parameters (64 MiB, 3 passes):
// salt lookup, key derivation, XK handshake, get-account, unsealing.
func BenchmarkLoginDefaultKDF(b *testing.B) {
	s := realServer(b)
	c, pass := signedUp(b, s, "alice@example.test", sexmap.DefaultKDFParams)
	for b.Loop() {
		sess, err := c.Login(context.Background(), "alice@example.test", pass)
		if err != nil {
			b.Fatal(err)
		}
		sess.Logout(context.Background())
	}
}
