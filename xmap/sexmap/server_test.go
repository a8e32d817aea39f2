package sexmap_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cryptomail/xmap/sexmap"

	"github.com/flynn/noise"
)

func TestHandshakeNK(t *testing.T) {
	e := newEnv(t, nil)
	c := e.nk(t)
	if c.Address() != "" || len(c.ID()) != 22 {
		t.Fatalf("session = %q %q", c.Address(), c.ID())
	}
	mustRoundTrip(t, c, "<hello/>")
	mustRoundTrip(t, c, "") // an empty request is a valid frame too
	if got := e.tr.last().reqHeader.Get(sexmap.HeaderSession); got != c.ID() {
		t.Fatalf("request header %q, want %q", got, c.ID())
	}
}

func TestHandshakeXK(t *testing.T) {
	e := newEnv(t, nil)
	c := e.xk(t)
	mustRoundTrip(t, c, "<list/>")

	// The server canonicalizes the address it was given.
	c2, err := sexmap.DialXK(t.Context(), e.hc, e.ts.URL, e.pub, e.alice, "Alice@Example.ORG")
	if err != nil {
		t.Fatal(err)
	}
	got, err := c2.RoundTrip(t.Context(), []byte("x"))
	if err != nil || string(got) != aliceAddr+"|x" {
		t.Fatalf("RoundTrip = %q, %v", got, err)
	}
	if c.ID() == c2.ID() {
		t.Fatal("two sessions share an id")
	}
}

func TestWrongServerKey(t *testing.T) {
	e := newEnv(t, nil)
	other, err := noise.DH25519.GenerateKeypair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sexmap.DialNK(t.Context(), e.hc, e.ts.URL, other.Public); !errors.Is(err, sexmap.ErrServerKeyChanged) {
		t.Fatalf("DialNK with a stale pin: %v, want ErrServerKeyChanged", err)
	}
	if _, err := sexmap.DialXK(t.Context(), e.hc, e.ts.URL, other.Public, e.alice, aliceAddr); !errors.Is(err, sexmap.ErrServerKeyChanged) {
		t.Fatalf("DialXK with a stale pin: %v, want ErrServerKeyChanged", err)
	}
	key, err := sexmap.FetchServerKey(t.Context(), e.hc, e.ts.URL)
	if err != nil || sexmap.Pin(e.pub, key) != nil {
		t.Fatalf("FetchServerKey = %x, %v; want %x", key, err, e.pub)
	}
}

// A wrong key for a real account and any key for an unknown address must
// look the same to the client: status, headers and body.
func TestLoginFailuresIdentical(t *testing.T) {
	e := newEnv(t, nil)
	var wrong [32]byte
	rand.Read(wrong[:])
	answer := func(addr string, key [32]byte) exchange {
		_, err := sexmap.DialXK(t.Context(), e.hc, e.ts.URL, e.pub, key, addr)
		if !errors.Is(err, sexmap.ErrLoginFailed) {
			t.Fatalf("login %s: %v, want ErrLoginFailed", addr, err)
		}
		x := e.tr.last()
		x.respHeader.Del("Date")
		return x
	}
	a := answer(aliceAddr, wrong)
	b := answer("nobody@example.org", e.alice)
	if a.status != http.StatusForbidden || a.status != b.status || !bytes.Equal(a.respBody, b.respBody) ||
		fmt.Sprint(a.respHeader) != fmt.Sprint(b.respHeader) {
		t.Fatalf("wrong key: %d %v %q\nunknown:   %d %v %q", a.status, a.respHeader, a.respBody, b.status, b.respHeader, b.respBody)
	}
	if string(a.respBody) != "login-failed\n" {
		t.Fatalf("body %q", a.respBody)
	}
}

