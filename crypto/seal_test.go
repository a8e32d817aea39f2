package crypto_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	cmcrypto "cryptomail/crypto"
)

// awkwardMessage holds everything a careless pipeline would mangle: CRLF and
// bare LF, dot-stuffing candidates, an mbox "From " line, 8-bit bytes, NUL,
// trailing white space and no final newline.
var awkwardMessage = []byte("From: A <a@example.org>\r\nSubject: awkward\r\n\r\n" +
	".\r\n..two dots\r\nFrom the start of a line\r\n>From quoted\n" +
	"bare LF\nCR only\rtab\tand trailing space   \r\n" +
	"8-bit: \xe9\xff\xfe\x80 NUL: \x00\x00 end\r\n.\r\nno final newline")

func TestSealRoundTrip(t *testing.T) {
	keys, pub := testKey(t)
	s := &cmcrypto.Sealer{Now: func() time.Time { return fixedNow }}

	big := make([]byte, 1<<20)
	seededRand("big body").Read(big)

	tests := []struct {
		name string
		raw  []byte
	}{
		{"awkward bytes", awkwardMessage},
		{"empty", []byte{}},
		{"one dot", []byte(".\r\n")},
		{"random 1 MiB", big},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, summary, err := s.Seal(pub, tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			if len(tt.raw) > 16 && bytes.Contains(body, tt.raw[:16]) {
				t.Error("ciphertext contains the plaintext")
			}
			got, err := cmcrypto.Decrypt(keys, body)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.raw) {
				t.Fatalf("body round trip differs: %d bytes in, %d out", len(tt.raw), len(got))
			}

			js, err := cmcrypto.Decrypt(keys, summary)
			if err != nil {
				t.Fatal(err)
			}
			want, err := cmcrypto.MarshalSummary(cmcrypto.ExtractSummary(tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(js, want) {
				t.Errorf("summary JSON %s, want %s", js, want)
			}
			var sm cmcrypto.Summary
			if err := json.Unmarshal(js, &sm); err != nil {
				t.Fatalf("summary is not JSON: %v", err)
			}

			// Armored form (mbox export) decrypts to the same bytes.
			arm, err := cmcrypto.Armor(body)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(arm, []byte("-----BEGIN PGP MESSAGE-----\n")) || !bytes.HasSuffix(arm, []byte("-----END PGP MESSAGE-----\n")) {
				t.Errorf("armor framing: %.40q ... %q", arm, arm[max(0, len(arm)-40):])
			}
			got, err = cmcrypto.Decrypt(keys, arm)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.raw) {
				t.Fatal("armored round trip differs")
			}
		})
	}
}

// TestSealPacketStructure checks what go-crypto actually wrote: a v3 PKESK
// for the ECDH subkey announcing AES-256, then a SEIPD version 1 packet (MDC,
// which GnuPG 2.2 reads), holding one binary literal packet: no compression,
// no signature, no file name, no date.
func TestSealPacketStructure(t *testing.T) {
	keys, pub := testKey(t)
	body, summary, err := (&cmcrypto.Sealer{Now: func() time.Time { return fixedNow }}).Seal(pub, awkwardMessage)
	if err != nil {
		t.Fatal(err)
	}
	for name, msg := range map[string][]byte{"body": body, "summary": summary} {
		t.Run(name, func(t *testing.T) {
			r := packet.NewReader(bytes.NewReader(msg))
			p, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			ek, ok := p.(*packet.EncryptedKey)
			if !ok {
				t.Fatalf("first packet is %T", p)
			}
			if ek.Version != 3 || ek.Algo != packet.PubKeyAlgoECDH || ek.KeyId != keys[0].Subkeys[0].PublicKey.KeyId {
				t.Errorf("PKESK v%d algo %d key %X", ek.Version, ek.Algo, ek.KeyId)
			}
			if err := ek.Decrypt(keys[0].Subkeys[0].PrivateKey, nil); err != nil {
				t.Fatal(err)
			}
			if ek.CipherFunc != packet.CipherAES256 {
				t.Errorf("cipher %d, want AES-256", ek.CipherFunc)
			}
			p, err = r.Next()
			if err != nil {
				t.Fatal(err)
			}
			se, ok := p.(*packet.SymmetricallyEncrypted)
			if !ok {
				t.Fatalf("second packet is %T", p)
			}
			if se.Version != 1 || !se.IntegrityProtected {
				t.Fatalf("SEIPD version %d, integrity protected %v; want version 1 with MDC", se.Version, se.IntegrityProtected)
			}
			dec, err := se.Decrypt(ek.CipherFunc, ek.Key)
			if err != nil {
				t.Fatal(err)
			}
			inner := packet.NewReader(dec)
			p, err = inner.Next()
			if err != nil {
				t.Fatal(err)
			}
			lit, ok := p.(*packet.LiteralData)
			if !ok {
				t.Fatalf("inner packet is %T, want literal data (no compression, no signature)", p)
			}
			if !lit.IsBinary || lit.FileName != "" || lit.Time != 0 {
				t.Errorf("literal binary=%v name=%q time=%d", lit.IsBinary, lit.FileName, lit.Time)
			}
			if _, err := io.Copy(io.Discard, lit.Body); err != nil {
				t.Fatal(err)
			}
			if p, err := inner.Next(); err != io.EOF {
				t.Errorf("packet after the literal data: %T, %v", p, err)
			}
			if err := dec.Close(); err != nil {
				t.Errorf("MDC: %v", err)
			}
			if p, err := r.Next(); err != io.EOF {
				t.Errorf("packet after SEIPD: %T, %v", p, err)
			}
		})
	}
}

