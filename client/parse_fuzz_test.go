package client

import (
	"testing"

	"github.com/emersion/go-message/mail"
)

// FuzzParseMessage feeds arbitrary decrypted messages (a sender controls every byte of
// them) through the MIME parsing Read does after decryption: it must never panic.
func FuzzParseMessage(f *testing.F) {
	f.Add([]byte("From: a@b.c\r\nSubject: =?utf-8?q?x?=\r\n\r\nbody\r\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=latin1\r\n\r\n\xe9\r\n--b\r\n" +
		"Content-Disposition: attachment; filename*=utf-8''%E2%82%AC.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!\r\n--b--\r\n"))
	f.Add([]byte("Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=x\r\n\r\n--x\r\n\r\nVersion: 1\r\n--x\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n--x--\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ent, err := readEntity(raw)
		if err != nil {
			return
		}
		h := mail.Header{Header: ent.Header}
		var m Message
		m.From = headerList(h, "From")
		m.To = headerAddresses(h, "To")
		_ = headerAddress(h, "From")
		_ = mergeHeaders(h, h)
		_ = joinRaw(h, ent.Header, raw)
		if mt, _, _ := h.ContentType(); mt == "multipart/encrypted" {
			_, _ = encryptedPart(ent)
			return
		}
		_ = walkParts(ent, &m)
	})
}
