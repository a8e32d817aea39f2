package accounts_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	cmcrypto "cryptomail/crypto"
	"cryptomail/server/internal/accounts"
	"cryptomail/shard"
	"cryptomail/xmap"
	"cryptomail/xmap/sexmap"
)

func TestNewChecksConfig(t *testing.T) {
	canon := func(s string) (string, error) { return s, nil }
	fake := func(string) []byte { return make([]byte, 16) }
	st := &shard.Store{}
	tests := []struct {
		name string
		cfg  accounts.Config
	}{
		{"no store", accounts.Config{CanonicalAddress: canon, FakeSalt: fake}},
		{"no canonical", accounts.Config{Store: st, FakeSalt: fake}},
		{"no fake salt", accounts.Config{Store: st, CanonicalAddress: canon}},
	}
	for _, tt := range tests {
		if _, err := accounts.New(tt.cfg); err == nil {
			t.Errorf("%s: New succeeded", tt.name)
		}
	}
}

func TestSignupLoginAndSaltLookup(t *testing.T) {
	e := newEnv(t)
	alice := newUser(t, e, "alice@example.org", "correct horse battery staple")
	if r := call(t, e.nk(t), alice.signup(e.invite(t, alice.address, time.Hour))); r.Err != nil {
		t.Fatalf("signup: %v", r.Err)
	}

	// Salt lookups: the account's own salt and parameters; for everyone
	// else a stable fake salt with the default parameters.
	fake := accounts.FakeSaltFunc(e.key.Private)
	def := sexmap.DefaultKDFParams
	defKDF := func(salt []byte) xmap.KDF {
		return xmap.KDF{Alg: xmap.KDFArgon2id, Salt: salt, Time: def.Time, Memory: def.MemoryKiB, Threads: def.Threads}
	}
	mustCreateUser(t, e, "bob@example.org", newUser(t, e, "bob@example.org", "bob's passphrase").publicKey)
	tests := []struct {
		name, address string
		want          xmap.KDF
	}{
		{"account", "alice@example.org", alice.kdf()},
		{"account, other case", "Alice@Example.ORG", alice.kdf()},
		{"unknown", "nobody@example.org", defKDF(fake("nobody@example.org"))},
		{"unknown, other case", "NoBody@example.org", defKDF(fake("nobody@example.org"))},
		{"created, not signed up", "bob@example.org", defKDF(fake("bob@example.org"))},
		{"other domain", "carol@remote.example", defKDF(fake("carol@remote.example"))},
	}
	c := e.nk(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 { // stable
				r := call(t, c, &xmap.SaltLookup{Address: tt.address})
				if r.Err != nil {
					t.Fatalf("salt-lookup: %v", r.Err)
				}
				got := r.Result.(*xmap.SaltLookupResult).KDF
				if !kdfEqual(got, tt.want) {
					t.Fatalf("salt-lookup(%s) = %+v, want %+v", tt.address, got, tt.want)
				}
				if len(got.Salt) != sexmap.SaltSize {
					t.Fatalf("salt of %d bytes", len(got.Salt))
				}
			}
		})
	}
	if got, want := fake("nobody@example.org"), e.sx.FakeSalt("nobody@example.org"); !bytes.Equal(got, want) {
		t.Errorf("FakeSaltFunc disagrees with sexmap.Server.FakeSalt")
	}

	// Login: the right passphrase works; a wrong one fails exactly like an
	// unknown address or an account that never signed up.
	s, err := e.login(t, "alice@example.org", alice.passphrase)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if r := call(t, s, &xmap.PublicKeys{Addresses: []string{"alice@example.org"}}); r.Err != nil {
		t.Fatalf("public-keys in the logged-in session: %v", r.Err)
	}
	var refusals []string
	for _, tt := range []struct{ address, passphrase string }{
		{"alice@example.org", "Correct horse battery staple"},
		{"nobody@example.org", alice.passphrase},
		{"bob@example.org", "bob's passphrase"},
		{"alice@remote.example", alice.passphrase},
	} {
		_, err := e.login(t, tt.address, tt.passphrase)
		var se *sexmap.StatusError
		if !errors.Is(err, sexmap.ErrLoginFailed) || !errors.As(err, &se) {
			t.Fatalf("login(%s) = %v, want login-failed", tt.address, err)
		}
		refusals = append(refusals, se.Error())
	}
	for _, r := range refusals[1:] {
		if r != refusals[0] {
			t.Errorf("refusals differ: %q vs %q", r, refusals[0])
		}
	}

	// LoginKey itself, as SeXMAP sees it.
	ctx := context.Background()
	if k, err := e.acc.LoginKey(ctx, "alice@example.org"); err != nil || !bytes.Equal(k, sexmap.LoginPublicKey(alice.loginPriv)) {
		t.Errorf("LoginKey(alice) = %x, %v", k, err)
	}
	for _, a := range []string{"nobody@example.org", "bob@example.org", "x@remote.example", "not an address"} {
		if _, err := e.acc.LoginKey(ctx, a); !errors.Is(err, sexmap.ErrUnknownAccount) {
			t.Errorf("LoginKey(%s) = %v, want ErrUnknownAccount", a, err)
		}
	}

	// Logout ends the session after its own answer.
	if r := call(t, s, &xmap.Logout{}); r.Err != nil {
		t.Fatalf("logout: %v", r.Err)
	}
	if _, err := s.RoundTrip(ctx, []byte(`<xmap xmlns="urn:cryptomail:xmap:1" version="1"/>`)); !errors.Is(err, sexmap.ErrUnknownSession) {
		t.Errorf("request after logout: %v, want unknown session", err)
	}
}

func TestSignupRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	dave := newUser(t, e, "dave@example.org", "dave's passphrase")
	used := e.invite(t, "dave@example.org", time.Hour)
	second := e.invite(t, "dave@example.org", time.Hour) // issued before dave signed up
	if r := call(t, e.nk(t), dave.signup(used)); r.Err != nil {
		t.Fatalf("signup: %v", r.Err)
	}
	erin := newUser(t, e, "erin@example.org", "erin's passphrase")
	forErin := e.invite(t, "erin@example.org", time.Hour)
	expiring := e.invite(t, "erin@example.org", 90*time.Minute)

	with := func(u *user, mod func(*xmap.Signup)) *xmap.Signup {
		s := u.signup(forErin)
		mod(s)
		return s
	}
	signOnly := signOnlyKey(t)
	tests := []struct {
		name   string
		req    *xmap.Signup
		want   xmap.ErrorCode
		direct bool // the XMAP decoder refuses it already: call the Backend
	}{
		{"invite reused", dave.signup(used), xmap.CodeInvalidInvite, false},
		{"second invite of a signed-up address", dave.signup(second), xmap.CodeConflict, false},
		{"invite of another address", with(dave, func(s *xmap.Signup) {}), xmap.CodeInvalidInvite, false},
		{"unknown code", with(erin, func(s *xmap.Signup) { s.Invite = "0000-0000-0000-0000-0000-0000-0000" }), xmap.CodeInvalidInvite, false},
		{"malformed code", with(erin, func(s *xmap.Signup) { s.Invite = "not-a-code" }), xmap.CodeInvalidInvite, false},
		{"address outside the served domains", with(erin, func(s *xmap.Signup) { s.Address = "erin@remote.example" }), xmap.CodeInvalidInvite, false},
		{"KDF below the floor", with(erin, func(s *xmap.Signup) { s.KDF.Memory = sexmap.MinKDFParams.MemoryKiB - 1 }), xmap.CodeBadRequest, true},
		{"KDF time below the floor", with(erin, func(s *xmap.Signup) { s.KDF.Time = 1 }), xmap.CodeBadRequest, true},
		{"KDF threads over the ceiling", with(erin, func(s *xmap.Signup) { s.KDF.Threads = 17 }), xmap.CodeBadRequest, true},
		{"short salt", with(erin, func(s *xmap.Signup) { s.KDF.Salt = s.KDF.Salt[:8] }), xmap.CodeBadRequest, true},
		{"short login key", with(erin, func(s *xmap.Signup) { s.LoginKey = s.LoginKey[:31] }), xmap.CodeBadRequest, true},
		{"other KDF", with(erin, func(s *xmap.Signup) { s.KDF.Alg = "scrypt" }), xmap.CodeBadRequest, true},
		{"no sealed key", with(erin, func(s *xmap.Signup) { s.SealedKey = nil }), xmap.CodeBadRequest, true},
		{"low-order login key", with(erin, func(s *xmap.Signup) { s.LoginKey = make([]byte, 32) }), xmap.CodeBadRequest, false},
		{"sign-only public key", with(erin, func(s *xmap.Signup) { s.PublicKey = signOnly }), xmap.CodeBadRequest, false},
		{"garbage public key", with(erin, func(s *xmap.Signup) { s.PublicKey = []byte("\x99garbage") }), xmap.CodeBadRequest, false},
		// Another person's key (here dave's): its user ids do not name erin, so erin's
		// account could present dave's signatures as hers.
		{"another address's key", with(erin, func(s *xmap.Signup) { s.PublicKey = dave.publicKey }), xmap.CodeBadRequest, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.direct {
				var xe *xmap.Error
				if err := e.acc.Signup(ctx, tt.req); !errors.As(err, &xe) || xe.Code != tt.want {
					t.Errorf("Signup: %v, want %q", err, tt.want)
				}
				return
			}
			if got := code(call(t, e.nk(t), tt.req)); got != tt.want {
				t.Errorf("signup: %q, want %q", got, tt.want)
			}
		})
	}

	// None of the refusals used erin's invites: expire one, use the other.
	e.clock.Advance(2 * time.Hour)
	if got := code(call(t, e.nk(t), erin.signup(expiring))); got != xmap.CodeExpired {
		t.Errorf("expired invite: %q, want expired", got)
	}
	e.clock.Advance(-2 * time.Hour)
	if r := call(t, e.nk(t), erin.signup(forErin)); r.Err != nil {
		t.Fatalf("erin's signup after the refusals: %v", r.Err)
	}
	if _, err := e.store.LoginMaterial(ctx, "erin@example.org"); err != nil {
		t.Errorf("erin has no login material: %v", err)
	}
	// An address that signed up gets no more invites.
	if _, err := accounts.CreateInvite(ctx, e.store, strings.NewReader(strings.Repeat("x", 64)), "erin@example.org", time.Now().Add(time.Hour)); !errors.Is(err, shard.ErrExists) {
		t.Errorf("invite for a signed-up address: %v, want ErrExists", err)
	}
}

