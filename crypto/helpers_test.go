package crypto_test

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	cmcrypto "cryptomail/crypto"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// fixedNow is the clock of every golden file.
var fixedNow = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// seededRand is a deterministic random source for golden files. It is not a
// source of secrets: only tests use it.
func seededRand(label string) *rand.ChaCha8 {
	var seed [32]byte
	copy(seed[:], label)
	return rand.NewChaCha8(seed)
}

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test -update if the change is intended)\ngot:\n%s\nwant:\n%s", path, clipped(got), clipped(want))
	}
}

func clipped(b []byte) []byte {
	if len(b) > 2000 {
		return append(b[:2000:2000], "..."...)
	}
	return b
}

// testKeyName and testKeyEmail are the user ID of the committed test key.
const (
	testKeyName  = "Test User"
	testKeyEmail = "test@example.test"
)

// generateTestKey makes the committed test key deterministically.
func generateTestKey(t testing.TB) *openpgp.Entity {
	t.Helper()
	e, err := cmcrypto.GenerateKey(testKeyName, testKeyEmail, seededRand("cryptomail test key"), fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// testKey returns the committed test key pair (testdata/key/private.asc) and
// its public half.
func testKey(t testing.TB) (openpgp.EntityList, *cmcrypto.PublicKey) {
	t.Helper()
	priv, err := os.ReadFile(filepath.Join("testdata", "key", "private.asc"))
	if err != nil {
		t.Fatalf("read test key (run go test -run TestGenerateKeyGolden -update to create it): %v", err)
	}
	el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(priv))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(filepath.Join("testdata", "key", "public.asc"))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := cmcrypto.ParsePublicKey(pub, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	return el, pk
}

// armorPrivate serializes e with its private keys, without re-signing (so
// the output depends only on e).
func armorPrivate(t testing.TB, e *openpgp.Entity) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PrivateKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SerializePrivateWithoutSigning(w, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}

// armorPublic serializes the public part of e.
func armorPublic(t testing.TB, e *openpgp.Entity) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}

// binaryPublic serializes the public part of e without armor.
func binaryPublic(t testing.TB, e *openpgp.Entity) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := e.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
