package main

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/emersion/go-smtp"

	"cryptomail/internal/testenv"
	"cryptomail/shard"
	"cryptomail/xmap"
)

// sizedMessage returns an RFC 5322 message of exactly n bytes: a few header
// fields, then lines of letters (none starts with a dot, so the size on the
// wire after dot-unstuffing is n).
func sizedMessage(n int, subject string) []byte {
	var b bytes.Buffer
	b.Grow(n)
	fmt.Fprintf(&b, "From: Carol <carol@remote.example>\r\nTo: alice@example.org\r\nSubject: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", subject)
	line := make([]byte, 78)
	for i := 0; b.Len() < n; i++ {
		for j := range line {
			line[j] = 'a' + byte((i*7+j*13)%26)
		}
		rest := n - b.Len()
		switch {
		case rest >= len(line)+2:
			b.Write(line)
			b.WriteString("\r\n")
		case rest > 2:
			b.Write(line[:rest-2])
			b.WriteString("\r\n")
		default:
			b.WriteString("\r\n"[:rest])
		}
	}
	return b.Bytes()
}

// The size rule (issue 10): a server configured at the largest allowed
// max_message_bytes (xmap.MaxDeliverySize) takes a message of exactly that
// size over LMTP and cmail reads it back byte for byte; one byte more is
// refused with 552 5.3.4 and nothing is stored.
func TestServerMessageSizeLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("two 20 MB messages")
	}
	h := newServerHarnessConf(t, testenv.FreePort(t), fmt.Sprintf("max_message_bytes = %d", xmap.MaxDeliverySize))
	home := t.TempDir()
	const pass = "alice pass"
	const alice = "alice@example.org"
	h.signup(home, alice, pass)
	inbox := func() int {
		t.Helper()
		n := 0
		if err := h.real.Store().Messages(t.Context(), alice, func(m shard.Message) error {
			n++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := inbox()

	over := sizedMessage(xmap.MaxDeliverySize+1, "over")
	res := testenv.LMTPSend(t, h.real.Addr("lmtp"), "sender@remote.example", []string{alice}, over, false)
	var se *smtp.SMTPError
	if err := res[alice]; !errors.As(err, &se) || se.Code != 552 || se.EnhancedCode != (smtp.EnhancedCode{5, 3, 4}) {
		t.Errorf("a message 1 byte over the limit: %v, want 552 5.3.4", err)
	}
	if n := inbox(); n != before {
		t.Errorf("the refused message was stored: %d messages, had %d", n, before)
	}
	over = nil

	under := sizedMessage(xmap.MaxDeliverySize, "just under")
	id, err := h.deliver(t.Context(), alice, under)
	if err != nil {
		t.Fatalf("a message at the limit: %v, want 250", err)
	}
	raw := []byte(h.ok(home, pass, "", "read", "--raw", id))
	// What cmail shows is the trace fields the server added, then the
	// message exactly as it arrived.
	if !bytes.HasSuffix(raw, under) || !bytes.HasPrefix(raw, []byte("Return-Path: <sender@remote.example>\r\n")) {
		t.Errorf("read --raw: %d bytes, want the %d delivered after the trace fields", len(raw), len(under))
	}
	if trace := raw[:max(0, len(raw)-len(under))]; bytes.Contains(trace, []byte("\r\n\r\n")) {
		t.Errorf("trace fields %q", trace)
	}
}

// The report: with the shipped defaults a 25.8 MB message was
// acknowledged and then every fetch of it failed. Now the defaults stay
// within the size rule and it is refused with 552 5.3.4, storing nothing.
func TestServerDefaultSizeRefusesUnservable(t *testing.T) {
	if testing.Short() {
		t.Skip("a 25.8 MB message")
	}
	h := newServerHarness(t)
	const alice = "alice@example.org"
	h.signup(t.TempDir(), alice, "alice pass")
	res := testenv.LMTPSend(t, h.real.Addr("lmtp"), "sender@remote.example", []string{alice}, sizedMessage(25_800_000, "too big"), false)
	var se *smtp.SMTPError
	if err := res[alice]; !errors.As(err, &se) || se.Code != 552 || se.EnhancedCode != (smtp.EnhancedCode{5, 3, 4}) {
		t.Errorf("a 25.8 MB message: %v, want 552 5.3.4", err)
	}
	if err := h.real.Store().Messages(t.Context(), alice, func(m shard.Message) error {
		t.Errorf("message %d stored", m.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
