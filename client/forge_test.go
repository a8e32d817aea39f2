package client_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"cryptomail/client"
	cmcrypto "cryptomail/crypto"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// pgpMIMEFrom builds a PGP/MIME message by hand, as any sender's software can: outerFrom
// in the readable header, innerFrom in the protected one, signed by signer and encrypted
// to to.
func pgpMIMEFrom(t *testing.T, outerFrom, innerFrom string, signer *openpgp.Entity, to ...*openpgp.Entity) []byte {
	t.Helper()
	inner := "From: " + innerFrom + "\r\nTo: bob@example.org\r\nSubject: Wire the money\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\nPlease pay the invoice today.\r\n"
	var armored bytes.Buffer
	aw, err := armor.Encode(&armored, "PGP MESSAGE", nil)
	if err != nil {
		t.Fatal(err)
	}
	pw, err := openpgp.Encrypt(aw, to, signer, &openpgp.FileHints{IsBinary: true}, &packet.Config{DefaultCipher: packet.CipherAES256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Write([]byte(inner)); err != nil {
		t.Fatal(err)
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	return []byte("From: " + outerFrom + "\r\nTo: bob@example.org\r\nSubject: ...\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n" +
		"--b1\r\nContent-Type: application/octet-stream\r\n\r\n" +
		strings.ReplaceAll(armored.String(), "\n", "\r\n") + "\r\n--b1--\r\n")
}

// TestForgedSender is the attack of issue 9, item 1: Mallory signs with her own key and
// writes From: Alice inside the encryption. The reader must not be told the message is
// verified, and must be told that Mallory signed it.
// forgeWorld is the forgery tests' server: users with keys made here (as any sender's
// software can), and Bob, signed up through the client.
func forgeWorld(t *testing.T, keyUsers ...string) (e *env, keys map[string]*openpgp.Entity, bob *client.Session, bobPub *cmcrypto.PublicKey) {
	t.Helper()
	e = newEnv(t)
	now := time.Now()
	keys = map[string]*openpgp.Entity{}
	for _, address := range keyUsers {
		k, err := cmcrypto.GenerateKey("", address, nil, now.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		pub, err := cmcrypto.NewPublicKey(k, now)
		if err != nil {
			t.Fatal(err)
		}
		armored, err := pub.Armored()
		if err != nil {
			t.Fatal(err)
		}
		if err := e.srv.AddUser(address, armored); err != nil {
			t.Fatal(err)
		}
		keys[address] = k
	}
	bob = e.signup(e.client(""), "bob@example.org", "bob pass")
	bobKey, err := bob.PublicKeys(e.ctx, "bob@example.org")
	if err != nil || len(bobKey.Keys) != 1 {
		t.Fatal(bobKey, err)
	}
	if bobPub, err = cmcrypto.ParsePublicKey(bobKey.Keys[0].Key, now); err != nil {
		t.Fatal(err)
	}
	return e, keys, bob, bobPub
}

func TestForgedSender(t *testing.T) {
	e, keys, bob, bobPub := forgeWorld(t, "alice@example.org", "mallory@example.org")
	alice, mallory := keys["alice@example.org"], keys["mallory@example.org"]
	fp := func(k *openpgp.Entity) string { return strings.ToUpper(k.PrimaryKey.KeyIdString()) }

	for _, c := range []struct {
		name             string
		outer, inner     string
		signer           *openpgp.Entity
		status           client.SignatureStatus
		signerAddress    string
		reasonHas        string
		shownFromHasText string
	}{
		{"forged inner From", "mallory@example.org", `"Alice" <alice@example.org>`, mallory,
			client.SignatureOtherSigner, "mallory@example.org", "signed by mallory@example.org, not by the sender shown", "alice@example.org"},
		// Bob's session looked Mallory's key up for the case above, so it names her here
		// too (a session that never met her key says unknown-key: still not verified).
		{"forged both Froms", "alice@example.org", `"Alice" <alice@example.org>`, mallory,
			client.SignatureOtherSigner, "mallory@example.org", "not by the sender shown", "alice@example.org"},
		{"genuine", "alice@example.org", `"Alice" <alice@example.org>`, alice,
			client.SignatureVerified, "alice@example.org", "", "alice@example.org"},
		{"genuine inside, other outer From", "mallory@example.org", "alice@example.org", alice,
			client.SignatureVerified, "alice@example.org", "outer From: is mallory@example.org", "alice@example.org"},
		// A From: with two senders shows none that a signature could vouch for.
		{"two senders shown", "alice@example.org", "alice@example.org, mallory@example.org", alice,
			client.SignatureOtherSigner, "alice@example.org", "no single sender", "mallory@example.org"},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw := pgpMIMEFrom(t, c.outer, c.inner, c.signer, bobPub.Entity())
			id, err := e.srv.Deliver(e.ctx, "bob@example.org", raw)
			if err != nil {
				t.Fatal(err)
			}
			m, err := bob.Read(e.ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			sig := m.Signature
			if !strings.Contains(m.From, c.shownFromHasText) || sig.Status != c.status || sig.SignerAddress != c.signerAddress ||
				!strings.Contains(sig.Reason, c.reasonHas) || !strings.HasSuffix(sig.Signer, fp(c.signer)) || len(sig.Signer) != 40 {
				t.Errorf("From %q, signature %+v; want status %s by %s (%s), reason with %q",
					m.From, sig, c.status, c.signerAddress, fp(c.signer), c.reasonHas)
			}
		})
	}
}

// TestInlinePGPBesideUnsignedParts: Alice's signed inline-PGP text, re-wrapped by someone
// else with an HTML part and an attachment beside it. The HTML would be shown instead of
// the signed text, and the badge must not seem to cover the attachment.
func TestInlinePGPBesideUnsignedParts(t *testing.T) {
	e, keys, bob, bobPub := forgeWorld(t, "alice@example.org")
	alice := keys["alice@example.org"]
	var armored bytes.Buffer
	aw, err := armor.Encode(&armored, "PGP MESSAGE", nil)
	if err != nil {
		t.Fatal(err)
	}
	pw, err := openpgp.Encrypt(aw, []*openpgp.Entity{bobPub.Entity()}, alice, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	pw.Write([]byte("Hi Bob, lunch?"))
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	raw := "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: lunch\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain\r\n\r\n" + strings.ReplaceAll(armored.String(), "\n", "\r\n") + "\r\n" +
		"--b1\r\nContent-Type: text/html\r\n\r\n<p>Pay IBAN XX00 MALLORY today</p>\r\n" +
		"--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=invoice.pdf\r\n\r\n%PDF-1.4\r\n" +
		"--b1--\r\n"
	id, err := e.srv.Deliver(e.ctx, "bob@example.org", []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	m, err := bob.Read(e.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if m.Text != "Hi Bob, lunch?" || m.HTML != "" || m.Signature.Status != client.SignatureVerified ||
		!strings.Contains(m.Signature.Reason, "attachment(s) beside it are not") {
		t.Errorf("text %q, html %q, signature %+v: want the signed text alone shown, verified, with a note on the attachment",
			m.Text, m.HTML, m.Signature)
	}
}
