// Package directorytest is the conformance suite of shard.Directory: every
// implementation (the SQLite metabase, etcd) runs Run against itself, so
// they keep one contract (shard/directory.go).
package directorytest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cryptomail/shard"
)

// Harness is one fresh Directory under test.
type Harness struct {
	Dir shard.Directory
	// Homes are the ids of the homes the directory has taken in (at least
	// two, and no others), with no users yet.
	Homes []string
	// TTL is how long the directory's reservations and claims last.
	TTL time.Duration
	// Advance moves the directory's clock on by d (a holder that crashed).
	Advance func(d time.Duration)
}

// Run runs the suite; open returns a fresh, empty directory each time.
func Run(t *testing.T, open func(t *testing.T) Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"CreateLookupDelete", testCreateLookupDelete},
		{"Users", testUsers},
		{"Placement", testPlacement},
		{"AddHome", testAddHome},
		{"AccountIDs", testAccountIDs},
		{"Invites", testInvites},
		{"SignupCommits", testSignupCommits},
		{"ConcurrentReserve", testConcurrentReserve},
		{"ConcurrentClaims", testConcurrentClaims},
		{"ExpiredReservation", testExpiredReservation},
		{"ExpiredClaim", testExpiredClaim},
		{"DeviceTokens", testDeviceTokens},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := open(t)
			if len(h.Homes) < 2 {
				t.Fatalf("harness has %d homes, want at least 2", len(h.Homes))
			}
			tt.fn(t, h)
		})
	}
}

var ctx = context.Background()

func mustCreate(t *testing.T, h Harness, address string, homes ...string) shard.Entry {
	t.Helper()
	if len(homes) == 0 {
		homes = h.Homes
	}
	r, err := h.Dir.Reserve(ctx, address, homes)
	if err != nil {
		t.Fatalf("Reserve %s: %v", address, err)
	}
	e, err := h.Dir.Commit(ctx, r)
	if err != nil {
		t.Fatalf("Commit %s: %v", address, err)
	}
	return e
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: %v, want %v", what, err, want)
	}
}

