package xmaptest

import (
	"bytes"
	"crypto/rand"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	cmcrypto "cryptomail/crypto"
)

// testKey is the key Sealed encrypts to, made once per process.
var testKey = sync.OnceValues(func() (openpgp.EntityList, *cmcrypto.PublicKey) {
	now := time.Now()
	e, err := cmcrypto.GenerateKey("xmaptest", "xmaptest@example.org", rand.Reader, now)
	if err != nil {
		panic("xmaptest: generate key: " + err.Error())
	}
	pk, err := cmcrypto.NewPublicKey(e, now)
	if err != nil {
		panic("xmaptest: public key: " + err.Error())
	}
	return openpgp.EntityList{e}, pk
})

// Sealed returns a real encrypted OpenPGP message (PKESK and SEIPD, the form
// the server stores) whose plaintext is text: what append requires of a body
// and a summary.
func Sealed(text string) []byte {
	_, pk := testKey()
	msg, err := (&cmcrypto.Sealer{}).Encrypt(pk, []byte(text))
	if err != nil {
		panic("xmaptest: encrypt: " + err.Error())
	}
	return msg
}

// Opened returns the plaintext of a message Sealed made, or "" for anything
// else.
func Opened(msg []byte) string {
	keys, _ := testKey()
	b, err := cmcrypto.Decrypt(keys, msg)
	if err != nil {
		return ""
	}
	return string(b)
}

// PGPMIME returns a PGP/MIME message (RFC 3156) from from, whose encrypted
// part is Sealed(text), armored: what send requires of a body.
func PGPMIME(from, text string) []byte {
	var armored bytes.Buffer
	w, err := armor.Encode(&armored, cmcrypto.MessageType, nil)
	if err != nil {
		panic("xmaptest: armor: " + err.Error())
	}
	w.Write(Sealed(text))
	if err := w.Close(); err != nil {
		panic("xmaptest: armor: " + err.Error())
	}
	return []byte("From: " + from + "\r\nSubject: ...\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n" +
		"--b1\r\nContent-Type: application/octet-stream\r\n\r\n" +
		strings.ReplaceAll(armored.String(), "\n", "\r\n") + "\r\n--b1--\r\n")
}
