package crypto_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	cmcrypto "cryptomail/crypto"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func armorMessage(t *testing.T, bin []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, cmcrypto.MessageType, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(bin)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}

// firstPacketLen is the length of msg's first packet, header included (new
// format, as go-crypto writes).
func firstPacketLen(t *testing.T, msg []byte) int {
	t.Helper()
	if msg[0]&0xc0 != 0xc0 {
		t.Fatal("not a new-format packet")
	}
	switch l := int(msg[1]); {
	case l < 192:
		return 2 + l
	case l < 224:
		return 3 + (l-192)<<8 + int(msg[2]) + 192
	}
	t.Fatal("unexpected packet length")
	return 0
}

func pgpMIME(header, control, payload string) []byte {
	return []byte(header +
		"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b1\"\r\n\r\n" +
		"This is an OpenPGP/MIME encrypted message.\r\n--b1\r\nContent-Type: application/pgp-encrypted\r\n\r\n" + control + "\r\n" +
		"--b1\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n" + payload + "\r\n--b1--\r\n")
}

// TestCheckEncrypted: what the server and the clients encrypt passes; data
// that is not an encrypted OpenPGP message, or carries readable bytes
// beside one, is refused (issue 9, items 6 and 10).
func TestCheckEncrypted(t *testing.T) {
	_, key := testKey(t)
	body := readTestdata(t, "seal/body.pgp")
	summary := readTestdata(t, "seal/summary.pgp")

	var skesk bytes.Buffer
	w, err := openpgp.SymmetricallyEncrypt(&skesk, []byte("passphrase"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("secret"))
	w.Close()

	var aead bytes.Buffer
	w, err = openpgp.Encrypt(&aead, []*openpgp.Entity{key.Entity()}, nil, nil, &packet.Config{AEADConfig: &packet.AEADConfig{}})
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("secret"))
	w.Close()

	var literal bytes.Buffer
	lw, err := packet.SerializeLiteral(nopCloser{&literal}, true, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	lw.Write([]byte("Subject: PAYNOW\r\n\r\nhello"))
	lw.Close()

	var signed bytes.Buffer
	signer, _ := testKey(t)
	sw, err := openpgp.Sign(&signed, signer[0], nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sw.Write([]byte("PAYNOW"))
	sw.Close()

	marker := []byte{0xca, 0x03, 'P', 'G', 'P'} // tag 10, new format
	padding := []byte{0xd5, 0x04, 'r', 'e', 'a', 'd'}
	pkesk := body[:firstPacketLen(t, body)]

	for _, tc := range []struct {
		name string
		msg  []byte
		ok   bool
	}{
		{"sealed body", body, true},
		{"sealed summary", summary, true},
		{"SKESK and SEIPD", skesk.Bytes(), true},
		{"PKESK and AEAD (SEIPDv2)", aead.Bytes(), true},
		{"empty", nil, false},
		{"readable text", []byte("From: ceo@bank.example\r\n\r\nPAYNOW"), false},
		{"literal data", literal.Bytes(), false},
		{"signed, not encrypted", signed.Bytes(), false},
		{"trailing bytes", append(bytes.Clone(body), "PAYNOW"...), false},
		{"trailing literal", append(bytes.Clone(body), literal.Bytes()...), false},
		{"marker first", append(bytes.Clone(marker), body...), false},
		{"padding after", append(bytes.Clone(body), padding...), false},
		{"truncated", body[:len(body)-10], false},
		{"armored", armorMessage(t, body), false},
		{"session key only", bytes.Clone(pkesk), false},
		{"encrypted data without session key", bytes.Clone(body[len(pkesk):]), false},
	} {
		err := cmcrypto.CheckEncrypted(tc.msg)
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, cmcrypto.ErrNotEncrypted) {
			t.Errorf("%s: %v, want ErrNotEncrypted", tc.name, err)
		}
		if err != nil && strings.Contains(err.Error(), "PAYNOW") {
			t.Errorf("%s: the error quotes the data: %v", tc.name, err)
		}
	}
}

// TestCheckPGPMIME reproduces issue 9, item 6: a body labelled
// multipart/encrypted whose "encrypted" part was readable text was relayed
// as encrypted.
func TestCheckPGPMIME(t *testing.T) {
	body := readTestdata(t, "seal/body.pgp")
	armored := string(armorMessage(t, body))
	hdr := "From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: ...\r\nMIME-Version: 1.0\r\n"
	if err := cmcrypto.CheckPGPMIME(pgpMIME(hdr, "Version: 1", armored)); err != nil {
		t.Fatalf("a real PGP/MIME message: %v", err)
	}
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"readable payload", pgpMIME(hdr, "Version: 1", "Dear customer, pay now.")},
		{"armored literal", pgpMIME(hdr, "Version: 1", strings.Replace(armored, "BEGIN PGP MESSAGE", "BEGIN PGP SIGNATURE", 1))},
		{"text before the armor", pgpMIME(hdr, "Version: 1", "Pay now.\r\n"+armored)},
		{"text after the armor", pgpMIME(hdr, "Version: 1", armored+"Pay now.\r\n")},
		{"bad control part", pgpMIME(hdr, "Version: 2", armored)},
		{"not multipart/encrypted", []byte(hdr + "Content-Type: text/plain\r\n\r\n" + armored)},
		{"third part", bytes.Replace(pgpMIME(hdr, "Version: 1", armored), []byte("--b1--"), []byte("--b1\r\nContent-Type: text/plain\r\n\r\nPay now.\r\n--b1--"), 1)},
		{"no header end", []byte(hdr)},
	} {
		if err := cmcrypto.CheckPGPMIME(tc.msg); !errors.Is(err, cmcrypto.ErrNotEncrypted) {
			t.Errorf("%s: %v, want ErrNotEncrypted", tc.name, err)
		}
	}
}

