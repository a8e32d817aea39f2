package deliver

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	cmcrypto "cryptomail/crypto"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

// armoredKeys makes n distinct armored public keys.
func armoredKeys(t *testing.T, n int) [][]byte {
	t.Helper()
	out := make([][]byte, n)
	for i := range out {
		e, err := cmcrypto.GenerateKey("", fmt.Sprintf("u%d@example.test", i), nil, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		w, err := armor.Encode(&b, "PGP PUBLIC KEY BLOCK", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Serialize(w); err != nil {
			t.Fatal(err)
		}
		w.Close()
		out[i] = b.Bytes()
	}
	return out
}

// TestKeyCacheLRU: the cache keeps the most recently used keys up to its
// bound, evicting the least recently used one, and answers each key with
// that key's own parse.
func TestKeyCacheLRU(t *testing.T) {
	keys := armoredKeys(t, 4)
	now := time.Now()
	c := keyCache{max: 3}
	first := make([]*cmcrypto.PublicKey, len(keys))
	for i, k := range keys[:3] {
		pk, err := c.get(k, now)
		if err != nil {
			t.Fatal(err)
		}
		first[i] = pk
	}
	// Use key 0 again: key 1 is now the least recently used.
	if pk, _ := c.get(keys[0], now); pk != first[0] {
		t.Fatal("key 0 parsed again while cached")
	}
	if _, err := c.get(keys[3], now); err != nil {
		t.Fatal(err)
	}
	if n := c.len(); n != 3 {
		t.Fatalf("cache holds %d keys, want 3", n)
	}
	if pk, _ := c.get(keys[0], now); pk != first[0] {
		t.Error("key 0 was evicted although recently used")
	}
	if pk, _ := c.get(keys[2], now); pk != first[2] {
		t.Error("key 2 was evicted although more recent than key 1")
	}
	if pk, _ := c.get(keys[1], now); pk == first[1] {
		t.Error("key 1, the least recently used, was not evicted")
	}
	for i, k := range keys {
		pk, err := c.get(k, now)
		if err != nil {
			t.Fatal(err)
		}
		want, err := cmcrypto.ParsePublicKey(k, now)
		if err != nil {
			t.Fatal(err)
		}
		if pk.Fingerprint() != want.Fingerprint() {
			t.Errorf("key %d: cache answered %s, want %s", i, pk.Fingerprint(), want.Fingerprint())
		}
	}
	if _, err := c.get([]byte("not a key"), now); err == nil {
		t.Error("a bad key was accepted")
	}
	if n := c.len(); n != 3 {
		t.Errorf("cache holds %d keys after a bad one, want 3", n)
	}
}
