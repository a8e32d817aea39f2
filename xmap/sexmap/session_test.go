package sexmap_test

import (
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"cryptomail/xmap/sexmap"
)

// wantEnded checks that a session is refused as unknown.
func wantEnded(t *testing.T, c *sexmap.ClientSession, why string) {
	t.Helper()
	if _, err := c.RoundTrip(t.Context(), []byte("list")); !errors.Is(err, sexmap.ErrUnknownSession) {
		t.Fatalf("%s: request answered %v, want unknown-session", why, err)
	}
}

// Issue 9, item 4: a session is bound to the account generation it logged in
// to. After the account is deleted and the address signed up again by a new
// owner, the old session must not reach the new account, on any request.
func TestSessionEndsWithAccountGeneration(t *testing.T) {
	e := newEnv(t, nil)
	old := e.xk(t)
	mustRoundTrip(t, old, "list")

	// Deleted: the next request ends the session.
	e.accounts.set(aliceAddr, nil)
	wantEnded(t, old, "after delete")

	// Re-created with the same login key (the worst case: same passphrase
	// and salt): a new generation all the same.
	old2 := e.xk2(t)
	e.accounts.set(aliceAddr, nil)
	e.accounts.set(aliceAddr, sexmap.LoginPublicKey(e.alice))
	for range 3 {
		wantEnded(t, old2, "after delete and re-create")
	}
	wantEnded(t, old, "after delete and re-create")
	mustRoundTrip(t, e.xk(t), "the new owner's own session works")
}

// xk2 logs alice in before the account is re-created (e.xk after set(nil)
// would fail): it re-creates her first.
func (e *env) xk2(t *testing.T) *sexmap.ClientSession {
	t.Helper()
	e.accounts.set(aliceAddr, sexmap.LoginPublicKey(e.alice))
	return e.xk(t)
}

// A new login key (passphrase change, by this process or another) ends every
// session of the account; a login with the new key works.
func TestSessionEndsWithLoginKey(t *testing.T) {
	e := newEnv(t, nil)
	a, b := e.xk(t), e.xk(t)
	mustRoundTrip(t, a, "one")
	var next [32]byte
	rand.Read(next[:])
	e.accounts.set(aliceAddr, sexmap.LoginPublicKey(next))
	wantEnded(t, a, "session a after the key change")
	wantEnded(t, b, "session b after the key change")
	e.alice = next
	mustRoundTrip(t, e.xk(t), "with the new key")
}

// Session.Fresh marks only the first request of a logged-in session made
// within ProofWindow of its handshake.
func TestSessionFresh(t *testing.T) {
	e := newEnv(t, nil)
	fresh := func(c *sexmap.ClientSession) string {
		t.Helper()
		got, err := c.RoundTrip(t.Context(), []byte("FRESH?"))
		if err != nil {
			t.Fatal(err)
		}
		return string(got)
	}
	c := e.xk(t)
	if got := fresh(c); got != "true" {
		t.Errorf("first request: Fresh = %s", got)
	}
	if got := fresh(c); got != "false" {
		t.Errorf("second request: Fresh = %s", got)
	}
	late := e.xk(t)
	e.clock.Advance(sexmap.ProofWindow)
	if got := fresh(late); got != "false" {
		t.Errorf("first request after the proof window: Fresh = %s", got)
	}
	if got := fresh(e.nk(t)); got != "false" {
		t.Errorf("anonymous: Fresh = %s", got)
	}
}

// loginToken tries address with key and a device token from ip.
func (e *env) loginToken(t *testing.T, ip, address string, key [32]byte, token []byte) error {
	t.Helper()
	e.tr.setIP(ip)
	_, err := sexmap.DialXKDevice(t.Context(), e.hc, e.ts.URL, e.pub, key, address, token)
	return err
}

// Issue 9, item 8: a stranger's failed logins lock the address, but a client
// with a device token and the right passphrase still gets in; without the
// token, or with a wrong one, it is locked; a wrong passphrase with a valid
// token fails and counts, against the token too.
func TestDeviceTokenPassesAddressLockout(t *testing.T) {
	e := lockoutEnv(t)
	token := make([]byte, sexmap.DeviceTokenSize)
	rand.Read(token)
	e.accounts.addToken(aliceAddr, token)
	var wrong [32]byte
	rand.Read(wrong[:])
	ip := 0
	next := func() string { ip++; return fmt.Sprintf("192.0.2.%d", ip) }

	// The stranger, from many IPs, locks alice's address.
	for range 4 {
		if err := e.login(t, next(), aliceAddr, wrong); !errors.Is(err, sexmap.ErrLoginFailed) {
			t.Fatalf("stranger: %v", err)
		}
		e.clock.Advance(time.Minute)
	}
	wantLocked(t, e.login(t, next(), aliceAddr, e.alice), 15*time.Minute-time.Minute)
	other := make([]byte, sexmap.DeviceTokenSize)
	rand.Read(other)
	wantLocked(t, e.loginToken(t, next(), aliceAddr, e.alice, other), 15*time.Minute-time.Minute)

	// Alice's device, with its token and the right key, gets in.
	if err := e.loginToken(t, next(), aliceAddr, e.alice, token); err != nil {
		t.Fatalf("device token and right key: %v", err)
	}
	// Her success cleared the address count; the stranger locks it again.
	for range 4 {
		if err := e.login(t, next(), aliceAddr, wrong); !errors.Is(err, sexmap.ErrLoginFailed) {
			t.Fatalf("stranger again: %v", err)
		}
		e.clock.Advance(time.Minute)
	}
	wantLocked(t, e.login(t, next(), aliceAddr, e.alice), 15*time.Minute-time.Minute)

	// A wrong passphrase with the valid token fails, and counts: for the
	// token itself (back-off after 2, lock after 4) and for the address.
	for i := range 4 {
		if err := e.loginToken(t, next(), aliceAddr, wrong, token); !errors.Is(err, sexmap.ErrLoginFailed) {
			t.Fatalf("token with wrong key %d: %v", i, err)
		}
		e.clock.Advance(10 * time.Second)
	}
	wantLocked(t, e.loginToken(t, next(), aliceAddr, e.alice, token), 15*time.Minute-10*time.Second)
	wantLocked(t, e.login(t, next(), aliceAddr, e.alice), 15*time.Minute-10*time.Second)

	// The IP lock-out applies to token holders as to everyone.
	e2 := lockoutEnv(t)
	e2.accounts.addToken(aliceAddr, token)
	for range 4 {
		if err := e2.login(t, "198.51.100.7", "bob@example.org", wrong); !errors.Is(err, sexmap.ErrLoginFailed) {
			t.Fatalf("IP failures: %v", err)
		}
		e2.clock.Advance(time.Minute)
	}
	if err := e2.loginToken(t, "198.51.100.7", aliceAddr, e2.alice, token); !errors.Is(err, sexmap.ErrLockedOut) {
		t.Fatalf("token from a locked IP: %v, want locked out", err)
	}
}
