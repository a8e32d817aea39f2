package shard_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"testing"

	"cryptomail/shard"
)

// dbBytes is the size of a shard's database as SQLite sees it (WAL
// included): page_count × page_size.
func dbBytes(t *testing.T, path string) int64 {
	t.Helper()
	var pages, size int64
	db := rawDB(t, path, "")
	if err := db.QueryRow(`PRAGMA page_count`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`PRAGMA page_size`).Scan(&size); err != nil {
		t.Fatal(err)
	}
	db.Close()
	return pages * size
}

func countRows(t *testing.T, path, table string) int {
	t.Helper()
	var n int
	if err := rawDB(t, path, "").QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCopySharesBody reproduces issue 9, item 5: one copy request naming a
// message 50 times stored its body 50 times. A copy now shares the body:
// the database grows by rows, not by bodies, and the body is freed with the
// last message that has it.
func TestCopySharesBody(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 1).open(t)
	u := mustCreate(t, s, alice)
	path := shard.ShardPath(u.Home, alice)

	const bodySize, n = 1 << 20, 50
	body := make([]byte, bodySize)
	rand.New(rand.NewSource(1)).Read(body) // incompressible, like ciphertext
	summary := bytes.Repeat([]byte("s"), 200)
	id, _, err := s.Deliver(ctx, alice, shard.NewMessage{Summary: summary, Body: body, Size: bodySize})
	if err != nil {
		t.Fatal(err)
	}
	before := dbBytes(t, path)
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = id
	}
	copies, err := s.CopyMessages(ctx, alice, ids, shard.FolderRef{Name: "Drafts"}, 0, 0)
	if err != nil || len(copies) != n {
		t.Fatalf("copy: %d copies, %v", len(copies), err)
	}
	grown := dbBytes(t, path) - before
	t.Logf("a copy of one %d-byte body %d times grew the database by %d bytes", bodySize, n, grown)
	if grown >= bodySize/2 {
		t.Errorf("%d copies grew the database by %d bytes: the body was stored again", n, grown)
	}
	if got := countRows(t, path, "bodies"); got != 1 {
		t.Errorf("%d bodies after the copy, want 1", got)
	}
	if used, err := s.Usage(ctx, alice); err != nil || used != bodySize+int64(n+1)*int64(len(summary)) {
		t.Errorf("usage %d %v: want the body once and every summary", used, err)
	}

	// Expunging the original leaves the copies their body.
	expunge := func(ids ...int64) {
		t.Helper()
		for range 2 { // to Trash, then \Deleted
			if err := s.DeleteMessages(ctx, alice, ids); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Expunge(ctx, alice, shard.FolderRef{Name: "Trash"}); err != nil {
			t.Fatal(err)
		}
	}
	expunge(id)
	err = s.FetchMessages(ctx, alice, copies[n-1:], func(m shard.MessageInfo, load shard.Loader) error {
		if m.BodySize != bodySize {
			t.Errorf("copy's body size %d", m.BodySize)
		}
		_, b, err := load(false, true)
		if err != nil || !bytes.Equal(b, body) {
			t.Errorf("copy's body after the original's expunge: %d bytes, %v", len(b), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := countRows(t, path, "bodies"); got != 1 {
		t.Errorf("%d bodies with copies left, want 1", got)
	}
	expunge(copies[:n-1]...)
	if got := countRows(t, path, "bodies"); got != 1 {
		t.Errorf("%d bodies with one copy left, want 1", got)
	}
	// The last one frees it.
	expunge(copies[n-1])
	if got := countRows(t, path, "bodies"); got != 0 {
		t.Errorf("%d bodies with no message left, want 0", got)
	}
	if used, err := s.Usage(ctx, alice); err != nil || used != 0 {
		t.Errorf("usage %d %v after expunging everything", used, err)
	}
}

// TestCopyLimit: one copy may add at most limit stored bytes (summaries and
// rows); over it, nothing is copied.
func TestCopyLimit(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 1).open(t)
	mustCreate(t, s, alice)
	id, _, err := s.Deliver(ctx, alice, shard.NewMessage{Summary: bytes.Repeat([]byte("s"), 1000), Body: []byte("b")})
	if err != nil {
		t.Fatal(err)
	}
	per := int64(1000 + shard.CopyRowBytes)
	if _, err := s.CopyMessages(ctx, alice, []int64{id, id, id}, shard.FolderRef{Name: "Drafts"}, 0, 3*per); err != nil {
		t.Errorf("copy at the limit: %v", err)
	}
	before := modseq(t, s)
	if _, err := s.CopyMessages(ctx, alice, []int64{id, id, id, id}, shard.FolderRef{Name: "Drafts"}, 0, 3*per); !errors.Is(err, shard.ErrLimit) {
		t.Errorf("copy over the limit: %v, want ErrLimit", err)
	}
	if f := folderByName(t, s, "Drafts"); f.Total != 3 || modseq(t, s) != before {
		t.Errorf("a refused copy changed Drafts: %+v", f)
	}
}
