package outbound_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-smtp"

	cmcrypto "cryptomail/crypto"
	"cryptomail/internal/testenv"
	"cryptomail/server/internal/outbound"
	"cryptomail/shard"
	"cryptomail/xmap"
)

const (
	alice = "alice@" + domain
	bob   = "bob@" + domain
	carol = "carol@remote.example"
	dave  = "dave@remote.example"
)

func TestSendLocal(t *testing.T) {
	e := newEnv(t)
	s := e.sender(e.config(""))
	body := e.pgpMIME(alice, bob, "...", "the secret text", alice, bob)
	bobSummary, err := (&cmcrypto.Sealer{}).Encrypt(mustKey(t, e, bob), []byte(`{"subject":"Lunch?"}`))
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Send(e.ctx, alice, &xmap.Send{
		Recipients: []xmap.Recipient{{Address: "Bob+lunch@example.org", Encrypted: true, Summary: bobSummary}},
		Body:       body,
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []xmap.RecipientStatus{{Address: "Bob+lunch@example.org", Status: xmap.StatusDelivered}}; !slices.Equal(res.Recipients, want) {
		t.Errorf("statuses %v, want %v", res.Recipients, want)
	}

	inbox := e.messages(bob, "INBOX")
	if len(inbox) != 1 {
		t.Fatalf("bob's INBOX has %d messages, want 1", len(inbox))
	}
	got := e.decrypt(bob, inbox[0].Body)
	if !bytes.HasSuffix(got, body) {
		t.Errorf("bob's copy does not end with the body as sent")
	}
	for _, field := range []string{"Return-Path: <alice@example.org>\r\n", "Delivered-To: bob@example.org\r\n", "Received: by mx.example.org with XMAP\r\n\tfor <Bob+lunch@example.org>;"} {
		if !bytes.Contains(got[:len(got)-len(body)], []byte(field)) {
			t.Errorf("bob's copy lacks trace field %q", field)
		}
	}
	if sm := e.decrypt(bob, inbox[0].Summary); string(sm) != `{"subject":"Lunch?"}` {
		t.Errorf("bob's summary %q, want the client's", sm)
	}
	// Alice wrote Bob's summary: his client must be able to tell (issue 9, item 1).
	if inbox[0].SummaryBy != shard.SummaryBySender {
		t.Errorf("bob's copy: summary origin %q, want sender", inbox[0].SummaryBy)
	}
	if bytes.Contains(inbox[0].Body, []byte("Subject")) || bytes.Contains(inbox[0].Body, []byte("alice@")) {
		t.Error("bob's stored body holds readable headers")
	}

	sent := e.messages(alice, "Sent")
	if len(sent) != 1 {
		t.Fatalf("alice's Sent has %d messages, want 1", len(sent))
	}
	if !bytes.Equal(e.decrypt(alice, sent[0].Body), body) {
		t.Error("Sent copy is not the body as sent")
	}
	if !slices.Equal(sent[0].Flags, []string{`\Seen`}) {
		t.Errorf("Sent flags %v, want \\Seen", sent[0].Flags)
	}
	// Without a sent-summary the server writes one from the outer headers.
	var sm cmcrypto.Summary
	if err := json.Unmarshal(e.decrypt(alice, sent[0].Summary), &sm); err != nil {
		t.Fatal(err)
	}
	if sm.From != alice || !strings.Contains(sm.MessageID, "7d1e@example.org") {
		t.Errorf("server-made Sent summary %+v", sm)
	}
	if sent[0].SummaryBy != shard.SummaryByServer || res.Sent.SummaryBy != xmap.SummaryByServer {
		t.Errorf("server-made Sent summary: origin %q, in the result %q; want server", sent[0].SummaryBy, res.Sent.SummaryBy)
	}
	if res.Sent.ID != strconv.FormatInt(sent[0].ID, 10) || res.Sent.Size != int64(len(sent[0].Body)) ||
		!slices.Equal(res.Sent.Flags, []xmap.Flag{xmap.FlagSeen}) || !res.Sent.Received.Equal(e.clock.Now()) {
		t.Errorf("result message %+v does not describe the Sent copy", res.Sent)
	}
	folders, err := e.store.Folders(e.ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range folders {
		if f.Role == "sent" && res.Sent.FolderID != strconv.FormatInt(f.ID, 10) {
			t.Errorf("result folder id %s, Sent is %d", res.Sent.FolderID, f.ID)
		}
	}
	if n := e.notifiedUsers(); !slices.Equal(n, []string{bob, alice}) {
		t.Errorf("OnStored calls %v, want bob then alice", n)
	}
	if q := e.entries(s); len(q) != 0 {
		t.Errorf("queue has %d entries after a local-only send", len(q))
	}
}

func mustKey(t *testing.T, e *env, user string) *cmcrypto.PublicKey {
	t.Helper()
	k, err := cmcrypto.NewPublicKey(e.keys[user], e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSendRefused checks each refusal and that a refused send stores,
// queues and relays nothing.
func TestSendRefused(t *testing.T) {
	e := newEnv(t)
	relay, _ := startRelay(t, relayOptions{})
	withRelay := e.sender(e.config(relay.Addr))
	body := e.pgpMIME(alice, bob, "...", "secret", alice, bob)
	plain := plainMsg(alice, carol, "Hi", "readable")
	tests := []struct {
		name    string
		noRelay bool
		req     xmap.Send
		want    xmap.ErrorCode
	}{
		{"local not encrypted to", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: bob, Encrypted: false, AllowPlaintext: true}}, Body: body, PlaintextBody: plain}, xmap.CodePlaintextRefused},
		{"unknown local", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: carol, Encrypted: true}, {Address: "nobody@example.org", Encrypted: true}}, Body: body}, xmap.CodeInvalidRecipient},
		{"remote without key or consent", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: bob, Encrypted: true}, {Address: dave, Encrypted: false}}, Body: body, PlaintextBody: plain}, xmap.CodePlaintextRefused},
		{"remote without relay", true, xmap.Send{Recipients: []xmap.Recipient{
			{Address: bob, Encrypted: true}, {Address: carol, Encrypted: true}}, Body: body}, xmap.CodeDenied},
		{"body not PGP/MIME", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: carol, Encrypted: true}}, Body: plain}, xmap.CodeBadRequest},
		{"body too large", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: bob, Encrypted: true}}, Body: append(slices.Clone(body), make([]byte, xmap.MaxMessageSize)...)}, xmap.CodeTooLarge},

		// Issue 9, item 6: the readable From: and Sender: are the user's own.
		{"From: someone else", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: carol, Encrypted: true}}, Body: e.pgpMIME("CEO <ceo@bank.example>", carol, "...", "secret", alice)}, xmap.CodeDenied},
		{"From: another local user", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: carol, Encrypted: true}}, Body: e.pgpMIME("Bob <bob@example.org>", carol, "...", "secret", alice)}, xmap.CodeDenied},
		{"From: two addresses", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: carol, Encrypted: true}}, Body: e.pgpMIME("alice@example.org, ceo@bank.example", carol, "...", "secret", alice)}, xmap.CodeDenied},
		{"no From:", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: carol, Encrypted: true}}, Body: bytes.Replace(body, []byte("From: alice@example.org\r\n"), nil, 1)}, xmap.CodeDenied},
		{"Sender: someone else", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: carol, Encrypted: true}}, Body: append([]byte("Sender: ceo@bank.example\r\n"), body...)}, xmap.CodeDenied},
		{"plaintext From: someone else", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: bob, Encrypted: true}, {Address: dave, AllowPlaintext: true}}, Body: body,
			PlaintextBody: plainMsg("CEO <ceo@bank.example>", dave, "Hi", "readable")}, xmap.CodeDenied},
		// The review of the fix: a field name with white space is read as From: by
		// go-message and the web client; Resent-From: is shown by some readers; a
		// display name can hold another address, plainly or in an encoded word.
		{"From : with a space", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: carol, Encrypted: true}}, Body: append([]byte("From : CEO <ceo@bank.example>\r\n"), body...)}, xmap.CodeBadRequest},
		{"plaintext From : with a space", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: bob, Encrypted: true}, {Address: dave, AllowPlaintext: true}}, Body: body,
			PlaintextBody: append([]byte("From : CEO <ceo@bank.example>\r\n"), plain...)}, xmap.CodeBadRequest},
		{"Resent-From: someone else", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: carol, Encrypted: true}}, Body: append([]byte("Resent-From: ceo@bank.example\r\n"), body...)}, xmap.CodeDenied},
		{"display name holds an address", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: carol, Encrypted: true}}, Body: e.pgpMIME(`"ceo@bank.example" <alice@example.org>`, carol, "...", "secret", alice)}, xmap.CodeDenied},
		{"encoded display name holds an address", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: carol, Encrypted: true}}, Body: e.pgpMIME("=?utf-8?q?=3Cbob=40example=2Eorg=3E=2C?= <alice@example.org>", carol, "...", "secret", alice)}, xmap.CodeDenied},
		// A part labelled encrypted must be an OpenPGP message.
		{"labelled encrypted, readable", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: carol, Encrypted: true}}, Body: fakePGPMIME(alice, carol, "Pay the invoice today.")}, xmap.CodeBadRequest},
		{"plaintext labelled encrypted, readable", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: bob, Encrypted: true}, {Address: dave, AllowPlaintext: true}}, Body: body,
			PlaintextBody: fakePGPMIME(alice, dave, "Pay the invoice today.")}, xmap.CodeBadRequest},
		{"plaintext with a forwarded part labelled encrypted, readable", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: bob, Encrypted: true}, {Address: dave, AllowPlaintext: true}}, Body: body,
			PlaintextBody: []byte("From: " + alice + "\r\nTo: " + dave + "\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n" +
				"Content-Type: message/rfc822\r\n\r\n" + string(fakePGPMIME(alice, dave, "Pay the invoice today.")) + "\r\n--m--\r\n")}, xmap.CodeBadRequest},
		// Issue 9, item 10: summaries are stored, so they must be OpenPGP messages.
		{"readable summary", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: bob, Encrypted: true, Summary: []byte(`{"subject":"readable"}`)}}, Body: body}, xmap.CodeBadRequest},
		{"readable sent-summary", false, xmap.Send{Recipients: []xmap.Recipient{
			{Address: bob, Encrypted: true}}, Body: body, SentSummary: []byte(`{"subject":"readable"}`)}, xmap.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := withRelay
			if tt.noRelay {
				s2, err := outbound.New(e.ctx, e.queuePath()+"-norelay", e.store, resolve, e.config(""))
				if err != nil {
					t.Fatal(err)
				}
				defer s2.Close()
				s = s2
			}
			_, err := s.Send(e.ctx, alice, &tt.req)
			if code := xmapCode(err); code != tt.want {
				t.Fatalf("error %v (code %q), want %q", err, code, tt.want)
			}
			if err := s.Flush(e.ctx); err != nil {
				t.Fatal(err)
			}
			if n := len(e.messages(bob, "INBOX")) + len(e.messages(alice, "Sent")); n != 0 {
				t.Errorf("%d messages stored", n)
			}
			if q := e.entries(s); len(q) != 0 {
				t.Errorf("queue has %d entries", len(q))
			}
			if got := relay.received(); len(got) != 0 {
				t.Errorf("relay got %d messages", len(got))
			}
		})
	}
}

