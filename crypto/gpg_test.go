package crypto_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cmcrypto "cryptomail/crypto"
)

// gnupg runs gpg with its own home directory, which it removes (after
// stopping the gpg-agent it started) when the test ends.
type gnupg struct {
	t    *testing.T
	gpg  string
	home string
}

func newGnuPG(t *testing.T) *gnupg {
	t.Helper()
	gpg, err := exec.LookPath("gpg")
	if err != nil {
		if os.Getenv("CRYPTOMAIL_REQUIRE_TOOLS") == "1" {
			t.Fatal("gpg is not on PATH and CRYPTOMAIL_REQUIRE_TOOLS=1")
		}
		t.Skip("gpg is not on PATH; set CRYPTOMAIL_REQUIRE_TOOLS=1 to make this a failure")
	}
	// A short path: gpg-agent's socket may live in the home directory, and
	// Unix socket paths are limited to about 100 bytes.
	home, err := os.MkdirTemp("/tmp", "cmg")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	g := &gnupg{t: t, gpg: gpg, home: home}
	t.Cleanup(func() {
		if gpgconf, err := exec.LookPath("gpgconf"); err == nil {
			cmd := exec.Command(gpgconf, "--kill", "all")
			cmd.Env = g.env()
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Logf("gpgconf --kill all: %v: %s", err, out)
			}
		}
		os.RemoveAll(home)
	})
	return g
}

func (g *gnupg) env() []string {
	return append(os.Environ(), "GNUPGHOME="+g.home, "LC_ALL=C")
}

// run runs gpg with args and stdin, and returns stdout and stderr.
func (g *gnupg) run(stdin []byte, args ...string) (stdout, stderr []byte) {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, g.gpg, append([]string{"--batch", "--no-tty", "--quiet"}, args...)...)
	cmd.Env = g.env()
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		g.t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, errOut.Bytes())
	}
	return out.Bytes(), errOut.Bytes()
}

// decrypt has gpg decrypt msg and checks the algorithms it reports.
func (g *gnupg) decrypt(msg []byte) []byte {
	g.t.Helper()
	path := filepath.Join(g.home, "msg.pgp")
	if err := os.WriteFile(path, msg, 0o600); err != nil {
		g.t.Fatal(err)
	}
	out := filepath.Join(g.home, "out")
	os.Remove(out)
	status, _ := g.run(nil, "--status-fd", "1", "--output", out, "--decrypt", path)
	// DECRYPTION_INFO <mdc_method> <sym_algo> [<aead_algo>]: MDC with SHA-1
	// (2), AES-256 (9), no AEAD.
	if !bytes.Contains(status, []byte("[GNUPG:] DECRYPTION_INFO 2 9")) || !bytes.Contains(status, []byte("[GNUPG:] DECRYPTION_OKAY")) {
		g.t.Errorf("gpg status does not show an MDC-protected AES-256 message:\n%s", status)
	}
	plain, err := os.ReadFile(out)
	if err != nil {
		g.t.Fatal(err)
	}
	return plain
}

// TestGnuPGInterop checks both directions that matter: a key made by GnuPG
// 2.2 is accepted and what Seal makes for it is decrypted by gpg byte for
// byte; and a key made by GenerateKey is imported by gpg, which decrypts what
// Seal makes for it.
func TestGnuPGInterop(t *testing.T) {
	g := newGnuPG(t)
	version, _ := g.run(nil, "--version")
	t.Logf("%s", bytes.SplitN(version, []byte("\n"), 2)[0])

	raw, err := os.ReadFile(filepath.Join("testdata", "summary", "multipart-mixed-attachment.eml"))
	if err != nil {
		t.Fatal(err)
	}
	raw = append(raw, awkwardMessage...)
	// Several write chunks, so gpg reads a stream of partial-length packets.
	noise := make([]byte, 300<<10)
	seededRand("gpg noise").Read(noise)
	raw = append(raw, noise...)

	t.Run("key made by gpg", func(t *testing.T) {
		g.run(nil, "--passphrase", "", "--quick-gen-key", "Test <t@example.test>", "future-default", "default", "never")
		armored, _ := g.run(nil, "--armor", "--export", "t@example.test")
		key, err := cmcrypto.ParsePublicKey(armored, time.Now())
		if err != nil {
			t.Fatalf("ParsePublicKey(gpg key): %v", err)
		}
		if got := key.Emails(); len(got) != 1 || got[0] != "t@example.test" {
			t.Errorf("emails %q", got)
		}
		listing, _ := g.run(nil, "--with-colons", "--fingerprint", "t@example.test")
		if !bytes.Contains(listing, []byte("fpr:::::::::"+key.Fingerprint()+":")) {
			t.Errorf("fingerprint %s not in gpg's listing:\n%s", key.Fingerprint(), listing)
		}

		body, summary, err := (&cmcrypto.Sealer{}).Seal(key, raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := g.decrypt(body); !bytes.Equal(got, raw) {
			t.Fatalf("gpg decrypted %d bytes, want the %d sealed", len(got), len(raw))
		}
		var sm cmcrypto.Summary
		if err := json.Unmarshal(g.decrypt(summary), &sm); err != nil {
			t.Fatal(err)
		}
		if sm.Subject != "The report" || !sm.HasAttachments {
			t.Errorf("summary %+v", sm)
		}

		// The armored export form decrypts too.
		arm, err := cmcrypto.Armor(body)
		if err != nil {
			t.Fatal(err)
		}
		if got := g.decrypt(arm); !bytes.Equal(got, raw) {
			t.Fatal("gpg could not decrypt the armored form")
		}
	})

	t.Run("key made by GenerateKey", func(t *testing.T) {
		e, err := cmcrypto.GenerateKey("Generated", "gen@example.test", nil, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		g.run(armorPrivate(t, e), "--import")
		key, err := cmcrypto.NewPublicKey(e, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		listing, _ := g.run(nil, "--with-colons", "--list-secret-keys", "gen@example.test")
		// sec: Ed25519 (algo 22) that certifies and signs; ssb: cv25519 (18)
		// that encrypts.
		if !bytes.Contains(listing, []byte(":22:")) || !bytes.Contains(listing, []byte(":18:")) ||
			!bytes.Contains(listing, []byte("ed25519")) || !bytes.Contains(listing, []byte("cv25519")) {
			t.Errorf("unexpected gpg listing:\n%s", listing)
		}
		body, _, err := (&cmcrypto.Sealer{}).Seal(key, raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := g.decrypt(body); !bytes.Equal(got, raw) {
			t.Fatal("gpg could not decrypt a message sealed to a GenerateKey key")
		}
	})
}
