package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"cryptomail/internal/testenv"
	"cryptomail/server"
	"cryptomail/shard"
)

// homesConfig writes the config dir/name whose data dir and homes (by
// default two) are under dir/data, as a backup would hold them.
func homesConfig(t *testing.T, dir, name string, homes ...string) string {
	t.Helper()
	if homes == nil {
		homes = []string{"data/homes/one", "data/homes/two"}
	}
	p := filepath.Join(dir, name)
	conf := "[server]\nhostname = \"mx.example.test\"\ndomains = [\"example.test\"]\ndata_dir = \"data\"\n" +
		"[storage]\nhomes = [\"" + strings.Join(homes, "\", \"") + "\"]\n[lmtp]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"\"\n"
	if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Issue 10, item 4: a data dir restored from a backup to another path, with
// a config that points at the copy, serves there: check-config passes, user
// list shows the copy's homes, LMTP delivers into the copy and export reads
// it back; the original is not touched (bytes, modes, mtimes).
func TestRestoreDataDirElsewhere(t *testing.T) {
	ctx := context.Background()
	oldDir, newDir := t.TempDir(), t.TempDir()
	oldCfg := homesConfig(t, oldDir, "cryptomail.toml")
	const alice, bob = "alice@example.test", "bob@example.test"

	srv := startInProcess(t, oldCfg)
	aliceKeys, bobKeys := addGeneratedUser(t, oldCfg, alice), addGeneratedUser(t, oldCfg, bob)
	res := testenv.LMTPSend(t, srv.Addr("lmtp"), "s@elsewhere.test", []string{alice, bob}, []byte("Subject: one\r\n\r\nbefore the backup\r\n"), false)
	if res[alice] != nil || res[bob] != nil {
		t.Fatalf("delivery before the backup: %v", res)
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	testenv.CopyTree(t, filepath.Join(oldDir, "data"), filepath.Join(newDir, "data"))
	newCfg := homesConfig(t, newDir, "cryptomail.toml")
	time.Sleep(20 * time.Millisecond) // a later write would show in the mtimes
	before := testenv.TreeState(t, oldDir)

	if r := runCLI("check-config", "-config", newCfg); r.code != 0 {
		t.Fatalf("check-config of the restored copy: %+v", r)
	}
	r := runCLI("user", "list", "-config", newCfg)
	id, err := os.ReadFile(filepath.Join(newDir, "data", "homes", "one", shard.HomeFile))
	if err != nil {
		t.Fatal(err)
	}
	if r.code != 0 || strings.Contains(r.stdout, oldDir) ||
		!strings.Contains(r.stdout, strings.TrimSpace(string(id))+"  "+filepath.Join(newDir, "data", "homes", "one")) {
		t.Errorf("user list of the restored copy: %+v", r)
	}

	srv = startInProcess(t, newCfg)
	// Beside a running server (meta.db's WAL in use) check-config reads too.
	if r := runCLI("check-config", "-config", newCfg); r.code != 0 {
		t.Fatalf("check-config beside the server: %+v", r)
	}
	res = testenv.LMTPSend(t, srv.Addr("lmtp"), "s@elsewhere.test", []string{alice, bob}, []byte("Subject: two\r\n\r\nafter the restore\r\n"), false)
	if res[alice] != nil || res[bob] != nil {
		t.Fatalf("delivery after the restore: %v", res)
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for addr, keys := range map[string]openpgp.EntityList{alice: aliceKeys, bob: bobKeys} {
		got := exportDecrypted(t, newCfg, addr, keys)
		if len(got) != 2 || !bytes.Contains(got[0], []byte("before the backup")) || !bytes.Contains(got[1], []byte("after the restore")) {
			t.Errorf("%s reads %d messages from the restored copy: %q", addr, len(got), got)
		}
	}
	testenv.SameTree(t, "the original data dir", before, testenv.TreeState(t, oldDir))
}

// A home whose HOME file names another id, and users on a home that is no
// longer configured: check-config fails naming them (and creates nothing),
// and serve refuses to start with the same words.
func TestHomeMismatchNamed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := homesConfig(t, dir, "cryptomail.toml")
	if r := runCLI("init", "-config", cfg); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	addGeneratedUser(t, cfg, "alice@example.test") // on home one
	addGeneratedUser(t, cfg, "bob@example.test")   // on home two
	one := filepath.Join(dir, "data", "homes", "one")
	homeFile := filepath.Join(one, shard.HomeFile)
	oldID, err := os.ReadFile(homeFile)
	if err != nil {
		t.Fatal(err)
	}
	aliceHome := strings.TrimSpace(string(oldID))
	const foreign = "0123456789abcdef0123456789abcdef"

	tests := []struct {
		name  string
		cfg   string
		setup func()
		want  []string
	}{
		{"mismatched HOME id", cfg, func() {
			if err := os.WriteFile(homeFile, []byte(foreign+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"home " + one + " has id " + foreign + ", which this metabase does not know",
			"home id " + aliceHome + " holds alice@example.test"}},
		{"home not configured", homesConfig(t, dir, "only-two.toml", "data/homes/two"), func() {
			if err := os.WriteFile(homeFile, oldID, 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"home id " + aliceHome + " holds alice@example.test (1 users in all) but no configured home has that id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup()
			before := testenv.TreeState(t, dir)
			r := runCLI("check-config", "-config", tt.cfg)
			for _, want := range tt.want {
				if r.code != 1 || !strings.Contains(r.stderr, want) {
					t.Errorf("check-config: %+v\nwant exit 1 naming %q", r, want)
				}
			}
			testenv.SameTree(t, "check-config", before, testenv.TreeState(t, dir))
			c, err := server.LoadConfig(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			srv, err := server.New(ctx, c, slog.New(slog.DiscardHandler))
			if err == nil {
				srv.Shutdown(ctx)
				t.Fatal("serve started")
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("serve: %v\nwant it to name %q", err, want)
				}
			}
		})
	}
}
