package shard_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"cryptomail/shard"
)

// accountStore opens a store of its own, so these tests depend on nothing
// but the package's API.
func accountStore(t *testing.T) (*shard.Store, string) {
	t.Helper()
	root := t.TempDir()
	st, err := shard.Open(context.Background(), shard.Options{
		DataDir: filepath.Join(root, "data"),
		Homes:   []string{filepath.Join(root, "h1"), filepath.Join(root, "h2")},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, root
}

func acctHash(code string) []byte {
	h := sha256.Sum256([]byte(code))
	return h[:]
}

func acctLogin(tag byte) shard.Login {
	return shard.Login{
		Key:        bytes.Repeat([]byte{tag}, 32),
		Salt:       bytes.Repeat([]byte{tag + 1}, 16),
		KDFTime:    3,
		KDFMemory:  65536,
		KDFThreads: 4,
		SealedKey:  []byte(fmt.Sprintf("sealed-%d", tag)),
	}
}

func acctSameLogin(a, b shard.Login) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Salt, b.Salt) && a.KDFTime == b.KDFTime &&
		a.KDFMemory == b.KDFMemory && a.KDFThreads == b.KDFThreads && bytes.Equal(a.SealedKey, b.SealedKey)
}

// acctShardFiles lists the .db files under the homes.
func acctShardFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	for _, h := range []string{"h1", "h2"} {
		m, err := filepath.Glob(filepath.Join(root, h, "*", "*.db"))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	return out
}

