package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"cryptomail/client"
	"cryptomail/server"
	"cryptomail/xmap"
	"cryptomail/xmap/sexmap"
)

var inviteLine = regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){6}$`)

// lastLine is what a script takes from `user invite`.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func TestCLIUserInvite(t *testing.T) {
	cfg := writeConfig(t, "127.0.0.1:0")
	tests := []struct {
		name     string
		args     []string
		code     int
		inStderr string
	}{
		{"invite", []string{"user", "invite", "-config", cfg, "alice@example.test"}, 0, ""},
		{"flags after address", []string{"user", "invite", "alice@example.test", "--expires", "1h", "-config", cfg}, 0, ""},
		{"mixed case", []string{"user", "invite", "-config", cfg, "Bob@Example.TEST"}, 0, ""},
		{"unknown domain", []string{"user", "invite", "-config", cfg, "carol@elsewhere.test"}, 1, "domain not served"},
		{"malformed address", []string{"user", "invite", "-config", cfg, "carol@@example.test"}, 1, "malformed address"},
		{"subaddress", []string{"user", "invite", "-config", cfg, "carol+x@example.test"}, 1, "without +subaddress"},
		{"no address", []string{"user", "invite", "-config", cfg}, 2, "exactly one ADDRESS"},
		{"expiry too short", []string{"user", "invite", "-config", cfg, "--expires", "10s", "a@example.test"}, 2, "--expires"},
		{"expiry too long", []string{"user", "invite", "-config", cfg, "--expires", "721h", "a@example.test"}, 2, "--expires"},
		{"bad expiry", []string{"user", "invite", "-config", cfg, "--expires", "soon", "a@example.test"}, 2, "invalid value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.inStderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, stderr ~%q", r.code, r.stdout, r.stderr, tt.code, tt.inStderr)
			}
			if tt.code != 0 {
				if r.stdout != "" {
					t.Errorf("stdout on failure: %q", r.stdout)
				}
				return
			}
			if c := lastLine(r.stdout); !inviteLine.MatchString(c) {
				t.Errorf("last line %q is not an invite code", c)
			}
		})
	}

	a := lastLine(runCLI("user", "invite", "-config", cfg, "dave@example.test").stdout)
	b := lastLine(runCLI("user", "invite", "-config", cfg, "dave@example.test").stdout)
	if a == b || !inviteLine.MatchString(a) || !inviteLine.MatchString(b) {
		t.Errorf("two invites: %q and %q", a, b)
	}
}

// TestCLIInviteSignup signs up with a code printed by the CLI, through a real
// server (the invite's expiry is tested with the accounts package).
func TestCLIInviteSignup(t *testing.T) {
	cfgPath := writeConfig(t, "127.0.0.1:0")
	r := runCLI("user", "invite", "-config", cfgPath, "--expires", "1h", "erin@example.test")
	if r.code != 0 {
		t.Fatalf("invite: %s", r.stderr)
	}
	invite := lastLine(r.stdout)
	// The code is printed once, on its own line, and stored only hashed.
	if strings.Count(r.stdout, invite) != 1 {
		t.Errorf("the code appears %d times in the output", strings.Count(r.stdout, invite))
	}
	cfg, err := server.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := os.ReadFile(filepath.Join(cfg.Server.DataDir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(meta, []byte(strings.ReplaceAll(invite, "-", ""))) || bytes.Contains(meta, []byte(invite)) {
		t.Error("meta.db holds the invite code")
	}

	// Sign up through a real server with the client, as a user would.
	ctx := context.Background()
	cfg.HTTP.Listen = "127.0.0.1:0"
	srv, err := server.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	c, err := client.New(client.Options{Server: "http://" + srv.Addr("http"), KDFParams: sexmap.MinKDFParams})
	if err != nil {
		t.Fatal(err)
	}
	params := client.SignupParams{Invite: invite, Address: "erin@example.test", Passphrase: []byte("erin's passphrase")}
	if _, err := c.Signup(ctx, params); err != nil {
		t.Fatalf("signup: %v", err)
	}
	if _, err := c.Signup(ctx, params); !errors.Is(err, xmap.ErrInvalidInvite) {
		t.Fatalf("second signup with one invite: %v, want invalid-invite", err)
	}
	if r := runCLI("user", "invite", "-config", cfgPath, "erin@example.test"); r.code != 1 || !strings.Contains(r.stderr, "signed up already") {
		t.Errorf("invite for a signed-up address: exit %d, %q", r.code, r.stderr)
	}
	if r := runCLI("user", "list", "-config", cfgPath); !strings.Contains(r.stdout, "erin@example.test") {
		t.Errorf("user list after signup: %q", r.stdout)
	}
}

func TestCLIServerKey(t *testing.T) {
	cfgPath := writeConfig(t, "127.0.0.1:0")
	first := runCLI("server-key", "-config", cfgPath)
	if first.code != 0 {
		t.Fatalf("server-key: exit %d, %s", first.code, first.stderr)
	}
	pub, err := sexmap.DecodePublicKey(strings.TrimSpace(first.stdout))
	if err != nil || strings.Count(first.stdout, "\n") != 1 {
		t.Fatalf("server-key printed %q (%v)", first.stdout, err)
	}
	if again := runCLI("server-key", "-config", cfgPath); again.stdout != first.stdout {
		t.Errorf("server-key changed: %q then %q", first.stdout, again.stdout)
	}
	cfg, err := server.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	path := server.ServerKeyPath(cfg.Server.DataDir)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %s: %v, mode %v", path, err, fi)
	}
	key, err := sexmap.LoadOrCreateServerKey(path)
	if err != nil || !bytes.Equal(key.Public, pub) {
		t.Errorf("printed key is not the key file's (%v)", err)
	}
	if r := runCLI("server-key", "-config", cfgPath, "extra"); r.code != 2 {
		t.Errorf("server-key with an argument: exit %d", r.code)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := runCLI("server-key", "-config", cfgPath); r.code != 1 || !strings.Contains(r.stderr, "chmod 600") {
		t.Errorf("server-key with a readable key file: exit %d, %q", r.code, r.stderr)
	}
}
