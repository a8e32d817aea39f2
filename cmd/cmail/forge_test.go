package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cmcrypto "cryptomail/crypto"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// signupWithKey signs address up from a new home with a key made here, so the test can
// sign and encrypt as that user with any header it likes.
func signupWithKey(t *testing.T, h *harness, address string) (home string, key *openpgp.Entity) {
	t.Helper()
	key, err := cmcrypto.GenerateKey("", address, nil, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var armored bytes.Buffer
	w, _ := armor.Encode(&armored, openpgp.PrivateKeyType, nil)
	if err := key.SerializePrivateWithoutSigning(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	file := filepath.Join(t.TempDir(), "secret.asc")
	if err := os.WriteFile(file, armored.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	home = t.TempDir()
	code, err := h.invite(t.Context(), address)
	if err != nil {
		t.Fatal(err)
	}
	if r := h.cmail(t.Context(), home, []string{envPassphrase + "=pass"}, "", "signup", "--key", file, "--invite", code, address); r.code != 0 {
		t.Fatalf("signup --key %s: %d %s", address, r.code, r.stderr)
	}
	return home, key
}

// forgedMessage is Mallory's message of issue 9, item 1: her own address in the readable
// header, "Alice" in the protected one, signed with her own key, encrypted to Bob.
func forgedMessage(t *testing.T, signer, to *openpgp.Entity) []byte {
	t.Helper()
	inner := "From: \"Alice\" <alice@example.org>\r\nTo: bob@example.org\r\nSubject: Wire the money\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\nPlease pay the invoice today.\r\n"
	var armored bytes.Buffer
	aw, err := armor.Encode(&armored, "PGP MESSAGE", nil)
	if err != nil {
		t.Fatal(err)
	}
	pw, err := openpgp.Encrypt(aw, []*openpgp.Entity{to}, signer, &openpgp.FileHints{IsBinary: true}, &packet.Config{DefaultCipher: packet.CipherAES256})
	if err != nil {
		t.Fatal(err)
	}
	pw.Write([]byte(inner))
	pw.Close()
	aw.Close()
	return []byte("From: mallory@example.org\r\nTo: bob@example.org\r\nSubject: ...\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n" +
		"--b1\r\nContent-Type: application/octet-stream\r\n\r\n" +
		strings.ReplaceAll(armored.String(), "\n", "\r\n") + "\r\n--b1--\r\n")
}

func TestForgedSender(t *testing.T) { bothServers(t, testForgedSender) }

// cmail read must not say "good" for a message that shows Alice and was signed by Mallory,
// and must name Mallory, in text and in --json.
func testForgedSender(t *testing.T, h *harness) {
	h.signup(t.TempDir(), "alice@example.org", "alice pass")
	_, mallory := signupWithKey(t, h, "mallory@example.org")
	bobHome, bob := signupWithKey(t, h, "bob@example.org")
	id, err := h.deliver(t.Context(), "bob@example.org", forgedMessage(t, mallory, bob))
	if err != nil {
		t.Fatal(err)
	}
	out := h.ok(bobHome, "pass", "", "read", id)
	if strings.Contains(out, "Signature: good") || !strings.Contains(out, "NOT BY THE SENDER SHOWN: signed by mallory@example.org") ||
		!strings.Contains(out, "alice@example.org") {
		t.Errorf("read of the forged message:\n%s", out)
	}
	var rj map[string]any
	if err := json.Unmarshal([]byte(h.ok(bobHome, "pass", "", "read", "--json", id)), &rj); err != nil {
		t.Fatal(err)
	}
	sig := rj["signature"].(map[string]any)
	if sig["status"] != "other-signer" || sig["signer_address"] != "mallory@example.org" || len(sig["signer"].(string)) != 40 {
		t.Errorf("read --json signature: %v", sig)
	}
}

func TestSummaryOrigin(t *testing.T) { bothServers(t, testSummaryOrigin) }

// A list line another user wrote (a local send's summary) is marked unverified; one the
// server sealed on arrival, or the user's own, is not.
func testSummaryOrigin(t *testing.T, h *harness) {
	alice, bob := t.TempDir(), t.TempDir()
	h.signup(alice, "alice@example.org", "alice pass")
	h.signup(bob, "bob@example.org", "bob pass")
	h.ok(alice, "alice pass", "Hello Bob\n", "send", "--to", "bob@example.org", "--subject", "From a neighbour")
	if _, err := h.deliver(t.Context(), "bob@example.org", []byte("From: Carol <carol@remote.example>\r\nSubject: From outside\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	origin := map[string][2]any{}
	for _, r := range jsonArray(t, h.ok(bob, "bob pass", "", "list", "--json")) {
		origin[r["subject"].(string)] = [2]any{r["summary_by"], r["summary_unverified"]}
	}
	if origin["From a neighbour"] != [2]any{"sender", true} || origin["From outside"] != [2]any{"server", false} {
		t.Errorf("bob's INBOX origins: %v", origin)
	}
	if out := h.ok(bob, "bob pass", "", "list"); !strings.Contains(out, "(unverified) ") || strings.Count(out, "(unverified)") != 1 {
		t.Errorf("bob's list marks the wrong lines:\n%s", out)
	}
	sent := jsonArray(t, h.ok(alice, "alice pass", "", "list", "Sent", "--json"))
	if len(sent) != 1 || sent[0]["summary_by"] != "owner" || sent[0]["summary_unverified"] != false {
		t.Errorf("alice's Sent: %v", sent)
	}
}
