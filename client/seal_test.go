package client_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"cryptomail/client"
	cmcrypto "cryptomail/crypto"
	"cryptomail/xmap/sexmap"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

var update = flag.Bool("update", false, "rewrite testdata/sealed-key.json")

// detReader is a deterministic byte stream: SHA-256 of a label and a counter.
type detReader struct {
	label string
	n     uint64
	buf   []byte
}

func (r *detReader) Read(p []byte) (int, error) {
	for len(r.buf) < len(p) {
		var c [8]byte
		binary.BigEndian.PutUint64(c[:], r.n)
		r.n++
		h := sha256.Sum256(append([]byte(r.label), c[:]...))
		r.buf = append(r.buf, h[:]...)
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// sealedVector is the layout of testdata/sealed-key.json, the test vector of the sealed
// key format of docs/CLIENT.md for other implementations (the browser client).
type sealedVector struct {
	Format     string `json:"format"`
	Passphrase string `json:"passphrase"`
	Salt       string `json:"salt"`
	Params     struct {
		T    uint32 `json:"t"`
		MKiB uint32 `json:"m_kib"`
		P    uint8  `json:"p"`
	} `json:"params"`
	SealKey   string `json:"seal_key"`
	Address   string `json:"address"`
	AD        string `json:"ad"`
	Nonce     string `json:"nonce"`
	Plaintext string `json:"plaintext"`
	Sealed    string `json:"sealed"`
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSealedKeyVector(t *testing.T) {
	path := filepath.Join("testdata", "sealed-key.json")
	if *update {
		writeSealedVector(t, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v sealedVector
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	_, sealKey, err := sexmap.DeriveKeys([]byte(v.Passphrase), unhex(t, v.Salt), sexmap.KDFParams{Time: v.Params.T, MemoryKiB: v.Params.MKiB, Threads: v.Params.P})
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(sealKey[:]) != v.SealKey {
		t.Fatalf("seal key %x, vector %s", sealKey, v.SealKey)
	}
	if want := append([]byte(client.SealedKeyLabel), []byte("alice@example.org")...); hex.EncodeToString(want) != v.AD {
		t.Errorf("associated data %x, vector %s", want, v.AD)
	}
	plain := unhex(t, v.Plaintext)
	sealed, err := client.SealPrivateKey(sealKey, v.Address, plain, bytes.NewReader(unhex(t, v.Nonce)))
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(sealed) != v.Sealed {
		t.Errorf("sealed differs from the vector")
	}
	got, err := client.OpenSealedKey(sealKey, "ALICE@example.ORG", unhex(t, v.Sealed))
	if err != nil || !bytes.Equal(got, plain) {
		t.Errorf("open: %v", err)
	}
	// The plaintext is an unprotected secret key the client can use.
	if _, err := client.ReadPrivateKey(got, nil); err != nil {
		t.Errorf("the vector's key: %v", err)
	}
}

func writeSealedVector(t *testing.T, path string) {
	rng := &detReader{label: "cryptomail sealed-key vector"}
	key, err := cmcrypto.GenerateKey("Alice", "alice@example.org", rng, time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	var secret bytes.Buffer
	if err := key.SerializePrivateWithoutSigning(&secret, &packet.Config{}); err != nil {
		t.Fatal(err)
	}
	var v sealedVector
	v.Format = "sealed = 0x01 || nonce (24) || XChaCha20-Poly1305(seal_key, nonce, ad = \"CryptoMail/1 sealed private key\" || address with A-Z lowered, plaintext = binary OpenPGP secret key); see docs/CLIENT.md"
	v.Passphrase = "correct horse battery staple"
	salt := make([]byte, 16)
	rng.Read(salt)
	v.Salt = hex.EncodeToString(salt)
	p := sexmap.MinKDFParams
	v.Params.T, v.Params.MKiB, v.Params.P = p.Time, p.MemoryKiB, p.Threads
	_, sealKey, err := sexmap.DeriveKeys([]byte(v.Passphrase), salt, p)
	if err != nil {
		t.Fatal(err)
	}
	v.SealKey = hex.EncodeToString(sealKey[:])
	v.Address = "Alice@Example.org"
	v.AD = hex.EncodeToString(append([]byte(client.SealedKeyLabel), []byte("alice@example.org")...))
	nonce := make([]byte, 24)
	rng.Read(nonce)
	v.Nonce = hex.EncodeToString(nonce)
	v.Plaintext = hex.EncodeToString(secret.Bytes())
	sealed, err := client.SealPrivateKey(sealKey, v.Address, secret.Bytes(), bytes.NewReader(nonce))
	if err != nil {
		t.Fatal(err)
	}
	v.Sealed = hex.EncodeToString(sealed)
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSealedKeyRefusals(t *testing.T) {
	var key, other [32]byte
	key[0], other[0] = 1, 2
	sealed, err := client.SealPrivateKey(key, "alice@example.org", []byte("secret key bytes"), &detReader{label: "n"})
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	version := bytes.Clone(sealed)
	version[0] = 2
	for _, tc := range []struct {
		name    string
		key     [32]byte
		address string
		sealed  []byte
	}{
		{"wrong key", other, "alice@example.org", sealed},
		{"other address", key, "bob@example.org", sealed},
		{"tampered", key, "alice@example.org", tampered},
		{"version", key, "alice@example.org", version},
		{"truncated", key, "alice@example.org", sealed[:30]},
		{"empty", key, "alice@example.org", nil},
	} {
		if _, err := client.OpenSealedKey(tc.key, tc.address, tc.sealed); !errors.Is(err, client.ErrUnseal) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if got, err := client.OpenSealedKey(key, "Alice@EXAMPLE.org", sealed); err != nil || string(got) != "secret key bytes" {
		t.Errorf("open with the address in another case: %q %v", got, err)
	}
}

func FuzzOpenSealedKey(f *testing.F) {
	var key [32]byte
	sealed, _ := client.SealPrivateKey(key, "a@b.c", []byte("k"), &detReader{label: "f"})
	f.Add(sealed)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := client.OpenSealedKey(key, "a@b.c", data)
		if err == nil && !bytes.Equal(data, sealed) {
			t.Fatalf("forged sealed key opened to %q", got)
		}
	})
}

func FuzzReadPrivateKey(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("testdata", "sealed-key.json"))
	if err == nil {
		var v sealedVector
		if json.Unmarshal(data, &v) == nil {
			if b, err := hex.DecodeString(v.Plaintext); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nxx\n-----END PGP PRIVATE KEY BLOCK-----\n"))
	f.Add([]byte{0x95, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := client.ReadPrivateKey(data, func() ([]byte, error) { return []byte("x"), nil })
		if err == nil && (e.PrivateKey == nil || e.PrivateKey.Encrypted) {
			t.Fatal("accepted a key it cannot use")
		}
	})
}
