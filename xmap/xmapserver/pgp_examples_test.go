package xmapserver_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ProtonMail/go-crypto/openpgp/s2k"

	cmcrypto "cryptomail/crypto"
	"cryptomail/xmap"
)

// The bodies and summaries of the examples in docs/XMAP.md are real OpenPGP messages, as a
// server stores and append and send require (issue 9, item 10): small messages encrypted
// with the passphrase examplePassphrase (so `gpg --decrypt` opens them), made once,
// deterministically, by go test -run TestExampleMessages -update, and kept in
// ../testdata/examples/pgp. The example documents carry them base64 encoded.
const (
	examplePGPDir     = "../testdata/examples/pgp"
	examplePassphrase = "example"
)

// exampleMessages are the plaintexts of the example messages, by file name (.pgp, binary;
// .asc, armored as PGP/MIME carries it).
var exampleMessages = map[string]string{
	"inbox1-body.pgp":       "From: bob@example.org\r\nTo: alice@example.org\r\nSubject: Lunch?\r\n\r\nNoon?\r\n",
	"inbox1-summary.pgp":    `{"from":"bob@example.org","subject":"Lunch?","snippet":"Noon?"}`,
	"inbox2-body.pgp":       "From: carol@remote.example\r\nTo: alice@example.org\r\nSubject: Slides\r\n\r\nAttached.\r\n",
	"inbox2-summary.pgp":    `{"from":"carol@remote.example","subject":"Slides","snippet":"Attached."}`,
	"inbox3-body.pgp":       "From: bob@example.org\r\nTo: alice@example.org\r\nSubject: Re: Lunch?\r\n\r\nSee you.\r\n",
	"inbox3-summary.pgp":    `{"from":"bob@example.org","subject":"Re: Lunch?","snippet":"See you."}`,
	"draft-body.pgp":        "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: Draft\r\n\r\nTo finish.\r\n",
	"draft-summary.pgp":     `{"from":"alice@example.org","to":["bob@example.org"],"subject":"Draft","snippet":"To finish."}`,
	"send-bob-summary.pgp":  `{"from":"alice@example.org","subject":"Lunch","snippet":"Noon it is."}`,
	"send-sent-summary.pgp": `{"from":"alice@example.org","subject":"Lunch","snippet":"Noon it is."}`,
	"send-body.asc":         "Content-Type: text/plain; charset=utf-8\r\nSubject: Lunch\r\n\r\nNoon it is.\r\n",
}

func exampleMessage(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(examplePGPDir, name))
	if err != nil {
		t.Fatalf("read example message (go test -run TestExampleMessages -update makes it): %v", err)
	}
	return b
}

// TestExampleMessages makes the example messages with -update; otherwise it checks that
// each is an encrypted OpenPGP message that opens to its plaintext.
func TestExampleMessages(t *testing.T) {
	for name, text := range exampleMessages {
		path := filepath.Join(examplePGPDir, name)
		if *update {
			var seed [32]byte
			copy(seed[:], "cryptomail example "+name)
			cfg := &packet.Config{
				Rand:      rand.NewChaCha8(seed), // not a secret: the passphrase is public
				Time:      func() time.Time { return exampleNow },
				S2KConfig: &s2k.Config{S2KMode: s2k.IteratedSaltedS2K, S2KCount: 65536},
			}
			var out bytes.Buffer
			var w = &out
			var aw interface{ Close() error }
			if strings.HasSuffix(name, ".asc") {
				a, err := armor.Encode(&out, cmcrypto.MessageType, nil)
				if err != nil {
					t.Fatal(err)
				}
				aw = a
				pt, err := openpgp.SymmetricallyEncrypt(a, []byte(examplePassphrase), &openpgp.FileHints{IsBinary: true}, cfg)
				if err != nil {
					t.Fatal(err)
				}
				pt.Write([]byte(text))
				if err := pt.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				pt, err := openpgp.SymmetricallyEncrypt(w, []byte(examplePassphrase), &openpgp.FileHints{IsBinary: true}, cfg)
				if err != nil {
					t.Fatal(err)
				}
				pt.Write([]byte(text))
				if err := pt.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if aw != nil {
				if err := aw.Close(); err != nil {
					t.Fatal(err)
				}
				out.WriteString("\r\n")
			}
			if err := os.MkdirAll(examplePGPDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		msg := exampleMessage(t, name)
		check := cmcrypto.CheckEncrypted
		if strings.HasSuffix(name, ".asc") {
			check = cmcrypto.CheckArmoredEncrypted
			block, err := armor.Decode(bytes.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			msg2, err := readAll(block.Body)
			if err != nil {
				t.Fatal(err)
			}
			if got := openWithPassphrase(t, msg2); got != text {
				t.Errorf("%s opens to %q, want %q", name, got, text)
			}
		} else if got := openWithPassphrase(t, msg); got != text {
			t.Errorf("%s opens to %q, want %q", name, got, text)
		}
		if err := check(msg); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func readAll(r interface{ Read([]byte) (int, error) }) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(r)
	return b.Bytes(), err
}

func openWithPassphrase(t *testing.T, msg []byte) string {
	t.Helper()
	md, err := openpgp.ReadMessage(bytes.NewReader(msg), nil, func(_ []openpgp.Key, symmetric bool) ([]byte, error) {
		if !symmetric {
			return nil, errors.New("not symmetric")
		}
		return []byte(examplePassphrase), nil
	}, nil)
	if err != nil {
		t.Fatalf("open example message: %v", err)
	}
	b, err := readAll(md.UnverifiedBody)
	if err != nil {
		t.Fatalf("open example message: %v", err)
	}
	return string(b)
}

// TestExamplesStoreNoPlaintext: every body and summary the example requests would store is
// an encrypted OpenPGP message, and every send body is PGP/MIME around one, as the server
// requires (issue 9, items 6 and 10), so the examples show what really works.
func TestExamplesStoreNoPlaintext(t *testing.T) {
	files, err := filepath.Glob("../testdata/examples/*.request.xml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	n := 0
	for _, f := range files {
		doc, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := xmap.DecodeRequest(bytes.NewReader(doc))
		if err != nil {
			continue // the document-level error examples
		}
		for _, c := range b.Requests {
			switch c := c.Command.(type) {
			case *xmap.Append:
				n++
				if err := cmcrypto.CheckEncrypted(c.Body); err != nil {
					t.Errorf("%s: append body: %v", f, err)
				}
				if err := cmcrypto.CheckEncrypted(c.Summary); len(c.Summary) > 0 && err != nil {
					t.Errorf("%s: append summary: %v", f, err)
				}
			case *xmap.Send:
				n++
				if err := cmcrypto.CheckPGPMIME(c.Body); err != nil {
					t.Errorf("%s: send body: %v", f, err)
				}
				for _, r := range c.Recipients {
					if err := cmcrypto.CheckEncrypted(r.Summary); len(r.Summary) > 0 && err != nil {
						t.Errorf("%s: summary for %s: %v", f, r.Address, err)
					}
				}
				if err := cmcrypto.CheckEncrypted(c.SentSummary); len(c.SentSummary) > 0 && err != nil {
					t.Errorf("%s: sent-summary: %v", f, err)
				}
			}
		}
	}
	if n == 0 {
		t.Error("no append or send example")
	}
}