// TestSealGolden proves that Rand and Now are the only sources of variation:
// with both fixed, the output is byte-for-byte stable.
func TestSealGolden(t *testing.T) {
	keys, pub := testKey(t)
	raw, err := os.ReadFile(filepath.Join("testdata", "summary", "multipart-mixed-attachment.eml"))
	if err != nil {
		t.Fatal(err)
	}
	seal := func() ([]byte, []byte) {
		s := &cmcrypto.Sealer{Rand: seededRand("seal golden"), Now: func() time.Time { return fixedNow }}
		body, summary, err := s.Seal(pub, raw)
		if err != nil {
			t.Fatal(err)
		}
		return body, summary
	}
	body, summary := seal()
	body2, summary2 := seal()
	if !bytes.Equal(body, body2) || !bytes.Equal(summary, summary2) {
		t.Fatal("Seal with the same Rand and Now gives different output")
	}
	golden(t, "seal/body.pgp", body)
	golden(t, "seal/summary.pgp", summary)

	// The golden ciphertexts decrypt to the input and its summary.
	for _, name := range []string{"body.pgp", "summary.pgp"} {
		ct, err := os.ReadFile(filepath.Join("testdata", "seal", name))
		if err != nil {
			t.Fatal(err)
		}
		pt, err := cmcrypto.Decrypt(keys, ct)
		if err != nil {
			t.Fatal(err)
		}
		want := raw
		if name == "summary.pgp" {
			if want, err = cmcrypto.MarshalSummary(cmcrypto.ExtractSummary(raw)); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(pt, want) {
			t.Errorf("%s decrypts to %q", name, clipped(pt))
		}
	}

	// A different random source changes the ciphertext.
	other, _, err := (&cmcrypto.Sealer{Rand: seededRand("other"), Now: func() time.Time { return fixedNow }}).Seal(pub, raw)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other, body) {
		t.Error("Rand is ignored")
	}
}

func TestDecryptRejects(t *testing.T) {
	keys, pub := testKey(t)
	body, err := (&cmcrypto.Sealer{}).Encrypt(pub, []byte("secret text of a message, long enough to span a block or two"))
	if err != nil {
		t.Fatal(err)
	}
	otherKey := newKey(t, "other@example.org")

	literal := func() []byte {
		var buf bytes.Buffer
		w, err := packet.SerializeLiteral(nopCloser{&buf}, true, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("plain"))
		w.Close()
		return buf.Bytes()
	}()

	tests := []struct {
		name string
		keys openpgp.EntityList
		msg  []byte
		is   error
	}{
		{"tampered last byte", keys, flip(body, len(body)-1), nil},
		{"tampered middle", keys, flip(body, len(body)-20), nil},
		{"truncated", keys, body[:len(body)-5], nil},
		{"wrong key", openpgp.EntityList{otherKey}, body, nil},
		{"no keys", nil, body, nil},
		{"not encrypted", keys, literal, cmcrypto.ErrNotEncrypted},
		{"public key block", keys, armorPublic(t, otherKey), cmcrypto.ErrNotEncrypted},
		{"garbage", keys, []byte("garbage"), nil},
		{"empty", keys, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := cmcrypto.Decrypt(tt.keys, tt.msg)
			if err == nil {
				t.Fatalf("Decrypt succeeded: %q", out)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v, want %v", err, tt.is)
			}
			if strings.Contains(err.Error(), "secret text") {
				t.Errorf("error %q leaks plaintext", err)
			}
		})
	}
}