// TestRelay sends to a remote recipient encrypted and to one in clear with
// consent; the relay gets each body, from the session's user.
func TestRelay(t *testing.T) {
	e := newEnv(t)
	relay, _ := startRelay(t, relayOptions{})
	s := e.sender(e.config(relay.Addr))
	body := e.pgpMIME("Alice <alice+work@example.org>", carol, "...", "SECRET-MARKER-1", alice)
	plain := plainMsg("Alice <alice@example.org>", dave, "PLAIN-SUBJECT-MARKER", "PLAIN-BODY-MARKER")
	res, err := s.Send(e.ctx, alice, &xmap.Send{
		Recipients: []xmap.Recipient{
			{Address: carol, Encrypted: true},
			{Address: bob, Encrypted: true},
			{Address: dave, Encrypted: false, AllowPlaintext: true},
		},
		Body:          body,
		PlaintextBody: plain,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []xmap.RecipientStatus{
		{Address: carol, Status: xmap.StatusQueued},
		{Address: bob, Status: xmap.StatusDelivered},
		{Address: dave, Status: xmap.StatusQueued},
	}
	if !slices.Equal(res.Recipients, want) {
		t.Errorf("statuses %v, want %v", res.Recipients, want)
	}
	q := e.entries(s)
	if len(q) != 2 || q[0].Held || q[0].Sender != alice {
		t.Fatalf("queue %+v, want two released entries from alice", q)
	}
	if err := s.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	got := relay.received()
	if len(got) != 2 {
		t.Fatalf("relay got %d messages, want 2", len(got))
	}
	slices.SortFunc(got, func(a, b gotMsg) int { return strings.Compare(a.To[0], b.To[0]) })
	for i, w := range []struct {
		to   string
		body []byte
	}{{carol, body}, {dave, plain}} {
		g := got[i]
		if g.From != alice {
			t.Errorf("MAIL FROM %q, want the session's user %q", g.From, alice)
		}
		if !slices.Equal(g.To, []string{w.to}) {
			t.Errorf("RCPT TO %v, want %s", g.To, w.to)
		}
		if !bytes.Equal(g.Data, w.body) {
			t.Errorf("relay got a body for %s other than the one sent", w.to)
		}
		if g.Helo != "mx.example.org" {
			t.Errorf("EHLO %q, want the server's hostname", g.Helo)
		}
	}
	if q := e.entries(s); len(q) != 0 {
		t.Errorf("queue has %d entries after delivery", len(q))
	}
	if n := len(e.messages(alice, "INBOX")); n != 0 {
		t.Errorf("alice got %d messages (bounces?)", n)
	}
	// Once relayed, the readable copy is gone from every file, the
	// queue's WAL included.
	scanDir(t, e.dir, "SECRET-MARKER-1", "PLAIN-SUBJECT-MARKER", "PLAIN-BODY-MARKER")
}

// scanDir fails if any file under dir holds one of the strings.
func scanDir(t *testing.T, dir string, secrets ...string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds %q", path, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRetryAfter4xx(t *testing.T) {
	e := newEnv(t)
	relay, _ := startRelay(t, relayOptions{})
	relay.setRcptReply(carol, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try again later"})
	s := e.sender(e.config(relay.Addr))
	send(t, e, s, carol)
	if err := s.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	q := e.entries(s)
	if len(q) != 1 || q[0].Attempts != 1 || !q[0].NextAttempt.Equal(e.clock.Now().Add(time.Minute)) ||
		q[0].Recipients[0].Status != "pending" || q[0].Recipients[0].Reply != "451 4.3.0 Try again later" {
		t.Fatalf("after a 451: %+v", q)
	}

	// Not due yet: nothing happens.
	relay.setRcptReply(carol, nil)
	if err := s.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	if len(relay.received()) != 0 {
		t.Fatal("relayed before the retry time")
	}
	e.clock.Advance(time.Minute)
	if err := s.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := relay.received(); len(got) != 1 || got[0].To[0] != carol {
		t.Fatalf("relay got %+v after the retry", got)
	}
	if q := e.entries(s); len(q) != 0 {
		t.Errorf("queue not empty after delivery: %+v", q)
	}
	if n := len(e.messages(alice, "INBOX")); n != 0 {
		t.Errorf("%d bounces for a delivered message", n)
	}
}

// send sends a PGP/MIME message from alice to the remote recipients.
func send(t *testing.T, e *env, s *outbound.Sender, to ...string) []byte {
	t.Helper()
	body := e.pgpMIME(alice, strings.Join(to, ", "), "Quarterly figures", "the secret text", alice)
	var rs []xmap.Recipient
	for _, a := range to {
		rs = append(rs, xmap.Recipient{Address: a, Encrypted: true})
	}
	if _, err := s.Send(e.ctx, alice, &xmap.Send{Recipients: rs, Body: body}); err != nil {
		t.Fatal(err)
	}
	return body
}

// dsn is a decrypted bounce, split into its parts.
type dsn struct {
	raw     string
	header  message.Header
	human   string
	status  string
	headers string
}

func (e *env) bounce(user string) dsn {
	e.t.Helper()
	inbox := e.messages(user, "INBOX")
	if len(inbox) != 1 {
		e.t.Fatalf("%s's INBOX has %d messages, want 1 bounce", user, len(inbox))
	}
	raw := e.decrypt(user, inbox[0].Body)
	var sm cmcrypto.Summary
	if err := json.Unmarshal(e.decrypt(user, inbox[0].Summary), &sm); err != nil {
		e.t.Fatal(err)
	}
	if sm.Subject != "Undelivered Mail Returned to Sender" || !strings.Contains(sm.From, "MAILER-DAEMON@mx.example.org") {
		e.t.Errorf("bounce summary %+v", sm)
	}
	if inbox[0].SummaryBy != shard.SummaryByServer {
		e.t.Errorf("bounce: summary origin %q, want server", inbox[0].SummaryBy)
	}
	m, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		e.t.Fatal(err)
	}
	d := dsn{raw: string(raw), header: m.Header}
	mt, params, _ := m.Header.ContentType()
	if mt != "multipart/report" || params["report-type"] != "delivery-status" {
		e.t.Fatalf("bounce is %s %v, want multipart/report; report-type=delivery-status", mt, params)
	}
	mr := m.MultipartReader()
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			e.t.Fatal(err)
		}
		b, err := io.ReadAll(p.Body)
		if err != nil {
			e.t.Fatal(err)
		}
		switch pt, _, _ := p.Header.ContentType(); pt {
		case "text/plain":
			d.human = string(b)
		case "message/delivery-status", "message/global-delivery-status":
			d.status = string(b)
		case "text/rfc822-headers":
			d.headers = string(b)
		default:
			e.t.Errorf("unexpected bounce part %s", pt)
		}
	}
	return d
}

