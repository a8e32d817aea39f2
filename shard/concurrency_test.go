package shard_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cryptomail/shard"
)

// TestPoolBound delivers to more users than the pool holds, concurrently,
// and checks the documented bound: open ≤ max(MaxOpenShards, in use).
func TestPoolBound(t *testing.T) {
	ctx := context.Background()
	const maxOpen, users, perUser = 2, 5, 20
	s := newEnv(t, 2).open(t, func(o *shard.Options) { o.MaxOpenShards = maxOpen })
	for u := range users {
		mustCreate(t, s, fmt.Sprintf("u%d@example.org", u))
	}
	var stop atomic.Bool
	var samples, peak atomic.Int64
	sampler := make(chan error, 1)
	go func() {
		for !stop.Load() {
			st := s.Stats()
			samples.Add(1)
			peak.Store(max(peak.Load(), int64(st.Open)))
			if st.Open > max(st.Max, st.InUse) || st.InUse > users || st.Open < 0 || st.InUse < 0 {
				sampler <- fmt.Errorf("pool stats %+v break open ≤ max(max, inUse) ≤ %d", st, users)
				return
			}
			time.Sleep(50 * time.Microsecond)
		}
		sampler <- nil
	}()
	var wg sync.WaitGroup
	errs := make(chan error, users*perUser)
	for u := range users {
		wg.Go(func() {
			a := fmt.Sprintf("u%d@example.org", u)
			for i := range perUser {
				if _, _, err := s.Deliver(ctx, a, msg(i)); err != nil {
					errs <- err
				}
				// Interleave reads so handles are shared, parked and evicted.
				if err := s.Messages(ctx, a, func(shard.Message) error { return nil }); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	stop.Store(true)
	if err := <-sampler; err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Open > maxOpen || st.InUse != 0 {
		t.Fatalf("after the run: %+v, want open ≤ %d and nothing in use", st, maxOpen)
	}
	if st.Opened <= maxOpen {
		t.Fatalf("only %d opens for %d users and a pool of %d: eviction never happened", st.Opened, users, maxOpen)
	}
	t.Logf("%d samples, peak open %d, %d opens", samples.Load(), peak.Load(), st.Opened)
	for u := range users {
		n := 0
		s.Messages(ctx, fmt.Sprintf("u%d@example.org", u), func(shard.Message) error { n++; return nil })
		if n != perUser {
			t.Errorf("user %d has %d messages, want %d", u, n, perUser)
		}
	}
}

func TestPoolOneHandlePerShard(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	s := e.open(t)
	mustCreate(t, s, "alice@example.org")
	s.Close()
	s = e.open(t) // cold pool
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			<-start
			if _, err := s.PublicKey(ctx, "alice@example.org"); err != nil {
				errs <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Opened != 1 || st.Open != 1 {
		t.Fatalf("pool %+v after 16 concurrent first uses: want exactly one handle opened", st)
	}
}

func TestConcurrentDeliverOneUser(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 1).open(t)
	const a, workers, each = "alice@example.org", 8, 25
	mustCreate(t, s, a)
	var mu sync.Mutex
	uids := make(map[uint32]bool)
	ids := make(map[int64]bool)
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id, uid, err := s.Deliver(ctx, a, msg(w*each+i))
				if err != nil {
					errs <- err
					continue
				}
				mu.Lock()
				if uids[uid] || ids[id] {
					errs <- fmt.Errorf("duplicate id %d or uid %d", id, uid)
				}
				uids[uid], ids[id] = true, true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for u := uint32(1); u <= workers*each; u++ {
		if !uids[u] {
			t.Fatalf("uid %d never assigned; uids must be 1..%d", u, workers*each)
		}
	}
	if mod, _ := s.ModSeq(ctx, a); mod < workers*each {
		t.Fatalf("modseq %d after %d deliveries", mod, workers*each)
	}
}

// TestSecondStore runs a second Store on the same directories, as the admin
// CLI would from another process, while the first one delivers.
func TestSecondStore(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2)
	server := e.open(t)
	cli := e.open(t)
	const users, perUser = 4, 15
	for u := range users {
		mustCreate(t, server, fmt.Sprintf("u%d@example.org", u))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for u := range users {
		wg.Go(func() {
			for i := range perUser {
				if _, _, err := server.Deliver(ctx, fmt.Sprintf("u%d@example.org", u), msg(i)); err != nil {
					errs <- fmt.Errorf("server deliver: %w", err)
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 10 {
			if _, err := cli.CreateUser(ctx, fmt.Sprintf("new%d@example.org", i), []byte("key")); err != nil {
				errs <- fmt.Errorf("cli create: %w", err)
			}
			if err := cli.Users(ctx, func(shard.User) error { return nil }); err != nil {
				errs <- fmt.Errorf("cli list: %w", err)
			}
			// The CLI writes into a shard the server is writing to.
			if _, _, err := cli.Deliver(ctx, "u0@example.org", msg(1000+i)); err != nil {
				errs <- fmt.Errorf("cli deliver: %w", err)
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	n := 0
	server.Users(ctx, func(shard.User) error { n++; return nil })
	if n != users+10 {
		t.Errorf("server sees %d users, want %d", n, users+10)
	}
	m := 0
	server.Messages(ctx, "u0@example.org", func(shard.Message) error { m++; return nil })
	if m != perUser+10 {
		t.Errorf("u0 has %d messages, want %d", m, perUser+10)
	}
}

// TestDeleteRecreateByOtherStore: another process deletes and re-creates a
// user whose shard the server still has open. The server must write to the
// new shard, and closing its stale handle must not delete the new shard's
// -wal and -shm (SQLite does that by name when its last connection closes).
func TestDeleteRecreateByOtherStore(t *testing.T) {
	ctx := context.Background()
	const a = "alice@example.org"
	tests := []struct {
		name      string
		server    func(t *testing.T, s *shard.Store) // after the re-create
		wantSizes []int64
	}{
		{"stale handle closed", func(t *testing.T, s *shard.Store) {}, []int64{msg(3).Size}},
		{"stale handle noticed by a delivery", func(t *testing.T, s *shard.Store) {
			if _, uid, err := s.Deliver(ctx, a, msg(4)); err != nil || uid != 2 {
				t.Fatalf("server Deliver to the re-created user: uid %d, %v; want uid 2 in the new shard", uid, err)
			}
		}, []int64{msg(3).Size, msg(4).Size}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, 1)
			server := e.open(t)
			cli := e.open(t)
			mustCreate(t, server, a)
			if _, _, err := server.Deliver(ctx, a, msg(1)); err != nil {
				t.Fatal(err)
			}
			if err := cli.DeleteUser(ctx, a); err != nil {
				t.Fatal(err)
			}
			mustCreate(t, cli, a)
			// The CLI keeps the new shard open, msg(3) still in its WAL.
			if _, _, err := cli.Deliver(ctx, a, msg(3)); err != nil {
				t.Fatal(err)
			}
			tt.server(t, server)
			if err := server.Close(); err != nil {
				t.Fatal(err)
			}
			// A third program opening the shard now must see everything.
			third := e.open(t)
			var got []int64
			if err := third.Messages(ctx, a, func(m shard.Message) error { got = append(got, m.Size); return nil }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.wantSizes) {
				t.Fatalf("new shard holds sizes %v, want %v", got, tt.wantSizes)
			}
			if err := third.Check(ctx, a); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDeliverAfterOtherStoreDeleted(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	server := e.open(t)
	cli := e.open(t)
	const a = "alice@example.org"
	mustCreate(t, server, a)
	if _, _, err := server.Deliver(ctx, a, msg(1)); err != nil {
		t.Fatal(err)
	}
	if err := cli.DeleteUser(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, _, err := server.Deliver(ctx, a, msg(2)); !errors.Is(err, shard.ErrNotFound) {
		t.Fatalf("Deliver after another process deleted the user: %v, want ErrNotFound", err)
	}
	if n := server.OpenShards(); n != 0 {
		t.Fatalf("%d shards still open", n)
	}
}

// TestDeleteWaitsForRunningCalls: DeleteUser closes a handle only once the
// call using it has returned.
func TestDeleteWaitsForRunningCalls(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 1).open(t)
	const a = "alice@example.org"
	mustCreate(t, s, a)
	for i := range 3 {
		s.Deliver(ctx, a, msg(i))
	}
	inside, proceed := make(chan struct{}), make(chan struct{})
	walk := make(chan error, 1)
	go func() {
		n := 0
		walk <- s.Messages(ctx, a, func(shard.Message) error {
			if n == 0 {
				close(inside)
				<-proceed
			}
			n++
			return nil
		})
	}()
	<-inside
	deleted := make(chan error, 1)
	go func() { deleted <- s.DeleteUser(ctx, a) }()
	select {
	case err := <-deleted:
		t.Fatalf("DeleteUser returned (%v) while a call still used the shard", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(proceed)
	if err := <-walk; err != nil {
		t.Fatalf("the running walk failed: %v", err)
	}
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	if s.OpenShards() != 0 {
		t.Fatalf("%d shards open after delete", s.OpenShards())
	}
}

func TestBusy(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 1).open(t, func(o *shard.Options) { o.BusyTimeout = 50 * time.Millisecond })
	const a = "alice@example.org"
	u := mustCreate(t, s, a)
	if _, _, err := s.Deliver(ctx, a, msg(0)); err != nil {
		t.Fatal(err)
	}
	raw := rawDB(t, shard.ShardPath(u.Home, a), "&_busy_timeout=0")
	conn, err := raw.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Deliver(ctx, a, msg(1))
	if !errors.Is(err, shard.ErrBusy) {
		t.Fatalf("Deliver under another connection's write lock: %v, want ErrBusy", err)
	}
	// Readers are not blocked by a writer.
	if err := s.Messages(ctx, a, func(shard.Message) error { return nil }); err != nil {
		t.Fatalf("Messages under another connection's write lock: %v", err)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if _, uid, err := s.Deliver(ctx, a, msg(2)); err != nil || uid != 2 {
		t.Fatalf("Deliver after the lock is gone: uid %d, %v; want uid 2 (the busy attempt used none)", uid, err)
	}
}

// TestEvictedShardsClosed: with a pool of one, every delivery evicts the
// previous shard and closes it (a checkpoint). A user deleted or re-created
// right after its eviction and Close must see that close finished: Close
// leaves every WAL checkpointed and empty, and nothing is lost.
func TestEvictedShardsClosed(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	s := e.open(t, func(o *shard.Options) { o.MaxOpenShards = 1 })
	const users = 6
	addr := func(u int) string { return fmt.Sprintf("u%d@example.org", u) }
	paths := make([]string, users)
	for u := range users {
		paths[u] = shard.ShardPath(mustCreate(t, s, addr(u)).Home, addr(u))
	}
	for round := range 3 {
		for u := range users {
			if _, _, err := s.Deliver(ctx, addr(u), msg(round)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// u4 was evicted by the last delivery (to u5): delete and re-create it.
	if err := s.DeleteUser(ctx, addr(users-2)); err != nil {
		t.Fatal(err)
	}
	if f := shardFiles(t, paths[users-2]); len(f) != 0 {
		t.Fatalf("files left after DeleteUser: %v", f)
	}
	mustCreate(t, s, addr(users-2))
	if st := s.Stats(); st.Open > 1 {
		t.Fatalf("pool %+v", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Open != 0 {
		t.Fatalf("pool %+v after Close", st)
	}
	for u, p := range paths {
		fi, err := os.Stat(p + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != 0 {
			t.Errorf("user %d: %d bytes left in the WAL after Close: its close was not waited for", u, fi.Size())
		}
	}
	s = e.open(t)
	for u := range users {
		n := 0
		if err := s.Messages(ctx, addr(u), func(shard.Message) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		want := 3
		if u == users-2 {
			want = 0
		}
		if n != want {
			t.Errorf("user %d has %d messages, want %d", u, n, want)
		}
	}
}
