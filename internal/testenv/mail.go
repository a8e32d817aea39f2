package testenv

import (
	"bytes"
	"testing"
)

// SplitArmor returns each ASCII-armored OpenPGP message in an export, in order.
func SplitArmor(t testing.TB, mbox []byte) [][]byte {
	t.Helper()
	const begin, end = "-----BEGIN PGP MESSAGE-----", "-----END PGP MESSAGE-----"
	var out [][]byte
	for {
		i := bytes.Index(mbox, []byte(begin))
		if i < 0 {
			return out
		}
		j := bytes.Index(mbox[i:], []byte(end))
		if j < 0 {
			t.Fatal("unterminated armor in export")
		}
		out = append(out, mbox[i:i+j+len(end)])
		mbox = mbox[i+j+len(end):]
	}
}

// StripTrace removes the Return-Path, Delivered-To and Received header lines
// that CryptoMail adds on delivery, checking that they are there and that
// Delivered-To names mailbox.
func StripTrace(t testing.TB, msg []byte, mailbox string) []byte {
	t.Helper()
	for _, prefix := range []string{"Return-Path: ", "Delivered-To: " + mailbox, "Received: from "} {
		if !bytes.HasPrefix(msg, []byte(prefix)) {
			t.Fatalf("delivered message does not start with %q: %q", prefix, msg[:min(len(msg), 80)])
		}
		// Skip the header line and its folded continuation lines.
		for {
			nl := bytes.IndexByte(msg, '\n')
			msg = msg[nl+1:]
			if len(msg) == 0 || (msg[0] != ' ' && msg[0] != '\t') {
				break
			}
		}
	}
	return msg
}

// OddMessages are messages an MTA may hand over that must come back from
// storage byte for byte: 8-bit and UTF-8 headers, empty bodies, dot- and
// "From "-lines, malformed MIME, binary junk. UTF8 says the envelope needs
// SMTPUTF8.
var OddMessages = []struct {
	Name string
	Msg  string
	UTF8 bool
}{
	{"plain", "From: Bob <bob@elsewhere.test>\r\nTo: alice@example.test\r\nSubject: hi\r\nMessage-ID: <1@x>\r\n\r\nHello Alice.\r\n", false},
	{"8bit and utf8 headers", "From: Jürgen <jürgen@elsewhere.test>\r\nTo: alice@example.test\r\nSubject: Grüße aus Köln ✉\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nSchöne Grüße — 日本語\r\n", true},
	{"empty body", "From: bob@elsewhere.test\r\nSubject: empty\r\n\r\n", false},
	{"no body at all", "Subject: headers only\r\n", false},
	{"dot and From lines", "From: bob@elsewhere.test\r\nSubject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\nFrom the start\r\n>From quoted\r\n. \r\n", false},
	{"malformed MIME", "From: bob@elsewhere.test\r\nContent-Type: multipart/mixed; boundary=\"nope\r\nSubject: =?utf-8?B?broken\r\n\r\n--nope\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n", false},
	{"binary junk", "Subject: junk\r\n\r\n\x00\x01\x02\xff\xfe\r\n", false},
}