func TestParallelRoundTrips(t *testing.T) {
	e := newEnv(t, nil)
	c := e.xk(t)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for g := range 50 {
		wg.Go(func() {
			for i := range 10 {
				req := fmt.Sprintf("g%d-r%d", g, i)
				got, err := c.RoundTrip(t.Context(), []byte(req))
				if err != nil {
					errs <- err
					return
				}
				if string(got) != aliceAddr+"|"+req {
					errs <- fmt.Errorf("got %q for %q", got, req)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// transportFrame returns the last transport request the client sent.
func transportFrame(t *testing.T, e *env) (http.Header, []byte) {
	t.Helper()
	x := e.tr.last()
	if x.path != sexmap.PathTransport {
		t.Fatalf("last exchange was %s", x.path)
	}
	return x.reqHeader, x.reqBody
}

func TestReplayRejected(t *testing.T) {
	e := newEnv(t, func(c *sexmap.Config) { c.IdleTimeout = 30 * time.Minute })
	c := e.xk(t)
	mustRoundTrip(t, c, "first")
	hdr, body := transportFrame(t, e)

	e.clock.Advance(20 * time.Minute)
	for range 2 {
		if st, code := e.rawPost(t, sexmap.PathTransport, sexmap.ContentType, hdr, body); st != http.StatusConflict || code != "replayed" {
			t.Fatalf("replay: %d %s, want 409 replayed", st, code)
		}
	}
	// The refused replay did not count as activity: ten more minutes and
	// the session is idle for 30.
	e.clock.Advance(10 * time.Minute)
	if _, err := c.RoundTrip(t.Context(), []byte("x")); !errors.Is(err, sexmap.ErrUnknownSession) {
		t.Fatalf("after idle time: %v, want ErrUnknownSession", err)
	}
}

func TestTooOldCounter(t *testing.T) {
	e := newEnv(t, nil)
	c := e.nk(t)
	mustRoundTrip(t, c, "zero")
	const high = 5000
	sexmap.SetNextCounter(c, high)
	mustRoundTrip(t, c, "high")

	for _, tc := range []struct {
		counter uint64
		status  int
		code    string
	}{
		{high - sexmap.ReplayWindow - 1, 409, "too-old"},
		{10, 409, "too-old"},
		{0, 409, "too-old"},
		{high, 409, "replayed"},
		{high - sexmap.ReplayWindow, 200, ""}, // the oldest counter inside the window
		{high - 1, 200, ""},
		{high + 1, 200, ""},
	} {
		hdr, body := e.unsentFrame(t, c, tc.counter, "late")
		if st, code := e.rawPost(t, sexmap.PathTransport, sexmap.ContentType, hdr, body); st != tc.status || (st != 200 && code != tc.code) {
			t.Errorf("counter %d: %d %s, want %d %s", tc.counter, st, code, tc.status, tc.code)
		}
	}

	// RoundTrip re-sends a too-old request under a new counter: the server
	// guarantees it did not run it. The window now ends at high+1; starting
	// three below its oldest counter, the third retry lands.
	sexmap.SetNextCounter(c, high+1-sexmap.ReplayWindow-3)
	mustRoundTrip(t, c, "retried")
	// ... but only a few times.
	sexmap.SetNextCounter(c, 100)
	_, err := c.RoundTrip(t.Context(), []byte("ancient"))
	if se, ok := errors.AsType[*sexmap.StatusError](err); !ok || se.StatusCode != 409 || se.Code != "too-old" {
		t.Fatalf("ancient: %v", err)
	}
}

// Every malformed or tampered frame is refused with its status and leaves
// the session exactly as it was: the window does not move and the idle
// timer is not refreshed.
func TestRejectedFramesChangeNothing(t *testing.T) {
	e := newEnv(t, nil)
	c := e.xk(t)
	mustRoundTrip(t, c, "seed")
	// A fresh frame the server has not seen (counter 1), to tamper with.
	hdr, good := e.unsentFrame(t, c, 1, "fresh")
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		return b
	}
	withCounter := func(n uint64) []byte {
		b := bytes.Clone(good)
		binary.BigEndian.PutUint64(b, n)
		return b
	}
	otherSession := hdr.Clone()
	otherSession.Set(sexmap.HeaderSession, "AAAAAAAAAAAAAAAAAAAAAA")
	cases := []struct {
		name   string
		header http.Header
		body   []byte
		status int
		code   string
	}{
		{"empty", hdr, nil, 400, "bad-frame"},
		{"counter only", hdr, good[:8], 400, "bad-frame"},
		{"one byte short of a tag", hdr, good[:8+15], 400, "bad-frame"},
		{"truncated ciphertext", hdr, good[:len(good)-1], 400, "auth-failed"},
		{"flipped counter bit", hdr, flip(6), 400, "auth-failed"},
		{"flipped ciphertext bit", hdr, flip(8), 400, "auth-failed"},
		{"flipped tag bit", hdr, flip(len(good) - 1), 400, "auth-failed"},
		{"forged far-ahead counter", hdr, withCounter(1 << 40), 400, "auth-failed"},
		{"reserved counter", hdr, withCounter(1<<64 - 1), 400, "bad-frame"},
		{"used counter", hdr, withCounter(0), 409, "replayed"},
		{"unknown session", otherSession, good, 401, "unknown-session"},
		{"no session header", http.Header{}, good, 400, "bad-header"},
		{"malformed session header", http.Header{sexmap.HeaderSession: {"not an id"}}, good, 400, "bad-header"},
	}
	for _, tc := range cases {
		e.clock.Advance(2 * time.Minute)
		st, code := e.rawPost(t, sexmap.PathTransport, sexmap.ContentType, tc.header, tc.body)
		if st != tc.status || code != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, st, code, tc.status, tc.code)
		}
	}
	// The untouched frame is still accepted: none of the above burned its
	// counter or moved the window past it.
	if st, code := e.rawPost(t, sexmap.PathTransport, sexmap.ContentType, hdr, good); st != 200 {
		t.Fatalf("original frame after the tampered ones: %d %s", st, code)
	}
	e.clock.Advance(29 * time.Minute)
	mustRoundTrip(t, c, "alive 29 minutes after the last accepted frame")

	// Refused frames are not activity either.
	for range 3 {
		e.clock.Advance(10 * time.Minute)
		e.rawPost(t, sexmap.PathTransport, sexmap.ContentType, hdr, flip(9))
	}
	if _, err := c.RoundTrip(t.Context(), []byte("x")); !errors.Is(err, sexmap.ErrUnknownSession) {
		t.Fatalf("after idle time: %v", err)
	}
}

func TestMediaTypeMethodAndPath(t *testing.T) {
	e := newEnv(t, nil)
	c := e.nk(t)
	hdr := http.Header{sexmap.HeaderSession: {c.ID()}}
	xml := []byte(`<?xml version="1.0"?><xmap><folders/></xmap>`)
	for _, tc := range []struct {
		name, path, ctype string
		status            int
		code              string
	}{
		{"plain XML to transport", sexmap.PathTransport, "application/xml", 415, "unsupported-media-type"},
		{"text/xml to transport", sexmap.PathTransport, "text/xml; charset=utf-8", 415, "unsupported-media-type"},
		{"no content type", sexmap.PathTransport, "", 415, "unsupported-media-type"},
		{"plain XML to handshake", sexmap.PathHandshake, "application/xml", 415, "unsupported-media-type"},
		{"form post", sexmap.PathHandshake, "application/x-www-form-urlencoded", 415, "unsupported-media-type"},
	} {
		if st, code := e.rawPost(t, tc.path, tc.ctype, hdr, xml); st != tc.status || code != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, st, code, tc.status, tc.code)
		}
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/sexmap/other", nil))
	if rec.Code != 404 || rec.Body.String() != "not-found\n" {
		t.Errorf("other path: %d %q", rec.Code, rec.Body)
	}
	resp, err := http.Get(e.ts.URL + sexmap.PathTransport)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d Allow=%q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	mustRoundTrip(t, c, "unharmed")
}

func TestBadHandshakeFrames(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name   string
		header http.Header
		body   []byte
		status int
		code   string
	}{
		{"empty", nil, nil, 400, "bad-frame"},
		{"unknown type", nil, append([]byte{0x7f}, make([]byte, 48)...), 400, "bad-frame"},
		{"server type sent by client", nil, append([]byte{0x02}, make([]byte, 48)...), 400, "bad-frame"},
		{"NK message too short", nil, append([]byte{0x01}, make([]byte, 47)...), 400, "bad-frame"},
		{"NK message with payload", nil, append([]byte{0x01}, make([]byte, 49)...), 400, "bad-frame"},
		{"NK message garbage", nil, append([]byte{0x01}, bytes.Repeat([]byte{9}, 48)...), 400, "bad-handshake"},
		{"XK message 3 without id", nil, append([]byte{0x13}, make([]byte, 100)...), 400, "bad-header"},
		{"XK message 3 unknown id", http.Header{sexmap.HeaderHandshake: {"AAAAAAAAAAAAAAAAAAAAAA"}}, append([]byte{0x13}, make([]byte, 100)...), 401, "unknown-handshake"},
		{"too large", nil, make([]byte, 600), 413, "too-large"},
	} {
		if st, code := e.rawPost(t, sexmap.PathHandshake, sexmap.ContentType, tc.header, tc.body); st != tc.status || code != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, st, code, tc.status, tc.code)
		}
	}
}

