package main

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	cmcrypto "cryptomail/crypto"
)

func genKeys(t *testing.T, emails ...string) []*openpgp.Entity {
	t.Helper()
	var out []*openpgp.Entity
	for _, e := range emails {
		ent, err := cmcrypto.GenerateKey("", e, nil, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ent)
	}
	return out
}

// keyring serializes public keys (or, with secret, private keys) into one
// binary keyring, armored when armorType is set.
func keyring(t *testing.T, ents []*openpgp.Entity, armorType string, secret bool) []byte {
	t.Helper()
	var b bytes.Buffer
	var wc io.WriteCloser = nopCloser{&b}
	if armorType != "" {
		aw, err := armor.Encode(&b, armorType, nil)
		if err != nil {
			t.Fatal(err)
		}
		wc = aw
	}
	for _, e := range ents {
		var err error
		if secret {
			err = e.SerializePrivate(wc, nil)
		} else {
			err = e.Serialize(wc)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := wc.Close(); err != nil {
		t.Fatal(err)
	}
	if armorType != "" {
		b.WriteByte('\n')
	}
	return b.Bytes()
}

type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }

func listedUsers(t *testing.T, cfg string) []string {
	t.Helper()
	r := runCLI("user", "list", "-config", cfg, "--json")
	if r.code != 0 {
		t.Fatalf("user list: %d %s", r.code, r.stderr)
	}
	var rows []struct{ Address string }
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, x := range rows {
		out = append(out, x.Address)
	}
	slices.Sort(out)
	return out
}

func TestUserAddFromFile(t *testing.T) {
	three := genKeys(t, "a@example.test", "b@example.test", "C@Example.test")
	other := genKeys(t, "x@elsewhere.test")
	dup := genKeys(t, "a@example.test")
	plus := genKeys(t, "d+tag@example.test")
	want3 := []string{"a@example.test", "b@example.test", "c@example.test"}

	tests := []struct {
		name     string
		data     []byte
		code     int
		users    []string // after the command; nil: none
		inStderr string
	}{
		{"armored, one block", keyring(t, three, openpgp.PublicKeyType, false), 0, want3, ""},
		{"armored, one block per key", slices.Concat(
			keyring(t, three[:1], openpgp.PublicKeyType, false),
			[]byte("some text between blocks\n"),
			keyring(t, three[1:], openpgp.PublicKeyType, false)), 0, want3, ""},
		{"binary", keyring(t, three, "", false), 0, want3, ""},
		{"a key for another domain spoils the file", keyring(t, append(three[:2:2], other...), openpgp.PublicKeyType, false),
			1, nil, "key 3 refused"},
		{"the same address twice", keyring(t, append(three[:2:2], dup...), "", false), 1, nil, "is named by key 1 too"},
		{"a +subaddress", keyring(t, plus, "", false), 1, nil, "names no address in a served domain"},
		{"armored private key block", keyring(t, three[:1], openpgp.PrivateKeyType, true), 1, nil, "not a public key block"},
		{"binary secret key", keyring(t, three[:1], "", true), 1, nil, "private (secret) key"},
		{"empty", []byte("\n\n"), 1, nil, "no OpenPGP key found"},
		{"garbage", []byte("hello\n"), 1, nil, "no armored block"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeConfig(t, "127.0.0.1:0")
			f := keyFile(t, "ring", tc.data)
			r := runCLI("user", "add", "-config", cfg, "--from-file", f)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", r.code, tc.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.inStderr) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tc.inStderr)
			}
			if got := listedUsers(t, cfg); !slices.Equal(got, tc.users) {
				t.Errorf("users %v, want %v", got, tc.users)
			}
		})
	}
}

func TestUserAddFromFileExisting(t *testing.T) {
	cfg := writeConfig(t, "127.0.0.1:0")
	ents := genKeys(t, "a@example.test", "b@example.test")
	first := keyFile(t, "a", keyring(t, ents[:1], openpgp.PublicKeyType, false))
	both := keyFile(t, "ab", keyring(t, ents, openpgp.PublicKeyType, false))
	if r := runCLI("user", "add", "-config", cfg, "--from-file", first); r.code != 0 {
		t.Fatalf("first add: %d %s", r.code, r.stderr)
	}
	r := runCLI("user", "add", "-config", cfg, "--from-file", both)
	if r.code != 1 || !strings.Contains(r.stderr, "a@example.test already exists") {
		t.Fatalf("re-adding: exit %d, stderr %q", r.code, r.stderr)
	}
	r = runCLI("user", "add", "--from-file", both, "-config", cfg, "--skip-existing")
	if r.code != 0 || !strings.Contains(r.stdout, "added 1 users (1 already existed)") {
		t.Fatalf("--skip-existing: exit %d, stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if got := listedUsers(t, cfg); !slices.Equal(got, []string{"a@example.test", "b@example.test"}) {
		t.Errorf("users %v", got)
	}
}

func TestUserAddFromFileUsage(t *testing.T) {
	cfg := writeConfig(t, "127.0.0.1:0")
	for _, args := range [][]string{
		{"user", "add", "-config", cfg, "--from-file", "x", "someone@example.test"},
		{"user", "add", "-config", cfg, "--from-file="},
	} {
		if r := runCLI(args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage); stderr %q", args, r.code, r.stderr)
		}
	}
	// Without --from-file, the one-user form is unchanged.
	if r := runCLI("user", "add", "-config", cfg, "someone@example.test"); r.code != 2 || !strings.Contains(r.stderr, "--public-key is required") {
		t.Errorf("one-user form: exit %d, stderr %q", r.code, r.stderr)
	}
}
