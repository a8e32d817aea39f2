package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"cryptomail/client"
	"cryptomail/server"
	"cryptomail/xmap/sexmap"
)

// Issue 9, item 4, end to end: `cryptomail user del` run beside a serving
// server, a new invite and a new owner's signup must leave the old owner's
// session with nothing: it listed the new owner's INBOX, fetched their sealed
// key and changed their passphrase before.
func TestUserDelEndsSessions(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "cryptomail.toml")
	conf := "[server]\nhostname = \"mx.example.test\"\ndomains = [\"example.test\"]\ndata_dir = \"data\"\n" +
		"[storage]\nhomes = [\"homes1\"]\n[lmtp]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n"
	if err := os.WriteFile(cfgPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := server.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	const addr = "alice@example.test"
	signup := func(passphrase string) *client.Client {
		t.Helper()
		r := runCLI("user", "invite", "-config", cfgPath, addr)
		if r.code != 0 {
			t.Fatalf("invite: %s", r.stderr)
		}
		c, err := client.New(client.Options{Server: "http://" + srv.Addr("http"), KDFParams: sexmap.MinKDFParams})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Signup(ctx, client.SignupParams{Invite: lastLine(r.stdout), Address: addr, Passphrase: []byte(passphrase)}); err != nil {
			t.Fatalf("signup: %v", err)
		}
		return c
	}

	oldClient := signup("the old owner's passphrase")
	old, err := oldClient.Login(ctx, addr, []byte("the old owner's passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.ListFolders(ctx); err != nil {
		t.Fatal(err)
	}

	if r := runCLI("user", "del", "-config", cfgPath, "--yes", addr); r.code != 0 {
		t.Fatalf("user del: %s", r.stderr)
	}
	newClient := signup("the new owner's passphrase")

	// Every request of the old session is refused (401); its renewal with the
	// old owner's login key then fails too.
	if f, err := old.ListFolders(ctx); !errors.Is(err, sexmap.ErrLoginFailed) {
		t.Errorf("old session lists the new owner's folders: %v, %v", f, err)
	}
	if a, err := old.Account(ctx); !errors.Is(err, sexmap.ErrLoginFailed) {
		t.Errorf("old session fetches the new owner's account (sealed key): %d bytes, %v", len(a.SealedKey), err)
	}
	if err := old.ChangePassphrase(ctx, []byte("the attacker's passphrase")); err == nil {
		t.Error("old session changed the new owner's passphrase")
	}
	if _, err := newClient.Login(ctx, addr, []byte("the new owner's passphrase")); err != nil {
		t.Errorf("the new owner cannot log in: %v", err)
	}
}
