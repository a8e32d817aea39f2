package shard_test

import (
	"context"
	"errors"
	"testing"

	"cryptomail/shard"
)

// Every message records who made its summary; the origin is never guessed upward: none
// given is "sender", an unknown one is refused, and a copy keeps the original's.
func TestSummaryOrigin(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 1).open(t)
	const a = "alice@example.org"
	mustCreate(t, s, a)
	want := map[int64]string{}
	for _, by := range []string{shard.SummaryByServer, shard.SummaryBySender, shard.SummaryByOwner, ""} {
		id, _, err := s.Deliver(ctx, a, shard.NewMessage{Summary: []byte("s"), Body: []byte("b"), SummaryBy: by})
		if err != nil {
			t.Fatal(err)
		}
		want[id] = by
		if by == "" {
			want[id] = shard.SummaryBySender
		}
	}
	if _, _, err := s.Deliver(ctx, a, shard.NewMessage{Body: []byte("b"), SummaryBy: "trusted"}); !errors.Is(err, shard.ErrInvalid) {
		t.Errorf("deliver with an unknown origin: %v", err)
	}
	if _, err := s.Append(ctx, a, shard.FolderRef{Name: "Drafts"}, shard.NewMessage{Body: []byte("b"), SummaryBy: "trusted"}, 0); !errors.Is(err, shard.ErrInvalid) {
		t.Errorf("append with an unknown origin: %v", err)
	}
	m, err := s.Append(ctx, a, shard.FolderRef{Name: "Drafts"}, shard.NewMessage{Body: []byte("b"), SummaryBy: shard.SummaryByOwner}, 0)
	if err != nil || m.SummaryBy != shard.SummaryByOwner {
		t.Fatalf("append: %+v %v", m, err)
	}
	want[m.ID] = shard.SummaryByOwner
	var ids []int64
	for id := range want {
		ids = append(ids, id)
	}
	copies, err := s.CopyMessages(ctx, a, ids, shard.FolderRef{Name: "Junk"}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range copies {
		want[c] = want[ids[i]]
	}
	if err := s.MoveMessages(ctx, a, ids[:1], shard.FolderRef{Name: "Trash"}); err != nil {
		t.Fatal(err)
	}
	all := append(ids, copies...)
	n := 0
	if err := s.FetchMessages(ctx, a, all, func(m shard.MessageInfo, _ shard.Loader) error {
		n++
		if m.SummaryBy != want[m.ID] {
			t.Errorf("fetch %d: origin %q, want %q", m.ID, m.SummaryBy, want[m.ID])
		}
		return nil
	}); err != nil || n != len(all) {
		t.Fatalf("fetch: %d of %d, %v", n, len(all), err)
	}
	for _, f := range []string{"INBOX", "Drafts", "Junk", "Trash"} {
		if _, err := s.ListMessages(ctx, a, shard.ListQuery{Folder: shard.FolderRef{Name: f}, Limit: 50}, func(m shard.MessageInfo) error {
			if m.SummaryBy != want[m.ID] {
				t.Errorf("list %s %d: origin %q, want %q", f, m.ID, m.SummaryBy, want[m.ID])
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}
