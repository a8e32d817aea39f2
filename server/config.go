package server

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"cryptomail/server/cluster"
	"cryptomail/xmap"
)

// Config is the whole TOML configuration. Field docs live in docs/CONFIG.md and
// config.example.toml; the toml tags are the contract with admins.
type Config struct {
	Server  ServerConfig  `toml:"server"`
	Storage StorageConfig `toml:"storage"`
	LMTP    LMTPConfig    `toml:"lmtp"`
	SMTP    SMTPConfig    `toml:"smtp"`
	HTTP    HTTPConfig    `toml:"http"`
	Relay   RelayConfig   `toml:"relay"`
	Log     LogConfig     `toml:"log"`
	Cluster ClusterConfig `toml:"cluster"`

	// Path is the file the config was read from ("" for the embedded default).
	Path string `toml:"-"`
}

type ServerConfig struct {
	Hostname string   `toml:"hostname"`
	Domains  []string `toml:"domains"`
	DataDir  string   `toml:"data_dir"`
}

type StorageConfig struct {
	Homes         []string `toml:"homes"`
	MaxOpenShards int      `toml:"max_open_shards"`
}

type LMTPConfig struct {
	Listen          string   `toml:"listen"`
	MaxMessageBytes int64    `toml:"max_message_bytes"`
	MaxRecipients   int      `toml:"max_recipients"`
	MaxConnections  int      `toml:"max_connections"`
	ReadTimeout     Duration `toml:"read_timeout"`
	WriteTimeout    Duration `toml:"write_timeout"`
}

type SMTPConfig struct {
	Listen          string   `toml:"listen"`
	TLSCert         string   `toml:"tls_cert"`
	TLSKey          string   `toml:"tls_key"`
	MaxMessageBytes int64    `toml:"max_message_bytes"`
	MaxRecipients   int      `toml:"max_recipients"`
	MaxConnections  int      `toml:"max_connections"`
	ReadTimeout     Duration `toml:"read_timeout"`
	WriteTimeout    Duration `toml:"write_timeout"`
}

type HTTPConfig struct {
	Listen  string `toml:"listen"`
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// AllowInsecureWeb serves the web client over plain HTTP on an address
	// that is not loopback.
	AllowInsecureWeb bool `toml:"allow_insecure_web"`
	// TrustedProxies lists the IPs and CIDR prefixes whose X-Forwarded-For
	// names the client.
	TrustedProxies       []string `toml:"trusted_proxies"`
	MaxConnections       int      `toml:"max_connections"`
	MaxRequestsInFlight  int      `toml:"max_requests_in_flight"`
	MaxHeaderBytes       int      `toml:"max_header_bytes"`
	ReadHeaderTimeout    Duration `toml:"read_header_timeout"`
	BodyTimeout          Duration `toml:"body_timeout"`
	IdleTimeout          Duration `toml:"idle_timeout"`
	HandshakesPerMinute  int      `toml:"handshakes_per_minute"`
	HandshakeBurst       int      `toml:"handshake_burst"`
	SaltLookupsPerMinute int      `toml:"salt_lookups_per_minute"`
	MaxAnonymousSessions int      `toml:"max_anonymous_sessions"`

	// trusted is TrustedProxies parsed by validate.
	trusted []netip.Prefix
}

// Trusted returns the parsed trusted_proxies.
func (h *HTTPConfig) Trusted() []netip.Prefix { return h.trusted }

// RelayConfig is the smarthost that mail to remote recipients goes through.
type RelayConfig struct {
	Smarthost         string   `toml:"smarthost"`
	StartTLS          string   `toml:"starttls"`
	CAFile            string   `toml:"ca_file"`
	Username          string   `toml:"username"`
	Password          string   `toml:"password"`
	AllowInsecureAuth bool     `toml:"allow_insecure_auth"`
	QueueLifetime     Duration `toml:"queue_lifetime"`
	MinRetry          Duration `toml:"min_retry"`
	MaxRetry          Duration `toml:"max_retry"`
	Concurrency       int      `toml:"concurrency"`
	Timeout           Duration `toml:"timeout"`
	// MaxRecipientsPerHour bounds what one user sends (every recipient of
	// every send, local or remote); 0: no limit.
	MaxRecipientsPerHour int `toml:"max_recipients_per_hour"`
}

