package shard_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"

	"cryptomail/shard"
)

func countMessages(t *testing.T, s *shard.Store, address string) int {
	t.Helper()
	n := 0
	if err := s.Messages(context.Background(), address, func(shard.Message) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func deliveryKey(t *testing.T, s *shard.Store, address string) string {
	t.Helper()
	k, err := s.DeliveryKey(context.Background(), address)
	if err != nil {
		t.Fatalf("DeliveryKey: %v", err)
	}
	return string(k)
}

// TestDeliverSealed: a message is stored only if the key it was sealed to
// is still the user's key when it commits, whoever replaced the key.
func TestDeliverSealed(t *testing.T) {
	ctx := context.Background()
	const a = "alice@example.org"
	tests := []struct {
		name string
		// replace changes alice's key to "new key" behind the server's back,
		// or not at all.
		replace  func(t *testing.T, e env, server *shard.Store)
		sealedTo string
		want     error
		wantKey  string // DeliveryKey afterwards
	}{
		{"current key", func(*testing.T, env, *shard.Store) {}, "old key", nil, "old key"},
		{"key set through the same store", func(t *testing.T, _ env, s *shard.Store) {
			if err := s.SetPublicKey(ctx, a, []byte("new key")); err != nil {
				t.Fatal(err)
			}
		}, "old key", shard.ErrKeyChanged, "new key"},
		{"key set by another process", func(t *testing.T, e env, _ *shard.Store) {
			if err := e.open(t).SetPublicKey(ctx, a, []byte("new key")); err != nil {
				t.Fatal(err)
			}
		}, "old key", shard.ErrKeyChanged, "new key"},
		{"sealed to the new key", func(t *testing.T, e env, _ *shard.Store) {
			if err := e.open(t).SetPublicKey(ctx, a, []byte("new key")); err != nil {
				t.Fatal(err)
			}
		}, "new key", nil, "new key"},
		{"user re-created by another process", func(t *testing.T, e env, _ *shard.Store) {
			cli := e.open(t)
			if err := cli.DeleteUser(ctx, a); err != nil {
				t.Fatal(err)
			}
			if _, err := cli.CreateUser(ctx, a, []byte("new key")); err != nil {
				t.Fatal(err)
			}
		}, "old key", shard.ErrKeyChanged, "new key"},
		{"no key given", func(*testing.T, env, *shard.Store) {}, "", shard.ErrInvalid, "old key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, 1)
			server := e.open(t)
			if _, err := server.CreateUser(ctx, a, []byte("old key")); err != nil {
				t.Fatal(err)
			}
			// The server's handle is open, its key cached.
			if k := deliveryKey(t, server, a); k != "old key" {
				t.Fatalf("DeliveryKey = %q, want the key given at creation", k)
			}
			tt.replace(t, e, server)
			_, _, err := server.DeliverSealed(ctx, a, []byte(tt.sealedTo), msg(1))
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("DeliverSealed: %v, want %v", err, tt.want)
			}
			wantN := 0
			if tt.want == nil {
				wantN = 1
			}
			if n := countMessages(t, server, a); n != wantN {
				t.Errorf("%d messages stored, want %d", n, wantN)
			}
			if k := deliveryKey(t, server, a); k != tt.wantKey {
				t.Errorf("DeliveryKey afterwards = %q, want %q", k, tt.wantKey)
			}
			// Sealing again to the key now given succeeds.
			if _, _, err := server.DeliverSealed(ctx, a, []byte(tt.wantKey), msg(2)); err != nil {
				t.Fatalf("DeliverSealed to the key DeliveryKey gave: %v", err)
			}
			if n := countMessages(t, e.open(t), a); n != wantN+1 {
				t.Errorf("another process sees %d messages, want %d", n, wantN+1)
			}
		})
	}
}

func TestDeliveryKeyErrors(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 1).open(t)
	if _, err := s.DeliveryKey(ctx, "nobody@example.org"); !errors.Is(err, shard.ErrNotFound) {
		t.Errorf("DeliveryKey of an unknown user: %v, want ErrNotFound", err)
	}
	if _, _, err := s.DeliverSealed(ctx, "nobody@example.org", []byte("k"), msg(1)); !errors.Is(err, shard.ErrNotFound) {
		t.Errorf("DeliverSealed to an unknown user: %v, want ErrNotFound", err)
	}
	const a = "alice@example.org"
	mustCreate(t, s, a)
	k, err := s.DeliveryKey(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	// The caller's copy is its own.
	clear(k)
	if k := deliveryKey(t, s, a); k != "-----BEGIN PGP PUBLIC KEY BLOCK-----\nkey of "+a+"\n" {
		t.Errorf("DeliveryKey after the caller changed its copy: %q", k)
	}
}

// TestDeliverSealedGroupCommit: writes batched into one transaction are
// checked one by one; a stale key fails only its own delivery.
func TestDeliverSealedGroupCommit(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	s := e.open(t)
	const a = "alice@example.org"
	if _, err := s.CreateUser(ctx, a, []byte("old key")); err != nil {
		t.Fatal(err)
	}
	deliveryKey(t, s, a)
	if err := e.open(t).SetPublicKey(ctx, a, []byte("new key")); err != nil {
		t.Fatal(err)
	}
	const n = 40
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		key := "new key"
		if i%2 == 0 {
			key = "old key"
		}
		wg.Go(func() { _, _, errs[i] = s.DeliverSealed(ctx, a, []byte(key), msg(i)) })
	}
	wg.Wait()
	for i, err := range errs {
		if i%2 == 0 && !errors.Is(err, shard.ErrKeyChanged) {
			t.Errorf("delivery %d sealed to the old key: %v, want ErrKeyChanged", i, err)
		}
		if i%2 == 1 && err != nil {
			t.Errorf("delivery %d sealed to the new key: %v", i, err)
		}
	}
	if got := countMessages(t, s, a); got != n/2 {
		t.Errorf("%d messages stored, want %d", got, n/2)
	}
}

// TestPersistentWAL: closing a shard keeps its -wal (emptied, everything in
// the database file) and -shm, so reopening creates no file; DeleteUser
// still removes them all.
func TestPersistentWAL(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	s := e.open(t)
	const a = "alice@example.org"
	u := mustCreate(t, s, a)
	path := shard.ShardPath(u.Home, a)
	for i := range 3 {
		if _, _, err := s.Deliver(ctx, a, msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatalf("-wal after close: %v", err)
	}
	if fi.Size() != 0 {
		t.Errorf("-wal holds %d bytes after close, want 0 (checkpointed and truncated)", fi.Size())
	}
	if _, err := os.Stat(path + "-shm"); err != nil {
		t.Errorf("-shm after close: %v", err)
	}
	// The database file alone holds everything: a copy without -wal reads it all.
	cp := t.TempDir() + "/copy.db"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var count int
	if err := rawDB(t, cp, "").QueryRow(`SELECT count(*) FROM messages`).Scan(&count); err != nil || count != 3 {
		t.Fatalf("database file alone holds %d messages (%v), want 3", count, err)
	}
	s = e.open(t)
	if n := countMessages(t, s, a); n != 3 {
		t.Fatalf("reopened shard holds %d messages, want 3", n)
	}
	if _, _, err := s.Deliver(ctx, a, msg(3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(ctx, a); err != nil {
		t.Fatal(err)
	}
	if f := shardFiles(t, path); len(f) != 0 {
		t.Errorf("files left after DeleteUser: %v", f)
	}
}
