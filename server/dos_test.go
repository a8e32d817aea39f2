package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cmcrypto "cryptomail/crypto"
	"cryptomail/internal/testenv"
	"cryptomail/server"
	"cryptomail/xmap"
	"cryptomail/xmap/sexmap"
)

// startServerHTTP starts a server whose [http] section is the given one.
func startServerHTTP(t *testing.T, httpSection string) *testServer {
	t.Helper()
	dir := t.TempDir()
	conf := `
[server]
domains = ["example.test"]
data_dir = "data"
[storage]
homes = ["homes/a"]
[lmtp]
listen = "127.0.0.1:0"
[http]
` + httpSection
	cfg, err := server.ParseConfig([]byte(conf), "test.toml", dir)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.SyncBuffer{}
	s, err := server.New(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: s, cfg: cfg, dir: dir, logs: logs}
	s.Start()
	t.Cleanup(func() { ts.Shutdown(context.Background()) })
	return ts
}

// loopbackURL reaches the HTTP listener even when it is bound to 0.0.0.0.
func loopbackURL(ts *testServer, scheme string) string {
	_, port, _ := net.SplitHostPort(ts.Addr("http"))
	return scheme + "://127.0.0.1:" + port
}

// The default anonymous body limit holds the largest sign-up XMAP allows;
// a sign-up with a generated key, the usual case, is measured and logged.
func TestSignupFitsAnonymousLimit(t *testing.T) {
	ent, err := cmcrypto.GenerateKey("Test User", "alice@example.test", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var pk bytes.Buffer
	ent.Serialize(&pk)
	overhead := int64(sexmap.CounterSize + sexmap.TagSize)
	for _, tc := range []struct {
		name        string
		pub, sealed []byte
	}{
		{"generated key", pk.Bytes(), make([]byte, 400)},
		{"largest allowed", make([]byte, xmap.MaxKeySize), make([]byte, xmap.MaxKeySize)},
	} {
		var doc bytes.Buffer
		err := xmap.EncodeRequest(&doc, &xmap.Batch{Requests: []xmap.Request{{ID: "signup-1", Command: &xmap.Signup{
			Invite:    strings.Repeat("A", 64),
			Address:   strings.Repeat("a", 64) + "@" + strings.Repeat("b", 180) + ".test",
			PublicKey: tc.pub, LoginKey: make([]byte, 32), SealedKey: tc.sealed,
			KDF: xmap.KDF{Alg: xmap.KDFArgon2id, Salt: make([]byte, 64), Time: 3, Memory: 65536, Threads: 4},
		}}}})
		if err != nil {
			t.Fatal(err)
		}
		n := int64(doc.Len()) + overhead
		t.Logf("%s: sign-up frame of %d bytes (limit %d)", tc.name, n, sexmap.DefaultMaxAnonBodyBytes)
		if n > sexmap.DefaultMaxAnonBodyBytes {
			t.Errorf("%s: a sign-up of %d bytes does not fit the anonymous limit", tc.name, n)
		}
	}
}

func TestHTTPConnectionCap(t *testing.T) {
	ts := startServerHTTP(t, "listen = \"127.0.0.1:0\"\nmax_connections = 2\n")
	addr := ts.Addr("http")
	var idle []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	third, err := net.Dial("tcp", addr) // the kernel accepts it; the server does not take it
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	io.WriteString(third, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := third.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("a third connection was served while two were open (n=%d, err=%v)", n, err)
	}
	idle[0].Close()
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(third), nil)
	if err != nil {
		t.Fatalf("third connection once a slot was free: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
}

func TestHTTPRequestsInFlightCap(t *testing.T) {
	ts := startServerHTTP(t, "listen = \"127.0.0.1:0\"\nmax_requests_in_flight = 1\n")
	// A handshake whose body never comes holds the only slot.
	c, err := net.Dial("tcp", ts.Addr("http"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: 100\r\n\r\n", sexmap.PathHandshake, sexmap.ContentType)
	time.Sleep(100 * time.Millisecond)
	resp, err := http.Get(loopbackURL(ts, "http") + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("second request in flight: %d %q", resp.StatusCode, body)
	}
	c.Close()
	time.Sleep(100 * time.Millisecond)
	resp, err = http.Get(loopbackURL(ts, "http") + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after the slow request ended: %d", resp.StatusCode)
	}
}

// A connection that never finishes its headers is closed after
// read_header_timeout.
func TestHTTPHeaderTimeout(t *testing.T) {
	ts := startServerHTTP(t, "listen = \"127.0.0.1:0\"\nread_header_timeout = \"200ms\"\n")
	c, err := net.Dial("tcp", ts.Addr("http"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	io.ReadAll(c)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("a connection with unfinished headers stayed open %v", d)
	}
}

func get(t *testing.T, hc *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// Issue 9 item 7: off loopback and without TLS the web client (its code,
// its first-use pin, its passphrase form) would come over a channel anyone
// on the path can change, so it is not served; SeXMAP stays for cmail.
func TestWebClientRefusedOverPlainHTTPOffLoopback(t *testing.T) {
	ts := startServerHTTP(t, "listen = \"0.0.0.0:0\"\n")
	base := loopbackURL(ts, "http")
	for _, p := range []string{"/", "/index.html", "/mailframe.html"} {
		resp, body := get(t, http.DefaultClient, base+p)
		if resp.StatusCode/100 == 2 || !strings.Contains(body, "http.allow_insecure_web") || !strings.Contains(body, "TLS") {
			t.Errorf("GET %s: %d %q", p, resp.StatusCode, body)
		}
	}
	if !strings.Contains(ts.logs.String(), "level=WARN") || !strings.Contains(ts.logs.String(), "http.allow_insecure_web") {
		t.Errorf("no WARN naming the key at start:\n%s", ts.logs.String())
	}
	if resp, body := get(t, http.DefaultClient, base+sexmap.PathWellKnown); resp.StatusCode != 200 || len(body) < 10 {
		t.Errorf("SeXMAP's well-known key: %d", resp.StatusCode)
	}
	pub, err := sexmap.FetchServerKey(t.Context(), http.DefaultClient, base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sexmap.DialNK(t.Context(), http.DefaultClient, base, pub); err != nil {
		t.Errorf("SeXMAP over plain HTTP: %v", err)
	}
}

func TestWebClientServed(t *testing.T) {
	for _, tc := range []struct{ name, section string }{
		{"loopback", "listen = \"127.0.0.1:0\"\n"},
		{"allowed", "listen = \"0.0.0.0:0\"\nallow_insecure_web = true\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServerHTTP(t, tc.section)
			resp, body := get(t, http.DefaultClient, loopbackURL(ts, "http")+"/")
			if resp.StatusCode != 200 || !strings.Contains(body, "<script") {
				t.Fatalf("GET /: %d", resp.StatusCode)
			}
			if h := resp.Header.Get("Strict-Transport-Security"); h != "" {
				t.Errorf("HSTS over plain HTTP: %q", h)
			}
			if strings.Contains(ts.logs.String(), "allow_insecure_web") {
				t.Errorf("warned although the web client is served deliberately:\n%s", ts.logs.String())
			}
		})
	}
}

func TestWebClientOverTLSSendsHSTS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeTestCert(t, dir)
	ts := startServerHTTP(t, fmt.Sprintf("listen = \"0.0.0.0:0\"\ntls_cert = %q\ntls_key = %q\n", certFile, keyFile))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, p := range []string{"/", sexmap.PathWellKnown} {
		resp, _ := get(t, hc, loopbackURL(ts, "https")+p)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
			t.Errorf("GET %s over TLS: %d, HSTS %q", p, resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
		}
	}
}

func writeTestCert(t *testing.T, dir string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// Issue 9 item 9: salt lookups are rate-limited per client IP, with XMAP
// rate-limited; behind a trusted proxy the IP is the forwarded one.
func TestSaltLookupRateLimited(t *testing.T) {
	ts := startServerHTTP(t, "listen = \"127.0.0.1:0\"\nsalt_lookups_per_minute = 3\ntrusted_proxies = [\"127.0.0.1\"]\n")
	base := loopbackURL(ts, "http")
	pub, err := sexmap.FetchServerKey(t.Context(), http.DefaultClient, base)
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(ip string) *xmap.Error {
		t.Helper()
		hc := &http.Client{Transport: headerTransport{"X-Forwarded-For": ip}}
		s, err := sexmap.DialNK(t.Context(), hc, base, pub)
		if err != nil {
			t.Fatal(err)
		}
		var doc bytes.Buffer
		xmap.EncodeRequest(&doc, &xmap.Batch{Requests: []xmap.Request{{ID: "s", Command: &xmap.SaltLookup{Address: "nobody@example.test"}}}})
		raw, err := s.RoundTrip(t.Context(), doc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		resp, err := xmap.DecodeResponse(bytes.NewReader(raw))
		if err != nil || resp.Error != nil {
			t.Fatalf("%v %v", err, resp.Error)
		}
		return resp.Responses[0].Err
	}
	for i := range 3 {
		if e := lookup("198.51.100.1"); e != nil {
			t.Fatalf("lookup %d: %v", i, e)
		}
	}
	if e := lookup("198.51.100.1"); e == nil || e.Code != xmap.CodeRateLimited {
		t.Fatalf("fourth lookup: %v, want rate-limited", e)
	}
	if e := lookup("198.51.100.2"); e != nil {
		t.Fatalf("another client: %v", e)
	}
}

type headerTransport map[string]string

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h {
		r.Header.Set(k, v)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestHTTPConfigKeys(t *testing.T) {
	base := "[server]\ndomains = [\"example.test\"]\n[storage]\nhomes = [\"h\"]\n[http]\n"
	cfg, err := server.ParseConfig([]byte(base+"trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\", \"2001:db8::1\"]\n"), "c.toml", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(cfg.HTTP.Trusted()); got != "[10.0.0.0/8 192.0.2.1/32 2001:db8::1/128]" {
		t.Errorf("trusted proxies %s", got)
	}
	h := cfg.HTTP
	if h.MaxConnections != 4096 || h.MaxRequestsInFlight != 1024 || h.MaxHeaderBytes != 16384 || h.AllowInsecureWeb ||
		h.ReadHeaderTimeout.Duration != 10*time.Second || h.BodyTimeout.Duration != 5*time.Minute ||
		h.HandshakesPerMinute != 120 || h.HandshakeBurst != 120 || h.SaltLookupsPerMinute != 120 || h.MaxAnonymousSessions != 10000 {
		t.Errorf("defaults: %+v", h)
	}
	for _, tc := range []struct{ line, key, msg string }{
		{"trusted_proxies = [\"10.0.0.0/8\", \"proxy.example\"]", "http.trusted_proxies", "entry 2"},
		{"max_connections = -1", "http.max_connections", "at least 0"},
		{"max_header_bytes = 10", "http.max_header_bytes", "at least 1024"},
		{"handshakes_per_minute = 0", "http.handshakes_per_minute", "at least 1"},
		{"body_timeout = \"0s\"", "http.body_timeout", "positive"},
		{"allow_insecure_web = \"yes\"", "http.allow_insecure_web", "incompatible types"},
	} {
		_, err := server.ParseConfig([]byte(base+tc.line+"\n"), "bad.toml", t.TempDir())
		ce, ok := err.(*server.ConfigError)
		if !ok || ce.Key != tc.key || ce.Line != 6 || !strings.Contains(ce.Msg, tc.msg) {
			t.Errorf("%s: %v", tc.line, err)
		}
	}
}
