package server_test

import (
	"errors"
	"fmt"
	"log/slog"
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
		// [cluster]: with etcd set, everything else is required.
		{"cluster no node", base + "[cluster]\netcd = [\"http://127.0.0.1:2379\"]\n", "cluster.node", 0, "required with cluster.etcd"},
		{"cluster bad etcd", base + "[cluster]\netcd = [\"ftp://e:1\"]\n", "cluster.etcd", 6, "not an etcd endpoint"},
		{"cluster etcd no port", base + "[cluster]\netcd = [\"etcd1\"]\n", "cluster.etcd", 6, "not an etcd endpoint"},
		{"cluster empty etcd entry", base + "[cluster]\netcd = [\" \"]\n", "cluster.etcd", 6, "entry 1 is empty"},
		{"cluster etcd twice", base + "[cluster]\netcd = [\"e:1\", \" e:1\"]\n", "cluster.etcd", 6, "twice"},
		{"cluster bad node", clusterCfg("node", `"N1.example"`), "cluster.node", 7, "DNS label"},
		{"cluster bad listen", clusterCfg("listen", `"7443"`), "cluster.listen", 8, "host:port"},
		{"cluster advertise http", clusterCfg("advertise", `"http://n1.internal:7443"`), "cluster.advertise", 9, "https URL"},
		{"cluster advertise no host", clusterCfg("advertise", `"https://:7443"`), "cluster.advertise", 9, "https URL"},
		{"cluster advertise path", clusterCfg("advertise", `"https://n1.internal:7443/x"`), "cluster.advertise", 9, "https URL"},
		{"cluster no cert", clusterCfg("tls_cert", `""`), "cluster.tls_cert", 10, "required with cluster.etcd"},
		{"cluster no key", clusterCfg("tls_key", `""`), "cluster.tls_key", 11, "required with cluster.etcd"},
		{"cluster no ca", clusterCfg("tls_ca", `""`), "cluster.tls_ca", 12, "required with cluster.etcd"},
		{"cluster unknown key", clusterCfg("nodes", `"n1"`), "cluster.nodes", 13, "unknown key"},
		{"cluster etcd not a list", base + "[cluster]\netcd = \"e:1\"\n", "cluster.etcd", 6, "incompatible types"},
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

// clusterCfg is a valid clustered config (from line 5) with key set to value
// (an existing key replaced in place, a new one appended).
func clusterCfg(key, value string) string {
	lines := []string{
		"[server]", "domains = [\"example.test\"]", "[storage]", "homes = [\"h\"]",
		"[cluster]",
		`etcd = ["http://127.0.0.1:2379", "10.0.0.2:2379"]`,
		`node = "n1"`,
		`listen = "127.0.0.1:7443"`,
		`advertise = "https://n1.internal:7443"`,
		`tls_cert = "pki/n1.pem"`,
		`tls_key = "pki/n1.key"`,
		`tls_ca = "/etc/cryptomail/cluster-ca.pem"`,
	}
	found := false
	for i, l := range lines[5:] {
		if strings.HasPrefix(l, key+" = ") {
			lines[5+i] = key + " = " + value
			found = true
		}
	}
	if !found && key != "" {
		lines = append(lines, key+" = "+value)
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestClusterConfig(t *testing.T) {
	dir := t.TempDir()
	cfg, err := server.ParseConfig([]byte(clusterCfg("", "")), "c.toml", dir)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Cluster
	if !c.Enabled() || c.Node != "n1" || c.Listen != "127.0.0.1:7443" || c.Advertise != "https://n1.internal:7443" ||
		len(c.Etcd) != 2 || c.Etcd[1] != "10.0.0.2:2379" {
		t.Errorf("cluster = %+v", c)
	}
	// Files are relative to the config file, like every other path.
	f := c.TLSFiles()
	if f.Cert != filepath.Join(dir, "pki/n1.pem") || f.Key != filepath.Join(dir, "pki/n1.key") || f.CA != "/etc/cryptomail/cluster-ca.pem" {
		t.Errorf("TLS files = %+v", f)
	}
	// No section, or an empty etcd: a single node, nothing else required.
	for _, tt := range []string{"", "[cluster]\n", "[cluster]\netcd = []\nnode = \"BAD NAME\"\n"} {
		cfg, err := server.ParseConfig([]byte("[server]\ndomains = [\"example.test\"]\n[storage]\nhomes = [\"h\"]\n"+tt), "c.toml", dir)
		if err != nil {
			t.Errorf("%q: %v", tt, err)
		} else if cfg.Cluster.Enabled() {
			t.Errorf("%q: cluster enabled", tt)
		}
	}
}

// The example shows [cluster] commented out, so that `make run` stays a
// single node; uncommented, it is a valid clustered config, and every key is
// in docs/CONFIG.md.
func TestClusterExample(t *testing.T) {
	example, err := os.ReadFile("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := server.ParseConfig(example, "config.example.toml", t.TempDir())
	if err != nil || ex.Cluster.Enabled() {
		t.Fatalf("example: cluster enabled or error: %v", err)
	}
	var out []string
	for _, l := range strings.Split(string(example), "\n") {
		if len(l) > 1 && l[0] == '#' && (l[1] == '[' || l[1] >= 'a' && l[1] <= 'z') {
			l = l[1:]
		}
		out = append(out, l)
	}
	cfg, err := server.ParseConfig([]byte(strings.Join(out, "\n")), "uncommented.toml", t.TempDir())
	if err != nil {
		t.Fatalf("the example's [cluster], uncommented: %v", err)
	}
	if !cfg.Cluster.Enabled() || cfg.Cluster.Node == "" || cfg.Cluster.TLSCA == "" {
		t.Errorf("uncommented cluster = %+v", cfg.Cluster)
	}
	for _, k := range []string{"etcd", "node", "listen", "advertise", "tls_cert", "tls_key", "tls_ca"} {
		if !strings.Contains(string(example), "\n#"+k+" = ") {
			t.Errorf("config.example.toml does not show cluster.%s", k)
		}
		if !strings.Contains(string(doc), "`cluster."+k+"`") {
			t.Errorf("docs/CONFIG.md does not describe `cluster.%s`", k)
		}
	}
}

// A clustered config is refused before anything is opened or created: no
// partial cluster mode.
func TestClusterRefusedToRun(t *testing.T) {
	dir := t.TempDir()
	cfg, err := server.ParseConfig([]byte(clusterCfg("", "")), "c.toml", dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Server.DataDir = filepath.Join(dir, "data")
	cfg.Storage.Homes = []string{filepath.Join(dir, "homes")}
	if _, err := server.New(t.Context(), cfg, slog.New(slog.DiscardHandler)); !errors.Is(err, server.ErrClusterUnavailable) || !strings.Contains(err.Error(), "c.toml") {
		t.Errorf("New = %v, want ErrClusterUnavailable naming the file", err)
	}
	if _, err := server.OpenStore(t.Context(), cfg, slog.New(slog.DiscardHandler)); !errors.Is(err, server.ErrClusterUnavailable) {
		t.Errorf("OpenStore = %v, want ErrClusterUnavailable", err)
	}
	if _, err := server.OpenExistingStore(t.Context(), cfg, slog.New(slog.DiscardHandler)); !errors.Is(err, server.ErrClusterUnavailable) {
		t.Errorf("OpenExistingStore = %v, want ErrClusterUnavailable", err)
	}
	if err := server.CheckStorage(t.Context(), cfg); !errors.Is(err, server.ErrClusterUnavailable) {
		t.Errorf("CheckStorage = %v, want ErrClusterUnavailable", err)
	}
	for _, p := range []string{cfg.Server.DataDir, cfg.Storage.Homes[0]} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s created: %v", p, err)
		}
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
