package client_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cryptomail/client"
	"cryptomail/client/clienttest"
	"cryptomail/xmap/sexmap"
)

// ipTransport sends every request with X-Test-Ip, which the test server takes
// as the client's IP.
type ipTransport struct{ ip string }

func (t ipTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Test-Ip", t.ip)
	return http.DefaultTransport.RoundTrip(r)
}

// Issue 9, item 8: a stranger's failed logins (from many IPs) lock the
// address; the client that has logged in before, with its device token in its
// home, still logs in with the right passphrase; a client without the token
// is locked out; the wrong passphrase with the token still fails.
func TestDeviceTokenLogin(t *testing.T) {
	srv, err := clienttest.New(clienttest.Options{
		Lockout: sexmap.LockoutPolicy{BackoffAfter: 2, BackoffBase: time.Second, LockAfter: 4, LockDuration: 15 * time.Minute},
		ClientIP: func(r *http.Request) string {
			if ip := r.Header.Get("X-Test-Ip"); ip != "" {
				return ip
			}
			return "owner"
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	e := &env{t: t, ctx: t.Context(), srv: srv}
	home := t.TempDir()
	c := e.client(home)
	s := e.signup(c, "alice@example.org", "right pass")
	if err := s.Logout(e.ctx); err != nil {
		t.Fatal(err)
	}
	state, err := os.ReadFile(filepath.Join(home, client.StateFile))
	if err != nil || !strings.Contains(string(state), `"devices"`) {
		t.Fatalf("no device token in the client state (%v):\n%s", err, state)
	}

	// The stranger knows alice's address and fails four times, each from a
	// new IP, a minute apart.
	pub := srv.PublicKey()
	var wrong [32]byte
	rand.Read(wrong[:])
	for i := range 4 {
		hc := &http.Client{Transport: ipTransport{fmt.Sprintf("192.0.2.%d", i+1)}}
		if _, err := sexmap.DialXK(e.ctx, hc, srv.URL, pub, wrong, "alice@example.org"); !errors.Is(err, sexmap.ErrLoginFailed) {
			t.Fatalf("stranger's attempt %d: %v", i, err)
		}
		srv.Clock().Advance(time.Minute)
	}

	// Another client of alice's, never logged in before: locked out.
	if _, err := e.client("").Login(e.ctx, "alice@example.org", []byte("right pass")); !errors.Is(err, sexmap.ErrLockedOut) {
		t.Fatalf("login without a device token: %v, want locked out", err)
	}
	// The wrong passphrase with the token fails (and counts).
	if _, err := c.Login(e.ctx, "alice@example.org", []byte("wrong pass")); !errors.Is(err, sexmap.ErrLoginFailed) {
		t.Fatalf("wrong passphrase with the device token: %v, want login failed", err)
	}
	srv.Clock().Advance(time.Minute)
	// The client with its token and the right passphrase gets in.
	if _, err := c.Login(e.ctx, "alice@example.org", []byte("right pass")); err != nil {
		t.Fatalf("login with the device token: %v", err)
	}

	// A passphrase change on another device forgets this client's token; its
	// next login sends the stale one and is given a new one.
	srv.Clock().Advance(time.Hour)
	other := e.login(e.client(""), "alice@example.org", "right pass")
	if err := other.ChangePassphrase(e.ctx, []byte("new pass")); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(home, client.StateFile))
	if _, err := c.Login(e.ctx, "alice@example.org", []byte("new pass")); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(home, client.StateFile))
	if bytes.Equal(before, after) {
		t.Error("the stale device token was not replaced at the next login")
	}
}
