package crypto_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	cmcrypto "cryptomail/crypto"
)

var allKeyErrors = []error{
	cmcrypto.ErrNoKey, cmcrypto.ErrMultipleKeys, cmcrypto.ErrPrivateKey, cmcrypto.ErrRevoked,
	cmcrypto.ErrExpired, cmcrypto.ErrNoEncryptionKey, cmcrypto.ErrUnsupportedKey,
}

// newKey makes a fresh key with GenerateKey at fixedNow.
func newKey(t *testing.T, email string) *openpgp.Entity {
	t.Helper()
	e, err := cmcrypto.GenerateKey("Someone", email, nil, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func cfgAt(now time.Time) *packet.Config {
	return &packet.Config{Time: func() time.Time { return now }, DefaultHash: 0}
}

func TestParsePublicKey(t *testing.T) {
	now := fixedNow.Add(time.Hour)

	good := newKey(t, "Alice@Example.org")
	goodArmored := armorPublic(t, good)
	goodBinary := binaryPublic(t, good)
	other := newKey(t, "bob@example.net")

	// Second user ID, so Emails has more than one entry.
	multiUID := newKey(t, "carol@example.org")
	if err := multiUID.AddUserId("Carol", "work", "Carol@Work.Example", cfgAt(fixedNow)); err != nil {
		t.Fatal(err)
	}

	expired, err := openpgp.NewEntity("Old", "", "old@example.org", &packet.Config{
		Time: func() time.Time { return fixedNow }, Algorithm: packet.PubKeyAlgoEdDSA, KeyLifetimeSecs: 60,
	})
	if err != nil {
		t.Fatal(err)
	}

	expiredSub := newKey(t, "sub@example.org")
	expiredSub.Subkeys = nil
	if err := expiredSub.AddEncryptionSubkey(&packet.Config{
		Time: func() time.Time { return fixedNow }, Algorithm: packet.PubKeyAlgoEdDSA, KeyLifetimeSecs: 60,
	}); err != nil {
		t.Fatal(err)
	}

	revoked := newKey(t, "revoked@example.org")
	if err := revoked.RevokeKey(packet.KeyRetired, "retired", cfgAt(fixedNow)); err != nil {
		t.Fatal(err)
	}

	revokedSub := newKey(t, "revokedsub@example.org")
	if err := revokedSub.RevokeSubkey(&revokedSub.Subkeys[0], packet.KeySuperseded, "", cfgAt(fixedNow)); err != nil {
		t.Fatal(err)
	}

	signOnly := newKey(t, "signonly@example.org")
	signOnly.Subkeys = nil

	future, err := cmcrypto.GenerateKey("Future", "future@example.org", nil, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	v6, err := openpgp.NewEntity("Six", "", "six@example.org", &packet.Config{
		Time: func() time.Time { return fixedNow }, Algorithm: packet.PubKeyAlgoEd25519, V6Keys: true,
	})
	if err != nil {
		t.Fatal(err)
	}

	weakRSA, err := openpgp.NewEntity("Weak", "", "weak@example.org", &packet.Config{
		Time: func() time.Time { return fixedNow }, Algorithm: packet.PubKeyAlgoRSA, RSABits: 1024,
	})
	if err != nil {
		t.Fatal(err)
	}

	var privBinary bytes.Buffer
	if err := good.SerializePrivateWithoutSigning(&privBinary, nil); err != nil {
		t.Fatal(err)
	}
	// Secret key packets dressed up as a public key block.
	var privAsPublic bytes.Buffer
	w, _ := armor.Encode(&privAsPublic, openpgp.PublicKeyType, nil)
	w.Write(privBinary.Bytes())
	w.Close()

	twoInOneBlock := func() []byte {
		var buf bytes.Buffer
		w, _ := armor.Encode(&buf, openpgp.PublicKeyType, nil)
		good.Serialize(w)
		other.Serialize(w)
		w.Close()
		return buf.Bytes()
	}()

	highBitGarbage := bytes.Repeat([]byte{0xff, 0x13, 0x37}, 50)

	tests := []struct {
		name   string
		data   []byte
		want   error   // nil: must parse
		alsoIs []error // further sentinels the error must match
	}{
		{"armored", goodArmored, nil, nil},
		{"binary", goodBinary, nil, nil},
		{"armored with text around", append(append([]byte("Here is my key:\r\n\r\n"), goodArmored...), "thanks\n"...), nil, nil},
		{"armored CRLF", bytes.ReplaceAll(goodArmored, []byte("\n"), []byte("\r\n")), nil, nil},
		{"private armored", armorPrivate(t, good), cmcrypto.ErrPrivateKey, nil},
		{"private binary", privBinary.Bytes(), cmcrypto.ErrPrivateKey, nil},
		{"private in a public block", privAsPublic.Bytes(), cmcrypto.ErrPrivateKey, nil},
		{"public then private block", append(slices.Clone(goodArmored), armorPrivate(t, other)...), cmcrypto.ErrPrivateKey, nil},
		{"expired", armorPublic(t, expired), cmcrypto.ErrExpired, nil},
		{"expired encryption subkey", armorPublic(t, expiredSub), cmcrypto.ErrNoEncryptionKey, []error{cmcrypto.ErrExpired}},
		{"created in the future", armorPublic(t, future), cmcrypto.ErrExpired, nil},
		{"revoked", armorPublic(t, revoked), cmcrypto.ErrRevoked, nil},
		{"revoked encryption subkey", armorPublic(t, revokedSub), cmcrypto.ErrNoEncryptionKey, []error{cmcrypto.ErrRevoked}},
		{"sign only", armorPublic(t, signOnly), cmcrypto.ErrNoEncryptionKey, nil},
		{"two armored blocks", append(slices.Clone(goodArmored), armorPublic(t, other)...), cmcrypto.ErrMultipleKeys, nil},
		{"two keys in one block", twoInOneBlock, cmcrypto.ErrMultipleKeys, nil},
		{"two binary keys", append(slices.Clone(goodBinary), binaryPublic(t, other)...), cmcrypto.ErrMultipleKeys, nil},
		{"v6 key", armorPublic(t, v6), cmcrypto.ErrUnsupportedKey, nil},
		{"RSA 1024", armorPublic(t, weakRSA), cmcrypto.ErrUnsupportedKey, nil},
		{"too large", append(slices.Clone(goodArmored), bytes.Repeat([]byte(" "), cmcrypto.MaxKeySize)...), cmcrypto.ErrUnsupportedKey, nil},
		{"garbage text", []byte("this is not a key at all\n"), cmcrypto.ErrNoKey, nil},
		{"garbage binary", highBitGarbage, cmcrypto.ErrNoKey, nil},
		{"empty", nil, cmcrypto.ErrNoKey, nil},
		{"white space", []byte(" \r\n\t\n"), cmcrypto.ErrNoKey, nil},
		{"message block", []byte("-----BEGIN PGP MESSAGE-----\n\nwcBMA0\n-----END PGP MESSAGE-----\n"), cmcrypto.ErrNoKey, nil},
		{"truncated armor", goodArmored[:len(goodArmored)/2], cmcrypto.ErrNoKey, nil},
		{"corrupted base64", bytes.Replace(goodArmored, []byte("\n\n"), []byte("\n\n!!!!"), 1), cmcrypto.ErrNoKey, nil},
		{"truncated binary", goodBinary[:len(goodBinary)-10], cmcrypto.ErrNoKey, nil},
		{"only a user ID packet", []byte{0xb4, 0x03, 'a', 'b', 'c'}, cmcrypto.ErrNoKey, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := cmcrypto.ParsePublicKey(tt.data, now)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("ParsePublicKey: %v", err)
				}
				if k.Fingerprint() != strings.ToUpper(hex.EncodeToString(good.PrimaryKey.Fingerprint)) {
					t.Errorf("fingerprint %s", k.Fingerprint())
				}
				if !slices.Equal(k.Emails(), []string{"alice@example.org"}) {
					t.Errorf("emails %q", k.Emails())
				}
				return
			}
			if err == nil {
				t.Fatalf("ParsePublicKey accepted it (fingerprint %s), want %v", k.Fingerprint(), tt.want)
			}
			if k != nil {
				t.Error("a key came back with the error")
			}
			t.Log(err)
			wantIs := append([]error{tt.want}, tt.alsoIs...)
			for _, sentinel := range allKeyErrors {
				if got, want := errors.Is(err, sentinel), slices.Contains(wantIs, sentinel); got != want {
					t.Errorf("errors.Is(%q, %q) = %v, want %v", err, sentinel, got, want)
				}
			}
			if !strings.HasPrefix(err.Error(), tt.want.Error()) || len(err.Error()) <= len(tt.want.Error())+3 {
				t.Errorf("error text %q does not start with %q and a reason", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "-----") {
				t.Errorf("error text %q quotes the input", err)
			}
		})
	}

	t.Run("emails", func(t *testing.T) {
		k, err := cmcrypto.ParsePublicKey(armorPublic(t, multiUID), now)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"carol@example.org", "carol@work.example"}; !slices.Equal(k.Emails(), want) {
			t.Errorf("emails %q, want %q", k.Emails(), want)
		}
	})
	t.Run("expired key is fine before expiry", func(t *testing.T) {
		if _, err := cmcrypto.ParsePublicKey(armorPublic(t, expired), fixedNow.Add(30*time.Second)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPublicKeyArmoredRoundTrip(t *testing.T) {
	e := newKey(t, "round@example.org")
	k, err := cmcrypto.NewPublicKey(e, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	if k.Entity().PrivateKey != nil || k.Entity().Subkeys[0].PrivateKey != nil {
		t.Fatal("NewPublicKey kept private key material")
	}
	arm, err := k.Armored()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(arm, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----")) {
		t.Fatalf("not armored: %.40q", arm)
	}
	k2, err := cmcrypto.ParsePublicKey(arm, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Fingerprint() != k.Fingerprint() || len(k.Fingerprint()) != 40 {
		t.Errorf("fingerprints %s / %s", k.Fingerprint(), k2.Fingerprint())
	}
	if bytes.Contains(arm, []byte("PRIVATE")) {
		t.Error("armored public key mentions a private key")
	}
}

// TestGenerateKeyGolden pins the form of generated keys and proves that the
// random source and clock are injectable. The committed key pair under
// testdata/key is the test key of the other tests.
func TestGenerateKeyGolden(t *testing.T) {
	e := generateTestKey(t)
	if again := generateTestKey(t); !bytes.Equal(armorPrivate(t, e), armorPrivate(t, again)) {
		t.Fatal("GenerateKey with the same Rand and time gives different keys")
	}
	golden(t, "key/private.asc", armorPrivate(t, e))
	golden(t, "key/public.asc", armorPublic(t, e))

	// The GnuPG 2.2 form: v4, EdDSA (legacy) Ed25519 primary that certifies
	// and signs; v4 ECDH Curve25519 subkey that encrypts; no AEAD advertised.
	pk := e.PrimaryKey
	if pk.Version != 4 || pk.PubKeyAlgo != packet.PubKeyAlgoEdDSA {
		t.Errorf("primary key v%d algo %d", pk.Version, pk.PubKeyAlgo)
	}
	if c, err := pk.Curve(); err != nil || c != packet.Curve25519 {
		t.Errorf("primary curve %v, %v", c, err)
	}
	sig, _ := e.PrimarySelfSignature()
	if !sig.FlagCertify || !sig.FlagSign || sig.FlagEncryptCommunications {
		t.Errorf("primary flags certify=%v sign=%v encrypt=%v", sig.FlagCertify, sig.FlagSign, sig.FlagEncryptCommunications)
	}
	if sig.SEIPDv2 || !sig.SEIPDv1 {
		t.Errorf("features SEIPDv1=%v SEIPDv2=%v", sig.SEIPDv1, sig.SEIPDv2)
	}
	if len(sig.PreferredSymmetric) == 0 || sig.PreferredSymmetric[0] != uint8(packet.CipherAES256) {
		t.Errorf("preferred ciphers %v", sig.PreferredSymmetric)
	}
	if !pk.CreationTime.Equal(fixedNow) || sig.KeyLifetimeSecs != nil && *sig.KeyLifetimeSecs != 0 {
		t.Errorf("created %v, lifetime %v", pk.CreationTime, sig.KeyLifetimeSecs)
	}
	if len(e.Subkeys) != 1 {
		t.Fatalf("%d subkeys", len(e.Subkeys))
	}
	sub := e.Subkeys[0]
	if sub.PublicKey.Version != 4 || sub.PublicKey.PubKeyAlgo != packet.PubKeyAlgoECDH {
		t.Errorf("subkey v%d algo %d", sub.PublicKey.Version, sub.PublicKey.PubKeyAlgo)
	}
	if c, err := sub.PublicKey.Curve(); err != nil || c != packet.Curve25519 {
		t.Errorf("subkey curve %v, %v", c, err)
	}
	if !sub.Sig.FlagEncryptCommunications || !sub.Sig.FlagEncryptStorage || sub.Sig.FlagSign {
		t.Errorf("subkey flags %+v", sub.Sig)
	}
	if e.PrivateKey == nil || e.PrivateKey.Encrypted || sub.PrivateKey == nil {
		t.Error("GenerateKey did not return usable private keys")
	}
	k, err := cmcrypto.NewPublicKey(e, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(k.Emails(), []string{testKeyEmail}) {
		t.Errorf("emails %q", k.Emails())
	}
}

func TestGenerateKeyRejectsBadInput(t *testing.T) {
	for _, tt := range []struct{ name, email string }{
		{"Ok", "not an address"},
		{"Ok", "Name <a@example.org>"},
		{"Ok", ""},
		{"Bad <name>", "a@example.org"},
		{"Bad (name)", "a@example.org"},
	} {
		if _, err := cmcrypto.GenerateKey(tt.name, tt.email, nil, fixedNow); err == nil {
			t.Errorf("GenerateKey(%q, %q) succeeded", tt.name, tt.email)
		}
	}
}

func FuzzParsePublicKey(f *testing.F) {
	for _, name := range []string{"public.asc", "private.asc"} {
		data, err := os.ReadFile(filepath.Join("testdata", "key", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		if block, err := armor.Decode(bytes.NewReader(data)); err == nil {
			if bin, err := io.ReadAll(block.Body); err == nil {
				f.Add(bin)
			}
		}
	}
	f.Add([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := cmcrypto.ParsePublicKey(data, fixedNow)
		if err != nil {
			if k != nil {
				t.Fatal("key and error")
			}
			matched := false
			for _, sentinel := range allKeyErrors {
				matched = matched || errors.Is(err, sentinel)
			}
			if !matched {
				t.Fatalf("error %q matches no sentinel", err)
			}
			return
		}
		if len(k.Fingerprint()) < 40 {
			t.Fatalf("fingerprint %q", k.Fingerprint())
		}
		if k.Entity().PrivateKey != nil {
			t.Fatal("private key accepted")
		}
		arm, err := k.Armored()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cmcrypto.ParsePublicKey(arm, fixedNow); err != nil {
			t.Fatalf("re-parse of Armored: %v", err)
		}
	})
}
