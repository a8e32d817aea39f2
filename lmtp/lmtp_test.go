package lmtp_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"cryptomail/internal/testenv"
	"cryptomail/lmtp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const secret = "SECRET-7f3a9c" // stands for internals (paths, SQL) that must not reach a client

// TestLMTPPerRecipient: one recipient refused at RCPT, one failing at Deliver,
// one delivered; each gets its own reply, and the backend receives the
// message with its CRLF line endings as sent.
func TestLMTPPerRecipient(t *testing.T) {
	be := newBackend()
	be.DeliverErr = map[string]error{"bob@example.org": fmt.Errorf("shard locked: %w", lmtp.ErrBusy)}
	ts := start(t, modeLMTP, lmtp.Config{}, be)

	conn, err := net.Dial("tcp", ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("mta.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("sender@remote.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	err = c.Rcpt("nobody@example.org", nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
		t.Fatalf("RCPT unknown user: %v, want 550 5.1.1", err)
	}
	if err := c.Rcpt("Bob+lists@Example.org", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: sender@remote.test\r\nTo: alice@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"
	if _, err := w.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	resp, err := w.CloseWithLMTPResponse()
	var lerr smtp.LMTPDataError
	if !errors.As(err, &lerr) {
		t.Fatalf("DATA: %v, want an LMTPDataError", err)
	}
	if got := lerr["Bob+lists@Example.org"]; got == nil || got.Code != 451 || got.EnhancedCode != (smtp.EnhancedCode{4, 3, 2}) {
		t.Errorf("bob's reply = %v, want 451 4.3.2", got)
	}
	if r := resp["alice@example.org"]; r == nil || !strings.HasPrefix(r.StatusText, "2.0.0 <alice@example.org> OK id=") {
		t.Errorf("alice's reply = %+v, want OK id=…", r)
	}
	if len(lerr) != 1 || len(resp) != 1 {
		t.Errorf("replies: ok %v, failed %v; want one of each", resp, lerr)
	}

	if calls := be.Calls(); len(calls) != 2 {
		t.Errorf("Deliver called for %v, want alice and bob", calls)
	}
	got := be.Delivered()
	if len(got) != 1 {
		t.Fatalf("delivered %d, want 1", len(got))
	}
	d := got[0]
	if d.Rcpt != (lmtp.Recipient{Address: "alice@example.org", Mailbox: "alice@example.org"}) {
		t.Errorf("recipient = %+v", d.Rcpt)
	}
	// go-smtp hands over CRLF line endings exactly as on the wire.
	if string(d.Msg) != msg {
		t.Errorf("message = %q, want %q", d.Msg, msg)
	}
	if !strings.HasSuffix(resp["alice@example.org"].StatusText, d.Env.ID) {
		t.Errorf("reply %q does not carry the envelope id %q", resp["alice@example.org"].StatusText, d.Env.ID)
	}
	host, _, _ := net.SplitHostPort(d.Env.RemoteAddr)
	if d.Env.From != "sender@remote.test" || d.Env.Protocol != "LMTP" || d.Env.Helo != "mta.test" ||
		host != "127.0.0.1" || d.Env.TLS || d.Env.Hostname != "mx.example.test" || d.Env.Received.IsZero() {
		t.Errorf("envelope = %+v", d.Env)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}
}

func TestRcptReplies(t *testing.T) {
	tests := []struct {
		name string
		mode mode
		rcpt string
		err  error // forced Resolve error, if any
		want string
	}{
		{"lmtp ok", modeLMTP, "alice@example.org", nil, "250 2.0.0 "},
		{"lmtp tag and case", modeLMTP, "Alice+news@EXAMPLE.org", nil, "250 2.0.0 "},
		{"lmtp unknown user", modeLMTP, "nobody@example.org", nil, "550 5.1.1 "},
		{"lmtp domain not served", modeLMTP, "alice@elsewhere.test", nil, "550 5.1.2 "},
		{"lmtp bad address", modeLMTP, "a..b@example.org", nil, "501 5.1.3 "},
		{"lmtp busy", modeLMTP, "carol@example.org", fmt.Errorf("meta.db: %w", lmtp.ErrBusy), "451 4.3.2 "},
		{"lmtp internal", modeLMTP, "carol@example.org", errors.New("open /var/lib/" + secret + "/meta.db: permission denied"), "451 4.3.0 "},
		{"smtp ok", modeSMTP, "alice@example.org", nil, "250 2.0.0 "},
		{"smtp unknown user", modeSMTP, "nobody@example.org", nil, "550 5.1.1 "},
		{"smtp relaying denied", modeSMTP, "victim@elsewhere.test", nil, "550 5.7.1 "},
		{"smtp bad address", modeSMTP, ".alice@example.org", nil, "501 5.1.3 "},
		{"smtp internal", modeSMTP, "carol@example.org", errors.New(secret), "451 4.3.0 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be := newBackend()
			if tt.err != nil {
				be.ResolveErr = map[string]error{tt.rcpt: tt.err}
			}
			ts := start(t, tt.mode, lmtp.Config{}, be)
			rc := dialRaw(t, ts.Addr)
			rc.greet(tt.mode)
			rc.send("MAIL FROM:<sender@remote.test>\r\n")
			rc.expect("250 ")
			rc.send("RCPT TO:<" + tt.rcpt + ">\r\n")
			rc.expect(tt.want)
			rc.send("QUIT\r\n")
			rc.expect("221 ")
			if strings.Contains(rc.wire.String(), secret) {
				t.Errorf("internal error text on the wire: %q", rc.wire.String())
			}
		})
	}
}

// TestDeliverReplies: the reply for each kind of Deliver failure, in both
// modes (LMTP: per recipient; SMTP: the one reply for a single recipient).
func TestDeliverReplies(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		panic bool
		want  string
	}{
		{"ok", nil, false, "250 2.0.0 "},
		{"busy", fmt.Errorf("database is locked: %w", lmtp.ErrBusy), false, "451 4.3.2 "},
		{"no space", fmt.Errorf("write shard: %w", lmtp.ErrNoSpace), false, "452 4.3.1 "},
		{"mailbox full", fmt.Errorf("quota: %w", lmtp.ErrMailboxFull), false, "452 4.2.2 "},
		{"user deleted", fmt.Errorf("%w: gone", lmtp.ErrUnknownUser), false, "550 5.1.1 "},
		{"too large stored", fmt.Errorf("sealed body of %d bytes: %w", 1<<30, lmtp.ErrTooLarge), false, "552 5.3.4 "},
		{"internal", fmt.Errorf("sqlite: disk I/O error at /srv/%s.db", secret), false, "451 4.3.0 "},
		{"deadline", fmt.Errorf("commit: %w", context.DeadlineExceeded), false, "451 4.3.0 "},
		{"panic", nil, true, "451 4.3.0 "},
	}
	for _, m := range []mode{modeLMTP, modeSMTP} {
		for _, tt := range tests {
			t.Run(m.String()+" "+tt.name, func(t *testing.T) {
				be := newBackend()
				be.DeliverErr = map[string]error{"alice@example.org": tt.err}
				be.Panic = map[string]bool{"alice@example.org": tt.panic}
				ts := start(t, m, lmtp.Config{}, be)
				rc := dialRaw(t, ts.Addr)
				rc.greet(m)
				rc.send("MAIL FROM:<sender@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
				rc.expect("250 ")
				rc.expect("250 ")
				rc.expect("354 ")
				rc.send("Subject: body-" + secret + "\r\n\r\nhello\r\n.\r\n")
				got := rc.expect(tt.want)
				if m == modeLMTP && !strings.Contains(got, "<alice@example.org>") {
					t.Errorf("LMTP reply %q does not name the recipient", got)
				}
				// The connection is still usable.
				rc.send("NOOP\r\n")
				rc.expect("250 ")
				if strings.Contains(rc.wire.String(), secret) {
					t.Errorf("internal error text on the wire: %q", rc.wire.String())
				}
				if logs := ts.logBuf.String(); strings.Contains(logs, "body-"+secret) {
					t.Errorf("message content in the log: %q", logs)
				}
			})
		}
	}
}

// TestInternalErrorLogged: the operator sees the internal error, the client
// sees only 451 4.3.0, and message content is never logged.
func TestInternalErrorLogged(t *testing.T) {
	be := newBackend()
	be.DeliverErr = map[string]error{"alice@example.org": errors.New("shard " + secret + " corrupt")}
	ts := start(t, modeLMTP, lmtp.Config{}, be)
	rc := dialRaw(t, ts.Addr)
	rc.greet(modeLMTP)
	rc.send("MAIL FROM:<sender@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
	rc.expect("250 ")
	rc.expect("250 ")
	rc.expect("354 ")
	rc.send("Subject: BODY-MARKER\r\n\r\nBODY-MARKER\r\n.\r\n")
	rc.expect("451 4.3.0 <alice@example.org> ")
	if strings.Contains(rc.wire.String(), secret) {
		t.Errorf("internal error text on the wire: %q", rc.wire.String())
	}
	logs := ts.logBuf.String()
	if !strings.Contains(logs, secret) || !strings.Contains(logs, "level=ERROR") {
		t.Errorf("internal error not logged at ERROR: %q", logs)
	}
	if strings.Contains(logs, "BODY-MARKER") {
		t.Errorf("message content in the log: %q", logs)
	}
}

// TestSMTPCombinedReply: SMTP has one reply for all recipients.
func TestSMTPCombinedReply(t *testing.T) {
	busy := fmt.Errorf("x: %w", lmtp.ErrBusy)
	full := fmt.Errorf("x: %w", lmtp.ErrNoSpace)
	gone := fmt.Errorf("x: %w", lmtp.ErrUnknownUser)
	tests := []struct {
		name       string
		alice, bob error
		want       string
	}{
		{"all delivered", nil, nil, "250 2.0.0 OK id="},
		{"one temporary", nil, busy, "451 4.3.2 "},
		{"temporary wins over permanent", gone, full, "452 4.3.1 "},
		{"all permanent", gone, gone, "550 5.1.1 "},
		// Retried as a whole; the gone user is then refused at RCPT.
		{"delivered and permanent", nil, gone, "451 4.3.0 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be := newBackend()
			be.DeliverErr = map[string]error{"alice@example.org": tt.alice, "bob@example.org": tt.bob}
			ts := start(t, modeSMTP, lmtp.Config{}, be)
			rc := dialRaw(t, ts.Addr)
			rc.greet(modeSMTP)
			rc.send("MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
			rc.expect("250 ")
			rc.expect("250 ")
			rc.expect("250 ")
			rc.expect("354 ")
			rc.send("Subject: x\r\n\r\nx\r\n.\r\n")
			rc.expect(tt.want)
			if n := len(be.Calls()); n != 2 {
				t.Errorf("Deliver called %d times, want 2", n)
			}
		})
	}
}

// TestDuplicateRecipients: one mailbox given three times (twice as is, once
// with a tag) is delivered once; LMTP still answers each RCPT.
func TestDuplicateRecipients(t *testing.T) {
	for _, m := range []mode{modeLMTP, modeSMTP} {
		t.Run(m.String(), func(t *testing.T) {
			be := newBackend()
			ts := start(t, m, lmtp.Config{}, be)
			rc := dialRaw(t, ts.Addr)
			rc.greet(m)
			rc.send("MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<alice+news@example.org>\r\n" +
				"RCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
			for range 5 { // MAIL and four RCPTs
				rc.expect("250 ")
			}
			rc.expect("354 ")
			rc.send("Subject: x\r\n\r\nx\r\n.\r\n")
			if m == modeLMTP {
				var ids []string
				for _, rcpt := range []string{"alice@example.org", "alice+news@example.org", "alice@example.org", "bob@example.org"} {
					line := rc.expect("250 2.0.0 <" + rcpt + "> OK id=")
					ids = append(ids, line[strings.LastIndexByte(line, '=')+1:])
				}
				if ids[0] != ids[1] || ids[1] != ids[2] || ids[2] != ids[3] {
					t.Errorf("ids differ within one transaction: %v", ids)
				}
			} else {
				rc.expect("250 2.0.0 OK id=")
			}
			rc.send("NOOP\r\n")
			rc.expect("250 ")
			calls := be.Calls()
			if len(calls) != 2 {
				t.Fatalf("Deliver called for %v, want alice and bob once each", calls)
			}
			for _, d := range be.Delivered() {
				if d.Rcpt.Mailbox == "alice@example.org" && d.Rcpt.Address != "alice@example.org" {
					t.Errorf("alice delivered as %+v, want the first address given", d.Rcpt)
				}
			}
		})
	}
}

// TestMessageSize: MaxMessageBytes is exact, the rest of an oversized message
// is consumed (the connection stays usable) and nothing is delivered.
func TestMessageSize(t *testing.T) {
	const max = 64
	line := func(n int) string { return strings.Repeat("x", n-2) + "\r\n" }
	tests := []struct {
		name      string
		body      string
		wantLMTP  string
		wantSMTP  string
		delivered bool
	}{
		{"exactly max", line(max), "250 2.0.0 ", "250 2.0.0 ", true},
		{"one over", line(max + 1), "552 5.3.4 ", "552 5.3.4 ", false},
		{"far over", strings.Repeat(line(1000), 100), "552 5.3.4 ", "552 5.3.4 ", false},
	}
	for _, m := range []mode{modeLMTP, modeSMTP} {
		for _, tt := range tests {
			t.Run(m.String()+" "+tt.name, func(t *testing.T) {
				be := newBackend()
				ts := start(t, m, lmtp.Config{MaxMessageBytes: max}, be)
				rc := dialRaw(t, ts.Addr)
				rc.greet(m)
				rc.send("MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
				rc.expect("250 ")
				rc.expect("250 ")
				rc.expect("250 ")
				rc.expect("354 ")
				rc.send(tt.body + ".\r\n")
				if m == modeLMTP {
					rc.expect(tt.wantLMTP + "<alice@example.org>")
					rc.expect(tt.wantLMTP + "<bob@example.org>")
				} else {
					rc.expect(tt.wantSMTP)
				}
				rc.send("NOOP\r\n")
				rc.expect("250 ")
				if got := len(be.Delivered()); tt.delivered != (got == 2) || !tt.delivered && got != 0 {
					t.Errorf("delivered %d copies", got)
				}
				if !tt.delivered && len(be.Calls()) != 0 {
					t.Errorf("Deliver was called for an oversized message")
				}
			})
		}
	}

	t.Run("MAIL SIZE", func(t *testing.T) {
		ts := start(t, modeLMTP, lmtp.Config{MaxMessageBytes: max}, newBackend())
		rc := dialRaw(t, ts.Addr)
		rc.greet(modeLMTP)
		rc.send(fmt.Sprintf("MAIL FROM:<s@remote.test> SIZE=%d\r\n", max+1))
		rc.expect("552 5.3.4 ")
		rc.send(fmt.Sprintf("MAIL FROM:<s@remote.test> SIZE=%d\r\n", max))
		rc.expect("250 ")
	})
}

// TestByteExact: what the backend receives is the message as sent, with only
// the dot-stuffing undone.
func TestByteExact(t *testing.T) {
	tests := []struct {
		name     string
		mail     string // MAIL FROM argument
		wire     string // between the 354 and the final ".\r\n"
		want     string
		protocol string
	}{
		{
			name: "malformed MIME",
			mail: "<s@remote.test>",
			wire: "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\r\n\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\n!!not base64!!\r\n--c--\r\n",
			want: "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\r\n\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\n!!not base64!!\r\n--c--\r\n",
		},
		{
			name: "8-bit body",
			mail: "<s@remote.test> BODY=8BITMIME",
			wire: "Subject: caf\xe9\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xff\xfe\x00\x80\x81 binary\x7f\r\n",
			want: "Subject: caf\xe9\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xff\xfe\x00\x80\x81 binary\x7f\r\n",
		},
		{
			name:     "UTF-8 headers with SMTPUTF8",
			mail:     "<jörg@exämple.test> SMTPUTF8 BODY=8BITMIME",
			wire:     "From: Jörg <jörg@exämple.test>\r\nTo: jörg@example.org\r\nSubject: 日本語のメール\r\n\r\nGrüße ✓\r\n",
			want:     "From: Jörg <jörg@exämple.test>\r\nTo: jörg@example.org\r\nSubject: 日本語のメール\r\n\r\nGrüße ✓\r\n",
			protocol: "UTF8LMTP",
		},
		{
			name: "empty body",
			mail: "<s@remote.test>",
			wire: "Subject: nothing\r\n\r\n",
			want: "Subject: nothing\r\n\r\n",
		},
		{
			name: "empty message",
			mail: "<>",
			wire: "",
			want: "",
		},
		{
			name: "leading dots",
			mail: "<s@remote.test>",
			wire: "Subject: dots\r\n\r\n..\r\n...\r\n..leading\r\n. space\r\nmid.dle.\r\n..\r\n",
			want: "Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\n space\r\nmid.dle.\r\n.\r\n",
		},
		{
			name: "From lines",
			mail: "<s@remote.test>",
			wire: "From s@remote.test Mon Jan  1 00:00:00 2024\r\nSubject: x\r\n\r\nFrom here on\r\n>From there\r\n",
			want: "From s@remote.test Mon Jan  1 00:00:00 2024\r\nSubject: x\r\n\r\nFrom here on\r\n>From there\r\n",
		},
		{
			// go-smtp leaves bare LF and bare CR alone; a dot after a bare
			// LF is not at a line start and stays.
			name: "bare LF and CR",
			mail: "<s@remote.test>",
			wire: "Subject: x\r\n\r\none\ntwo\rthree\n.four\r\n",
			want: "Subject: x\r\n\r\none\ntwo\rthree\n.four\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be := newBackend()
			ts := start(t, modeLMTP, lmtp.Config{}, be)
			rc := dialRaw(t, ts.Addr)
			rc.greet(modeLMTP)
			rc.send("MAIL FROM:" + tt.mail + "\r\nRCPT TO:<jörg@example.org>\r\nDATA\r\n")
			rc.expect("250 ")
			rc.expect("250 ")
			rc.expect("354 ")
			rc.send(tt.wire + ".\r\n")
			rc.expect("250 2.0.0 <jörg@example.org> OK")
			got := be.Delivered()
			if len(got) != 1 {
				t.Fatalf("delivered %d", len(got))
			}
			if !bytes.Equal(got[0].Msg, []byte(tt.want)) {
				t.Errorf("message =\n%q\nwant\n%q", got[0].Msg, tt.want)
			}
			want := tt.protocol
			if want == "" {
				want = "LMTP"
			}
			if got[0].Env.Protocol != want {
				t.Errorf("protocol = %q, want %q", got[0].Env.Protocol, want)
			}
			if from := strings.Fields(tt.mail)[0]; "<"+got[0].Env.From+">" != from {
				t.Errorf("From = %q, want %s", got[0].Env.From, from)
			}
		})
	}
}

// TestLineTooLong: a line over go-smtp's 2000-byte limit is refused for good;
// go-smtp then closes the connection.
func TestLineTooLong(t *testing.T) {
	be := newBackend()
	ts := start(t, modeLMTP, lmtp.Config{}, be)
	rc := dialRaw(t, ts.Addr)
	rc.greet(modeLMTP)
	rc.send("MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
	rc.expect("250 ")
	rc.expect("250 ")
	rc.expect("354 ")
	rc.send("Subject: x\r\n\r\n" + strings.Repeat("y", 2100) + "\r\n.\r\n")
	rc.expect("500 5.5.2 <alice@example.org> ")
	rc.expectEOF()
	if n := len(be.Calls()); n != 0 {
		t.Errorf("Deliver called %d times", n)
	}
}

func TestMaxRecipients(t *testing.T) {
	be := newBackend()
	ts := start(t, modeLMTP, lmtp.Config{MaxRecipients: 2}, be)
	rc := dialRaw(t, ts.Addr)
	rc.greet(modeLMTP)
	rc.send("MAIL FROM:<s@remote.test>\r\n")
	rc.expect("250 ")
	for _, r := range []string{"alice", "bob"} {
		rc.send("RCPT TO:<" + r + "@example.org>\r\n")
		rc.expect("250 ")
	}
	rc.send("RCPT TO:<carol@example.org>\r\n")
	rc.expect("452 4.5.3 ")
	rc.send("DATA\r\n")
	rc.expect("354 ")
	rc.send("Subject: x\r\n\r\nx\r\n.\r\n")
	rc.expect("250 2.0.0 <alice@example.org>")
	rc.expect("250 2.0.0 <bob@example.org>")
	rc.send("NOOP\r\n")
	rc.expect("250 ")
	if n := len(be.Delivered()); n != 2 {
		t.Errorf("delivered %d, want 2", n)
	}
}

// TestPipelining: a whole transaction in two writes, the null sender
// (a bounce) included.
func TestPipelining(t *testing.T) {
	be := newBackend()
	ts := start(t, modeLMTP, lmtp.Config{}, be)
	rc := dialRaw(t, ts.Addr)
	rc.expect("220 ")
	rc.send("LHLO client.test\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<nobody@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
	caps, err := rc.reply()
	if err != nil || !containsLine(caps, "PIPELINING") {
		t.Fatalf("LHLO reply %q (%v) does not offer PIPELINING", caps, err)
	}
	rc.expect("250 ")
	rc.expect("250 ")
	rc.expect("550 5.1.1 ")
	rc.expect("250 ")
	rc.expect("354 ")
	rc.send("Subject: bounce\r\n\r\nundeliverable\r\n.\r\nNOOP\r\nQUIT\r\n")
	rc.expect("250 2.0.0 <alice@example.org>")
	rc.expect("250 2.0.0 <bob@example.org>")
	rc.expect("250 ")
	rc.expect("221 ")
	got := be.Delivered()
	if len(got) != 2 || got[0].Env.From != "" {
		t.Errorf("delivered %+v, want two copies from the null sender", got)
	}
}

func containsLine(lines []string, word string) bool {
	for _, l := range lines {
		if strings.Contains(l, word) {
			return true
		}
	}
	return false
}

// TestNestedMail: a second MAIL inside a transaction is refused, and the
// first transaction is unharmed.
func TestNestedMail(t *testing.T) {
	be := newBackend()
	ts := start(t, modeLMTP, lmtp.Config{}, be)
	rc := dialRaw(t, ts.Addr)
	rc.greet(modeLMTP)
	rc.send("MAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.org>\r\nMAIL FROM:<b@remote.test>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
	rc.expect("250 ")
	rc.expect("250 ")
	rc.expect("503 5.5.1 ")
	rc.expect("250 ")
	rc.expect("354 ")
	rc.send("Subject: x\r\n\r\nx\r\n.\r\n")
	rc.expect("250 2.0.0 <alice@example.org>")
	rc.expect("250 2.0.0 <bob@example.org>")
	for _, d := range be.Delivered() {
		if d.Env.From != "a@remote.test" {
			t.Errorf("From = %q, want the first MAIL's", d.Env.From)
		}
	}
}

// TestBDAT: go-smtp always offers CHUNKING; chunks reach the backend byte for
// byte, with no dot handling.
func TestBDAT(t *testing.T) {
	be := newBackend()
	ts := start(t, modeLMTP, lmtp.Config{MaxMessageBytes: 100}, be)
	rc := dialRaw(t, ts.Addr)
	rc.greet(modeLMTP)
	part1, part2 := "Subject: x\r\n\r\n.\r\n", "..dots\r\n"
	rc.send("MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\n")
	rc.expect("250 ")
	rc.expect("250 ")
	rc.expect("250 ")
	rc.send(fmt.Sprintf("BDAT %d\r\n%s", len(part1), part1))
	rc.expect("250 ")
	rc.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(part2), part2))
	rc.expect("250 2.0.0 <alice@example.org> OK")
	rc.expect("250 2.0.0 <bob@example.org> OK")
	got := be.Delivered()
	if len(got) != 2 || string(got[0].Msg) != part1+part2 {
		t.Fatalf("delivered %+v, want two copies of %q", got, part1+part2)
	}

	big := strings.Repeat("z", 101)
	rc.send("MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\n")
	rc.expect("250 ")
	rc.expect("250 ")
	rc.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(big), big))
	rc.expect("552 5.3.4 ")
	if n := len(be.Delivered()); n != 2 {
		t.Errorf("oversized BDAT delivered (%d)", n)
	}
}

// TestPipelinedLargeMessages: messages much larger than the connection's
// read-ahead, sent with the next transaction's commands in the same writes
// (DATA, then BDAT with a chunk holding "\r\n.\r\n"), reach the backend
// byte for byte, and the commands after them are still read as commands.
// (The chunk keeps its lines short: go-smtp applies its line limit to bytes
// it reads ahead while still in DATA.)
func TestPipelinedLargeMessages(t *testing.T) {
	be := newBackend()
	ts := start(t, modeLMTP, lmtp.Config{}, be)
	rc := dialRaw(t, ts.Addr)
	rc.greet(modeLMTP)

	var body strings.Builder
	body.WriteString("Subject: big\r\n\r\n")
	for i := 0; body.Len() < 300<<10; i++ {
		fmt.Fprintf(&body, "line %d %s\r\n", i, strings.Repeat("x", i%90))
	}
	dataMsg := body.String()
	bdatMsg := "Subject: bdat\r\n\r\n\r\n.\r\n" + strings.Repeat(strings.Repeat("b", 98)+"\r\n", 3000)
	rc.send("MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
	rc.expect("250 ")
	rc.expect("250 ")
	rc.expect("354 ")
	rc.send(dataMsg + ".\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<bob@example.org>\r\n" +
		fmt.Sprintf("BDAT %d LAST\r\n", len(bdatMsg)) + bdatMsg + "NOOP\r\n")
	rc.expect("250 2.0.0 <alice@example.org> OK")
	rc.expect("250 ")
	rc.expect("250 ")
	rc.expect("250 2.0.0 <bob@example.org> OK")
	rc.expect("250 ")
	got := be.Delivered()
	if len(got) != 2 {
		t.Fatalf("delivered %d messages, want 2", len(got))
	}
	if string(got[0].Msg) != dataMsg {
		t.Errorf("DATA message differs (%d bytes, want %d)", len(got[0].Msg), len(dataMsg))
	}
	if string(got[1].Msg) != bdatMsg {
		t.Errorf("BDAT message differs (%d bytes, want %d)", len(got[1].Msg), len(bdatMsg))
	}

	// A shorter message after them gets a recycled buffer of theirs.
	short := dataMsg[:200<<10] + "\r\n"
	rc.send("MAIL FROM:<s@remote.test>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n")
	rc.expect("250 ")
	rc.expect("250 ")
	rc.expect("354 ")
	rc.send(short + ".\r\n")
	rc.expect("250 2.0.0 <carol@example.org> OK")
	if got := be.Delivered(); len(got) != 3 || string(got[2].Msg) != short {
		t.Errorf("third message not delivered byte for byte")
	}
}

// TestIdleTimeout: a client that goes silent is told 421 and disconnected,
// both between commands and in the middle of a message.
func TestIdleTimeout(t *testing.T) {
	be := newBackend()
	ts := start(t, modeLMTP, lmtp.Config{ReadTimeout: 100 * time.Millisecond}, be)

	t.Run("between commands", func(t *testing.T) {
		rc := dialRaw(t, ts.Addr)
		rc.expect("220 ")
		rc.expect("421 4.4.2 ")
		rc.expectEOF()
	})
	t.Run("during DATA", func(t *testing.T) {
		rc := dialRaw(t, ts.Addr)
		rc.greet(modeLMTP)
		rc.send("MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
		rc.expect("250 ")
		rc.expect("250 ")
		rc.expect("354 ")
		rc.send("Subject: never finished\r\n")
		rc.expect("451 4.4.2 <alice@example.org> ")
		rc.expectEOF()
		if n := len(be.Calls()); n != 0 {
			t.Errorf("Deliver called for an unfinished message")
		}
	})
}

// TestSlowButSteadyData: ReadTimeout is an idle timeout during DATA, not a
// limit on the whole transfer. The gaps are a twentieth of the timeout, so
// only a scheduler stall of a whole second could fail it; -short skips it.
func TestSlowButSteadyData(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 3s of wall time")
	}
	be := newBackend()
	// The gaps are a small fraction of the timeout, so only a stall of
	// almost two seconds on a loaded machine could make this fail.
	const timeout = 2 * time.Second
	ts := start(t, modeLMTP, lmtp.Config{ReadTimeout: timeout}, be)
	rc := dialRaw(t, ts.Addr)
	rc.greet(modeLMTP)
	rc.send("MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
	rc.expect("250 ")
	rc.expect("250 ")
	rc.expect("354 ")
	start := time.Now()
	for i := 0; time.Since(start) < timeout*3/2; i++ {
		rc.send(fmt.Sprintf("line %d\r\n", i))
		time.Sleep(timeout / 40)
	}
	rc.send(".\r\n")
	rc.expect("250 2.0.0 <alice@example.org>")
}

func TestMaxConnections(t *testing.T) {
	ts := start(t, modeLMTP, lmtp.Config{MaxConnections: 1}, newBackend())
	first := dialRaw(t, ts.Addr)
	first.expect("220 ")
	second := dialRaw(t, ts.Addr)
	second.expect("421 4.7.0 ")
	second.expectEOF()

	first.send("QUIT\r\n")
	first.expect("221 ")
	// The server forgets a connection before closing it, so once we see
	// the close there is room again.
	first.expectEOF()
	third := dialRaw(t, ts.Addr)
	third.expect("220 ")
}

func TestSTARTTLS(t *testing.T) {
	cert, pool := testenv.SelfSigned(t)
	srvTLS := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}

	t.Run("SMTP with TLS config", func(t *testing.T) {
		be := newBackend()
		ts := start(t, modeSMTP, lmtp.Config{TLSConfig: srvTLS}, be)
		conn, err := net.Dial("tcp", ts.Addr)
		if err != nil {
			t.Fatal(err)
		}
		c, err := smtp.NewClientStartTLS(conn, &tls.Config{RootCAs: pool, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if ok, _ := c.Extension("STARTTLS"); ok {
			t.Error("STARTTLS still offered inside TLS")
		}
		if ok, _ := c.Extension("AUTH"); ok {
			t.Error("AUTH offered by an MX")
		}
		if err := c.Mail("jörg@exämple.test", &smtp.MailOptions{UTF8: true}); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("carol@example.org", nil); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("Subject: über TLS\r\n\r\nhi\r\n"))
		resp, err := w.CloseWithResponse()
		if err != nil || !strings.HasPrefix(resp.StatusText, "2.0.0 OK id=") {
			t.Fatalf("DATA: %+v, %v", resp, err)
		}
		got := be.Delivered()
		if len(got) != 1 || !got[0].Env.TLS || got[0].Env.Protocol != "UTF8SMTPS" || got[0].Env.Helo != "localhost" {
			t.Fatalf("delivered %+v, want one over TLS", got)
		}
	})

	t.Run("SMTP without TLS config", func(t *testing.T) {
		be := newBackend()
		ts := start(t, modeSMTP, lmtp.Config{}, be)
		rc := dialRaw(t, ts.Addr)
		rc.expect("220 ")
		rc.send("EHLO client.test\r\n")
		caps, err := rc.reply()
		if err != nil || containsLine(caps, "STARTTLS") {
			t.Fatalf("EHLO reply %q (%v) offers STARTTLS", caps, err)
		}
		rc.send("STARTTLS\r\n")
		rc.expect("502 ")
		rc.send("MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
		rc.expect("250 ")
		rc.expect("250 ")
		rc.expect("354 ")
		rc.send("x\r\n.\r\n")
		rc.expect("250 2.0.0 OK id=")
		if got := be.Delivered(); len(got) != 1 || got[0].Env.TLS || got[0].Env.Protocol != "ESMTP" {
			t.Fatalf("delivered %+v", got)
		}
	})

	t.Run("LMTP ignores TLS config", func(t *testing.T) {
		ts := start(t, modeLMTP, lmtp.Config{TLSConfig: srvTLS}, newBackend())
		rc := dialRaw(t, ts.Addr)
		rc.expect("220 ")
		rc.send("LHLO client.test\r\n")
		caps, err := rc.reply()
		if err != nil || containsLine(caps, "STARTTLS") {
			t.Fatalf("LHLO reply %q (%v) offers STARTTLS", caps, err)
		}
	})
}

// TestCapabilities compares the greeting and LHLO/EHLO replies with
// testdata/*.golden (go test -run Capabilities -update rewrites them).
func TestCapabilities(t *testing.T) {
	cert, _ := testenv.SelfSigned(t)
	tests := []struct {
		golden string
		mode   mode
		tls    bool
	}{
		{"lhlo.golden", modeLMTP, false},
		{"ehlo.golden", modeSMTP, false},
		{"ehlo_starttls.golden", modeSMTP, true},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			cfg := lmtp.Config{MaxMessageBytes: 10 << 20, MaxRecipients: 100}
			if tt.tls {
				cfg.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
			}
			ts := start(t, tt.mode, cfg, newBackend())
			rc := dialRaw(t, ts.Addr)
			rc.expect("220 ")
			rc.send(tt.mode.hello() + " client.test\r\n")
			rc.expect("250 ")
			got := rc.wire.String()
			path := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("reply =\n%s\nwant (%s)\n%s", got, path, want)
			}
		})
	}
}