func TestOversizedBody(t *testing.T) {
	e := newEnv(t, func(c *sexmap.Config) { c.MaxBodyBytes = 1024 })
	c := e.xk(t)
	mustRoundTrip(t, c, strings.Repeat("a", 1024-8-16)) // exactly the limit
	_, err := c.RoundTrip(t.Context(), make([]byte, 1024-8-16+1))
	if se, ok := errors.AsType[*sexmap.StatusError](err); !ok || se.StatusCode != http.StatusRequestEntityTooLarge || se.Code != "too-large" {
		t.Fatalf("oversized: %v", err)
	}
	// Without a Content-Length the limit holds while reading.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.ts.URL+sexmap.PathTransport,
		struct{ *strings.Reader }{strings.NewReader(strings.Repeat("b", 5000))})
	req.Header.Set("Content-Type", sexmap.ContentType)
	req.Header.Set(sexmap.HeaderSession, c.ID())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if req.ContentLength != 0 || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked oversized: length %d status %d", req.ContentLength, resp.StatusCode)
	}
	mustRoundTrip(t, c, "small")
}

func TestExpiry(t *testing.T) {
	e := newEnv(t, func(c *sexmap.Config) {
		c.IdleTimeout = 30 * time.Minute
		c.MaxLifetime = time.Hour
	})
	t.Run("idle", func(t *testing.T) {
		c := e.xk(t)
		e.clock.Advance(29 * time.Minute)
		mustRoundTrip(t, c, "within idle time")
		e.clock.Advance(29 * time.Minute)
		mustRoundTrip(t, c, "use resets idle time")
		e.clock.Advance(30 * time.Minute)
		if _, err := c.RoundTrip(t.Context(), []byte("x")); !errors.Is(err, sexmap.ErrUnknownSession) {
			t.Fatalf("idle: %v", err)
		}
	})
	t.Run("absolute", func(t *testing.T) {
		c := e.nk(t)
		for range 2 {
			e.clock.Advance(25 * time.Minute)
			mustRoundTrip(t, c, "busy")
		}
		e.clock.Advance(10 * time.Minute) // one hour after the handshake
		_, err := c.RoundTrip(t.Context(), []byte("x"))
		if se, ok := errors.AsType[*sexmap.StatusError](err); !ok || se.StatusCode != 401 || se.Code != "unknown-session" {
			t.Fatalf("absolute: %v", err)
		}
	})
}

