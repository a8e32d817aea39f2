package server_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cryptomail"
	"cryptomail/server"
	"cryptomail/xmap"
)

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := server.LoadConfig("../config.example.toml")
	if err != nil {
		t.Fatalf("config.example.toml: %v", err)
	}
	root, _ := filepath.Abs("..")
	if want := filepath.Join(root, "data"); cfg.Server.DataDir != want {
		t.Errorf("data_dir = %q, want %q (relative to the config file)", cfg.Server.DataDir, want)
	}
	if want := filepath.Join(root, "data", "homes"); len(cfg.Storage.Homes) != 1 || cfg.Storage.Homes[0] != want {
		t.Errorf("homes = %q, want [%q]", cfg.Storage.Homes, want)
	}
	if cfg.LMTP.Listen != "127.0.0.1:2424" || cfg.HTTP.Listen != "127.0.0.1:8080" || cfg.SMTP.Listen != "" {
		t.Errorf("listeners = %q %q %q", cfg.LMTP.Listen, cfg.HTTP.Listen, cfg.SMTP.Listen)
	}
	if cfg.LMTP.ReadTimeout.Duration != 10*time.Minute {
		t.Errorf("lmtp.read_timeout = %v", cfg.LMTP.ReadTimeout)
	}
	// The embedded copy is the same file.
	b, err := os.ReadFile("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(cryptomail.DefaultConfig) {
		t.Error("embedded DefaultConfig differs from config.example.toml")
	}
}

// Every key in Defaults must be shown in config.example.toml and described in
// docs/CONFIG.md: the example is the documentation.
func TestEveryKeyDocumented(t *testing.T) {
	example, _ := os.ReadFile("../config.example.toml")
	doc, err := os.ReadFile("../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{
		"server":  {"hostname", "domains", "data_dir"},
		"storage": {"homes", "max_open_shards"},
		"lmtp":    {"listen", "max_message_bytes", "max_recipients", "max_connections", "read_timeout", "write_timeout"},
		"smtp":    {"listen", "tls_cert", "tls_key", "max_message_bytes", "max_recipients", "max_connections", "read_timeout", "write_timeout"},
		"http":    {"listen", "tls_cert", "tls_key"},
		"relay":   {"smarthost", "starttls", "ca_file", "username", "password", "allow_insecure_auth", "queue_lifetime", "min_retry", "max_retry", "concurrency", "timeout"},
		"log":     {"level", "format"},
	}
	keys["relay"] = append(keys["relay"], "max_recipients_per_hour")
	for table, ks := range keys {
		for _, k := range ks {
			full := table + "." + k
			if !strings.Contains(string(doc), "`"+full+"`") {
				t.Errorf("docs/CONFIG.md does not describe `%s`", full)
			}
			// keyLine is what errors use; reuse it through a deliberate error.
			mod := strings.Replace(string(example), "["+table+"]", "["+table+"]\nbogus_"+k+" = 1", 1)
			_, err := server.ParseConfig([]byte(mod), "x.toml", t.TempDir())
			var ce *server.ConfigError
			if !errors.As(err, &ce) || ce.Key != table+".bogus_"+k {
				t.Errorf("unknown key in [%s] not reported: %v", table, err)
			}
			if !strings.Contains(string(example), "\n"+k+" = ") {
				t.Errorf("config.example.toml does not show %s", full)
			}
		}
	}
}

