package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	cmcrypto "cryptomail/crypto"
	"cryptomail/internal/testenv"
	"cryptomail/shard"
)

// adminCmd is one admin command line, without -config.
type adminCmd struct {
	name string
	args []string
}

// adminCommands are every admin command, in an order in which each succeeds
// on an initialized server.
func adminCommands(t *testing.T) []adminCmd {
	t.Helper()
	ent, err := cmcrypto.GenerateKey("Alice", "alice@example.test", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key := keyFile(t, "alice.asc", armoredPublic(t, ent))
	return []adminCmd{
		{"user add", []string{"user", "add", "--public-key", key, "alice@example.test"}},
		{"user add --from-file", []string{"user", "add", "--from-file", key, "--skip-existing"}},
		{"user list", []string{"user", "list"}},
		{"user list --json", []string{"user", "list", "--json"}},
		{"user invite", []string{"user", "invite", "bob@example.test"}},
		{"export", []string{"export", "--out", "alice.mbox", "alice@example.test"}},
		{"server-key", []string{"server-key"}},
		{"check-config", []string{"check-config"}},
		{"user del", []string{"user", "del", "--yes", "alice@example.test"}},
	}
}

// tree lists every path under dir, to show that a command created nothing.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// From a directory with no config around, every admin command fails, names
// the places it looked and how to fix it, and creates nothing.
func TestAdminWithoutConfigCreatesNothing(t *testing.T) {
	cmds := adminCommands(t)
	dir := t.TempDir()
	t.Chdir(dir)
	for _, c := range cmds {
		t.Run(c.name, func(t *testing.T) {
			r := runCLI(c.args...)
			if r.code != 1 {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1", r.code, r.stdout, r.stderr)
			}
			for _, want := range []string{"no configuration", "-config FILE", "$CRYPTOMAIL_CONFIG", systemConfig} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr %q does not say %q", r.stderr, want)
				}
			}
			if r.stdout != "" {
				t.Errorf("stdout %q", r.stdout)
			}
			if got := tree(t, dir); len(got) != 0 {
				t.Fatalf("created %q", got)
			}
		})
	}
	if _, err := os.Stat(systemConfig); err == nil {
		t.Fatal("a test wrote the system config")
	}
}

