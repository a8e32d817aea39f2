package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	cmcrypto "cryptomail/crypto"
)

// writeConfig makes a config in a fresh dir, with listeners on ports chosen
// by the caller, and runs `cryptomail init` on it so admin commands work.
func writeConfig(t *testing.T, lmtpAddr string) string {
	t.Helper()
	p := writeBareConfig(t, t.TempDir(), lmtpAddr)
	if r := runCLI("init", "-config", p); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	return p
}

// writeBareConfig writes a config into dir and creates nothing else.
func writeBareConfig(t *testing.T, dir, lmtpAddr string) string {
	t.Helper()
	p := filepath.Join(dir, "cryptomail.toml")
	conf := "[server]\nhostname = \"mx.example.test\"\ndomains = [\"example.test\"]\ndata_dir = \"data\"\n" +
		"[storage]\nhomes = [\"homes1\", \"homes2\"]\n[lmtp]\nlisten = \"" + lmtpAddr + "\"\n[http]\nlisten = \"\"\n"
	if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func armoredPublic(t *testing.T, e *openpgp.Entity) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := armor.Encode(&b, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return b.Bytes()
}

func keyFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(args ...string) result {
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errb)
	return result{code, out.String(), errb.String()}
}

func TestCLIUserLifecycle(t *testing.T) {
	cfg := writeConfig(t, "127.0.0.1:0")
	now := time.Now()
	alice, err := cmcrypto.GenerateKey("Alice", "alice@example.test", nil, now)
	if err != nil {
		t.Fatal(err)
	}
	aliceKey := keyFile(t, "alice.asc", armoredPublic(t, alice))

	// A key that expired an hour ago.
	expCfg := &packet.Config{Time: func() time.Time { return now.Add(-48 * time.Hour) }, KeyLifetimeSecs: 3600, Algorithm: packet.PubKeyAlgoEdDSA}
	expired, err := openpgp.NewEntity("Old", "", "old@example.test", expCfg)
	if err != nil {
		t.Fatal(err)
	}
	expiredKey := keyFile(t, "old.asc", armoredPublic(t, expired))
	// A key without an encryption subkey.
	signOnly, err := openpgp.NewEntity("Signer", "", "signer@example.test", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	signOnly.Subkeys = nil
	signOnlyKey := keyFile(t, "sign.asc", armoredPublic(t, signOnly))
	var priv bytes.Buffer
	w, _ := armor.Encode(&priv, openpgp.PrivateKeyType, nil)
	alice.SerializePrivate(w, nil)
	w.Close()
	privKey := keyFile(t, "priv.asc", priv.Bytes())

	tests := []struct {
		name     string
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{"add", []string{"user", "add", "-config", cfg, "--public-key", aliceKey, "alice@example.test"}, 0, "added alice@example.test", ""},
		{"add again", []string{"user", "add", "alice@example.test", "-config", cfg, "--public-key", aliceKey}, 1, "", "already exists"},
		{"flags after address", []string{"user", "add", "Bob@Example.TEST", "--public-key", aliceKey, "-config", cfg}, 0, "added bob@example.test", "do not name bob@example.test"},
		{"foreign domain", []string{"user", "add", "-config", cfg, "--public-key", aliceKey, "carol@elsewhere.test"}, 1, "", "domain not served"},
		{"malformed address", []string{"user", "add", "-config", cfg, "--public-key", aliceKey, "carol@@example.test"}, 1, "", "malformed address"},
		{"subaddress", []string{"user", "add", "-config", cfg, "--public-key", aliceKey, "carol+x@example.test"}, 1, "", "without +subaddress"},
		{"expired key", []string{"user", "add", "-config", cfg, "--public-key", expiredKey, "old@example.test"}, 1, "", "expired"},
		{"sign-only key", []string{"user", "add", "-config", cfg, "--public-key", signOnlyKey, "signer@example.test"}, 1, "", "no usable encryption"},
		{"private key", []string{"user", "add", "-config", cfg, "--public-key", privKey, "priv@example.test"}, 1, "", "private (secret) key"},
		{"missing key file", []string{"user", "add", "-config", cfg, "--public-key", "/nonexistent.asc", "x@example.test"}, 1, "", "no such file"},
		{"no --public-key", []string{"user", "add", "-config", cfg, "x@example.test"}, 2, "", "--public-key is required"},
		{"two addresses", []string{"user", "add", "-config", cfg, "--public-key", aliceKey, "a@example.test", "b@example.test"}, 2, "", "exactly one"},
		{"unknown flag", []string{"user", "add", "--nope"}, 2, "", "flag provided but not defined"},
		{"list", []string{"user", "list", "-config", cfg}, 0, "alice@example.test", ""},
		{"del without --yes", []string{"user", "del", "-config", cfg, "bob@example.test"}, 2, "", "--yes"},
		{"del", []string{"user", "del", "bob@example.test", "--yes", "-config", cfg}, 0, "deleted bob@example.test", ""},
		{"del again", []string{"user", "del", "-config", cfg, "--yes", "bob@example.test"}, 1, "", "no user"},
		{"export unknown", []string{"export", "-config", cfg, "--out", filepath.Join(t.TempDir(), "x"), "zed@example.test"}, 1, "", "no user"},
		{"export no --out", []string{"export", "-config", cfg, "alice@example.test"}, 2, "", "--out is required"},
		{"export", []string{"export", "-config", cfg, "--out", filepath.Join(t.TempDir(), "a.mbox"), "alice@example.test"}, 0, "exported 0 messages", ""},
		{"check-config", []string{"check-config", "-config", cfg}, 0, "ok", ""},
		{"check-config extra argument", []string{"check-config", "-config", cfg, "other.toml"}, 2, "", `check-config: unexpected argument "other.toml"`},
		{"list extra argument", []string{"user", "list", "-config", cfg, "x"}, 2, "", `user list: unexpected argument "x"`},
		{"export two addresses", []string{"export", "-config", cfg, "--out", "x", "a@example.test", "b@example.test"}, 2, "", "export: want exactly one ADDRESS"},
		{"bad config", []string{"user", "list", "-config", "/nonexistent.toml"}, 1, "", "no such file"},
		{"no command", nil, 2, "", "no command"},
		{"unknown command", []string{"frobnicate"}, 2, "", "unknown command"},
		{"user without sub", []string{"user"}, 2, "", "want add, list, del or invite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(tt.args...)
			if r.code != tt.code || !strings.Contains(r.stdout, tt.inStdout) || !strings.Contains(r.stderr, tt.inStderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout ~%q, stderr ~%q",
					r.code, r.stdout, r.stderr, tt.code, tt.inStdout, tt.inStderr)
			}
			if tt.code == 1 && strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
				t.Errorf("error is not one line: %q", r.stderr)
			}
		})
	}

	r := runCLI("user", "list", "--json", "-config", cfg)
	var rows []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || len(rows) != 1 || rows[0]["id"] != "alice@example.test" {
		t.Errorf("user list --json = %q (%v)", r.stdout, err)
	}
}