// ClusterConfig is the [cluster] section. Without etcd endpoints the server
// runs alone on its SQLite metabase and the other keys are not used.
type ClusterConfig struct {
	// Etcd lists the etcd endpoints ("http://host:2379" or host:port).
	Etcd []string `toml:"etcd"`
	// Node is this node's name, unique in the cluster (a DNS label).
	Node string `toml:"node"`
	// Listen is the internal listener's host:port.
	Listen string `toml:"listen"`
	// Advertise is the https URL other nodes call this node's listener at.
	Advertise string `toml:"advertise"`
	// TLSCert, TLSKey and TLSCA are the PEM files of mutual TLS between
	// nodes (cryptomail cluster certs makes them).
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	TLSCA   string `toml:"tls_ca"`
}

// Enabled reports whether the config names a cluster (etcd endpoints).
func (c *ClusterConfig) Enabled() bool { return len(c.Etcd) > 0 }

// TLSFiles are the node's mutual TLS files, for cluster.ServerTLS and
// cluster.ClientTLS.
func (c *ClusterConfig) TLSFiles() cluster.TLSFiles {
	return cluster.TLSFiles{CA: c.TLSCA, Cert: c.TLSCert, Key: c.TLSKey}
}

// ErrClusterUnavailable: the config names a cluster, which this version
// cannot run yet (issue 11: the configuration and the certificates come
// first, the wiring into serve later). Nothing runs half clustered.
var ErrClusterUnavailable = errors.New("clustering is not available in this version yet")

// requireSingleNode refuses a clustered config before anything is opened or
// created.
func requireSingleNode(cfg *Config) error {
	if !cfg.Cluster.Enabled() {
		return nil
	}
	return fmt.Errorf("%s: [cluster] etcd is set: %w; leave out [cluster] (or its etcd) to run this node alone", cfg.Path, ErrClusterUnavailable)
}

type LogConfig struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// Duration is a time.Duration written as a Go duration string ("30s", "5m").
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (use e.g. \"30s\", \"5m\")", b)
	}
	if v < 0 {
		return fmt.Errorf("duration %q must not be negative", b)
	}
	d.Duration = v
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// DefaultMaxMessageBytes is the default of lmtp.max_message_bytes and
// smtp.max_message_bytes: the size rule, xmap.MaxDeliverySize (20 MiB less
// 64 KiB for trace fields and OpenPGP framing), rounded down to a whole MiB.
// A configured value may be anything up to xmap.MaxDeliverySize itself.
const DefaultMaxMessageBytes = xmap.MaxDeliverySize &^ (1<<20 - 1) // 19 MiB

// Defaults returns the configuration used for every key a file leaves out.
func Defaults() Config {
	return Config{
		Server:  ServerConfig{Hostname: "localhost", DataDir: "data"},
		Storage: StorageConfig{MaxOpenShards: 1024},
		LMTP: LMTPConfig{
			Listen:          "127.0.0.1:2424",
			MaxMessageBytes: DefaultMaxMessageBytes,
			MaxRecipients:   1000,
			ReadTimeout:     Duration{10 * time.Minute},
			WriteTimeout:    Duration{10 * time.Minute},
		},
		SMTP: SMTPConfig{
			MaxMessageBytes: DefaultMaxMessageBytes,
			MaxRecipients:   100,
			MaxConnections:  500,
			ReadTimeout:     Duration{5 * time.Minute},
			WriteTimeout:    Duration{5 * time.Minute},
		},
		HTTP: HTTPConfig{
			Listen:               "127.0.0.1:8080",
			MaxConnections:       4096,
			MaxRequestsInFlight:  1024,
			MaxHeaderBytes:       16 << 10,
			ReadHeaderTimeout:    Duration{10 * time.Second},
			BodyTimeout:          Duration{5 * time.Minute},
			IdleTimeout:          Duration{2 * time.Minute},
			HandshakesPerMinute:  120,
			HandshakeBurst:       120,
			SaltLookupsPerMinute: 120,
			MaxAnonymousSessions: 10000,
		},
		Relay: RelayConfig{
			StartTLS:      "required",
			QueueLifetime: Duration{5 * 24 * time.Hour},
			MinRetry:      Duration{time.Minute},
			MaxRetry:      Duration{time.Hour},
			Concurrency:   4,
			Timeout:       Duration{5 * time.Minute},

			MaxRecipientsPerHour: 1000,
		},
		Log: LogConfig{Level: "info", Format: "text"},
	}
}