// TestSendRateLimit: a user may send to MaxRecipientsPerHour recipients an
// hour; a send over it is refused whole (rate-limited), other users are not
// affected, and the allowance comes back with time (issue 9, item 6).
func TestSendRateLimit(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("")
	cfg.MaxRecipientsPerHour = 3
	s := e.sender(cfg)
	send := func(from string, rcpts ...string) error {
		req := &xmap.Send{Body: e.pgpMIME(from, bob, "...", "secret", from, bob)}
		for _, r := range rcpts {
			req.Recipients = append(req.Recipients, xmap.Recipient{Address: r, Encrypted: true})
		}
		_, err := s.Send(e.ctx, from, req)
		return err
	}
	if err := send(alice, bob, "bob+2@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := send(alice, bob, alice); xmapCode(err) != xmap.CodeRateLimited {
		t.Fatalf("fourth recipient in the hour: %v, want rate-limited", err)
	}
	if n := len(e.messages(bob, "INBOX")); n != 1 {
		t.Errorf("bob has %d messages, want 1 (the refused send stores nothing)", n)
	}
	if err := send(bob, alice, alice); err != nil {
		t.Errorf("another user's send: %v", err)
	}
	if err := send(alice, bob); err != nil {
		t.Errorf("third recipient in the hour: %v", err)
	}
	if err := send(alice, bob); xmapCode(err) != xmap.CodeRateLimited {
		t.Fatalf("fourth recipient in the hour: %v, want rate-limited", err)
	}
	e.clock.Advance(20 * time.Minute) // one recipient back
	if err := send(alice, bob); err != nil {
		t.Errorf("after 20 minutes: %v", err)
	}
	if err := send(alice, bob); xmapCode(err) != xmap.CodeRateLimited {
		t.Errorf("a second one after 20 minutes: %v, want rate-limited", err)
	}
}