func TestEndSession(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.xk(t), e.xk(t)
	e.srv.EndSession(a.ID())
	if _, err := a.RoundTrip(t.Context(), []byte("x")); !errors.Is(err, sexmap.ErrUnknownSession) {
		t.Fatalf("ended session: %v", err)
	}
	mustRoundTrip(t, b, "other session unaffected")
	// LOGOUT through the handler: the answer still arrives, then the
	// session is gone.
	mustRoundTrip(t, b, "LOGOUT")
	if _, err := b.RoundTrip(t.Context(), []byte("x")); !errors.Is(err, sexmap.ErrUnknownSession) {
		t.Fatalf("after LOGOUT: %v", err)
	}
	e.srv.EndSession("not an id") // ignored
}

func TestMaxSessionsEvictsIdlest(t *testing.T) {
	e := newEnv(t, func(c *sexmap.Config) {
		c.MaxSessions = 3
		c.MaxAnonSessions = 2
	})
	x1 := e.xk(t)
	e.clock.Advance(time.Second)
	x2 := e.xk(t)
	e.clock.Advance(time.Second)
	x3 := e.xk(t)
	e.clock.Advance(time.Second)
	n1 := e.nk(t)
	e.clock.Advance(time.Second)
	mustRoundTrip(t, x1, "x1 is now the most recently used")
	x4 := e.xk(t) // x2 has been idle longest among the logged-in
	for _, c := range []*sexmap.ClientSession{x1, x3, x4, n1} {
		mustRoundTrip(t, c, "alive")
	}
	if _, err := x2.RoundTrip(t.Context(), []byte("x")); !errors.Is(err, sexmap.ErrUnknownSession) {
		t.Fatalf("evicted session: %v", err)
	}
	// Anonymous sessions evict anonymous ones only.
	e.clock.Advance(time.Second)
	n2 := e.nk(t)
	e.clock.Advance(time.Second)
	n3 := e.nk(t) // n1 has been idle longest among the anonymous
	for _, c := range []*sexmap.ClientSession{x1, x3, x4, n2, n3} {
		mustRoundTrip(t, c, "alive")
	}
	if _, err := n1.RoundTrip(t.Context(), []byte("x")); !errors.Is(err, sexmap.ErrUnknownSession) {
		t.Fatalf("evicted anonymous session: %v", err)
	}
}