// ConfigError names the offending key and, when known, its line.
type ConfigError struct {
	File string
	Key  string
	Line int
	Msg  string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	return b.String()
}

// LoadConfig reads and validates a config file. Relative paths in it are
// resolved against the file's directory.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseConfig(data, path, filepath.Dir(abs))
}

// ParseConfig decodes data (named name in errors) and resolves relative paths
// against baseDir.
func ParseConfig(data []byte, name, baseDir string) (*Config, error) {
	cfg := Defaults()
	cfg.Path = name
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&cfg)
	if err != nil {
		return nil, decodeError(name, data, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0].String()
		return nil, &ConfigError{File: name, Key: k, Line: keyLine(data, und[0]), Msg: "unknown key"}
	}
	if err := cfg.validate(); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			ce.File = name
			ce.Line = keyLine(data, toml.Key(strings.Split(ce.Key, ".")))
		}
		return nil, err
	}
	cfg.resolvePaths(baseDir)
	return &cfg, nil
}

func decodeError(name string, data []byte, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &ConfigError{File: name, Key: pe.LastKey, Line: pe.Position.Line, Msg: pe.Message}
	}
	// Type mismatches come as plain errors of the form
	// `toml: line N (last key "a.b"): incompatible types: ...`.
	msg := strings.TrimPrefix(err.Error(), "toml: ")
	ce := &ConfigError{File: name, Msg: msg}
	var line int
	var key string
	if n, _ := fmt.Sscanf(msg, "line %d (last key %q):", &line, &key); n == 2 {
		ce.Line, ce.Key = line, key
		if _, rest, ok := strings.Cut(msg, "): "); ok {
			ce.Msg = rest
		}
	} else if n, _ := fmt.Sscanf(msg, "(last key %q):", &key); n == 1 {
		ce.Key = key
		ce.Line = keyLine(data, toml.Key(strings.Split(key, ".")))
		if _, rest, ok := strings.Cut(msg, "): "); ok {
			ce.Msg = rest
		}
	}
	return ce
}