func TestConfigErrors(t *testing.T) {
	base := "[server]\ndomains = [\"example.test\"]\n[storage]\nhomes = [\"h\"]\n"
	tests := []struct {
		name     string
		toml     string
		wantKey  string
		wantLine int
		wantMsg  string
	}{
		{"unknown key", base + "[lmtp]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n", "lmtp.lisen", 7, "unknown key"},
		{"unknown table", base + "[lmpt]\nlisten = \"x\"\n", "lmpt", 5, "unknown key"},
		{"wrong type", base + "[lmtp]\nmax_message_bytes = \"big\"\n", "lmtp.max_message_bytes", 6, "incompatible types"},
		{"wrong type list", "[server]\ndomains = \"example.test\"\n[storage]\nhomes = [\"h\"]\n", "server.domains", 2, "incompatible types"},
		{"bad duration", base + "[smtp]\nread_timeout = \"5 minutes\"\n", "smtp.read_timeout", 6, "invalid duration"},
		{"missing domains", "[storage]\nhomes = [\"h\"]\n", "server.domains", 0, "required"},
		{"empty domains", "[server]\ndomains = []\n[storage]\nhomes = [\"h\"]\n", "server.domains", 2, "required"},
		{"bad domain", "[server]\ndomains = [\"exa mple\"]\n[storage]\nhomes = [\"h\"]\n", "server.domains", 2, "bad"},
		{"missing homes", "[server]\ndomains = [\"example.test\"]\n", "storage.homes", 0, "required"},
		{"dup homes", "[server]\ndomains = [\"example.test\"]\n[storage]\nhomes = [\"h\", \"h\"]\n", "storage.homes", 4, "twice"},
		{"bad listen", base + "[lmtp]\nlisten = \"2424\"\n", "lmtp.listen", 6, "host:port"},
		{"zero shards", base + "max_open_shards = 0\n", "storage.max_open_shards", 5, "at least 1"},
		{"cert without key", base + "[smtp]\ntls_cert = \"c.pem\"\n", "smtp.tls_key", 0, "together"},
		{"bad level", base + "[log]\nlevel = \"loud\"\n", "log.level", 6, "one of"},
		{"bad smarthost", base + "[relay]\nsmarthost = \"relay.example\"\n", "relay.smarthost", 6, "host:port"},
		{"bad starttls", base + "[relay]\nstarttls = \"maybe\"\n", "relay.starttls", 6, "required, opportunistic or off"},
		{"user without password", base + "[relay]\nusername = \"u\"\n", "relay.password", 0, "together"},
		{"negative send limit", base + "[relay]\nmax_recipients_per_hour = -1\n", "relay.max_recipients_per_hour", 6, "negative"},
		{"zero message size", base + "[lmtp]\nmax_message_bytes = 0\n", "lmtp.max_message_bytes", 6, "positive"},
		// The size rule: nothing may be accepted that a client cannot fetch.
		{"lmtp message size unservable", base + "[lmtp]\nmax_message_bytes = 52428800\n", "lmtp.max_message_bytes", 6, "52428800 is over 20905984"},
		{"smtp message size unservable", base + "[smtp]\nlisten = \"127.0.0.1:25\"\nmax_message_bytes = 20905985\n", "smtp.max_message_bytes", 7, "20905985 is over 20905984"},
		{"syntax", base + "[lmtp\n", "*", -1, "end table name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := server.ParseConfig([]byte(tt.toml), "bad.toml", t.TempDir())
			var ce *server.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v (%T), want *ConfigError", err, err)
			}
			keyOK := ce.Key == tt.wantKey || tt.wantKey == "*"
			lineOK := ce.Line == tt.wantLine || tt.wantLine == -1 && ce.Line > 0
			if !keyOK || !lineOK || !strings.Contains(ce.Msg, tt.wantMsg) {
				t.Errorf("got key %q line %d msg %q; want key %q line %d msg containing %q",
					ce.Key, ce.Line, ce.Msg, tt.wantKey, tt.wantLine, tt.wantMsg)
			}
			if !strings.HasPrefix(err.Error(), "bad.toml") {
				t.Errorf("error %q does not start with the file name", err)
			}
		})
	}
}

