package sexmap_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"cryptomail/internal/testenv"
	"cryptomail/xmap/sexmap"
)

// stallPost opens a connection, sends the headers of a POST to the transport
// path declaring length bytes and a few bytes of body, then stalls.
func stallPost(t *testing.T, addr, session string, length int) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\n%s: %s\r\nContent-Length: %d\r\n\r\n0123456789abcdef",
		sexmap.PathTransport, sexmap.ContentType, sexmap.HeaderSession, session, length)
	return conn
}

func totalAlloc() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// Issue 9 item 2: a declared Content-Length used to be allocated before a
// byte of the body arrived, so idle connections held the server's memory.
func TestDeclaredLengthIsNotAllocated(t *testing.T) {
	const limit = 8 << 20
	e := newEnv(t, func(c *sexmap.Config) { c.MaxBodyBytes = limit })
	c := e.xk(t)
	addr := e.ts.Listener.Addr().String()
	before := totalAlloc()
	var conns []net.Conn
	for range 16 {
		conns = append(conns, stallPost(t, addr, c.ID(), limit))
	}
	// Let every handler reach the body read (the old code grew its buffer
	// to the declared length right there).
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && totalAlloc()-before < 16*limit {
		time.Sleep(20 * time.Millisecond)
	}
	grown := totalAlloc() - before
	for _, conn := range conns {
		conn.Close()
	}
	t.Logf("allocated %d KiB for 16 stalled bodies declaring %d MiB each", grown>>10, limit>>20)
	if grown > 4<<20 {
		t.Fatalf("16 stalled requests allocated %d bytes; a declared length must not be allocated", grown)
	}
	mustRoundTrip(t, c, "still serving")
}

// Issue 9 item 2: anonymous sessions only need room for salt lookups and
// sign-up; a larger body gets 413 whether it declares its length or not.
func TestAnonymousBodyLimit(t *testing.T) {
	e := newEnv(t, func(c *sexmap.Config) { c.MaxAnonBodyBytes = 4096 })
	c := e.nk(t)
	mustRoundTrip(t, c, strings.Repeat("a", 4096-8-16))
	_, err := c.RoundTrip(t.Context(), make([]byte, 4096-8-16+1))
	if se, ok := err.(*sexmap.StatusError); !ok || se.StatusCode != http.StatusRequestEntityTooLarge || se.Code != "too-large" {
		t.Fatalf("anonymous oversized: %v", err)
	}
	// Undeclared (chunked) and far over the limit: refused once the limit is read.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.ts.URL+sexmap.PathTransport,
		struct{ *strings.Reader }{strings.NewReader(strings.Repeat("b", 1<<20))})
	req.Header.Set("Content-Type", sexmap.ContentType)
	req.Header.Set(sexmap.HeaderSession, c.ID())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked anonymous oversized: status %d", resp.StatusCode)
	}
	// The default leaves room for the biggest anonymous request, a sign-up
	// (measured in server's TestSignupFitsAnonymousLimit), and no more.
	d := newEnv(t, nil)
	n := d.nk(t)
	mustRoundTrip(t, n, strings.Repeat("s", 16<<10))
	if _, err := n.RoundTrip(t.Context(), make([]byte, sexmap.DefaultMaxAnonBodyBytes)); err == nil {
		t.Fatal("an anonymous request over DefaultMaxAnonBodyBytes was accepted")
	}
}

// Issue 9 item 3a: message-1 floods from one IP used to fill the
// pending-handshake table, and every real login got 503 busy.
func TestXKFloodFromOneIPLeavesLoginsAlone(t *testing.T) {
	e := newEnv(t, func(c *sexmap.Config) { c.MaxPendingHandshakes = 64 })
	e.tr.setIP("198.51.100.7")
	statuses := map[int]int{}
	for range 200 {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.ts.URL+sexmap.PathHandshake, bytes.NewReader(xkInit(t, e.pub)))
		req.Header.Set("Content-Type", sexmap.ContentType)
		resp, err := e.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses[resp.StatusCode]++
	}
	if statuses[200] != 16 || statuses[429] != 184 {
		t.Fatalf("flood from one IP: %v, want 16 accepted (MaxPendingPerIP) and the rest 429", statuses)
	}
	e.tr.setIP("203.0.113.5")
	mustRoundTrip(t, e.xk(t), "a real login gets through")
}