func TestBounceOn5xx(t *testing.T) {
	e := newEnv(t)
	relay, _ := startRelay(t, relayOptions{})
	relay.setRcptReply(dave, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<dave@remote.example>: no such user"})
	s := e.sender(e.config(relay.Addr))
	plain := plainMsg(alice, dave+", "+carol, "Quarterly figures", "the readable body text")
	if _, err := s.Send(e.ctx, alice, &xmap.Send{
		Recipients:    []xmap.Recipient{{Address: carol, Encrypted: false, AllowPlaintext: true}, {Address: dave, Encrypted: false, AllowPlaintext: true}},
		Body:          e.pgpMIME(alice, carol, "...", "secret", alice),
		PlaintextBody: plain,
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := relay.received(); len(got) != 1 || !slices.Equal(got[0].To, []string{carol}) {
		t.Fatalf("relay got %+v, want the message for carol only", got)
	}
	d := e.bounce(alice)
	if !strings.Contains(d.human, "<dave@remote.example>") || !strings.Contains(d.human, "550 5.1.1 <dave@remote.example>: no such user") {
		t.Errorf("notification does not name dave and the reply:\n%s", d.human)
	}
	for _, f := range []string{"Reporting-MTA: dns; mx.example.org", "Final-Recipient: rfc822; dave@remote.example",
		"Action: failed", "Status: 5.1.1", "Diagnostic-Code: smtp; 550 5.1.1 <dave@remote.example>: no such user"} {
		if !strings.Contains(d.status, f+"\r\n") {
			t.Errorf("delivery status lacks %q:\n%s", f, d.status)
		}
	}
	if strings.Contains(d.status, carol) || strings.Contains(d.human, carol) {
		t.Error("bounce names carol, who got the message")
	}
	if !strings.Contains(d.headers, "Subject: Quarterly figures\r\n") {
		t.Errorf("bounce lacks the original headers:\n%s", d.headers)
	}
	if strings.Contains(d.raw, "readable body text") {
		t.Error("bounce holds the message body")
	}
	if to := d.header.Get("To"); !strings.Contains(to, alice) {
		t.Errorf("bounce To %q", to)
	}
	if q := e.entries(s); len(q) != 0 {
		t.Errorf("queue not empty after a bounce: %+v", q)
	}
	if n := e.notifiedUsers(); !slices.Contains(n, alice) {
		t.Errorf("OnStored not called for the bounce: %v", n)
	}
}

// TestReplies: what each kind of refusal does to each recipient.
func TestReplies(t *testing.T) {
	reject := &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Rejected by policy"}
	later := &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Later"}
	zoe := "zoë@remote.example"
	tests := []struct {
		name    string
		set     func(r *relayServer)
		to      []string
		bounced []string // named in the bounce; the others stay queued
		status  string
		pending int
	}{
		{"MAIL refused", func(r *relayServer) { r.mailReply = reject }, []string{carol, dave}, []string{carol, dave}, "Status: 5.7.1", 0},
		{"MAIL deferred", func(r *relayServer) { r.mailReply = later }, []string{carol, dave}, nil, "", 2},
		{"DATA refused", func(r *relayServer) { r.dataReply = reject }, []string{carol, dave}, []string{carol, dave}, "Status: 5.7.1", 0},
		{"DATA deferred", func(r *relayServer) { r.dataReply = later }, []string{carol}, nil, "", 1},
		{"one RCPT refused, one deferred", func(r *relayServer) {
			r.rcptReply[carol] = reject
			r.rcptReply[dave] = later
		}, []string{carol, dave}, []string{carol}, "Status: 5.7.1", 1},
		{"no SMTPUTF8 at the relay", func(r *relayServer) {}, []string{zoe, carol}, []string{zoe}, "Status: 5.6.7", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			relay, _ := startRelay(t, relayOptions{})
			relay.mu.Lock()
			tt.set(relay)
			relay.mu.Unlock()
			s := e.sender(e.config(relay.Addr))
			send(t, e, s, tt.to...)
			if err := s.Flush(e.ctx); err != nil {
				t.Fatal(err)
			}
			pending := 0
			for _, q := range e.entries(s) {
				for _, r := range q.Recipients {
					if r.Status == "pending" {
						pending++
					}
				}
			}
			if pending != tt.pending {
				t.Errorf("%d recipients pending, want %d", pending, tt.pending)
			}
			if len(tt.bounced) == 0 {
				if n := len(e.messages(alice, "INBOX")); n != 0 {
					t.Errorf("%d bounces, want none", n)
				}
				return
			}
			d := e.bounce(alice)
			for _, a := range tt.to {
				if named := strings.Contains(d.status, "; "+a+"\r\n"); named != slices.Contains(tt.bounced, a) {
					t.Errorf("bounce names %s: %v, want %v\n%s", a, named, !named, d.status)
				}
			}
			if !strings.Contains(d.status, tt.status+"\r\n") {
				t.Errorf("bounce lacks %q:\n%s", tt.status, d.status)
			}
		})
	}
}

func TestBounceOnExpiry(t *testing.T) {
	e := newEnv(t)
	relay, _ := startRelay(t, relayOptions{})
	relay.setRcptReply(carol, &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full"})
	cfg := e.config(relay.Addr)
	cfg.QueueLifetime = 2 * time.Hour
	s := e.sender(cfg)
	send(t, e, s, carol)
	for range 3 {
		if err := s.Flush(e.ctx); err != nil {
			t.Fatal(err)
		}
		if n := len(e.messages(alice, "INBOX")); n != 0 {
			t.Fatalf("bounced before the lifetime ran out")
		}
		e.clock.Advance(30 * time.Minute)
	}
	e.clock.Advance(2 * time.Hour)
	if err := s.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	d := e.bounce(alice)
	if !strings.Contains(d.status, "Status: 4.4.7\r\n") || !strings.Contains(d.status, "Final-Recipient: rfc822; carol@remote.example\r\n") ||
		!strings.Contains(d.status, "Diagnostic-Code: smtp; 452 4.2.2 Mailbox full\r\n") {
		t.Errorf("delivery status:\n%s", d.status)
	}
	if !strings.Contains(d.human, "Not delivered within 2 hours. Last error: 452 4.2.2 Mailbox full") {
		t.Errorf("notification:\n%s", d.human)
	}
	if q := e.entries(s); len(q) != 0 {
		t.Errorf("queue not empty after expiry: %+v", q)
	}
}

// TestExpiryUnreachable: a relay that cannot be reached bounces too, with
// our own words, no Diagnostic-Code and no word of the relay's address.
func TestExpiryUnreachable(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(testenv.FreePort(t)) // nothing listens there
	cfg.QueueLifetime = time.Hour
	s := e.sender(cfg)
	send(t, e, s, carol)
	if err := s.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	if q := e.entries(s); len(q) != 1 || q[0].LastError != "could not connect to the mail relay" {
		t.Fatalf("queue %+v", q)
	}
	e.clock.Advance(2 * time.Hour)
	if err := s.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	d := e.bounce(alice)
	if strings.Contains(d.status, "Diagnostic-Code") || !strings.Contains(d.human, "Not delivered within 1 hour. Last error: could not connect to the mail relay") {
		t.Errorf("bounce for an unreachable relay:\n%s\n%s", d.human, d.status)
	}
	if strings.Contains(d.raw, "127.0.0.1") {
		t.Error("bounce names the relay's address")
	}
}

// TestQueueSurvivesRestart: a message deferred by one Sender is relayed by
// the next one on the same file, from Run after a Kick.
func TestQueueSurvivesRestart(t *testing.T) {
	e := newEnv(t)
	relay, _ := startRelay(t, relayOptions{})
	relay.setRcptReply(carol, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Shutting down"})
	cfg := e.config(relay.Addr)
	s1, err := outbound.New(e.ctx, e.queuePath(), e.store, resolve, cfg)
	if err != nil {
		t.Fatal(err)
	}
	body := send(t, e, s1, carol)
	if err := s1.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(e.queuePath()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("queue file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}

	relay.setRcptReply(carol, nil)
	s2 := e.sender(cfg)
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { s2.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	e.clock.Advance(time.Minute)
	s2.Kick()
	waitFor(t, "the relay to get the message", func() bool { return len(relay.received()) == 1 })
	if got := relay.received()[0]; !bytes.Equal(got.Data, body) || got.From != alice {
		t.Errorf("relay got %+v", got)
	}
	waitFor(t, "the queue to empty", func() bool { return len(e.entries(s2)) == 0 })
}

// TestRunPicksUpSends: Run relays a send at once (Send kicks it).
func TestRunPicksUpSends(t *testing.T) {
	e := newEnv(t)
	relay, _ := startRelay(t, relayOptions{})
	s := e.sender(e.config(relay.Addr))
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	for range 5 {
		send(t, e, s, carol, dave)
	}
	waitFor(t, "five messages at the relay", func() bool { return len(relay.received()) == 5 })
	cancel()
	<-done
	if q := e.entries(s); len(q) != 0 {
		t.Errorf("queue not empty: %+v", q)
	}
}

func TestTLSAndAuth(t *testing.T) {
	tests := []struct {
		name      string
		relay     relayOptions
		starttls  string
		user      string
		pass      string
		insecure  bool
		delivered bool
		tls       bool
		authed    bool
		lastError string // when not delivered
		noAuth    bool   // the relay must not have seen AUTH
	}{
		{name: "STARTTLS and AUTH", relay: relayOptions{tls: true, user: "u", pass: "p"}, starttls: outbound.StartTLSRequired,
			user: "u", pass: "p", delivered: true, tls: true, authed: true},
		{name: "opportunistic with TLS", relay: relayOptions{tls: true}, starttls: outbound.StartTLSOpportunistic,
			delivered: true, tls: true},
		{name: "opportunistic without TLS", relay: relayOptions{}, starttls: outbound.StartTLSOpportunistic,
			delivered: true},
		{name: "required without TLS", relay: relayOptions{}, starttls: outbound.StartTLSRequired,
			lastError: "could not start TLS with the mail relay"},
		{name: "no AUTH in clear", relay: relayOptions{insecureAuth: true, user: "u", pass: "p"}, starttls: outbound.StartTLSOff,
			user: "u", pass: "p", lastError: "refusing to send the relay credentials over a connection without TLS", noAuth: true},
		{name: "AUTH in clear when allowed", relay: relayOptions{insecureAuth: true, user: "u", pass: "p"}, starttls: outbound.StartTLSOff,
			user: "u", pass: "p", insecure: true, delivered: true, authed: true},
		{name: "wrong password is retried, not bounced", relay: relayOptions{tls: true, user: "u", pass: "p"}, starttls: outbound.StartTLSRequired,
			user: "u", pass: "wrong", lastError: "authentication with the mail relay failed: 535 5.7.8 Authentication failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			relay, clientTLS := startRelay(t, tt.relay)
			cfg := e.config(relay.Addr)
			cfg.StartTLS = tt.starttls
			cfg.TLSConfig = clientTLS
			cfg.Username, cfg.Password, cfg.AllowInsecureAuth = tt.user, tt.pass, tt.insecure
			s := e.sender(cfg)
			send(t, e, s, carol)
			if err := s.Flush(e.ctx); err != nil {
				t.Fatal(err)
			}
			got := relay.received()
			q := e.entries(s)
			if !tt.delivered {
				if len(got) != 0 {
					t.Fatalf("relay got %d messages", len(got))
				}
				if len(q) != 1 || q[0].LastError != tt.lastError || q[0].Recipients[0].Status != "pending" {
					t.Fatalf("queue %+v, want one pending entry with last error %q", q, tt.lastError)
				}
				if n := len(e.messages(alice, "INBOX")); n != 0 {
					t.Errorf("%d bounces for a temporary failure", n)
				}
				if tt.noAuth && relay.auths() != 0 {
					t.Errorf("AUTH sent %d times over a connection without TLS", relay.auths())
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("relay got %d messages, want 1 (queue %+v)", len(got), q)
			}
			if got[0].TLS != tt.tls {
				t.Errorf("TLS %v, want %v", got[0].TLS, tt.tls)
			}
			if (got[0].Authed != "") != tt.authed {
				t.Errorf("authenticated as %q, want authenticated=%v", got[0].Authed, tt.authed)
			}
			if got[0].Helo != "mx.example.org" {
				t.Errorf("EHLO %q after STARTTLS", got[0].Helo)
			}
			if len(q) != 0 {
				t.Errorf("queue %+v after delivery", q)
			}
		})
	}
}

// TestLocalStoreFailure: when a store fails after the checks (here the
// sender's account vanishes while bob's copy is stored), the send fails and
// nothing is relayed; bob keeps his copy (see the package documentation).
func TestLocalStoreFailure(t *testing.T) {
	e := newEnv(t)
	relay, _ := startRelay(t, relayOptions{})
	cfg := e.config(relay.Addr)
	cfg.OnStored = func(user string) {
		if user == bob {
			if err := e.store.DeleteUser(context.Background(), alice); err != nil {
				t.Error(err)
			}
		}
	}
	s := e.sender(cfg)
	_, err := s.Send(e.ctx, alice, &xmap.Send{
		Recipients: []xmap.Recipient{{Address: bob, Encrypted: true}, {Address: carol, Encrypted: true}},
		Body:       e.pgpMIME(alice, bob, "...", "secret", alice, bob),
	})
	if err == nil {
		t.Fatal("send succeeded although the Sent copy could not be stored")
	}
	if err := s.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	if q := e.entries(s); len(q) != 0 {
		t.Errorf("queue %+v after a failed send", q)
	}
	if got := relay.received(); len(got) != 0 {
		t.Errorf("relay got %d messages of a failed send", len(got))
	}
	if n := len(e.messages(bob, "INBOX")); n != 1 {
		t.Errorf("bob has %d messages, want his 1 copy", n)
	}
}

func TestConfigErrors(t *testing.T) {
	e := newEnv(t)
	for _, cfg := range []outbound.Config{
		{StartTLS: "sometimes"},
		{Smarthost: "relay.example"},
		{Smarthost: "relay.example:0"},
		{Username: "u"},
		{Hostname: "bad host"},
		{MinRetry: time.Hour, MaxRetry: time.Minute},
	} {
		if s, err := outbound.New(e.ctx, e.queuePath(), e.store, resolve, cfg); err == nil {
			s.Close()
			t.Errorf("New accepted %+v", cfg)
		}
	}
}

// A local recipient's summary is the sender's word whether the client wrote it or the
// server made it from the headers the sender wrote (an outer From: Alice typed by Mallory
// must not pass as the server's); a copy to oneself is the owner's.
func TestSendLocalSummaryOrigin(t *testing.T) {
	e := newEnv(t)
	s := e.sender(e.config(""))
	body := e.pgpMIME(alice, bob, "...", "no summary given", alice, bob)
	if _, err := s.Send(e.ctx, alice, &xmap.Send{
		Recipients: []xmap.Recipient{{Address: bob, Encrypted: true}, {Address: alice, Encrypted: true}},
		Body:       body,
	}); err != nil {
		t.Fatal(err)
	}
	for user, want := range map[string]string{bob: shard.SummaryBySender, alice: shard.SummaryByOwner} {
		in := e.messages(user, "INBOX")
		if len(in) != 1 {
			t.Fatalf("%s's INBOX has %d messages, want 1", user, len(in))
		}
		if in[0].SummaryBy != want {
			t.Errorf("%s's copy: summary origin %q, want %q", user, in[0].SummaryBy, want)
		}
	}
}

// TestSendSizeRule: send stores every copy re-encrypted with trace fields, so
// its body may be at most xmap.MaxDeliverySize (the size rule): at it, the
// local and Sent copies are stored within what a fetch returns; one byte
// over is too-large and nothing is stored or queued.
func TestSendSizeRule(t *testing.T) {
	if testing.Short() {
		t.Skip("20 MB messages")
	}
	e := newEnv(t)
	s := e.sender(e.config(""))
	body := e.pgpMIME(alice, bob, "...", "secret", alice, bob)
	// Padding in the epilogue, after the closing boundary, keeps it PGP/MIME.
	padded := func(n int) []byte {
		b := bytes.NewBuffer(slices.Clone(body))
		for line := bytes.Repeat([]byte{'p'}, 76); b.Len() < n; {
			b.Write(line[:min(len(line), n-b.Len())])
			if r := n - b.Len(); r > 0 {
				b.WriteString("\r\n"[:min(2, r)])
			}
		}
		return b.Bytes()
	}
	req := xmap.Send{Recipients: []xmap.Recipient{{Address: bob, Encrypted: true}}, Body: padded(xmap.MaxDeliverySize + 1)}
	if _, err := s.Send(e.ctx, alice, &req); xmapCode(err) != xmap.CodeTooLarge {
		t.Fatalf("a body one byte over the size rule: %v, want too-large", err)
	}
	if n := len(e.messages(bob, "INBOX")) + len(e.messages(alice, "Sent")); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
	req.Body = padded(xmap.MaxDeliverySize)
	if _, err := s.Send(e.ctx, alice, &req); err != nil {
		t.Fatalf("a body at the size rule: %v", err)
	}
	for _, c := range []struct{ user, folder string }{{bob, "INBOX"}, {alice, "Sent"}} {
		ms := e.messages(c.user, c.folder)
		if len(ms) != 1 || len(ms[0].Body) > xmap.MaxMessageSize {
			t.Fatalf("%s's %s: %d messages", c.user, c.folder, len(ms))
		}
		if got := e.decrypt(c.user, ms[0].Body); !bytes.HasSuffix(got, req.Body) {
			t.Errorf("%s's %s copy: %d bytes, not the body sent", c.user, c.folder, len(got))
		}
	}
}
