package shard_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"cryptomail/shard"
)

// TestTombstonePruning: past its limit a shard drops its oldest tombstones;
// Changes since a state whose tombstones are gone says ErrUnknownState (a
// resync), and since any later state still reports every destruction.
func TestTombstonePruning(t *testing.T) {
	const keep, slack, n = 5, 2, 8
	defer shard.SetTombstoneLimits(keep, slack)()
	ctx := context.Background()
	e := newEnv(t, 1)
	s := e.open(t)
	const alice = "alice@example.org"
	mustCreate(t, s, alice)
	ids := make([]int64, n)
	for i := range ids {
		id, _, err := s.Deliver(ctx, alice, msg(i))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	// state is the current state, asked as a client would: changes since
	// the last one it knew.
	var known int64
	state := func() int64 {
		t.Helper()
		cs, err := s.Changes(ctx, alice, known, 1000)
		for err == nil && cs.HasMore {
			cs, err = s.Changes(ctx, alice, cs.ModSeq, 1000)
		}
		if err != nil {
			t.Fatal(err)
		}
		known = cs.ModSeq
		return known
	}
	before := state()
	// after[i] is the state right after message i was destroyed.
	after := make([]int64, n)
	for i, id := range ids {
		// Deleting moves it to Trash; deleting it there marks it \Deleted.
		for range 2 {
			if err := s.DeleteMessages(ctx, alice, []int64{id}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Expunge(ctx, alice, shard.FolderRef{Name: "Trash"}); err != nil {
			t.Fatal(err)
		}
		after[i] = state()
		if i == n-2 {
			// keep+slack tombstones: none pruned yet.
			if _, err := s.Changes(ctx, alice, before, 100); err != nil {
				t.Errorf("changes since %d with %d tombstones: %v", before, i+1, err)
			}
		}
	}
	// The eighth destruction passed keep+slack: the three oldest tombstones
	// went, the five newest stayed.
	for _, since := range []int64{0, before, after[0], after[1]} {
		if _, err := s.Changes(ctx, alice, since, 100); !errors.Is(err, shard.ErrUnknownState) {
			t.Errorf("changes since %d: %v, want ErrUnknownState", since, err)
		}
	}
	for k := 2; k < n; k++ {
		cs, err := s.Changes(ctx, alice, after[k], 100)
		if err != nil {
			t.Fatalf("changes since after[%d]: %v", k, err)
		}
		var destroyed []int64
		for _, c := range cs.Changes {
			if c.Kind == shard.KindMessage && c.Type == shard.Destroyed {
				destroyed = append(destroyed, c.ID)
			}
		}
		if want := ids[k+1:]; !slices.Equal(destroyed, want) {
			t.Errorf("changes since after[%d]: destroyed %v, want %v", k, destroyed, want)
		}
	}
	// Below the limit again nothing more is pruned: since after[2] stays exact.
	if cs, err := s.Changes(ctx, alice, after[2], 100); err != nil || cs.ModSeq != after[n-1] {
		t.Errorf("changes since after[2]: %+v, %v", cs, err)
	}
}