func TestActivatePreCreatedUser(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	carol := newUser(t, e, "carol@example.org", "carol's passphrase")
	// An administrator created carol with her key (armored, as user add does).
	pk, err := cmcrypto.ParsePublicKey(carol.publicKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	armored, err := pk.Armored()
	if err != nil {
		t.Fatal(err)
	}
	mustCreateUser(t, e, "carol@example.org", armored)
	code1 := e.invite(t, "carol@example.org", time.Hour)

	// Someone with the invite but another key cannot take the account, and
	// the refusal leaves the invite unused.
	mallory := newUser(t, e, "carol@example.org", "mallory's passphrase")
	if got := code(call(t, e.nk(t), mallory.signup(code1))); got != xmap.CodeConflict {
		t.Fatalf("signup with another key: %q, want conflict", got)
	}
	if _, err := e.acc.LoginKey(ctx, "carol@example.org"); !errors.Is(err, sexmap.ErrUnknownAccount) {
		t.Fatalf("carol has a login key after a refused signup: %v", err)
	}
	if r := call(t, e.nk(t), carol.signup(code1)); r.Err != nil {
		t.Fatalf("activation: %v", r.Err)
	}
	if _, err := e.login(t, "carol@example.org", carol.passphrase); err != nil {
		t.Fatalf("login after activation: %v", err)
	}
	// The key delivered mail was encrypted to is kept.
	stored, err := e.store.PublicKey(ctx, "carol@example.org")
	if err != nil || !bytes.Equal(stored, armored) {
		t.Errorf("stored key changed by activation (%v)", err)
	}
	if got := code(call(t, e.nk(t), carol.signup(e.invite(t, "dan@example.org", time.Hour)))); got != xmap.CodeInvalidInvite {
		t.Errorf("signup with dan's invite: %q", got)
	}
}

func TestChangePassphrase(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := newUser(t, e, "alice@example.org", "old passphrase")
	if r := call(t, e.nk(t), alice.signup(e.invite(t, alice.address, time.Hour))); r.Err != nil {
		t.Fatalf("signup: %v", r.Err)
	}
	s, err := e.login(t, alice.address, "old passphrase")
	if err != nil {
		t.Fatal(err)
	}
	oldSalt := alice.salt

	// A refused change changes nothing.
	bad := &xmap.ChangePassphrase{LoginKey: make([]byte, 32), KDF: alice.kdf(), SealedKey: []byte("x")}
	if got := code(call(t, s, bad)); got != xmap.CodeBadRequest {
		t.Fatalf("change with a low-order key: %q", got)
	}
	if _, err := e.login(t, alice.address, "old passphrase"); err != nil {
		t.Fatalf("login after a refused change: %v", err)
	}

	oldPriv := alice.loginPriv
	alice.setPassphrase(t, e, "new passphrase")
	req := &xmap.ChangePassphrase{LoginKey: sexmap.LoginPublicKey(alice.loginPriv), KDF: alice.kdf(), SealedKey: alice.sealedKey}
	// Without proof of the current login key (a request on a session that is
	// merely logged in) it is refused and changes nothing.
	if got := code(call(t, s, req)); got != xmap.CodeDenied {
		t.Fatalf("change-passphrase on a used session: %q, want denied", got)
	}
	other, err := e.xk(alice.address, oldPriv)
	if err != nil {
		t.Fatal(err)
	}
	call(t, other, &xmap.GetAccount{})
	if got := code(call(t, other, req)); got != xmap.CodeDenied {
		t.Fatalf("change-passphrase as a second request: %q, want denied", got)
	}
	if l, err := e.store.LoginMaterial(ctx, alice.address); err != nil || !bytes.Equal(l.Salt, oldSalt) {
		t.Fatalf("a refused change-passphrase changed the login material (%v)", err)
	}
	// With proof: the first request of a login made for it.
	proof, err := e.xk(alice.address, oldPriv)
	if err != nil {
		t.Fatal(err)
	}
	if r := call(t, proof, req); r.Err != nil {
		t.Fatalf("change-passphrase: %v", r.Err)
	}
	l, err := e.store.LoginMaterial(ctx, alice.address)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(l.Salt, alice.salt) || bytes.Equal(l.Salt, oldSalt) || !bytes.Equal(l.SealedKey, alice.sealedKey) ||
		!bytes.Equal(l.Key, req.LoginKey) {
		t.Errorf("stored login material is not the new one")
	}
	if _, err := e.login(t, alice.address, "old passphrase"); !errors.Is(err, sexmap.ErrLoginFailed) {
		t.Errorf("old passphrase: %v, want login failed", err)
	}
	if _, err := e.login(t, alice.address, "new passphrase"); err != nil {
		t.Errorf("new passphrase: %v", err)
	}
	// Every session open before the change ends, the one that made it too.
	for _, c := range []*sexmap.ClientSession{s, other, proof} {
		ended(t, c, &xmap.PublicKeys{Addresses: []string{alice.address}})
	}
	// Anonymous sessions cannot change anything.
	if got := code(call(t, e.nk(t), req)); got != xmap.CodeDenied {
		t.Errorf("change-passphrase in an anonymous session: %q", got)
	}
}

func TestPublicKeys(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := newUser(t, e, "alice@example.org", "alice's passphrase")
	if r := call(t, e.nk(t), alice.signup(e.invite(t, alice.address, time.Hour))); r.Err != nil {
		t.Fatalf("signup: %v", r.Err)
	}
	bob := newUser(t, e, "bob@example.org", "bob's passphrase")
	pk, err := cmcrypto.ParsePublicKey(bob.publicKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	armored, _ := pk.Armored()
	mustCreateUser(t, e, "bob@example.org", armored) // not signed up: still receives mail
	s, err := e.login(t, alice.address, alice.passphrase)
	if err != nil {
		t.Fatal(err)
	}
	asked := []string{"Bob@Example.org", "nobody@example.org", "carol@remote.example", "alice@example.org"}
	r := call(t, s, &xmap.PublicKeys{Addresses: asked})
	if r.Err != nil {
		t.Fatalf("public-keys: %v", r.Err)
	}
	res := r.Result.(*xmap.PublicKeysResult)
	want := map[string]string{"Bob@Example.org": bob.fpr, "alice@example.org": alice.fpr}
	if len(res.Keys) != len(want) {
		t.Fatalf("got %d keys, want %d", len(res.Keys), len(want))
	}
	for _, k := range res.Keys {
		if fingerprint(t, k.Key) != want[k.Address] {
			t.Errorf("key for %s has the wrong fingerprint", k.Address)
		}
	}
	if got := strings.Join(res.NotFound, ","); got != "nobody@example.org,carol@remote.example" {
		t.Errorf("not found = %q", got)
	}

	// A session whose account is gone has ended.
	if err := e.store.DeleteUser(ctx, alice.address); err != nil {
		t.Fatal(err)
	}
	ended(t, s, &xmap.PublicKeys{Addresses: asked})
	ended(t, s, &xmap.Logout{})
	// The backend itself still denies a user without an account.
	if _, err := e.acc.PublicKeys(ctx, alice.address, &xmap.PublicKeys{Addresses: asked}); !errors.Is(err, xmap.ErrDenied) {
		t.Errorf("PublicKeys for a deleted user: %v, want denied", err)
	}
}

// TestGetAccount: a logged-in user gets back exactly the public key, KDF
// parameters and sealed key it uploaded, after signup and after a passphrase
// change; nobody else's, and nothing in an anonymous session.
func TestGetAccount(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := newUser(t, e, "alice@example.org", "alice's passphrase")
	if r := call(t, e.nk(t), alice.signup(e.invite(t, alice.address, time.Hour))); r.Err != nil {
		t.Fatalf("signup: %v", r.Err)
	}
	bob := newUser(t, e, "bob@example.org", "bob's passphrase")
	if r := call(t, e.nk(t), bob.signup(e.invite(t, bob.address, time.Hour))); r.Err != nil {
		t.Fatalf("signup: %v", r.Err)
	}
	// carol was created by an administrator (armored key) and activated.
	carol := newUser(t, e, "carol@example.org", "carol's passphrase")
	pk, err := cmcrypto.ParsePublicKey(carol.publicKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	armored, err := pk.Armored()
	if err != nil {
		t.Fatal(err)
	}
	mustCreateUser(t, e, carol.address, armored)
	if r := call(t, e.nk(t), carol.signup(e.invite(t, carol.address, time.Hour))); r.Err != nil {
		t.Fatalf("activation: %v", r.Err)
	}
	login := func(u *user) *sexmap.ClientSession {
		t.Helper()
		s, err := e.login(t, u.address, u.passphrase)
		if err != nil {
			t.Fatalf("login %s: %v", u.address, err)
		}
		return s
	}
	aliceOld := login(alice)
	check := func(t *testing.T, s *sexmap.ClientSession, u *user) {
		t.Helper()
		r := call(t, s, &xmap.GetAccount{})
		if r.Err != nil {
			t.Fatalf("get-account: %v", r.Err)
		}
		got := r.Result.(*xmap.GetAccountResult).Account
		if got.Address != u.address {
			t.Errorf("address %q, want %q", got.Address, u.address)
		}
		if fingerprint(t, got.PublicKey) != u.fpr {
			t.Errorf("public key of %s has the wrong fingerprint", u.address)
		}
		if !kdfEqual(got.KDF, u.kdf()) {
			t.Errorf("kdf %+v, want %+v", got.KDF, u.kdf())
		}
		if !bytes.Equal(got.SealedKey, u.sealedKey) {
			t.Errorf("sealed key is not the one uploaded last")
		}
	}

	tests := []struct {
		name    string
		session func() *sexmap.ClientSession
		u       *user
	}{
		{"after signup", func() *sexmap.ClientSession { return aliceOld }, alice},
		{"another user gets his own", func() *sexmap.ClientSession { return login(bob) }, bob},
		{"activated account", func() *sexmap.ClientSession { return login(carol) }, carol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { check(t, tt.session(), tt.u) })
	}

	// After a passphrase change (made, with proof, by a new login): the new
	// salt and sealed key in a new session; the old sessions have ended.
	oldSealed := alice.sealedKey
	proof := login(alice)
	alice.setPassphrase(t, e, "alice's new passphrase")
	req := &xmap.ChangePassphrase{LoginKey: sexmap.LoginPublicKey(alice.loginPriv), KDF: alice.kdf(), SealedKey: alice.sealedKey}
	if r := call(t, proof, req); r.Err != nil {
		t.Fatalf("change-passphrase: %v", r.Err)
	}
	if bytes.Equal(oldSealed, alice.sealedKey) {
		t.Fatal("test needs a different sealed key")
	}
	t.Run("after change-passphrase, old sessions end", func(t *testing.T) {
		ended(t, aliceOld, &xmap.GetAccount{})
		ended(t, proof, &xmap.GetAccount{})
	})
	t.Run("after change-passphrase, new session", func(t *testing.T) { check(t, login(alice), alice) })

	// Anonymous sessions get nothing; neither does a session whose account is
	// gone, nor a direct call for an address without an account.
	if got := code(call(t, e.nk(t), &xmap.GetAccount{})); got != xmap.CodeDenied {
		t.Errorf("get-account in an anonymous session: %q", got)
	}
	for _, a := range []string{"nobody@example.org", "x@remote.example", ""} {
		if _, err := e.acc.Account(ctx, a); !errors.Is(err, xmap.ErrDenied) {
			t.Errorf("Account(%q) = %v, want denied", a, err)
		}
	}
	bobSession := login(bob)
	if err := e.store.DeleteUser(ctx, bob.address); err != nil {
		t.Fatal(err)
	}
	ended(t, bobSession, &xmap.GetAccount{})
}

// TestOldSessionCannotReachNewOwner is issue 9's item 4 as it was found: after
// `cryptomail user del` (another process, here a second Store on the same
// files), a new invite and a new owner's signup at the same address, the old
// owner's session listed the new owner's INBOX, fetched their sealed key and
// changed their passphrase. Now every request of it is refused.
func TestOldSessionCannotReachNewOwner(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	old := newUser(t, e, "alice@example.org", "the old owner's passphrase")
	if r := call(t, e.nk(t), old.signup(e.invite(t, old.address, time.Hour))); r.Err != nil {
		t.Fatalf("signup: %v", r.Err)
	}
	s, err := e.login(t, old.address, old.passphrase)
	if err != nil {
		t.Fatal(err)
	}
	if r := call(t, s, &xmap.GetAccount{}); r.Err != nil {
		t.Fatalf("get-account: %v", r.Err)
	}

	// The administrator deletes the account from another process while the
	// server runs, and invites the address again; a new owner signs up.
	admin := e.otherProcess(t)
	if err := admin.DeleteUser(ctx, old.address); err != nil {
		t.Fatal(err)
	}
	code2, err := accounts.CreateInvite(ctx, admin, rand.Reader, old.address, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	e.secret(code2)
	owner := newUser(t, e, "alice@example.org", "the new owner's passphrase")
	if r := call(t, e.nk(t), owner.signup(code2)); r.Err != nil {
		t.Fatalf("new owner's signup: %v", r.Err)
	}

	owner.setPassphrase(t, e, "the attacker's passphrase")
	steal := &xmap.ChangePassphrase{LoginKey: sexmap.LoginPublicKey(owner.loginPriv), KDF: owner.kdf(), SealedKey: owner.sealedKey}
	for _, cmd := range []xmap.Command{&xmap.ListFolders{}, &xmap.GetAccount{}, steal, &xmap.ListMessages{Folder: xmap.FolderRef{Name: "INBOX"}}} {
		ended(t, s, cmd)
	}
	// The new owner still logs in with their own passphrase.
	if _, err := e.login(t, owner.address, "the new owner's passphrase"); err != nil {
		t.Fatalf("the new owner is locked out: %v", err)
	}
}

// TestConcurrentSignups races one invite: exactly one signup wins.
func TestConcurrentSignups(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := newUser(t, e, "frank@example.org", "frank's passphrase")
	inv := e.invite(t, u.address, time.Hour)
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = e.acc.Signup(ctx, u.signup(inv)) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, xmap.ErrInvalidInvite):
		default:
			t.Errorf("signup: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d signups succeeded with one invite, want 1", ok)
	}
}

func mustCreateUser(t *testing.T, e *env, address string, key []byte) {
	t.Helper()
	if _, err := e.store.CreateUser(context.Background(), address, key); err != nil {
		t.Fatal(err)
	}
}

func kdfEqual(a, b xmap.KDF) bool {
	return a.Alg == b.Alg && bytes.Equal(a.Salt, b.Salt) && a.Time == b.Time && a.Memory == b.Memory && a.Threads == b.Threads
}

func fingerprint(t *testing.T, bin []byte) string {
	t.Helper()
	el, err := openpgp.ReadKeyRing(bytes.NewReader(bin))
	if err != nil || len(el) != 1 {
		t.Fatalf("key does not parse: %v", err)
	}
	return strings.ToUpper(hex.EncodeToString(el[0].PrimaryKey.Fingerprint))
}

// signOnlyKey is a public key without an encryption subkey.
func signOnlyKey(t *testing.T) []byte {
	t.Helper()
	ent, err := cmcrypto.GenerateKey("Signer", "signer@example.org", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ent.Subkeys = nil
	var b bytes.Buffer
	if err := ent.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestDeviceTokens: the server issues device tokens to logged-in sessions,
// keeps only their hashes (the newest MaxDeviceTokens), and forgets them with
// a passphrase change or the account.
func TestDeviceTokens(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := newUser(t, e, "alice@example.org", "alice's passphrase")
	if r := call(t, e.nk(t), alice.signup(e.invite(t, alice.address, time.Hour))); r.Err != nil {
		t.Fatalf("signup: %v", r.Err)
	}
	s, err := e.login(t, alice.address, alice.passphrase)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(s *sexmap.ClientSession, current ...byte) []byte {
		t.Helper()
		req := &xmap.DeviceToken{}
		if current != nil {
			req.Current = current
		}
		r := call(t, s, req)
		if r.Err != nil {
			t.Fatalf("device-token: %v", r.Err)
		}
		return r.Result.(*xmap.DeviceTokenResult).Token
	}
	valid := func(address string, token []byte) bool {
		t.Helper()
		ok, err := e.acc.DeviceTokenValid(ctx, address, token)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	first := issue(s)
	if !valid(alice.address, first) || !valid("Alice@Example.org", first) {
		t.Fatal("an issued token is not valid")
	}
	// A client that holds a valid token gets it back, and nothing is stored.
	if again := issue(s, first...); !bytes.Equal(again, first) {
		t.Error("a valid current token was replaced")
	}
	if made := issue(s, bytes.Repeat([]byte{3}, 32)...); bytes.Equal(made, bytes.Repeat([]byte{3}, 32)) || !valid(alice.address, made) {
		t.Error("an invalid current token was accepted instead of a new one issued")
	}
	if valid("bob@example.org", first) || valid(alice.address, bytes.Repeat([]byte{1}, 32)) || valid(alice.address, first[:31]) {
		t.Error("a token is valid for another address, or a made-up one is valid")
	}
	if got := code(call(t, e.nk(t), &xmap.DeviceToken{})); got != xmap.CodeDenied {
		t.Errorf("device-token in an anonymous session: %q", got)
	}
	// Bounded: the oldest goes first.
	var last []byte
	for range accounts.MaxDeviceTokens {
		last = issue(s)
	}
	if valid(alice.address, first) || !valid(alice.address, last) {
		t.Error("the oldest token was not dropped, or the newest is not valid")
	}
	// A passphrase change forgets them.
	proof, err := e.xk(alice.address, alice.loginPriv)
	if err != nil {
		t.Fatal(err)
	}
	alice.setPassphrase(t, e, "alice's new passphrase")
	if r := call(t, proof, &xmap.ChangePassphrase{LoginKey: sexmap.LoginPublicKey(alice.loginPriv), KDF: alice.kdf(), SealedKey: alice.sealedKey}); r.Err != nil {
		t.Fatalf("change-passphrase: %v", r.Err)
	}
	if valid(alice.address, last) {
		t.Error("a token survived the passphrase change")
	}
	// The next login sending the forgotten token gets a new one.
	if s2, err := e.login(t, alice.address, alice.passphrase); err != nil {
		t.Fatal(err)
	} else if fresh := issue(s2, last...); bytes.Equal(fresh, last) || !valid(alice.address, fresh) {
		t.Error("a forgotten token was not replaced")
	}
	// So does deleting the account, and a new account at the address has none.
	s, err = e.login(t, alice.address, alice.passphrase)
	if err != nil {
		t.Fatal(err)
	}
	token := issue(s)
	if err := e.otherProcess(t).DeleteUser(ctx, alice.address); err != nil {
		t.Fatal(err)
	}
	if valid(alice.address, token) {
		t.Error("a token survived the account")
	}
	if r := call(t, e.nk(t), alice.signup(e.invite(t, alice.address, time.Hour))); r.Err != nil {
		t.Fatalf("signup again: %v", r.Err)
	}
	if valid(alice.address, token) {
		t.Error("the old account's token is valid for the new one")
	}
}
