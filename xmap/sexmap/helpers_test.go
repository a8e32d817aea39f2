package sexmap_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cryptomail/xmap/sexmap"

	"github.com/flynn/noise"
)

// fakeClock is an injected Config.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeAccounts maps canonical addresses to public login keys. An account's
// generation is its key and its epoch (recreate bumps it); device tokens are
// kept per address.
type fakeAccounts struct {
	mu     sync.Mutex
	keys   map[string][]byte
	epochs map[string]byte
	tokens map[string][][]byte
}

func (a *fakeAccounts) Generation(_ context.Context, address string) ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	k, ok := a.keys[address]
	if !ok {
		return nil, fmt.Errorf("generation %q: %w", address, sexmap.ErrUnknownAccount)
	}
	return append(bytes.Clone(k), a.epochs[address]), nil
}

func (a *fakeAccounts) DeviceTokenValid(_ context.Context, address string, token []byte) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range a.tokens[address] {
		if bytes.Equal(t, token) {
			return true, nil
		}
	}
	return false, nil
}

// set gives address the login key pub (nil: delete the account); a new
// account, or one given a key again after deletion, is a new generation.
func (a *fakeAccounts) set(address string, pub []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.epochs == nil {
		a.epochs = map[string]byte{}
	}
	if pub == nil {
		delete(a.keys, address)
		delete(a.tokens, address)
		a.epochs[address]++
		return
	}
	a.keys[address] = pub
}

func (a *fakeAccounts) addToken(address string, token []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tokens == nil {
		a.tokens = map[string][][]byte{}
	}
	a.tokens[address] = append(a.tokens[address], token)
}

func (a *fakeAccounts) LoginKey(_ context.Context, address string) ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	k, ok := a.keys[address]
	if !ok {
		return nil, fmt.Errorf("lookup %q: %w", address, sexmap.ErrUnknownAccount)
	}
	return k, nil
}

// exchange is one recorded HTTP request and its answer.
type exchange struct {
	path       string
	reqHeader  http.Header
	reqBody    []byte
	status     int
	respHeader http.Header
	respBody   []byte
}

// hookTransport records every exchange, adds headers, and lets a test act
// between the messages of a handshake (for example move the clock).
type hookTransport struct {
	mu        sync.Mutex
	header    http.Header
	exchanges []exchange
	after     func(e exchange)
	// drop, when set and true for a request, records the request and
	// fails it without sending: a frame the server never saw.
	drop func(req *http.Request) bool
}

func (h *hookTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	req = req.Clone(req.Context())
	req.Body = io.NopCloser(bytes.NewReader(body))
	h.mu.Lock()
	for k, v := range h.header {
		req.Header[k] = v
	}
	after, drop := h.after, h.drop
	h.mu.Unlock()
	if drop != nil && drop(req) {
		h.mu.Lock()
		h.exchanges = append(h.exchanges, exchange{path: req.URL.Path, reqHeader: req.Header.Clone(), reqBody: body})
		h.mu.Unlock()
		return nil, errDropped
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	e := exchange{req.URL.Path, req.Header.Clone(), body, resp.StatusCode, resp.Header.Clone(), respBody}
	h.mu.Lock()
	h.exchanges = append(h.exchanges, e)
	h.mu.Unlock()
	if after != nil {
		after(e)
	}
	return resp, nil
}

var errDropped = errors.New("dropped by the test")

func (h *hookTransport) last() exchange {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.exchanges[len(h.exchanges)-1]
}

func (h *hookTransport) setIP(ip string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.header = http.Header{"X-Test-Ip": {ip}}
}

func (h *hookTransport) setDrop(drop bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.drop = nil
	if drop {
		h.drop = func(*http.Request) bool { return true }
	}
}

// unsentFrame seals request under counter with c's keys without sending
// it, and returns its headers and body: a frame the server has never seen.
func (e *env) unsentFrame(t testing.TB, c *sexmap.ClientSession, counter uint64, request string) (http.Header, []byte) {
	t.Helper()
	sexmap.SetNextCounter(c, counter)
	e.tr.setDrop(true)
	defer e.tr.setDrop(false)
	if _, err := c.RoundTrip(t.Context(), []byte(request)); !errors.Is(err, errDropped) {
		t.Fatalf("dropped request: %v", err)
	}
	x := e.tr.last()
	return x.reqHeader, x.reqBody
}

func (h *hookTransport) setAfter(f func(exchange)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.after = f
}

type env struct {
	t        *testing.T
	srv      *sexmap.Server
	ts       *httptest.Server
	clock    *fakeClock
	accounts *fakeAccounts
	tr       *hookTransport
	hc       *http.Client
	pub      []byte
	alice    [32]byte // alice@example.org's private login key
}

const aliceAddr = "alice@example.org"

// newEnv starts a Server on 127.0.0.1 with an echo handler ("LOGOUT" ends
// the session, "FRESH?" answers Session.Fresh), an injected clock, and client IPs taken from X-Test-Ip.
func newEnv(t testing.TB, mod func(*sexmap.Config)) *env {
	static, err := noise.DH25519.GenerateKeypair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{clock: newClock(), tr: &hookTransport{}, pub: static.Public}
	if _, err := rand.Read(e.alice[:]); err != nil {
		t.Fatal(err)
	}
	e.accounts = &fakeAccounts{keys: map[string][]byte{aliceAddr: sexmap.LoginPublicKey(e.alice)}}
	cfg := sexmap.Config{
		StaticKey: static,
		Accounts:  e.accounts,
		Now:       e.clock.Now,
		ClientIP:  func(r *http.Request) string { return r.Header.Get("X-Test-Ip") },
	}
	if mod != nil {
		mod(&cfg)
	}
	var srv *sexmap.Server
	h := sexmap.HandlerFunc(func(_ context.Context, s *sexmap.Session, req []byte) []byte {
		if string(req) == "LOGOUT" {
			srv.EndSession(s.ID)
		}
		if string(req) == "FRESH?" {
			return fmt.Appendf(nil, "%v", s.Fresh)
		}
		return []byte(s.Address + "|" + string(req))
	})
	srv, err = sexmap.NewServer(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	mux := http.NewServeMux()
	srv.Register(mux)
	e.ts = httptest.NewServer(mux)
	t.Cleanup(e.ts.Close)
	e.hc = &http.Client{Transport: e.tr, Timeout: 30 * time.Second}
	return e
}

func (e *env) nk(t testing.TB) *sexmap.ClientSession {
	t.Helper()
	c, err := sexmap.DialNK(t.Context(), e.hc, e.ts.URL, e.pub)
	if err != nil {
		t.Fatalf("DialNK: %v", err)
	}
	return c
}

func (e *env) xk(t testing.TB) *sexmap.ClientSession {
	t.Helper()
	c, err := sexmap.DialXK(t.Context(), e.hc, e.ts.URL, e.pub, e.alice, aliceAddr)
	if err != nil {
		t.Fatalf("DialXK: %v", err)
	}
	return c
}

// rawPost sends a body as is and returns the status and the text code.
func (e *env) rawPost(t testing.TB, path, contentType string, header http.Header, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.ts.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// mustRoundTrip checks the echo of one request.
func mustRoundTrip(t testing.TB, c *sexmap.ClientSession, req string) {
	t.Helper()
	got, err := c.RoundTrip(t.Context(), []byte(req))
	if err != nil {
		t.Fatalf("RoundTrip(%q): %v", req, err)
	}
	if want := c.Address() + "|" + req; string(got) != want {
		t.Fatalf("RoundTrip(%q) = %q, want %q", req, got, want)
	}
}