func TestConfigDefaultsAndPaths(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.toml")
	os.WriteFile(p, []byte("[server]\ndomains = [\"Example.TEST.\"]\ndata_dir = \"/abs/data\"\n[storage]\nhomes = [\"rel/h1\", \"/abs/h2\"]\n"), 0o600)
	cfg, err := server.LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Domains[0] != "example.test" {
		t.Errorf("domain not normalized: %q", cfg.Server.Domains[0])
	}
	if cfg.Server.DataDir != "/abs/data" || cfg.Storage.Homes[0] != filepath.Join(dir, "rel/h1") || cfg.Storage.Homes[1] != "/abs/h2" {
		t.Errorf("paths: %q %q", cfg.Server.DataDir, cfg.Storage.Homes)
	}
	if cfg.Storage.MaxOpenShards != 1024 || cfg.LMTP.Listen != "127.0.0.1:2424" || cfg.Log.Level != "info" {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	// The message size defaults keep the size rule: 19 MiB, within what
	// clients can fetch, and exactly config.example.toml's values.
	if cfg.LMTP.MaxMessageBytes != 19<<20 || cfg.SMTP.MaxMessageBytes != 19<<20 || server.DefaultMaxMessageBytes > xmap.MaxDeliverySize {
		t.Errorf("max_message_bytes defaults: lmtp %d, smtp %d", cfg.LMTP.MaxMessageBytes, cfg.SMTP.MaxMessageBytes)
	}
	ex, err := server.LoadConfig("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if ex.LMTP.MaxMessageBytes != server.DefaultMaxMessageBytes || ex.SMTP.MaxMessageBytes != server.DefaultMaxMessageBytes {
		t.Errorf("config.example.toml: max_message_bytes lmtp %d, smtp %d, want %d", ex.LMTP.MaxMessageBytes, ex.SMTP.MaxMessageBytes, server.DefaultMaxMessageBytes)
	}
	// The limit itself is allowed.
	if _, err := server.ParseConfig([]byte(fmt.Sprintf("[server]\ndomains = [\"example.test\"]\n[storage]\nhomes = [\"h\"]\n[lmtp]\nmax_message_bytes = %d\n", xmap.MaxDeliverySize)), "c.toml", dir); err != nil {
		t.Errorf("max_message_bytes = xmap.MaxDeliverySize: %v", err)
	}
}

func TestCanonicalAddress(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice@example.test", "alice@example.test"},
		{"Alice@Example.TEST", "alice@example.test"},
		{"alice+news@example.test", "alice@example.test"},
		{"alice+a+b@example.test", "alice@example.test"},
		{"a.b-c_d@example.test", "a.b-c_d@example.test"},
		{"josé@exämple.test", "josé@exämple.test"},
		{"", ""},
		{"alice", ""},
		{"@example.test", ""},
		{"alice@", ""},
		{"+news@example.test", ""},
		{"al ice@example.test", ""},
		{"alice@exa_mple.test", ""},
		{"alice@-example.test", ""},
		{".alice@example.test", ""},
		{"al..ice@example.test", ""},
		{"alice@example..test", ""},
		{strings.Repeat("a", 65) + "@example.test", ""},
	}
	for _, tt := range tests {
		got, err := server.CanonicalAddress(tt.in)
		if tt.want == "" {
			if !errors.Is(err, server.ErrBadAddress) {
				t.Errorf("CanonicalAddress(%q) = %q, %v; want ErrBadAddress", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("CanonicalAddress(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add(cryptomail.DefaultConfig)
	f.Add([]byte("[server]\ndomains = [\"a.b\"]\n[storage]\nhomes = [\"h\"]\n"))
	f.Add([]byte("[lmtp]\nlisten = 1\n"))
	f.Add([]byte("[[server]]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := server.ParseConfig(data, "fuzz.toml", "/base")
		if err != nil {
			var ce *server.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error is not a *ConfigError: %T %v", err, err)
			}
			return
		}
		if len(cfg.Server.Domains) == 0 || len(cfg.Storage.Homes) == 0 || cfg.Storage.MaxOpenShards < 1 {
			t.Fatalf("invalid config accepted: %+v", cfg)
		}
		for _, h := range cfg.Storage.Homes {
			if !filepath.IsAbs(h) {
				t.Fatalf("home %q not absolute", h)
			}
		}
	})
}