func TestSignupNewUser(t *testing.T) {
	ctx := context.Background()
	st, root := accountStore(t)
	expires := time.Now().Add(time.Hour)
	if err := st.CreateInvite(ctx, "alice@example.org", acctHash("alice-code"), expires); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateInvite(ctx, "bob@example.org", acctHash("bob-code"), expires); err != nil {
		t.Fatal(err)
	}
	req := func(address, code string, now time.Time) shard.SignupRequest {
		return shard.SignupRequest{Address: address, CodeHash: acctHash(code), PublicKey: []byte("key of " + address), Login: acctLogin(1), Now: now}
	}
	refusals := []struct {
		name string
		req  shard.SignupRequest
		want error
	}{
		{"wrong code", req("alice@example.org", "guess", time.Time{}), shard.ErrInvalidInvite},
		{"another address's code", req("alice@example.org", "bob-code", time.Time{}), shard.ErrInvalidInvite},
		{"code for another address", req("carol@example.org", "alice-code", time.Time{}), shard.ErrInvalidInvite},
		{"expired", req("alice@example.org", "alice-code", expires), shard.ErrInviteExpired},
		{"bad login key", func() shard.SignupRequest {
			r := req("alice@example.org", "alice-code", time.Time{})
			r.Login.Key = r.Login.Key[:31]
			return r
		}(), shard.ErrInvalid},
		{"no public key", func() shard.SignupRequest {
			r := req("alice@example.org", "alice-code", time.Time{})
			r.PublicKey = nil
			return r
		}(), shard.ErrInvalid},
	}
	for _, tt := range refusals {
		if _, err := st.Signup(ctx, tt.req); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if files := acctShardFiles(t, root); len(files) != 0 {
		t.Fatalf("refused signups left shard files: %v", files)
	}

	created, err := st.Signup(ctx, req("alice@example.org", "alice-code", time.Time{}))
	if err != nil || !created {
		t.Fatalf("Signup = %v, %v", created, err)
	}
	u, err := st.User(ctx, "alice@example.org")
	if err != nil || u.State != shard.StateActive {
		t.Fatalf("User = %+v, %v", u, err)
	}
	if key, err := st.PublicKey(ctx, u.Address); err != nil || string(key) != "key of alice@example.org" {
		t.Errorf("PublicKey = %q, %v", key, err)
	}
	l, err := st.LoginMaterial(ctx, u.Address)
	if err != nil || !acctSameLogin(l, acctLogin(1)) || l.Updated.IsZero() {
		t.Errorf("LoginMaterial = %+v, %v", l, err)
	}
	if _, err := st.Signup(ctx, req("alice@example.org", "alice-code", time.Time{})); !errors.Is(err, shard.ErrInvalidInvite) {
		t.Errorf("reused invite: %v", err)
	}
	if err := st.CreateInvite(ctx, "alice@example.org", acctHash("again"), expires); !errors.Is(err, shard.ErrExists) {
		t.Errorf("invite for a signed-up user: %v", err)
	}

	if err := st.ChangeLoginMaterial(ctx, u.Address, acctLogin(7)); err != nil {
		t.Fatal(err)
	}
	if l, err := st.LoginMaterial(ctx, u.Address); err != nil || !acctSameLogin(l, acctLogin(7)) {
		t.Errorf("after change: %+v, %v", l, err)
	}
	bad := acctLogin(8)
	bad.Salt = bad.Salt[:15]
	if err := st.ChangeLoginMaterial(ctx, u.Address, bad); !errors.Is(err, shard.ErrInvalid) {
		t.Errorf("change with a short salt: %v", err)
	}
	if l, _ := st.LoginMaterial(ctx, u.Address); !acctSameLogin(l, acctLogin(7)) {
		t.Error("a refused change changed the login material")
	}
}

func TestSignupActivatesCreatedUser(t *testing.T) {
	ctx := context.Background()
	st, root := accountStore(t)
	if _, err := st.CreateUser(ctx, "carol@example.org", []byte("carol's key")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.LoginMaterial(ctx, "carol@example.org"); !errors.Is(err, shard.ErrNotFound) {
		t.Fatalf("LoginMaterial before signup: %v", err)
	}
	if err := st.ChangeLoginMaterial(ctx, "carol@example.org", acctLogin(1)); !errors.Is(err, shard.ErrNotFound) {
		t.Fatalf("ChangeLoginMaterial before signup: %v", err)
	}
	expires := time.Now().Add(time.Hour)
	for _, c := range []string{"c1", "c2"} {
		if err := st.CreateInvite(ctx, "carol@example.org", acctHash(c), expires); err != nil {
			t.Fatal(err)
		}
	}
	req := shard.SignupRequest{Address: "carol@example.org", CodeHash: acctHash("c1"), PublicKey: []byte("mallory's key"), Login: acctLogin(2)}
	if _, err := st.Signup(ctx, req); !errors.Is(err, shard.ErrKeyMismatch) {
		t.Fatalf("other key: %v", err)
	}
	var seen []byte
	req.SameKey = func(stored []byte) bool { seen = stored; return true }
	created, err := st.Signup(ctx, req) // c1 is still unused
	if err != nil || created {
		t.Fatalf("activation = %v, %v", created, err)
	}
	if string(seen) != "carol's key" {
		t.Errorf("SameKey saw %q", seen)
	}
	if key, _ := st.PublicKey(ctx, "carol@example.org"); string(key) != "carol's key" {
		t.Errorf("activation replaced the key with %q", key)
	}
	if l, err := st.LoginMaterial(ctx, "carol@example.org"); err != nil || !acctSameLogin(l, acctLogin(2)) {
		t.Errorf("LoginMaterial = %+v, %v", l, err)
	}
	req.CodeHash = acctHash("c2")
	if _, err := st.Signup(ctx, req); !errors.Is(err, shard.ErrExists) {
		t.Errorf("second activation: %v", err)
	}
	if n := len(acctShardFiles(t, root)); n != 1 {
		t.Errorf("%d shard files, want 1", n)
	}

	// A disabled account neither logs in nor signs up.
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(root, "data", shard.MetaFile)+"?mode=rw&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE users SET state = 'disabled' WHERE address = 'carol@example.org'`); err != nil {
		t.Fatal(err)
	}
	if _, err := st.LoginMaterial(ctx, "carol@example.org"); !errors.Is(err, shard.ErrNotFound) {
		t.Errorf("LoginMaterial of a disabled account: %v", err)
	}
}

func TestCreateInviteChecks(t *testing.T) {
	ctx := context.Background()
	st, _ := accountStore(t)
	future := time.Now().Add(time.Hour)
	tests := []struct {
		name    string
		address string
		hash    []byte
		expires time.Time
		want    error
	}{
		{"ok", "dave@example.org", acctHash("d"), future, nil},
		{"short hash", "dave@example.org", acctHash("d")[:16], future, shard.ErrInvalid},
		{"expiry in the past", "dave@example.org", acctHash("e"), time.Now().Add(-time.Second), shard.ErrInvalid},
		{"empty address", "", acctHash("f"), future, shard.ErrInvalid},
	}
	for _, tt := range tests {
		if err := st.CreateInvite(ctx, tt.address, tt.hash, tt.expires); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}