// FuzzCheckEncrypted: the checks never panic, and anything CheckEncrypted
// passes starts with a session-key packet (PKESK, tag 1, or SKESK, tag 3).
func FuzzCheckEncrypted(f *testing.F) {
	body, err := os.ReadFile(filepath.Join("testdata", "seal", "body.pgp"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(body)
	f.Add(body[:len(body)/2])
	f.Add([]byte("-----BEGIN PGP MESSAGE-----\n\n-----END PGP MESSAGE-----\n"))
	f.Add(pgpMIME("From: a@b\r\n", "Version: 1", "x"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		if cmcrypto.CheckEncrypted(msg) == nil {
			tag := msg[0] & 0x3f
			if msg[0]&0x40 == 0 {
				tag = (msg[0] >> 2) & 0x0f
			}
			if tag != 1 && tag != 3 {
				t.Errorf("passed a message starting with packet tag %d", tag)
			}
		}
		_ = cmcrypto.CheckArmoredEncrypted(msg)
		_ = cmcrypto.CheckPGPMIME(msg)
		_ = cmcrypto.CheckLabelledParts(msg)
	})
}

// TestCheckLabelledParts: a readable message passes, but no part of it may
// be labelled encrypted without being an OpenPGP message, however deep
// (issue 9, item 6).
func TestCheckLabelledParts(t *testing.T) {
	body := readTestdata(t, "seal/body.pgp")
	armored := string(armorMessage(t, body))
	hdr := "From: alice@example.test\r\nMIME-Version: 1.0\r\n"
	mixed := func(part string) []byte {
		return []byte(hdr + "Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n" +
			"--m\r\nContent-Type: text/plain\r\n\r\nHello.\r\n" +
			"--m\r\n" + part + "\r\n--m--\r\n")
	}
	pgpMIMEPart := func(payload string) string {
		return "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b1\"\r\n\r\n" +
			"--b1\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n" +
			"--b1\r\nContent-Type: application/octet-stream\r\n\r\n" + payload + "\r\n--b1--"
	}
	b64 := base64.StdEncoding.EncodeToString(body)
	for _, tc := range []struct {
		name string
		msg  []byte
		ok   bool
	}{
		{"plain text", []byte(hdr + "Content-Type: text/plain\r\n\r\nHello.\r\n"), true},
		{"no content type", []byte(hdr + "\r\nHello.\r\n"), true},
		{"real PGP/MIME", pgpMIME(hdr, "Version: 1", armored), true},
		{"readable PGP/MIME", pgpMIME(hdr, "Version: 1", "PAYNOW"), false},
		{"nested real PGP/MIME", mixed(pgpMIMEPart(armored)), true},
		{"nested readable PGP/MIME", mixed(pgpMIMEPart("PAYNOW")), false},
		{"attached real message", mixed("Content-Type: application/pgp-encrypted\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64), true},
		{"attached armored message", mixed("Content-Type: application/pgp-encrypted\r\n\r\n" + armored), true},
		{"attached readable", mixed("Content-Type: application/pgp-encrypted\r\n\r\nPAYNOW"), false},
		{"forwarded readable PGP/MIME", mixed("Content-Type: message/rfc822\r\n\r\n" + string(pgpMIME(hdr, "Version: 1", "PAYNOW"))), false},
	} {
		err := cmcrypto.CheckLabelledParts(tc.msg)
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, cmcrypto.ErrNotEncrypted) {
			t.Errorf("%s: %v, want ErrNotEncrypted", tc.name, err)
		}
	}
}
