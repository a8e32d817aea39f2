package shard_test

import (
	"bytes"
	"context"
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

// signedUpUser signs address up with login material acctLogin(tag).
func signedUpUser(t testing.TB, st *shard.Store, address string, tag byte) {
	t.Helper()
	ctx := context.Background()
	code := fmt.Sprintf("code-%s-%d", address, time.Now().UnixNano())
	if err := st.CreateInvite(ctx, address, acctHash(code), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Signup(ctx, shard.SignupRequest{Address: address, CodeHash: acctHash(code), PublicKey: []byte("key of " + address), Login: acctLogin(tag)}); err != nil {
		t.Fatal(err)
	}
}

// TestGeneration: an account's generation changes when it is deleted and
// re-created (even with the same login key), when its state changes and when
// its login key changes, and another process's change is seen at once.
func TestGeneration(t *testing.T) {
	ctx := context.Background()
	st, root := accountStore(t)
	const a = "alice@example.org"
	gen := func() []byte {
		t.Helper()
		g, err := st.Generation(ctx, a)
		if err != nil {
			t.Fatalf("Generation: %v", err)
		}
		if len(g) != shard.GenerationSize {
			t.Fatalf("generation of %d bytes", len(g))
		}
		return g
	}
	if _, err := st.Generation(ctx, a); !errors.Is(err, shard.ErrNotFound) {
		t.Fatalf("no account: %v", err)
	}
	signedUpUser(t, st, a, 1)
	g1 := gen()
	if !bytes.Equal(gen(), g1) {
		t.Fatal("generation not stable")
	}

	// The admin CLI, another process, deletes the account and the address
	// is signed up again with the very same login key.
	other, err := shard.Open(ctx, shard.Options{DataDir: filepath.Join(root, "data"), Homes: []string{filepath.Join(root, "h1"), filepath.Join(root, "h2")},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.DeleteUser(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Generation(ctx, a); !errors.Is(err, shard.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	signedUpUser(t, other, a, 1)
	g2 := gen()
	if bytes.Equal(g1, g2) {
		t.Fatal("re-created account has the old generation")
	}

	// A new login key.
	if err := st.ChangeLoginMaterial(ctx, a, acctLogin(2)); err != nil {
		t.Fatal(err)
	}
	g3 := gen()
	if bytes.Equal(g3, g2) {
		t.Fatal("generation unchanged by a new login key")
	}

	// Disabled, then enabled again (by SQL, as a future `user disable`).
	db, err := sql.Open("sqlite3", filepath.Join(root, "data", shard.MetaFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE users SET state = 'disabled' WHERE address = ?`, a); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Generation(ctx, a); !errors.Is(err, shard.ErrNotFound) {
		t.Fatalf("disabled: %v", err)
	}
	if _, err := db.Exec(`UPDATE users SET state = 'active' WHERE address = ?`, a); err != nil {
		t.Fatal(err)
	}
	if g4 := gen(); bytes.Equal(g4, g3) {
		t.Fatal("generation survived a disable and enable")
	}
}

// TestDeviceTokens: hashes are kept per generation, bounded, and go with it.
func TestDeviceTokens(t *testing.T) {
	ctx := context.Background()
	st, _ := accountStore(t)
	const a = "alice@example.org"
	h := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	has := func(hash []byte) bool {
		t.Helper()
		ok, err := st.HasDeviceToken(ctx, a, hash)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if err := st.AddDeviceToken(ctx, a, h(1), 3, time.Now()); !errors.Is(err, shard.ErrNotFound) {
		t.Fatalf("no account: %v", err)
	}
	signedUpUser(t, st, a, 1)
	signedUpUser(t, st, "bob@example.org", 2)
	for b := byte(1); b <= 4; b++ {
		if err := st.AddDeviceToken(ctx, a, h(b), 3, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if has(h(1)) || !has(h(2)) || !has(h(4)) || has(h(9)) {
		t.Error("wrong tokens kept (want the newest 3)")
	}
	if ok, _ := st.HasDeviceToken(ctx, "bob@example.org", h(4)); ok {
		t.Error("alice's token is bob's")
	}
	if err := st.ClearDeviceTokens(ctx, a); err != nil {
		t.Fatal(err)
	}
	if has(h(4)) {
		t.Error("token kept after ClearDeviceTokens")
	}
	if err := st.AddDeviceToken(ctx, a, h(5), 3, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteUser(ctx, a); err != nil {
		t.Fatal(err)
	}
	signedUpUser(t, st, a, 3)
	if has(h(5)) {
		t.Error("a token of the deleted account is valid for the new one")
	}
}

// BenchmarkGeneration is the check every request of a logged-in SeXMAP
// session makes (metabase row + login key from the open shard).
func BenchmarkGeneration(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b, 1)
	st := e.open(b)
	signedUpUser(b, st, "alice@example.org", 1)
	for b.Loop() {
		if _, err := st.Generation(ctx, "alice@example.org"); err != nil {
			b.Fatal(err)
		}
	}
}
