package shard_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"cryptomail/shard"
	"cryptomail/shard/directorytest"
)

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const testTTL = time.Minute

func withClock(c *clock) func(*shard.Options) {
	return func(o *shard.Options) {
		o.Now = c.now
		o.ReservationTTL = testTTL
	}
}

// TestSQLiteDirectory runs the Directory conformance suite on meta.db.
func TestSQLiteDirectory(t *testing.T) {
	directorytest.Run(t, func(t *testing.T) directorytest.Harness {
		e := newEnv(t, 2)
		c := newClock()
		s := e.open(t, withClock(c))
		return directorytest.Harness{
			Dir:     s.Directory(),
			Homes:   []string{s.HomeID(e.homes[0]), s.HomeID(e.homes[1])},
			TTL:     testTTL,
			Advance: c.advance,
		}
	})
}

// leaveShardFiles writes what a crashed creator may leave: the files of
// address's shard on home with the suffixes ("" for the database itself),
// half made. It returns the shard's path.
func leaveShardFiles(t *testing.T, home, address string, suffixes ...string) string {
	t.Helper()
	path := shard.ShardPath(home, address)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, suf := range suffixes {
		if err := os.WriteFile(path+suf, []byte("half made"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// TestCreateAfterCrashedCreate: a creator that crashed after making the
// shard file but before committing left a reservation and files; once the
// reservation has expired, CreateUser takes it over, removes the files
// (on whichever home) and creates the user.
func TestCreateAfterCrashedCreate(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2)
	c := newClock()
	s := e.open(t, withClock(c))
	const a = "alice@example.org"
	r, err := s.Directory().Reserve(ctx, a, []string{s.HomeID(e.homes[1])})
	if err != nil {
		t.Fatal(err)
	}
	left := leaveShardFiles(t, e.homes[1], a, "", "-wal")
	if _, err := s.CreateUser(ctx, a, []byte("key")); !errors.Is(err, shard.ErrExists) || !errors.Is(err, shard.ErrReserved) {
		t.Fatalf("CreateUser while reserved: %v, want ErrExists and ErrReserved", err)
	}
	if _, err := s.User(ctx, a); !errors.Is(err, shard.ErrNotFound) {
		t.Fatalf("User of a reserved address: %v", err)
	}
	c.advance(testTTL + time.Second)
	u, err := s.CreateUser(ctx, a, []byte("key"))
	if err != nil {
		t.Fatal(err)
	}
	if u.HomeID != s.HomeID(e.homes[0]) {
		t.Fatalf("placed on %s, want the first home", u.HomeID)
	}
	if f := shardFiles(t, left); len(f) != 0 {
		t.Fatalf("files of the crashed creator still there: %v", f)
	}
	if _, err := s.Directory().Commit(ctx, r); !errors.Is(err, shard.ErrLost) {
		t.Fatalf("the crashed creator's Commit: %v, want ErrLost", err)
	}
	if _, _, err := s.Deliver(ctx, a, msg(1)); err != nil {
		t.Fatal(err)
	}
}

// TestDeleteAfterCrashedDelete: a deleter that crashed after removing the
// entry left the address reserved and the files; nobody can create the
// address before the reservation expires, and then the files are removed
// and the new user gets a fresh shard.
func TestDeleteAfterCrashedDelete(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	c := newClock()
	s := e.open(t, withClock(c))
	const a = "alice@example.org"
	mustCreate(t, s, a)
	if _, _, err := s.Deliver(ctx, a, msg(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Directory().Delete(ctx, a); err != nil { // then "crash"
		t.Fatal(err)
	}
	// Delivery looks the recipient up first (server/delivery.go), and
	// another process, with no handle open, cannot reach the shard at all.
	if _, err := s.User(ctx, a); !errors.Is(err, shard.ErrNotFound) {
		t.Fatalf("User after the entry's deletion: %v, want ErrNotFound", err)
	}
	other := e.open(t, withClock(c))
	if _, _, err := other.Deliver(ctx, a, msg(2)); !errors.Is(err, shard.ErrNotFound) {
		t.Fatalf("Deliver by another process after the entry's deletion: %v, want ErrNotFound", err)
	}
	if _, err := s.CreateUser(ctx, a, []byte("key")); !errors.Is(err, shard.ErrExists) {
		t.Fatalf("CreateUser while the deleter holds the address: %v", err)
	}
	if err := s.DeleteUser(ctx, a); !errors.Is(err, shard.ErrNotFound) {
		t.Fatalf("DeleteUser while the deleter holds the address: %v", err)
	}
	c.advance(testTTL + time.Second)
	mustCreate(t, s, a)
	n := 0
	if err := s.Messages(ctx, a, func(shard.Message) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("the new user's shard holds %d messages (%v), want a fresh one", n, err)
	}
}

// TestCreateUserOn: a named home instead of the least-loaded one.
func TestCreateUserOn(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2)
	s := e.open(t)
	second := s.HomeID(e.homes[1])
	for _, a := range []string{"a@example.org", "b@example.org"} {
		u, err := s.CreateUserOn(ctx, a, []byte("key"), second)
		if err != nil {
			t.Fatal(err)
		}
		if u.HomeID != second || u.Home != e.homes[1] {
			t.Fatalf("%s on %s (%s), want %s", a, u.HomeID, u.Home, e.homes[1])
		}
		if _, _, err := s.Deliver(ctx, a, msg(1)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateUserOn(ctx, "c@example.org", []byte("key"), "0123456789abcdef0123456789abcdef"); !errors.Is(err, shard.ErrHome) {
		t.Fatalf("CreateUserOn an unknown home: %v, want ErrHome", err)
	}
	if _, err := s.CreateUserOn(ctx, "a@example.org", []byte("key"), second); !errors.Is(err, shard.ErrExists) {
		t.Fatalf("CreateUserOn of an existing user: %v, want ErrExists", err)
	}
}

// TestOptionsDirectory: a Store on a Directory it did not open (as a
// cluster's Store is on etcd) keeps no meta.db of its own, and shares its
// users with every Store on that Directory.
func TestOptionsDirectory(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2)
	owner := e.open(t)
	otherData := filepath.Join(t.TempDir(), "data")
	s, err := shard.Open(ctx, shard.Options{DataDir: otherData, Homes: e.homes, Logger: quiet, Directory: owner.Directory()})
	if err != nil {
		t.Fatal(err)
	}
	const a = "alice@example.org"
	if _, err := s.CreateUser(ctx, a, []byte("key")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := owner.Deliver(ctx, a, msg(1)); err != nil {
		t.Fatalf("Deliver through the Directory's owner: %v", err)
	}
	if err := s.CheckMeta(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(otherData); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a Store on another Directory made its data dir: %v", err)
	}
	// Closing it left the Directory to its owner.
	if _, err := owner.User(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := owner.DeleteUser(ctx, a); err != nil {
		t.Fatal(err)
	}
}

// TestSignupAfterCrashedSignup: a sign-up that crashed after claiming the
// invite and making the shard (with its login row) but before completing
// left a claim, a reservation and files: the invite is refused while the
// claim lives, then a new sign-up with it takes everything over, and the
// account it makes has its login material.
func TestSignupAfterCrashedSignup(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	c := newClock()
	s := e.open(t, withClock(c))
	const a = "alice@example.org"
	if err := s.CreateInvite(ctx, a, acctHash("code"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// The crashed sign-up's steps.
	if _, err := s.Directory().ClaimInvite(ctx, a, acctHash("code"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Directory().Reserve(ctx, a, []string{s.HomeID(e.homes[0])}); err != nil {
		t.Fatal(err)
	}
	leaveShardFiles(t, e.homes[0], a, "")

	req := shard.SignupRequest{Address: a, CodeHash: acctHash("code"), PublicKey: []byte("key"), Login: acctLogin(1)}
	if _, err := s.Signup(ctx, req); !errors.Is(err, shard.ErrInvalidInvite) {
		t.Fatalf("Signup while another holds the invite: %v, want ErrInvalidInvite", err)
	}
	if _, err := s.LoginMaterial(ctx, a); !errors.Is(err, shard.ErrNotFound) {
		t.Fatalf("LoginMaterial of a half-made account: %v, want ErrNotFound", err)
	}
	c.advance(testTTL + time.Second)
	created, err := s.Signup(ctx, req)
	if err != nil || !created {
		t.Fatalf("Signup after the crashed one expired: %v, %v", created, err)
	}
	if l, err := s.LoginMaterial(ctx, a); err != nil || !acctSameLogin(l, req.Login) {
		t.Fatalf("LoginMaterial: %+v, %v", l, err)
	}
	if err := s.Check(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Signup(ctx, req); !errors.Is(err, shard.ErrInvalidInvite) {
		t.Fatalf("second Signup with a used invite: %v, want ErrInvalidInvite", err)
	}
}

// TestConcurrentCreateUser: Stores (as processes) racing to create one
// address: exactly one wins, the others get ErrExists, and the winner's
// shard is whole.
func TestConcurrentCreateUser(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2)
	const n = 4
	stores := make([]*shard.Store, n)
	for i := range stores {
		stores[i] = e.open(t)
	}
	const a = "alice@example.org"
	errs := make([]error, 2*n)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { _, errs[i] = stores[i%n].CreateUser(ctx, a, []byte("key")) })
	}
	wg.Wait()
	directorytest.OneWon(t, "CreateUser", errs, shard.ErrExists)
	for _, s := range stores {
		if _, _, err := s.Deliver(ctx, a, msg(1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := stores[0].Check(ctx, a); err != nil {
		t.Fatal(err)
	}
}
