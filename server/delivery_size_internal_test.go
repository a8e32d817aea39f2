package server

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"cryptomail/lmtp"
	"cryptomail/shard"
	"cryptomail/xmap"
)

// The size rule's safety net: whatever the listener let through, Deliver
// stores nothing whose stored form a fetch could not return
// (xmap.MaxMessageSize), and refuses it with lmtp.ErrTooLarge (552 5.3.4).
// A message of xmap.MaxDeliverySize fits even with the longest trace fields
// the listener lets through.
func TestDeliverSizeRule(t *testing.T) {
	if testing.Short() {
		t.Skip("20 MB messages")
	}
	d, st, addrs := benchDelivery(t, 1)
	a := addrs[0]
	stored := func() (n int) {
		t.Helper()
		if err := st.Messages(context.Background(), a, func(shard.Message) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The longest envelope a 2000-byte command line allows.
	long := strings.Repeat("x", 1900)
	env := &lmtp.Envelope{From: long + "@elsewhere.test", Helo: long, RemoteAddr: "[2001:db8::1]:65535", Protocol: "UTF8SMTPS",
		Hostname: strings.Repeat("h", 253), Received: time.Now()}
	rcpt := lmtp.Recipient{Address: long + "@example.test", Mailbox: a}
	msg := func(n int) []byte {
		return append([]byte("Subject: size\r\n\r\n"), bytes.Repeat([]byte{'z'}, n-17)...)
	}
	for _, tt := range []struct {
		name string
		size int
	}{
		{"over what a fetch returns", xmap.MaxMessageSize + 1},
		{"sealed form over what a fetch returns", xmap.MaxMessageSize - 100},
	} {
		err := d.Deliver(context.Background(), env, rcpt, msg(tt.size))
		if !errors.Is(err, lmtp.ErrTooLarge) {
			t.Errorf("%s: %v, want lmtp.ErrTooLarge", tt.name, err)
		}
		if err != nil && strings.Contains(err.Error(), "zzz") {
			t.Errorf("%s: message content in the error", tt.name)
		}
		if n := stored(); n != 0 {
			t.Fatalf("%s: %d messages stored", tt.name, n)
		}
	}
	if err := d.Deliver(context.Background(), env, rcpt, msg(xmap.MaxDeliverySize)); err != nil {
		t.Fatalf("a message of xmap.MaxDeliverySize: %v", err)
	}
	if err := st.Messages(context.Background(), a, func(m shard.Message) error {
		if len(m.Body) > xmap.MaxMessageSize {
			t.Errorf("stored body of %d bytes", len(m.Body))
		}
		t.Logf("stored %d bytes for a message of %d: %d of margin left", len(m.Body), xmap.MaxDeliverySize, xmap.MaxMessageSize-len(m.Body))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