func TestPendingHandshakeExpiry(t *testing.T) {
	e := newEnv(t, func(c *sexmap.Config) { c.HandshakeTimeout = 30 * time.Second })
	e.tr.setAfter(func(x exchange) {
		if x.respHeader.Get(sexmap.HeaderHandshake) != "" {
			e.clock.Advance(31 * time.Second)
		}
	})
	_, err := sexmap.DialXK(t.Context(), e.hc, e.ts.URL, e.pub, e.alice, aliceAddr)
	if se, ok := errors.AsType[*sexmap.StatusError](err); !ok || se.StatusCode != 401 || se.Code != "unknown-handshake" {
		t.Fatalf("late message 3: %v", err)
	}
	e.tr.setAfter(nil)
	e.xk(t)
}

// xkInit builds a valid XK message 1 frame with the noise library directly.
func xkInit(t *testing.T, serverPub []byte) []byte {
	t.Helper()
	var priv [32]byte
	rand.Read(priv[:])
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashSHA256),
		Pattern:       noise.HandshakeXK,
		Initiator:     true,
		Prologue:      []byte(sexmap.Version),
		PeerStatic:    serverPub,
		StaticKeypair: noise.DHKey{Private: priv[:], Public: sexmap.LoginPublicKey(priv)},
	})
	if err != nil {
		t.Fatal(err)
	}
	msg, _, _, err := hs.WriteMessage([]byte{0x11}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestPendingHandshakeBound(t *testing.T) {
	e := newEnv(t, func(c *sexmap.Config) {
		c.MaxPendingHandshakes = 2
		c.HandshakeTimeout = 30 * time.Second
	})
	for i, want := range []int{200, 200, 503} {
		st, code := e.rawPost(t, sexmap.PathHandshake, sexmap.ContentType, nil, xkInit(t, e.pub))
		if st != want {
			t.Fatalf("XK message 1 #%d: %d %s, want %d", i, st, code, want)
		}
	}
	if _, err := sexmap.DialXK(t.Context(), e.hc, e.ts.URL, e.pub, e.alice, aliceAddr); !errors.Is(err, sexmap.ErrBusy) {
		t.Fatalf("login while full: %v, want ErrBusy", err)
	}
	mustRoundTrip(t, e.nk(t), "NK needs no pending slot")
	e.clock.Advance(30 * time.Second)
	e.xk(t)
}

// lockoutEnv: back-off after 2 failures (1s, doubling), lock after 4.
func lockoutEnv(t *testing.T) *env {
	return newEnv(t, func(c *sexmap.Config) {
		c.Lockout = sexmap.LockoutPolicy{BackoffAfter: 2, BackoffBase: time.Second, LockAfter: 4, LockDuration: 15 * time.Minute}
	})
}

// login tries address with key from ip and returns the error.
func (e *env) login(t *testing.T, ip, address string, key [32]byte) error {
	t.Helper()
	e.tr.setIP(ip)
	_, err := sexmap.DialXK(t.Context(), e.hc, e.ts.URL, e.pub, key, address)
	return err
}

func wantLocked(t *testing.T, err error, retry time.Duration) {
	t.Helper()
	se, ok := errors.AsType[*sexmap.StatusError](err)
	if !ok || !errors.Is(err, sexmap.ErrLockedOut) || se.Code != "too-many-failures" || se.RetryAfter != retry {
		t.Fatalf("got %v, want 429 with Retry-After %v", err, retry)
	}
}

func TestLockoutPerAddress(t *testing.T) {
	for _, addr := range []string{aliceAddr, "nobody@example.org"} {
		t.Run(addr, func(t *testing.T) {
			e := lockoutEnv(t)
			var wrong [32]byte
			rand.Read(wrong[:])
			// Each failure comes from a new IP, so only the address count
			// can be what stops the attempts.
			ip := 0
			next := func() string { ip++; return fmt.Sprintf("192.0.2.%d", ip) }
			for range 2 {
				if err := e.login(t, next(), addr, wrong); !errors.Is(err, sexmap.ErrLoginFailed) {
					t.Fatalf("failure: %v", err)
				}
			}
			wantLocked(t, e.login(t, next(), addr, e.alice), time.Second)
			e.clock.Advance(time.Second)
			if err := e.login(t, next(), addr, wrong); !errors.Is(err, sexmap.ErrLoginFailed) {
				t.Fatalf("third failure: %v", err)
			}
			wantLocked(t, e.login(t, next(), addr, e.alice), 2*time.Second)
			e.clock.Advance(2 * time.Second)
			if err := e.login(t, next(), addr, wrong); !errors.Is(err, sexmap.ErrLoginFailed) {
				t.Fatalf("fourth failure: %v", err)
			}
			wantLocked(t, e.login(t, next(), addr, e.alice), 15*time.Minute)
			e.clock.Advance(14 * time.Minute)
			wantLocked(t, e.login(t, next(), addr, e.alice), time.Minute)
			// Another address from an IP that already failed is not locked.
			if err := e.login(t, "192.0.2.1", "carol@example.org", wrong); !errors.Is(err, sexmap.ErrLoginFailed) {
				t.Fatalf("other address: %v", err)
			}
			e.clock.Advance(time.Minute)
			err := e.login(t, next(), addr, e.alice)
			if addr == aliceAddr {
				if err != nil {
					t.Fatalf("login after the lock: %v", err)
				}
				// Success cleared the count: two more failures are
				// allowed before back-off.
				for range 2 {
					if err := e.login(t, next(), addr, wrong); !errors.Is(err, sexmap.ErrLoginFailed) {
						t.Fatalf("after reset: %v", err)
					}
				}
			} else if !errors.Is(err, sexmap.ErrLoginFailed) {
				t.Fatalf("unknown address after the lock: %v", err)
			}
		})
	}
}

func TestLockoutPerIP(t *testing.T) {
	e := lockoutEnv(t)
	var wrong [32]byte
	rand.Read(wrong[:])
	const attacker = "198.51.100.7"
	// Different (unknown) addresses each time: only the IP count grows.
	for i := range 2 {
		if err := e.login(t, attacker, fmt.Sprintf("u%d@example.org", i), wrong); !errors.Is(err, sexmap.ErrLoginFailed) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	// Refused at message 1 already, even with the right key.
	wantLocked(t, e.login(t, attacker, aliceAddr, e.alice), time.Second)
	if x := e.tr.last(); x.status != http.StatusTooManyRequests || x.respHeader.Get(sexmap.HeaderHandshake) != "" {
		t.Fatal("a locked IP got past message 1")
	}
	for i := 2; i < 4; i++ {
		e.clock.Advance(time.Hour)
		if err := e.login(t, attacker, fmt.Sprintf("u%d@example.org", i), wrong); !errors.Is(err, sexmap.ErrLoginFailed) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	wantLocked(t, e.login(t, attacker, aliceAddr, e.alice), 15*time.Minute)
	// Another client logs in to the same account meanwhile.
	if err := e.login(t, "203.0.113.5", aliceAddr, e.alice); err != nil {
		t.Fatalf("other IP: %v", err)
	}
	// Alice's success does not reset the attacker's IP.
	wantLocked(t, e.login(t, attacker, aliceAddr, e.alice), 15*time.Minute)
	e.clock.Advance(15 * time.Minute)
	if err := e.login(t, attacker, aliceAddr, e.alice); err != nil {
		t.Fatalf("after the lock: %v", err)
	}
	// Records are forgotten a day after the last failure.
	e.clock.Advance(25 * time.Hour)
	for i := range 2 {
		if err := e.login(t, attacker, "x@example.org", wrong); !errors.Is(err, sexmap.ErrLoginFailed) {
			t.Fatalf("after forgetting, failure %d: %v", i, err)
		}
	}
}

func TestWellKnownAndMethods(t *testing.T) {
	e := newEnv(t, nil)
	resp, err := http.Get(e.ts.URL + sexmap.PathWellKnown)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("well-known: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if st, _ := e.rawPost(t, sexmap.PathWellKnown, "text/plain", nil, nil); st != http.StatusMethodNotAllowed {
		t.Fatalf("POST well-known: %d", st)
	}
	if !bytes.Equal(e.srv.PublicKey(), e.pub) {
		t.Fatal("PublicKey differs")
	}
}

func TestNewServerChecksConfig(t *testing.T) {
	static, _ := noise.DH25519.GenerateKeypair(rand.Reader)
	other, _ := noise.DH25519.GenerateKeypair(rand.Reader)
	h := sexmap.HandlerFunc(func(context.Context, *sexmap.Session, []byte) []byte { return nil })
	acc := &fakeAccounts{}
	for name, tc := range map[string]struct {
		cfg sexmap.Config
		h   sexmap.Handler
	}{
		"nil handler":       {sexmap.Config{StaticKey: static, Accounts: acc}, nil},
		"nil accounts":      {sexmap.Config{StaticKey: static}, h},
		"no key":            {sexmap.Config{Accounts: acc}, h},
		"mismatched halves": {sexmap.Config{StaticKey: noise.DHKey{Private: static.Private, Public: other.Public}, Accounts: acc}, h},
		"tiny body limit":   {sexmap.Config{StaticKey: static, Accounts: acc, MaxBodyBytes: 10}, h},
		"forget before lock ends": {sexmap.Config{StaticKey: static, Accounts: acc,
			Lockout: sexmap.LockoutPolicy{LockDuration: time.Hour, ForgetAfter: time.Minute}}, h},
	} {
		if _, err := sexmap.NewServer(tc.cfg, tc.h); err == nil {
			t.Errorf("%s: NewServer accepted it", name)
		}
	}
}

// Logs must never hold request bodies or key material.
func TestLogsHoldNoSecrets(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t, func(c *sexmap.Config) { c.Logger = logger })
	const secret = "<body>top secret words</body>"
	c := e.xk(t)
	mustRoundTrip(t, c, secret)
	hdr, body := transportFrame(t, e)
	e.rawPost(t, sexmap.PathTransport, sexmap.ContentType, hdr, body) // replay
	var wrong [32]byte
	rand.Read(wrong[:])
	e.login(t, "192.0.2.1", aliceAddr, wrong)
	e.srv.EndSession(c.ID())

	mu.Lock()
	logs := buf.String()
	mu.Unlock()
	if !strings.Contains(logs, "login failed") {
		t.Fatalf("expected log lines, got %q", logs)
	}
	for _, s := range []string{
		"top secret", c.ID(),
		fmt.Sprintf("%x", e.alice), sexmap.EncodePublicKey(e.alice[:]),
		fmt.Sprintf("%x", wrong),
	} {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain %q:\n%s", s, logs)
		}
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func BenchmarkRoundTrip(b *testing.B) {
	e := newEnv(b, nil)
	c := e.xk(b)
	e.hc.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
	req := []byte(`<xmap xmlns="urn:cryptomail:xmap:1"><folders/></xmap>`)
	b.ReportAllocs()
	b.SetParallelism(4) // 4 goroutines per core: requests really overlap
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.RoundTrip(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkLoginXK measures a whole XK login over HTTP (two round trips,
// four X25519 operations on each side), without the client's Argon2id.
func BenchmarkLoginXK(b *testing.B) {
	e := newEnv(b, nil)
	e.hc.Transport = &http.Transport{}
	for b.Loop() {
		if _, err := sexmap.DialXK(context.Background(), e.hc, e.ts.URL, e.pub, e.alice, aliceAddr); err != nil {
			b.Fatal(err)
		}
	}
}