// Issue 9 item 3b: anonymous handshakes used to evict the idlest sessions,
// which were logged-in users.
func TestNKFloodEvictsNoLogin(t *testing.T) {
	e := newEnv(t, func(c *sexmap.Config) { c.MaxSessions = 10 })
	e.tr.setIP("203.0.113.5")
	alice := e.xk(t)
	// Many addresses, so that per-IP limits do not stop the flood.
	for i := range 200 {
		e.clock.Advance(time.Second)
		e.tr.setIP(fmt.Sprintf("198.51.%d.%d", 100+i/250, i%250))
		e.nk(t)
	}
	mustRoundTrip(t, alice, "still logged in")
}

func TestHandshakeRatePerIP(t *testing.T) {
	e := newEnv(t, func(c *sexmap.Config) { c.HandshakeLimit = sexmap.RateLimit{Rate: 0.5, Burst: 5} })
	e.tr.setIP("198.51.100.7")
	for range 5 {
		e.nk(t)
	}
	_, err := sexmap.DialNK(t.Context(), e.hc, e.ts.URL, e.pub)
	se, ok := err.(*sexmap.StatusError)
	if !ok || se.StatusCode != 429 || se.Code != "rate-limited" || se.RetryAfter != 2*time.Second {
		t.Fatalf("sixth handshake: %v", err)
	}
	if !errors.Is(err, sexmap.ErrRateLimited) || errors.Is(err, sexmap.ErrLockedOut) {
		t.Fatalf("%v: want ErrRateLimited and not ErrLockedOut", err)
	}
	e.tr.setIP("198.51.100.8")
	e.xk(t) // another client is not affected
	e.tr.setIP("198.51.100.7")
	e.clock.Advance(2 * time.Second)
	e.nk(t)
}

// A network's clients together get NetworkHandshakeFactor clients' worth of
// handshakes: holding a /48 (65,536 /64s) or a /24 does not multiply the limit.
func TestHandshakeRatePerNetwork(t *testing.T) {
	e := newEnv(t, func(c *sexmap.Config) { c.HandshakeLimit = sexmap.RateLimit{Rate: 0.5, Burst: 2} })
	allowed := 0
	for i := range 100 {
		e.tr.setIP(fmt.Sprintf("2001:db8:7:%x::1", i)) // a /64 each, one /48
		if _, err := sexmap.DialNK(t.Context(), e.hc, e.ts.URL, e.pub); err == nil {
			allowed++
		} else if !errors.Is(err, sexmap.ErrRateLimited) {
			t.Fatalf("handshake %d: %v", i, err)
		}
	}
	if want := 2 * sexmap.NetworkHandshakeFactor; allowed != want {
		t.Fatalf("%d handshakes from one /48, want %d", allowed, want)
	}
	e.tr.setIP("2001:db8:8::1") // another /48 is not affected
	e.nk(t)
}

