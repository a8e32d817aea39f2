package shard_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"cryptomail/shard"
)

// TestGroupCommit holds the shard's write lock from another connection so
// that deliveries pile up behind the first one, then lets them go: the queued
// ones must share one transaction, each answered on its own (a bad folder
// fails alone, a caller that gave up while queued stores nothing).
func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 1).open(t, func(o *shard.Options) { o.BusyTimeout = time.Minute })
	const a = "alice@example.org"
	u := mustCreate(t, s, a)
	if _, _, err := s.Deliver(ctx, a, msg(0)); err != nil {
		t.Fatal(err)
	}
	startMod, _ := s.ModSeq(ctx, a)
	before := s.Stats()

	raw := rawDB(t, shard.ShardPath(u.Home, a), "")
	lock, err := raw.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}

	type result struct {
		i   int
		uid uint32
		err error
	}
	const n = 20
	results := make(chan result, n+1)
	deliver := func(ctx context.Context, i int, folder string) {
		m := msg(i)
		m.Folder = folder
		_, uid, err := s.Deliver(ctx, a, m)
		results <- result{i, uid, err}
	}
	// The first delivery leads and waits for the lock; the rest queue.
	go deliver(ctx, 1, "")
	waitFor(t, func() bool { return s.Stats().InUse == 1 })
	var wg sync.WaitGroup
	for i := 2; i <= n; i++ {
		folder := ""
		if i%5 == 0 {
			folder = "No Such Folder"
		}
		wg.Go(func() { deliver(ctx, i, folder) })
	}
	waitFor(t, func() bool { return s.Stats().Queued == n-1 })
	// One more caller gives up while queued.
	cctx, cancel := context.WithCancel(ctx)
	go deliver(cctx, 99, "")
	waitFor(t, func() bool { return s.Stats().Queued == n })
	cancel()
	waitFor(t, func() bool { return s.Stats().Queued == n-1 })

	if _, err := lock.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	lock.Close()
	wg.Wait()

	var uids []uint32
	for range n + 1 {
		r := <-results
		switch {
		case r.i == 99:
			if !errors.Is(r.err, context.Canceled) {
				t.Errorf("withdrawn delivery: %v, want context.Canceled", r.err)
			}
		case r.i%5 == 0:
			if !errors.Is(r.err, shard.ErrNoSuchFolder) {
				t.Errorf("delivery %d to a missing folder: %v, want ErrNoSuchFolder", r.i, r.err)
			}
		case r.err != nil:
			t.Errorf("delivery %d: %v", r.i, r.err)
		default:
			uids = append(uids, r.uid)
		}
	}
	slices.Sort(uids)
	const good = n - n/5
	for i, uid := range uids {
		if uid != uint32(i+2) {
			t.Fatalf("uids %v, want 2..%d: failed writes must not use uids", uids, good+1)
		}
	}
	if len(uids) != good {
		t.Fatalf("%d deliveries stored, want %d", len(uids), good)
	}
	after := s.Stats()
	if w, c := after.Writes-before.Writes, after.Commits-before.Commits; w != n || c != 2 {
		t.Errorf("%d writes in %d transactions, want %d in 2 (the leader's, then one batch)", w, c, n)
	}
	if mod, _ := s.ModSeq(ctx, a); mod != startMod+good {
		t.Errorf("modseq %d, want %d: one per stored message, none for failed ones", mod, startMod+good)
	}
	var stored []int64
	s.Messages(ctx, a, func(m shard.Message) error { stored = append(stored, m.Size); return nil })
	if len(stored) != good+1 || slices.Contains(stored, msg(99).Size) {
		t.Errorf("stored sizes %v", stored)
	}
	// Distinct modseqs inside one batch.
	seen := map[int64]bool{}
	s.Messages(ctx, a, func(m shard.Message) error {
		if seen[m.ModSeq] {
			t.Errorf("modseq %d given twice", m.ModSeq)
		}
		seen[m.ModSeq] = true
		return nil
	})
}

// waitFor polls cond. The deadline only turns a broken build's hang into a
// failure; a working one meets cond in milliseconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}
