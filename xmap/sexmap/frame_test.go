package sexmap

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzParseFrame(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 23))
	f.Add(make([]byte, 24))
	f.Add(append(bytes.Repeat([]byte{0xff}, 8), make([]byte, 16)...))
	f.Add(append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}, make([]byte, 40)...))
	f.Fuzz(func(t *testing.T, body []byte) {
		counter, sealed, err := parseFrame(body)
		if err != nil {
			if len(body) >= CounterSize+TagSize && binary.BigEndian.Uint64(body) <= MaxCounter {
				t.Fatalf("refused a well-shaped frame: %v", err)
			}
			return
		}
		if len(body) < CounterSize+TagSize || counter > MaxCounter ||
			counter != binary.BigEndian.Uint64(body) || !bytes.Equal(sealed, body[CounterSize:]) {
			t.Fatalf("parseFrame(%x) = %d, %x", body, counter, sealed)
		}
	})
}

func FuzzParseHandshake(f *testing.F) {
	for _, typ := range []byte{frameNKInit, frameNKResp, frameXKInit, frameXKResp, frameXKFinal, frameXKOK, 0x00, 0xff} {
		f.Add(append([]byte{typ}, make([]byte, 48)...))
		f.Add(append([]byte{typ}, make([]byte, 81)...))
		f.Add([]byte{typ})
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		typ, msg, err := parseHandshake(body)
		if err != nil {
			return
		}
		if len(body) == 0 || typ != body[0] || !bytes.Equal(msg, body[1:]) {
			t.Fatalf("parseHandshake(%x) = %x, %x", body, typ, msg)
		}
		var ok bool
		switch typ {
		case frameNKInit, frameNKResp, frameXKInit, frameXKResp:
			ok = len(msg) == 48
		case frameXKFinal:
			ok = len(msg) >= 48+16+1 && len(msg) <= 48+16+MaxAddressBytes+1+DeviceTokenSize
		case frameXKOK:
			ok = len(msg) == 0
		}
		if !ok || len(body) > maxHandshakeBody {
			t.Fatalf("accepted type %#x with %d bytes", typ, len(msg))
		}
	})
}

func TestDecodeID(t *testing.T) {
	for s, ok := range map[string]bool{
		"AAAAAAAAAAAAAAAAAAAAAA":  true,
		"_-_-_-_-_-_-_-_-_-_-_w":  true,
		"AAAAAAAAAAAAAAAAAAAAAB":  false, // non-canonical trailing bits
		"AAAAAAAAAAAAAAAAAAAAA":   false,
		"AAAAAAAAAAAAAAAAAAAAAAA": false,
		"AAAAAAAAAAAAAAAAAAAAA=":  false,
		"AAAAAAAAAAAAAAAAAAAA+/":  false,
		"":                        false,
	} {
		if _, got := decodeID(s); got != ok {
			t.Errorf("decodeID(%q) ok = %v, want %v", s, got, ok)
		}
	}
}

func FuzzParseLoginPayload(f *testing.F) {
	f.Add([]byte("alice@example.org"))
	f.Add(loginPayload("alice@example.org", make([]byte, DeviceTokenSize)))
	f.Add([]byte("a@b\x00short"))
	f.Add([]byte{0})
	f.Add([]byte{0xff, '@', 'b'})
	f.Fuzz(func(t *testing.T, p []byte) {
		address, token, err := parseLoginPayload(p)
		if err != nil {
			return
		}
		if address == "" || len(address) > MaxAddressBytes || strings.IndexByte(address, 0) >= 0 || !utf8.ValidString(address) {
			t.Fatalf("accepted address %q", address)
		}
		if token != nil && len(token) != DeviceTokenSize {
			t.Fatalf("accepted a token of %d bytes", len(token))
		}
		// What was accepted is exactly what the client side writes.
		if again := loginPayload(address, token); !bytes.Equal(again, p) {
			t.Fatalf("parse(%x) = %q, %x; written back %x", p, address, token, again)
		}
	})
}