// Refusals caused by floods are summarized, not logged one line each.
func TestRefusalsLoggedOncePerInterval(t *testing.T) {
	var logs testenv.SyncBuffer
	e := newEnv(t, func(c *sexmap.Config) {
		c.MaxPendingHandshakes = 2
		c.HandshakeTimeout = time.Hour
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	for i := range 100 {
		st, _ := e.rawPostIP(t, fmt.Sprintf("192.0.2.%d", i), xkInit(t, e.pub))
		if want := map[bool]int{true: 200, false: 503}[i < 2]; st != want {
			t.Fatalf("message 1 #%d: %d, want %d", i, st, want)
		}
	}
	e.clock.Advance(time.Minute)
	e.rawPostIP(t, "192.0.2.200", xkInit(t, e.pub))
	out := logs.String()
	if n := strings.Count(out, "too many pending handshakes"); n != 2 {
		t.Fatalf("%d log lines for 99 refusals, want 2:\n%s", n, out)
	}
	if !strings.Contains(out, "refused_since_last_report=98") {
		t.Fatalf("the summary line does not count the refusals:\n%s", out)
	}
}

func (e *env) rawPostIP(t *testing.T, ip string, body []byte) (int, string) {
	return e.rawPost(t, sexmap.PathHandshake, sexmap.ContentType, http.Header{"X-Test-Ip": {ip}}, body)
}

func TestClientIPFunc(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::1/128")}
	f := sexmap.ClientIPFunc(trusted)
	for _, tc := range []struct {
		remote string
		xff    []string
		want   string
	}{
		{"192.0.2.1:1234", nil, "192.0.2.1"},
		{"192.0.2.1:1234", []string{"198.51.100.1"}, "192.0.2.1"}, // untrusted peer: header ignored
		{"10.1.2.3:1234", nil, "10.1.2.3"},
		{"10.1.2.3:1234", []string{"198.51.100.1"}, "198.51.100.1"},
		{"10.1.2.3:1234", []string{"6.6.6.6, 198.51.100.1, 10.9.9.9"}, "198.51.100.1"}, // left part is the client's to forge
		{"10.1.2.3:1234", []string{"6.6.6.6", "198.51.100.1,10.9.9.9"}, "198.51.100.1"},
		{"10.1.2.3:1234", []string{"garbage, 10.9.9.9"}, "10.9.9.9"},
		{"10.1.2.3:1234", []string{"10.4.4.4"}, "10.4.4.4"}, // all trusted: the left-most
		{"[2001:db8:ffff::1]:443", []string{"2001:db8:1:2:3:4:5:6"}, "2001:db8:1:2::/64"},
		{"[2001:db8:1:2::9]:443", nil, "2001:db8:1:2::/64"},
		{"[::ffff:10.0.0.1]:1", []string{"192.0.2.9"}, "192.0.2.9"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.remote
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := f(r); got != tc.want {
			t.Errorf("%s %q: %q, want %q", tc.remote, tc.xff, got, tc.want)
		}
	}
}

// A table per IP stays bounded whatever the number of addresses.
func TestRateTableBounded(t *testing.T) {
	clock := newClock()
	tab := sexmap.NewRateTable(sexmap.RateLimit{Rate: 1, Burst: 1}, 100, clock.Now)
	for i := range 100000 {
		tab.Allow(fmt.Sprintf("2001:db8:%x::/64", i))
	}
	if n := tab.Len(); n != 100 {
		t.Fatalf("%d keys tracked, want 100", n)
	}
	if ok, _ := tab.Allow("x"); !ok {
		t.Fatal("first")
	}
	if ok, wait := tab.Allow("x"); ok || wait != time.Second {
		t.Fatalf("second: %v %v", ok, wait)
	}
	clock.Advance(time.Second)
	if ok, _ := tab.Allow("x"); !ok {
		t.Fatal("after a second")
	}
}

// Many /64s of one IPv6 /48 (or many addresses of one IPv4 /24) share a
// bound on pending handshakes: a /48 alone cannot fill the table.
func TestPendingBoundPerNetwork(t *testing.T) {
	e := newEnv(t, func(c *sexmap.Config) {
		c.MaxPendingHandshakes = 100
		c.MaxPendingPerNet = 32
	})
	for _, network := range []string{"2001:db8:1:%x::/64", "198.51.100.%d"} {
		accepted := 0
		for i := range 20 {
			for range 4 {
				st, _ := e.rawPostIP(t, fmt.Sprintf(network, i), xkInit(t, e.pub))
				if st == 200 {
					accepted++
				} else if st != 429 {
					t.Fatalf("%s: status %d", network, st)
				}
			}
		}
		if accepted != 32 {
			t.Fatalf("%s: %d pending handshakes accepted from one network, want 32", network, accepted)
		}
	}
	e.tr.setIP("2001:db8:2::1")
	mustRoundTrip(t, e.xk(t), "another network logs in")
}

// A client whose pending handshakes all expired may start new ones, even if
// nobody else has started one meanwhile.
func TestPendingPerIPFreedByExpiry(t *testing.T) {
	e := newEnv(t, func(c *sexmap.Config) {
		c.MaxPendingPerIP = 2
		c.HandshakeTimeout = 30 * time.Second
	})
	for i, want := range []int{200, 200, 429} {
		if st, code := e.rawPostIP(t, "198.51.100.7", xkInit(t, e.pub)); st != want {
			t.Fatalf("message 1 #%d: %d %s, want %d", i, st, code, want)
		}
	}
	e.clock.Advance(30 * time.Second)
	e.tr.setIP("198.51.100.7")
	mustRoundTrip(t, e.xk(t), "after the abandoned handshakes expired")
}