func testCreateLookupDelete(t *testing.T, h Harness) {
	const a = "alice@example.org"
	_, err := h.Dir.Lookup(ctx, a)
	wantErr(t, "Lookup of nobody", err, shard.ErrNotFound)
	r, err := h.Dir.Reserve(ctx, a, h.Homes)
	if err != nil {
		t.Fatal(err)
	}
	if r.Address != a || !slices.Contains(h.Homes, r.HomeID) || len(r.Token) == 0 || r.TookOver {
		t.Fatalf("reservation %+v", r)
	}
	_, err = h.Dir.Lookup(ctx, a)
	wantErr(t, "Lookup of a reserved address", err, shard.ErrNotFound)
	_, err = h.Dir.Reserve(ctx, a, h.Homes)
	wantErr(t, "second Reserve", err, shard.ErrReserved)
	e, err := h.Dir.Commit(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if e.Address != a || e.HomeID != r.HomeID || e.State != shard.StateActive || len(e.AccountID) != shard.AccountIDSize || e.Created.IsZero() {
		t.Fatalf("entry %+v", e)
	}
	if got, err := h.Dir.Lookup(ctx, a); err != nil || got.HomeID != e.HomeID || !bytes.Equal(got.AccountID, e.AccountID) {
		t.Fatalf("Lookup: %+v, %v; want %+v", got, err, e)
	}
	_, err = h.Dir.Commit(ctx, r)
	wantErr(t, "Commit twice", err, shard.ErrLost)
	_, err = h.Dir.Reserve(ctx, a, h.Homes)
	wantErr(t, "Reserve of an entry", err, shard.ErrExists)

	d, err := h.Dir.Delete(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if d.HomeID != e.HomeID || len(d.Token) == 0 {
		t.Fatalf("Delete's reservation %+v, want one on home %s", d, e.HomeID)
	}
	_, err = h.Dir.Lookup(ctx, a)
	wantErr(t, "Lookup after Delete", err, shard.ErrNotFound)
	_, err = h.Dir.Reserve(ctx, a, h.Homes)
	wantErr(t, "Reserve while the deleter holds the address", err, shard.ErrReserved)
	if err := h.Dir.Cancel(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := h.Dir.Cancel(ctx, d); err != nil {
		t.Fatalf("Cancel of a reservation gone: %v, want nil", err)
	}
	_, err = h.Dir.Delete(ctx, a)
	wantErr(t, "Delete of nobody", err, shard.ErrNotFound)
	r2, err := h.Dir.Reserve(ctx, a, h.Homes)
	if err != nil {
		t.Fatalf("Reserve after the deleter cancelled: %v", err)
	}
	if err := h.Dir.Cancel(ctx, r2); err != nil {
		t.Fatal(err)
	}
	_, err = h.Dir.Commit(ctx, r2)
	wantErr(t, "Commit of a cancelled reservation", err, shard.ErrLost)
	_, err = h.Dir.Lookup(ctx, a)
	wantErr(t, "Lookup after a cancelled create", err, shard.ErrNotFound)
}

func testUsers(t *testing.T, h Harness) {
	for _, a := range []string{"carol@example.org", "alice@example.org", "bob@example.org"} {
		mustCreate(t, h, a)
	}
	// A reservation is no user.
	if _, err := h.Dir.Reserve(ctx, "dave@example.org", h.Homes); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := h.Dir.Users(ctx, func(e shard.Entry) error { got = append(got, e.Address); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"alice@example.org", "bob@example.org", "carol@example.org"}; !slices.Equal(got, want) {
		t.Fatalf("Users: %v, want %v", got, want)
	}
	stop := errors.New("stop")
	n := 0
	err := h.Dir.Users(ctx, func(shard.Entry) error { n++; return stop })
	if err != stop || n != 1 {
		t.Fatalf("Users with fn failing: %v after %d calls, want fn's error after 1", err, n)
	}
}

func load(t *testing.T, h Harness) map[string]int64 {
	t.Helper()
	hs, err := h.Dir.Homes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for _, l := range hs {
		m[l.ID] = l.Users
	}
	return m
}

func testPlacement(t *testing.T, h Harness) {
	a, b := h.Homes[0], h.Homes[1]
	if l := load(t, h); l[a] != 0 || l[b] != 0 {
		t.Fatalf("homes %v, want both known and empty", l)
	}
	// Ties go to the first; a live reservation counts.
	r1, err := h.Dir.Reserve(ctx, "u1@example.org", []string{a, b})
	if err != nil || r1.HomeID != a {
		t.Fatalf("first Reserve on home %s, %v; want %s", r1.HomeID, err, a)
	}
	r2, err := h.Dir.Reserve(ctx, "u2@example.org", []string{a, b})
	if err != nil || r2.HomeID != b {
		t.Fatalf("second Reserve on home %s, %v; want %s (the first is reserved)", r2.HomeID, err, b)
	}
	for _, r := range []shard.Reservation{r1, r2} {
		if _, err := h.Dir.Commit(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// A named home.
	if e := mustCreate(t, h, "u3@example.org", b); e.HomeID != b {
		t.Fatalf("named home: placed on %s, want %s", e.HomeID, b)
	}
	if e := mustCreate(t, h, "u4@example.org"); e.HomeID != a {
		t.Fatalf("least loaded: placed on %s, want %s", e.HomeID, a)
	}
	if l := load(t, h); l[a] != 2 || l[b] != 2 {
		t.Fatalf("homes %v, want 2 users each", l)
	}
	if _, err := h.Dir.Delete(ctx, "u3@example.org"); err != nil {
		t.Fatal(err)
	}
	if l := load(t, h); l[b] != 1 {
		t.Fatalf("homes %v after a delete, want 1 user on %s", l, b)
	}
}

func testAddHome(t *testing.T, h Harness) {
	const id = "0123456789abcdef0123456789abcdef"
	for range 2 {
		if err := h.Dir.AddHome(ctx, id); err != nil {
			t.Fatalf("AddHome (twice is no error): %v", err)
		}
	}
	if err := h.Dir.AddHome(ctx, "../not-an-id"); !errors.Is(err, shard.ErrInvalid) {
		t.Fatalf("AddHome of a bad id: %v, want ErrInvalid", err)
	}
	mustCreate(t, h, "alice@example.org", id)
	hs, err := h.Dir.Homes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(hs, func(a, b shard.HomeLoad) int { return strings.Compare(a.ID, b.ID) }) {
		t.Fatalf("Homes not ordered by id: %v", hs)
	}
	if l := load(t, h); len(l) != len(h.Homes)+1 || l[id] != 1 {
		t.Fatalf("homes %v, want the harness's and %s with one user", l, id)
	}
	if err := h.Dir.AddHome(ctx, id); err != nil {
		t.Fatal(err)
	}
	if l := load(t, h); l[id] != 1 {
		t.Fatalf("AddHome of a known home changed its count: %v", l)
	}
}

func testAccountIDs(t *testing.T, h Harness) {
	const a = "alice@example.org"
	e1 := mustCreate(t, h, a)
	d, err := h.Dir.Delete(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Dir.Cancel(ctx, d); err != nil {
		t.Fatal(err)
	}
	e2 := mustCreate(t, h, a)
	if bytes.Equal(e1.AccountID, e2.AccountID) {
		t.Fatal("a re-created account has its predecessor's account id")
	}
}

func hash(code string) []byte {
	s := sha256.Sum256([]byte(code))
	return s[:]
}

func invite(t *testing.T, h Harness, address, code string, expires time.Time) {
	t.Helper()
	err := h.Dir.CreateInvite(ctx, shard.Invite{Address: address, CodeHash: hash(code), Created: time.Now(), Expires: expires})
	if err != nil {
		t.Fatal(err)
	}
}

func testInvites(t *testing.T, h Harness) {
	const a = "alice@example.org"
	now := time.Now()
	invite(t, h, a, "code1", now.Add(time.Hour))
	invite(t, h, a, "old", now.Add(time.Minute))
	err := h.Dir.CreateInvite(ctx, shard.Invite{Address: a, CodeHash: hash("code1"), Created: now, Expires: now.Add(time.Hour)})
	wantErr(t, "CreateInvite of a code stored already", err, shard.ErrExists)

	_, err = h.Dir.ClaimInvite(ctx, a, hash("wrong"), now)
	wantErr(t, "ClaimInvite with a wrong code", err, shard.ErrInvalidInvite)
	_, err = h.Dir.ClaimInvite(ctx, "bob@example.org", hash("code1"), now)
	wantErr(t, "ClaimInvite for another address", err, shard.ErrInvalidInvite)
	_, err = h.Dir.ClaimInvite(ctx, a, hash("old"), now.Add(2*time.Minute))
	wantErr(t, "ClaimInvite of an expired invite", err, shard.ErrInviteExpired)

	c, err := h.Dir.ClaimInvite(ctx, a, hash("code1"), now)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Dir.ClaimInvite(ctx, a, hash("code1"), now)
	wantErr(t, "ClaimInvite of a claimed invite", err, shard.ErrInvalidInvite)
	if err := h.Dir.ReleaseInvite(ctx, c); err != nil {
		t.Fatal(err)
	}
	c, err = h.Dir.ClaimInvite(ctx, a, hash("code1"), now)
	if err != nil {
		t.Fatalf("ClaimInvite after a release: %v", err)
	}
	r, err := h.Dir.Reserve(ctx, a, h.Homes)
	if err != nil {
		t.Fatal(err)
	}
	e, err := h.Dir.CompleteSignup(ctx, c, &r)
	if err != nil {
		t.Fatal(err)
	}
	if e.Address != a || e.State != shard.StateActive || e.HomeID != r.HomeID {
		t.Fatalf("CompleteSignup's entry %+v", e)
	}
	// Single use.
	_, err = h.Dir.ClaimInvite(ctx, a, hash("code1"), now)
	wantErr(t, "ClaimInvite of a used invite", err, shard.ErrInvalidInvite)
	_, err = h.Dir.CompleteSignup(ctx, c, nil)
	wantErr(t, "CompleteSignup twice", err, shard.ErrInvalidInvite)
	if err := h.Dir.ReleaseInvite(ctx, c); err != nil {
		t.Fatal(err)
	}
	_, err = h.Dir.ClaimInvite(ctx, a, hash("code1"), now)
	wantErr(t, "ClaimInvite of a used invite after a late release", err, shard.ErrInvalidInvite)
}

// testSignupCommits: CompleteSignup is all or nothing.
func testSignupCommits(t *testing.T, h Harness) {
	const a, b = "alice@example.org", "bob@example.org"
	now := time.Now()
	invite(t, h, a, "code-a", now.Add(time.Hour))
	invite(t, h, b, "code-b", now.Add(time.Hour))

	// The reservation is lost: the invite stays unused.
	c, err := h.Dir.ClaimInvite(ctx, a, hash("code-a"), now)
	if err != nil {
		t.Fatal(err)
	}
	r, err := h.Dir.Reserve(ctx, a, h.Homes)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Dir.Cancel(ctx, r); err != nil {
		t.Fatal(err)
	}
	_, err = h.Dir.CompleteSignup(ctx, c, &r)
	wantErr(t, "CompleteSignup with a lost reservation", err, shard.ErrLost)
	if _, err := h.Dir.Lookup(ctx, a); !errors.Is(err, shard.ErrNotFound) {
		t.Fatalf("entry after a failed CompleteSignup: %v", err)
	}
	// The claim still holds, so the invite is still unused: complete it now.
	r, err = h.Dir.Reserve(ctx, a, h.Homes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Dir.CompleteSignup(ctx, c, &r); err != nil {
		t.Fatalf("CompleteSignup after a failed one: %v", err)
	}

	// The claim is lost: the reservation is not committed.
	c, err = h.Dir.ClaimInvite(ctx, b, hash("code-b"), now)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Dir.ReleaseInvite(ctx, c); err != nil {
		t.Fatal(err)
	}
	r, err = h.Dir.Reserve(ctx, b, h.Homes)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Dir.CompleteSignup(ctx, c, &r)
	wantErr(t, "CompleteSignup with a released claim", err, shard.ErrInvalidInvite)
	if _, err := h.Dir.Lookup(ctx, b); !errors.Is(err, shard.ErrNotFound) {
		t.Fatalf("entry after a failed CompleteSignup: %v", err)
	}
	if _, err := h.Dir.Commit(ctx, r); err != nil {
		t.Fatalf("the reservation was consumed by a failed CompleteSignup: %v", err)
	}

	// Activation of an entry that exists.
	c, err = h.Dir.ClaimInvite(ctx, b, hash("code-b"), now)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := h.Dir.CompleteSignup(ctx, c, nil); err != nil || e.Address != b {
		t.Fatalf("CompleteSignup of an existing entry: %+v, %v", e, err)
	}
	// Of an entry that does not.
	const n = "nobody@example.org"
	invite(t, h, n, "code-n", now.Add(time.Hour))
	c, err = h.Dir.ClaimInvite(ctx, n, hash("code-n"), now)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Dir.CompleteSignup(ctx, c, nil)
	wantErr(t, "CompleteSignup of no entry", err, shard.ErrNotFound)
	if _, err := h.Dir.ClaimInvite(ctx, n, hash("code-n"), now); err == nil {
		t.Fatal("a failed CompleteSignup released the claim")
	}
}

func testConcurrentReserve(t *testing.T, h Harness) {
	const a = "alice@example.org"
	const n = 16
	rs := make([]shard.Reservation, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { rs[i], errs[i] = h.Dir.Reserve(ctx, a, h.Homes) })
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Fatalf("Reserve %d and %d both won", won, i)
		case err == nil:
			won = i
		case !errors.Is(err, shard.ErrReserved):
			t.Fatalf("Reserve %d: %v, want ErrReserved", i, err)
		}
	}
	if won < 0 {
		t.Fatal("no Reserve won")
	}
	// Commits racing with one reservation each: the winner only.
	errs = make([]error, n)
	for i := range n {
		wg.Go(func() { _, errs[i] = h.Dir.Commit(ctx, rs[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if i == won && err != nil || i != won && !errors.Is(err, shard.ErrLost) {
			t.Fatalf("Commit %d (winner %d): %v", i, won, err)
		}
	}
	if l := load(t, h); l[h.Homes[0]]+l[h.Homes[1]] != 1 {
		t.Fatalf("homes %v, want one user in all", l)
	}
}

func testConcurrentClaims(t *testing.T, h Harness) {
	const a = "alice@example.org"
	now := time.Now()
	invite(t, h, a, "code", now.Add(time.Hour))
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = h.Dir.ClaimInvite(ctx, a, hash("code"), now) })
	}
	wg.Wait()
	OneWon(t, "ClaimInvite", errs, shard.ErrInvalidInvite)
}

// OneWon fails t unless exactly one of the racers' errs is nil and every
// other is lose: what a race to create one thing must end with, on any
// engine.
func OneWon(t testing.TB, what string, errs []error, lose error) {
	t.Helper()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, lose):
			t.Fatalf("%s %d: %v", what, i, err)
		}
	}
	if ok != 1 {
		t.Fatalf("%s: %d of %d racers won, want 1", what, ok, len(errs))
	}
}

// testExpiredReservation: a creator that crashed leaves a reservation; once
// it has expired, the next one takes it over, and the crashed one's Commit
// (had it only been slow) is refused.
func testExpiredReservation(t *testing.T, h Harness) {
	const a = "alice@example.org"
	crashed, err := h.Dir.Reserve(ctx, a, h.Homes)
	if err != nil {
		t.Fatal(err)
	}
	h.Advance(h.TTL / 2)
	_, err = h.Dir.Reserve(ctx, a, h.Homes)
	wantErr(t, "Reserve of a live reservation", err, shard.ErrReserved)
	h.Advance(h.TTL)
	r, err := h.Dir.Reserve(ctx, a, h.Homes)
	if err != nil {
		t.Fatalf("Reserve of an expired reservation: %v", err)
	}
	if !r.TookOver {
		t.Fatal("Reserve of an expired reservation: TookOver not set")
	}
	_, err = h.Dir.Commit(ctx, crashed)
	wantErr(t, "Commit of a reservation taken over", err, shard.ErrLost)
	if err := h.Dir.Cancel(ctx, crashed); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Dir.Commit(ctx, r); err != nil {
		t.Fatalf("Commit by the taker (after the old holder's Cancel): %v", err)
	}
	// A deleter that crashed: the same.
	if _, err := h.Dir.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	h.Advance(h.TTL + time.Second)
	r, err = h.Dir.Reserve(ctx, a, h.Homes)
	if err != nil || !r.TookOver {
		t.Fatalf("Reserve after a crashed delete: %+v, %v; want TookOver", r, err)
	}
	// An expired reservation is not counted by placement.
	h.Advance(h.TTL + time.Second)
	if p, err := h.Dir.Reserve(ctx, "bob@example.org", h.Homes); err != nil || p.HomeID != h.Homes[0] {
		t.Fatalf("placement beside an expired reservation: %+v, %v; want home %s", p, err, h.Homes[0])
	}
}

func testExpiredClaim(t *testing.T, h Harness) {
	const a = "alice@example.org"
	now := time.Now()
	invite(t, h, a, "code", now.Add(time.Hour))
	crashed, err := h.Dir.ClaimInvite(ctx, a, hash("code"), now)
	if err != nil {
		t.Fatal(err)
	}
	h.Advance(h.TTL + time.Second)
	c, err := h.Dir.ClaimInvite(ctx, a, hash("code"), now)
	if err != nil {
		t.Fatalf("ClaimInvite of an invite whose claim expired: %v", err)
	}
	r, err := h.Dir.Reserve(ctx, a, h.Homes)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Dir.CompleteSignup(ctx, crashed, &r)
	wantErr(t, "CompleteSignup with a claim taken over", err, shard.ErrInvalidInvite)
	if _, err := h.Dir.CompleteSignup(ctx, c, &r); err != nil {
		t.Fatal(err)
	}
}

func testDeviceTokens(t *testing.T, h Harness) {
	const a = "alice@example.org"
	now := time.Now()
	err := h.Dir.AddDeviceToken(ctx, a, hash("t0"), 2, now)
	wantErr(t, "AddDeviceToken of nobody", err, shard.ErrNotFound)
	mustCreate(t, h, a)
	for i := range 3 {
		if err := h.Dir.AddDeviceToken(ctx, a, hash(fmt.Sprint("t", i)), 2, now); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []bool{false, true, true} {
		if ok, err := h.Dir.HasDeviceToken(ctx, a, hash(fmt.Sprint("t", i))); err != nil || ok != want {
			t.Fatalf("HasDeviceToken t%d: %v, %v; want %v (the newest 2 kept)", i, ok, err, want)
		}
	}
	if err := h.Dir.ClearDeviceTokens(ctx, a); err != nil {
		t.Fatal(err)
	}
	if ok, err := h.Dir.HasDeviceToken(ctx, a, hash("t2")); err != nil || ok {
		t.Fatalf("HasDeviceToken after Clear: %v, %v", ok, err)
	}
	if err := h.Dir.ClearDeviceTokens(ctx, "nobody@example.org"); err != nil {
		t.Fatalf("ClearDeviceTokens of nobody: %v", err)
	}
	// A token does not outlive its account.
	if err := h.Dir.AddDeviceToken(ctx, a, hash("t3"), 2, now); err != nil {
		t.Fatal(err)
	}
	d, err := h.Dir.Delete(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Dir.Cancel(ctx, d); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, h, a)
	if ok, err := h.Dir.HasDeviceToken(ctx, a, hash("t3")); err != nil || ok {
		t.Fatalf("HasDeviceToken of a deleted account's token: %v, %v", ok, err)
	}
}