// keyLine finds the line where a dotted key is set, for error messages only.
// It understands [table] headers and `key = value` lines, which is all the
// configuration uses; it returns 0 when unsure.
func keyLine(data []byte, key toml.Key) int {
	if len(key) == 0 {
		return 0
	}
	table := strings.Join(key[:len(key)-1], ".")
	last := key[len(key)-1]
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") && !strings.HasPrefix(line, "[[") {
			cur = strings.TrimSpace(strings.Trim(line[:strings.IndexByte(line+"]", ']')+1], "[]"))
			if len(key) == 1 && cur == last {
				return n
			}
			continue
		}
		if cur != table {
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if ok && strings.Trim(strings.TrimSpace(k), `"'`) == last {
			return n
		}
	}
	return 0
}

func (c *Config) validate() error {
	bad := func(key, format string, args ...any) error {
		return &ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	if strings.TrimSpace(c.Server.Hostname) == "" {
		return bad("server.hostname", "must not be empty")
	}
	if len(c.Server.Domains) == 0 {
		return bad("server.domains", "required: list at least one mail domain served")
	}
	for i, d := range c.Server.Domains {
		nd, err := NormalizeDomain(d)
		if err != nil {
			return bad("server.domains", "entry %d: %v", i+1, err)
		}
		c.Server.Domains[i] = nd
	}
	if c.Server.DataDir == "" {
		return bad("server.data_dir", "must not be empty")
	}
	if len(c.Storage.Homes) == 0 {
		return bad("storage.homes", "required: list at least one directory for user shards")
	}
	for i, h := range c.Storage.Homes {
		if strings.TrimSpace(h) == "" {
			return bad("storage.homes", "entry %d is empty", i+1)
		}
		if slices.Contains(c.Storage.Homes[:i], h) {
			return bad("storage.homes", "%q is listed twice", h)
		}
	}
	if c.Storage.MaxOpenShards < 1 {
		return bad("storage.max_open_shards", "must be at least 1, got %d", c.Storage.MaxOpenShards)
	}
	if c.LMTP.Listen == "" {
		return bad("lmtp.listen", "must not be empty (mail has no other way in)")
	}
	for _, l := range []struct {
		key, v string
		opt    bool
	}{{"lmtp.listen", c.LMTP.Listen, false}, {"smtp.listen", c.SMTP.Listen, true}, {"http.listen", c.HTTP.Listen, true}} {
		if l.opt && l.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(l.v); err != nil {
			return bad(l.key, "%q is not host:port", l.v)
		}
	}
	// The size rule: whatever a listener accepts must be storable in a form
	// every client can fetch (xmap.MaxDeliverySize).
	for _, m := range []struct {
		key string
		v   int64
	}{{"lmtp.max_message_bytes", c.LMTP.MaxMessageBytes}, {"smtp.max_message_bytes", c.SMTP.MaxMessageBytes}} {
		if m.v < 1 {
			return bad(m.key, "must be positive")
		}
		if m.v > xmap.MaxDeliverySize {
			return bad(m.key, "%d is over %d, the largest message that every client can still fetch once it is encrypted and stored (docs/CONFIG.md); the default is %d",
				m.v, xmap.MaxDeliverySize, DefaultMaxMessageBytes)
		}
	}
	if c.LMTP.MaxRecipients < 1 {
		return bad("lmtp.max_recipients", "must be at least 1")
	}
	if c.SMTP.MaxRecipients < 1 {
		return bad("smtp.max_recipients", "must be at least 1")
	}
	if c.LMTP.MaxConnections < 0 {
		return bad("lmtp.max_connections", "must not be negative")
	}
	if c.SMTP.MaxConnections < 0 {
		return bad("smtp.max_connections", "must not be negative")
	}
	if (c.SMTP.TLSCert == "") != (c.SMTP.TLSKey == "") {
		return bad("smtp.tls_key", "tls_cert and tls_key must be set together")
	}
	if (c.HTTP.TLSCert == "") != (c.HTTP.TLSKey == "") {
		return bad("http.tls_key", "tls_cert and tls_key must be set together")
	}
	if err := c.HTTP.validate(bad); err != nil {
		return err
	}
	if c.Relay.Smarthost != "" {
		if _, _, err := net.SplitHostPort(c.Relay.Smarthost); err != nil {
			return bad("relay.smarthost", "%q is not host:port", c.Relay.Smarthost)
		}
	}
	switch c.Relay.StartTLS {
	case "required", "opportunistic", "off":
	default:
		return bad("relay.starttls", "must be required, opportunistic or off; got %q", c.Relay.StartTLS)
	}
	if (c.Relay.Username == "") != (c.Relay.Password == "") {
		return bad("relay.password", "username and password must be set together")
	}
	if c.Relay.Concurrency < 1 {
		return bad("relay.concurrency", "must be at least 1")
	}
	if c.Relay.MaxRecipientsPerHour < 0 {
		return bad("relay.max_recipients_per_hour", "must not be negative (0: no limit)")
	}
	if c.Relay.QueueLifetime.Duration <= 0 || c.Relay.MinRetry.Duration <= 0 || c.Relay.Timeout.Duration <= 0 {
		return bad("relay.queue_lifetime", "queue_lifetime, min_retry and timeout must be positive")
	}
	if c.Relay.MaxRetry.Duration < c.Relay.MinRetry.Duration {
		return bad("relay.max_retry", "must not be shorter than min_retry")
	}
	if err := c.Cluster.validate(bad); err != nil {
		return err
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		return bad("log.level", "must be one of debug, info, warn, error; got %q", c.Log.Level)
	}
	switch strings.ToLower(c.Log.Format) {
	case "text", "json":
	default:
		return bad("log.format", "must be text or json; got %q", c.Log.Format)
	}
	return nil
}

func (h *HTTPConfig) validate(bad func(key, format string, args ...any) error) error {
	h.trusted = nil
	for i, p := range h.TrustedProxies {
		p = strings.TrimSpace(p)
		if pfx, err := netip.ParsePrefix(p); err == nil {
			h.trusted = append(h.trusted, pfx.Masked())
			continue
		}
		a, err := netip.ParseAddr(p)
		if err != nil {
			return bad("http.trusted_proxies", "entry %d: %q is neither an IP address nor a CIDR prefix", i+1, p)
		}
		a = a.Unmap()
		h.trusted = append(h.trusted, netip.PrefixFrom(a, a.BitLen()))
	}
	for _, n := range []struct {
		key string
		v   int
		min int
	}{
		{"http.max_connections", h.MaxConnections, 0},
		{"http.max_requests_in_flight", h.MaxRequestsInFlight, 0},
		{"http.max_header_bytes", h.MaxHeaderBytes, 1024},
		{"http.handshakes_per_minute", h.HandshakesPerMinute, 1},
		{"http.handshake_burst", h.HandshakeBurst, 1},
		{"http.salt_lookups_per_minute", h.SaltLookupsPerMinute, 1},
		{"http.max_anonymous_sessions", h.MaxAnonymousSessions, 1},
	} {
		if n.v < n.min {
			return bad(n.key, "must be at least %d, got %d", n.min, n.v)
		}
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{{"http.read_header_timeout", h.ReadHeaderTimeout}, {"http.body_timeout", h.BodyTimeout}, {"http.idle_timeout", h.IdleTimeout}} {
		if d.v.Duration <= 0 {
			return bad(d.key, "must be positive")
		}
	}
	return nil
}

func (c *ClusterConfig) validate(bad func(key, format string, args ...any) error) error {
	if !c.Enabled() {
		return nil
	}
	for i, e := range c.Etcd {
		e = strings.TrimSpace(e)
		if e == "" {
			return bad("cluster.etcd", "entry %d is empty", i+1)
		}
		if strings.Contains(e, "://") {
			u, err := url.Parse(e)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
				return bad("cluster.etcd", "entry %d: %q is not an etcd endpoint (http://host:port, https://host:port or host:port)", i+1, e)
			}
		} else if _, _, err := net.SplitHostPort(e); err != nil {
			return bad("cluster.etcd", "entry %d: %q is not an etcd endpoint (http://host:port, https://host:port or host:port)", i+1, e)
		}
		if slices.Contains(c.Etcd[:i], e) {
			return bad("cluster.etcd", "%q is listed twice", e)
		}
		c.Etcd[i] = e
	}
	if c.Node == "" {
		return bad("cluster.node", "required with cluster.etcd: this node's name, unique in the cluster")
	}
	if err := cluster.CheckNodeName(c.Node); err != nil {
		return bad("cluster.node", "%v", err)
	}
	if c.Listen == "" {
		return bad("cluster.listen", "required with cluster.etcd: the internal listener's host:port")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return bad("cluster.listen", "%q is not host:port", c.Listen)
	}
	if c.Advertise == "" {
		return bad("cluster.advertise", "required with cluster.etcd: the https URL other nodes call this node at")
	}
	u, err := url.Parse(c.Advertise)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return bad("cluster.advertise", "%q is not an https URL of a host (e.g. \"https://n1.internal:7443\")", c.Advertise)
	}
	for _, f := range []struct{ key, v string }{{"cluster.tls_cert", c.TLSCert}, {"cluster.tls_key", c.TLSKey}, {"cluster.tls_ca", c.TLSCA}} {
		if strings.TrimSpace(f.v) == "" {
			return bad(f.key, "required with cluster.etcd: nodes talk only over mutual TLS (cryptomail cluster certs makes the files)")
		}
	}
	return nil
}

func (c *Config) resolvePaths(base string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	c.Server.DataDir = abs(c.Server.DataDir)
	for i := range c.Storage.Homes {
		c.Storage.Homes[i] = abs(c.Storage.Homes[i])
	}
	c.SMTP.TLSCert, c.SMTP.TLSKey = abs(c.SMTP.TLSCert), abs(c.SMTP.TLSKey)
	c.HTTP.TLSCert, c.HTTP.TLSKey = abs(c.HTTP.TLSCert), abs(c.HTTP.TLSKey)
	c.Relay.CAFile = abs(c.Relay.CAFile)
	c.Cluster.TLSCert, c.Cluster.TLSKey, c.Cluster.TLSCA = abs(c.Cluster.TLSCert), abs(c.Cluster.TLSKey), abs(c.Cluster.TLSCA)
}