// $CRYPTOMAIL_CONFIG, then the system config, stand in for -config.
func TestAdminConfigFromEnvAndSystem(t *testing.T) {
	cfgPath := writeConfig(t, "127.0.0.1:0")
	t.Chdir(t.TempDir())
	want := runCLI("server-key", "-config", cfgPath)
	if want.code != 0 {
		t.Fatalf("server-key -config: %+v", want)
	}

	t.Setenv(configEnv, cfgPath)
	if r := runCLI("server-key"); r.code != 0 || r.stdout != want.stdout {
		t.Errorf("server-key with $%s: %+v, want %q", configEnv, r, want.stdout)
	}
	if r := runCLI("user", "invite", "dave@example.test"); r.code != 0 || !inviteLine.MatchString(lastLine(r.stdout)) {
		t.Errorf("user invite with $%s: %+v", configEnv, r)
	}
	if r := runCLI("check-config"); r.code != 0 || !strings.Contains(r.stdout, cfgPath+": ok") {
		t.Errorf("check-config with $%s: %+v", configEnv, r)
	}
	// -config wins over the environment.
	other := writeBareConfig(t, t.TempDir(), "127.0.0.1:0")
	if r := runCLI("user", "list", "-config", other); r.code != 1 || !strings.Contains(r.stderr, other) {
		t.Errorf("-config beside $%s: %+v, want the -config file refused", configEnv, r)
	}
	// A variable naming a missing file says where the name came from.
	t.Setenv(configEnv, filepath.Join(t.TempDir(), "gone.toml"))
	if r := runCLI("user", "list"); r.code != 1 || !strings.Contains(r.stderr, "gone.toml") || !strings.Contains(r.stderr, "$"+configEnv) {
		t.Errorf("user list with $%s naming a missing file: %+v", configEnv, r)
	}

	t.Setenv(configEnv, "")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// The system config resolves its relative paths against its own
	// directory, the test's config directory here.
	old := systemConfig
	systemConfig = filepath.Join(filepath.Dir(cfgPath), "system.toml")
	t.Cleanup(func() { systemConfig = old })
	if err := os.WriteFile(systemConfig, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runCLI("server-key"); r.code != 0 || r.stdout != want.stdout {
		t.Errorf("server-key with the system config: %+v, want %q", r, want.stdout)
	}
}

// A config whose data dir has no metabase yet: admin commands fail with the
// init hint and create nothing; init makes them work.
func TestAdminBeforeInit(t *testing.T) {
	cmds := adminCommands(t)
	dir := t.TempDir()
	cfgPath := writeBareConfig(t, dir, "127.0.0.1:0")
	t.Chdir(t.TempDir()) // export's --out is relative
	check := func(t *testing.T, want []string) {
		t.Helper()
		for _, c := range cmds {
			name := c.name
			r := runCLI(append(c.args, "-config", cfgPath)...)
			if r.code != 1 {
				t.Fatalf("%s: exit %d, stdout %q, stderr %q; want exit 1", name, r.code, r.stdout, r.stderr)
			}
			for _, hint := range []string{"not initialized", "cryptomail serve -config " + cfgPath, "cryptomail init -config " + cfgPath} {
				if !strings.Contains(r.stderr, hint) {
					t.Errorf("%s: stderr %q does not say %q", name, r.stderr, hint)
				}
			}
			if got := tree(t, dir); !slices.Equal(got, want) {
				t.Fatalf("%s: %s holds %q, want %q", name, dir, got, want)
			}
		}
	}
	check(t, []string{"cryptomail.toml"})
	// An empty data dir (made by hand, or restored wrong) is no server either.
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	check(t, []string{"cryptomail.toml", "data"})

	first := runCLI("init", "-config", cfgPath)
	if first.code != 0 || !strings.Contains(first.stdout, "initialized") {
		t.Fatalf("init: %+v", first)
	}
	for _, p := range []string{"data/" + shard.MetaFile, "data/sexmap.key", "homes1", "homes2"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("init did not create %s: %v", p, err)
		}
	}
	key := runCLI("server-key", "-config", cfgPath)
	if key.code != 0 || lastLine(first.stdout) != strings.TrimSpace(key.stdout) {
		t.Errorf("init printed key %q, server-key %+v", lastLine(first.stdout), key)
	}
	for _, c := range cmds {
		if r := runCLI(append(c.args, "-config", cfgPath)...); r.code != 0 {
			t.Errorf("%s after init: %+v", c.name, r)
		}
	}
	again := runCLI("init", "-config", cfgPath)
	if again.code != 0 || !strings.Contains(again.stdout, "already initialized") || lastLine(again.stdout) != lastLine(first.stdout) {
		t.Errorf("init again: %+v; first %+v", again, first)
	}
	if r := runCLI("user", "invite", "-config", cfgPath, "bob@example.test"); r.code != 0 {
		t.Errorf("user invite after a second init: %+v", r)
	}
	if r := runCLI("init", "-config", cfgPath, "extra"); r.code != 2 {
		t.Errorf("init with an argument: exit %d", r.code)
	}
}

// serve creates what is missing on its first start, and admin commands
// then work on it.
func TestServeCreatesOnFirstStart(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	lmtpAddr := testenv.FreePort(t)
	cfgPath := writeBareConfig(t, dir, lmtpAddr)
	cmd := exec.Command(bin, "serve", "-config", cfgPath)
	cmd.Env = append(os.Environ(), configEnv+"=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitListening(t, lmtpAddr, 30*time.Second)
	if r := runCLI("user", "list", "-config", cfgPath); r.code != 0 {
		t.Errorf("user list beside a first serve: %+v", r)
	}
	if r := runCLI("server-key", "-config", cfgPath); r.code != 0 {
		t.Errorf("server-key beside a first serve: %+v", r)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve: %v; log:\n%s", err, stderr.String())
	}
}

// serve alone still runs with no config anywhere: on the built-in default,
// and it says so.
func TestServeConfigFallsBackToBuiltIn(t *testing.T) {
	t.Chdir(t.TempDir())
	var stderr bytes.Buffer
	c := newCommand("serve", &stderr)
	cfg, err := c.loadServeConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cfg.Path, "built in") || !strings.Contains(stderr.String(), "built-in config.example.toml") {
		t.Errorf("config %q, stderr %q", cfg.Path, stderr.String())
	}
	// With a config in the environment, serve uses it.
	p := writeBareConfig(t, t.TempDir(), "127.0.0.1:0")
	t.Setenv(configEnv, p)
	if cfg, err := c.loadServeConfig(); err != nil || cfg.Path != p {
		t.Errorf("serve with $%s: %v, %v", configEnv, cfg, err)
	}
}