func TestEncryptRefusesExpiredKey(t *testing.T) {
	_, pub := testKey(t)
	// Valid at fixedNow; an expired key must be refused at sealing time too.
	e, err := openpgp.NewEntity("Short", "", "short@example.org", &packet.Config{
		Time: func() time.Time { return fixedNow }, Algorithm: packet.PubKeyAlgoEdDSA, KeyLifetimeSecs: 60,
	})
	if err != nil {
		t.Fatal(err)
	}
	short, err := cmcrypto.NewPublicKey(e, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	late := &cmcrypto.Sealer{Now: func() time.Time { return fixedNow.Add(time.Hour) }}
	if _, _, err := late.Seal(short, []byte("x")); err == nil {
		t.Error("Seal to an expired key succeeded")
	}
	if _, err := late.Encrypt(pub, []byte("x")); err != nil {
		t.Errorf("Encrypt to a valid key: %v", err)
	}
	if _, err := late.Encrypt(nil, []byte("x")); err == nil {
		t.Error("Encrypt to nil key succeeded")
	}
	var zero *cmcrypto.Sealer // the nil Sealer uses defaults
	if _, _, err := zero.Seal(pub, []byte("x")); err != nil {
		t.Errorf("nil Sealer: %v", err)
	}
}

func TestArmorRejectsNonBinary(t *testing.T) {
	for _, in := range [][]byte{nil, []byte("-----BEGIN PGP MESSAGE-----")} {
		if _, err := cmcrypto.Armor(in); err == nil {
			t.Errorf("Armor(%q) succeeded", in)
		}
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func benchmarkSeal(b *testing.B, size int) {
	_, pub := testKey(b)
	raw := bytes.Repeat([]byte("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n"), size/58+1)[:size]
	copy(raw, "From: a@example.org\r\nTo: b@example.org\r\nSubject: bench\r\nContent-Type: text/plain\r\n\r\n")
	s := &cmcrypto.Sealer{}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Seal(pub, raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSeal4KB(b *testing.B) { benchmarkSeal(b, 4<<10) }
func BenchmarkSeal1MB(b *testing.B) { benchmarkSeal(b, 1<<20) }

// TestEncryptBuffer: with the same randomness, the buffer variant of parts
// writes the same ciphertext as Encrypt of the joined parts; it uses the
// buffer's memory when it has room (also after holding a longer body) and
// grows otherwise.
func TestEncryptBuffer(t *testing.T) {
	_, pub := testKey(t)
	trace := []byte("Delivered-To: b@example.org\r\n")
	msg := []byte("From: a@example.org\r\nSubject: buffer\r\n\r\n" + strings.Repeat("body line\r\n", 2000))
	sealer := func() *cmcrypto.Sealer {
		return &cmcrypto.Sealer{Rand: seededRand("buffer"), Now: func() time.Time { return fixedNow }}
	}
	wantBody, err := sealer().Encrypt(pub, append(bytes.Clone(trace), msg...))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		buf     []byte
		inPlace bool
	}{
		{"nil", nil, false},
		{"small", make([]byte, 10), false},
		{"large", make([]byte, 1<<20), true},
		{"stale", bytes.Repeat([]byte{0xAA}, 1<<20), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, err := sealer().EncryptBuffer(tc.buf, pub, trace, msg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, wantBody) {
				t.Error("ciphertext differs from Encrypt's")
			}
			if inPlace := len(body) > 0 && cap(tc.buf) > 0 && &body[0] == &tc.buf[:1][0]; inPlace != tc.inPlace {
				t.Errorf("body in buf's memory = %v, want %v", inPlace, tc.inPlace)
			}
		})
	}
}
