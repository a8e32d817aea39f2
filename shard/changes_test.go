package shard_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"cryptomail/shard"
)

// objects maps "kind:id" to the object's modseq.
type objects map[string]int64

func key(kind shard.Kind, id int64) string { return fmt.Sprintf("%s:%d", kind, id) }

// liveObjects reads every folder, message and contact of alice's shard.
func liveObjects(t *testing.T, s *shard.Store) objects {
	t.Helper()
	ctx := context.Background()
	out := objects{}
	fs, err := s.Folders(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		out[key(shard.KindFolder, f.ID)] = f.ModSeq
	}
	if err := s.Messages(ctx, alice, func(m shard.Message) error {
		out[key(shard.KindMessage, m.ID)] = m.ModSeq
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListContacts(ctx, alice, 100000, "", func(c shard.Contact) error {
		out[key(shard.KindContact, c.ID)] = c.ModSeq
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// mutator makes random changes to alice's shard.
type mutator struct {
	t   *testing.T
	s   *shard.Store
	rnd *rand.Rand
	n   int
	// concurrent: other goroutines change the shard too, so ids vanish and
	// names get taken between choosing and acting.
	concurrent bool
}

func (m *mutator) pick(kind shard.Kind) []int64 {
	var ids []int64
	ctx := context.Background()
	switch kind {
	case shard.KindMessage:
		_ = m.s.Messages(ctx, alice, func(msg shard.Message) error { ids = append(ids, msg.ID); return nil })
	case shard.KindFolder:
		fs, _ := m.s.Folders(ctx, alice)
		for _, f := range fs {
			ids = append(ids, f.ID)
		}
	case shard.KindContact:
		_, _ = m.s.ListContacts(ctx, alice, 100000, "", func(c shard.Contact) error { ids = append(ids, c.ID); return nil })
	}
	m.rnd.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	return ids[:min(len(ids), 1+m.rnd.IntN(4))]
}

func (m *mutator) folder() shard.FolderRef {
	ids := m.pick(shard.KindFolder)
	return shard.FolderRef{ID: ids[0]}
}

// step makes one random change; errors a random change may meet are fine.
func (m *mutator) step() {
	ctx := context.Background()
	m.n++
	var err error
	switch op := m.rnd.IntN(13); op {
	case 0, 1:
		_, _, err = m.s.Deliver(ctx, alice, shard.NewMessage{Received: time.Unix(1700000000+int64(m.rnd.IntN(1000)), 0), Summary: []byte("s"), Body: []byte("b")})
	case 2:
		_, err = m.s.Append(ctx, alice, m.folder(), shard.NewMessage{Flags: []string{shard.FlagSeen}, Body: []byte("a")}, 0)
	case 3:
		flag := []string{shard.FlagSeen, shard.FlagFlagged, "$x"}[m.rnd.IntN(3)]
		err = m.s.UpdateFlags(ctx, alice, m.pick(shard.KindMessage), shard.FlagOp(1+m.rnd.IntN(3)), []string{flag})
	case 4:
		err = m.s.MoveMessages(ctx, alice, m.pick(shard.KindMessage), m.folder())
	case 5:
		_, err = m.s.CopyMessages(ctx, alice, m.pick(shard.KindMessage), m.folder(), 0, 0)
	case 6, 7:
		err = m.s.DeleteMessages(ctx, alice, m.pick(shard.KindMessage))
	case 8:
		_, err = m.s.Expunge(ctx, alice, shard.FolderRef{Name: "Trash"})
	case 9:
		_, err = m.s.CreateFolder(ctx, alice, fmt.Sprint("f", m.n), 0)
	case 10:
		f := m.folder()
		if m.rnd.IntN(2) == 0 {
			_, err = m.s.RenameFolder(ctx, alice, f, fmt.Sprint("r", m.n))
		} else {
			err = m.s.DeleteFolder(ctx, alice, f)
		}
	case 11:
		var id int64
		if ids := m.pick(shard.KindContact); len(ids) > 0 && m.rnd.IntN(2) == 0 {
			id = ids[0]
		}
		_, err = m.s.PutContact(ctx, alice, id, []byte(fmt.Sprint("c", m.n)), 0)
	case 12:
		if ids := m.pick(shard.KindContact); len(ids) > 0 {
			err = m.s.DeleteContact(ctx, alice, ids[0])
		}
	}
	switch {
	case err == nil, errors.Is(err, shard.ErrSystemFolder), errors.Is(err, shard.ErrInvalid):
	case m.concurrent && (errors.Is(err, shard.ErrNoSuchMessage) || errors.Is(err, shard.ErrNoSuchFolder) ||
		errors.Is(err, shard.ErrNoSuchContact) || errors.Is(err, shard.ErrFolderExists)):
	default:
		m.t.Errorf("step %d: %v", m.n, err)
	}
}

// TestChangesPaging: from any earlier state, applying every page of changes, whatever
// the page size, to what existed then gives exactly what exists now, and reports every
// object changed since.
func TestChangesPaging(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 1).open(t)
	mustCreate(t, s, alice)
	m := &mutator{t: t, s: s, rnd: rand.New(rand.NewPCG(1, 2))}
	type point struct {
		modseq int64
		live   objects
	}
	points := []point{{0, objects{}}, {modseq(t, s), liveObjects(t, s)}}
	for range 150 {
		m.step()
		points = append(points, point{modseq(t, s), liveObjects(t, s)})
	}
	final := points[len(points)-1]
	for i, p := range points {
		for _, max := range []int{1, 3, 50} {
			if max == 1 && i%5 != 0 {
				continue
			}
			have := maps.Clone(p.live)
			reported := map[string]bool{}
			since := p.modseq
			for pages := 0; ; pages++ {
				if pages > 2000 {
					t.Fatal("paging does not end")
				}
				cs, err := s.Changes(ctx, alice, since, max)
				if err != nil {
					t.Fatalf("changes since %d by %d: %v", since, max, err)
				}
				if len(cs.Changes) > max || (cs.HasMore && len(cs.Changes) == 0) || cs.ModSeq < since {
					t.Fatalf("page since %d by %d: %+v", since, max, cs)
				}
				for _, c := range cs.Changes {
					k := key(c.Kind, c.ID)
					switch c.Type {
					case shard.Created, shard.Updated:
						if c.Type == shard.Created {
							if _, had := p.live[k]; had {
								t.Errorf("since %d: %s reported created but existed then", p.modseq, k)
							}
						}
						have[k] = 0
						reported[k] = true
					case shard.Destroyed:
						if _, still := final.live[k]; still {
							t.Errorf("since %d: %s reported destroyed but exists", p.modseq, k)
						}
						delete(have, k)
					}
				}
				since = cs.ModSeq
				if !cs.HasMore {
					break
				}
			}
			if since != final.modseq {
				t.Errorf("since %d by %d: ends at state %d, want %d", p.modseq, max, since, final.modseq)
			}
			if got, want := slices.Sorted(maps.Keys(have)), slices.Sorted(maps.Keys(final.live)); !slices.Equal(got, want) {
				t.Errorf("since %d by %d: client has %v, server %v", p.modseq, max, got, want)
			}
			for k, ms := range final.live {
				if ms > p.modseq && !reported[k] {
					t.Errorf("since %d by %d: %s changed at %d and was not reported", p.modseq, max, k, ms)
				}
			}
		}
	}
	if _, err := s.Changes(ctx, alice, final.modseq+1, 10); !errors.Is(err, shard.ErrUnknownState) {
		t.Errorf("changes since the future: %v", err)
	}
	if _, err := s.Changes(ctx, alice, -1, 10); !errors.Is(err, shard.ErrUnknownState) {
		t.Errorf("changes since -1: %v", err)
	}
	if cs, err := s.Changes(ctx, alice, final.modseq, 10); err != nil || len(cs.Changes) != 0 || cs.HasMore || cs.ModSeq != final.modseq {
		t.Errorf("changes since now: %+v %v", cs, err)
	}
}

// TestChangesConcurrent: writes that share a group commit still stamp every object
// apart, so changes can be paged one at a time.
func TestChangesConcurrent(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 1).open(t)
	mustCreate(t, s, alice)
	start := modseq(t, s)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := &mutator{t: t, s: s, rnd: rand.New(rand.NewPCG(uint64(g), 7)), concurrent: true}
			for range 15 {
				m.step()
			}
		}()
	}
	wg.Wait()
	since := start
	for {
		cs, err := s.Changes(ctx, alice, since, 1)
		if err != nil {
			t.Fatalf("changes since %d: %v", since, err)
		}
		if since = cs.ModSeq; !cs.HasMore {
			break
		}
	}
	if since != modseq(t, s) {
		t.Errorf("paging ended at %d, not at the current state %d", since, modseq(t, s))
	}
	stamps := map[int64]string{}
	for k, ms := range liveObjects(t, s) {
		if other, dup := stamps[ms]; dup && ms > start {
			t.Errorf("%s and %s share modseq %d", k, other, ms)
		}
		stamps[ms] = k
	}
}
