package shard_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"cryptomail/shard"
)

const alice = "alice@example.org"

func folderByName(t *testing.T, s *shard.Store, name string) shard.Folder {
	t.Helper()
	f, err := s.Folder(context.Background(), alice, shard.FolderRef{Name: name})
	if err != nil {
		t.Fatalf("folder %q: %v", name, err)
	}
	return f
}

func modseq(t *testing.T, s *shard.Store) int64 {
	t.Helper()
	m, err := s.ModSeq(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// info fetches one message's metadata (and blobs).
func info(t *testing.T, s *shard.Store, id int64) (shard.MessageInfo, bool) {
	t.Helper()
	var got shard.MessageInfo
	found := false
	err := s.FetchMessages(context.Background(), alice, []int64{id}, func(m shard.MessageInfo, load shard.Loader) error {
		sum, body, err := load(true, true)
		m.Summary, m.Body = sum, body
		got, found = m, true
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, found
}

func deliverAt(t *testing.T, s *shard.Store, folder string, at time.Time, body string) int64 {
	t.Helper()
	id, _, err := s.Deliver(context.Background(), alice, shard.NewMessage{Folder: folder, Received: at, Summary: []byte("s:" + body), Body: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestFolderOps(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 1).open(t)
	mustCreate(t, s, alice)

	p, err := s.CreateFolder(ctx, alice, "Projects", 7)
	if err != nil || p.Name != "Projects" || p.Role != "" || p.Total != 0 || p.ModSeq != modseq(t, s) {
		t.Fatalf("CreateFolder = %+v, %v", p, err)
	}
	for _, name := range []string{"Projects", "inbox", "TRASH", "Jun\u212a" /* Kelvin sign folds to k */} {
		if _, err := s.CreateFolder(ctx, alice, name, 0); !errors.Is(err, shard.ErrFolderExists) {
			t.Errorf("CreateFolder(%q): %v, want ErrFolderExists", name, err)
		}
	}
	if _, err := s.CreateFolder(ctx, alice, "projects", 0); err != nil {
		t.Errorf("names other than system ones are exact: %v", err)
	}
	if _, err := s.CreateFolder(ctx, alice, "Eight", 7); !errors.Is(err, shard.ErrQuota) {
		t.Errorf("eighth folder with a limit of 7: %v", err)
	}
	if _, err := s.CreateFolder(ctx, alice, "", 0); !errors.Is(err, shard.ErrInvalid) {
		t.Errorf("empty name: %v", err)
	}

	before := modseq(t, s)
	r, err := s.RenameFolder(ctx, alice, shard.FolderRef{ID: p.ID}, "Work")
	if err != nil || r.ID != p.ID || r.Name != "Work" || r.ModSeq != before+1 {
		t.Fatalf("RenameFolder = %+v, %v", r, err)
	}
	if _, err := s.RenameFolder(ctx, alice, shard.FolderRef{Name: "Work"}, "Work"); err != nil || modseq(t, s) != before+1 {
		t.Errorf("rename to the same name: %v, modseq %d", err, modseq(t, s))
	}
	for _, tc := range []struct {
		ref  shard.FolderRef
		name string
		want error
	}{
		{shard.FolderRef{Name: "Work"}, "projects", shard.ErrFolderExists},
		{shard.FolderRef{Name: "Work"}, "sent", shard.ErrFolderExists},
		{shard.FolderRef{Name: "Projects"}, "X", shard.ErrNoSuchFolder},
		{shard.FolderRef{ID: 999}, "X", shard.ErrNoSuchFolder},
		{shard.FolderRef{ID: -1}, "X", shard.ErrNoSuchFolder},
		{shard.FolderRef{Name: "INBOX"}, "X", shard.ErrSystemFolder},
		{shard.FolderRef{Name: "Junk"}, "Junk", shard.ErrSystemFolder},
	} {
		if _, err := s.RenameFolder(ctx, alice, tc.ref, tc.name); !errors.Is(err, tc.want) {
			t.Errorf("RenameFolder(%v, %q): %v, want %v", tc.ref, tc.name, err, tc.want)
		}
	}
	for _, name := range []string{"INBOX", "Sent", "Drafts", "Trash", "Junk"} {
		if err := s.DeleteFolder(ctx, alice, shard.FolderRef{Name: name}); !errors.Is(err, shard.ErrSystemFolder) {
			t.Errorf("DeleteFolder(%s): %v", name, err)
		}
	}

	// Deleting a folder moves its messages to Trash, ids kept, and counts follow.
	m1 := deliverAt(t, s, "Work", time.Unix(1700000000, 0), "one")
	m2 := deliverAt(t, s, "Work", time.Unix(1700000001, 0), "two")
	if err := s.UpdateFlags(ctx, alice, []int64{m1}, shard.FlagsAdd, []string{shard.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	if w := folderByName(t, s, "Work"); w.Total != 2 || w.Unseen != 1 {
		t.Errorf("Work counts %+v", w)
	}
	if err := s.DeleteFolder(ctx, alice, shard.FolderRef{Name: "Work"}); err != nil {
		t.Fatal(err)
	}
	trash := folderByName(t, s, "Trash")
	if trash.Total != 2 || trash.Unseen != 1 {
		t.Errorf("Trash after folder delete: %+v", trash)
	}
	for _, id := range []int64{m1, m2} {
		if m, ok := info(t, s, id); !ok || m.FolderID != trash.ID {
			t.Errorf("message %d after folder delete: %+v", id, m)
		}
	}
	if err := s.DeleteFolder(ctx, alice, shard.FolderRef{ID: p.ID}); !errors.Is(err, shard.ErrNoSuchFolder) {
		t.Errorf("second delete: %v", err)
	}
	fs, err := s.Folders(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fs {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, []string{"INBOX", "Sent", "Drafts", "Trash", "Junk", "projects"}) {
		t.Errorf("folders %v", names)
	}
}

func TestListMessagesPaging(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 1).open(t)
	mustCreate(t, s, alice)
	base := time.Unix(1700000000, 0)
	// Three in one second (ordered by id within it, whatever their nanoseconds), one
	// before the epoch, and some later.
	var asc []int64
	asc = append(asc, deliverAt(t, s, "", time.Unix(-5, 500), "old"))
	asc = append(asc, deliverAt(t, s, "", base.Add(900*time.Millisecond), "a"))
	asc = append(asc, deliverAt(t, s, "", base.Add(100*time.Millisecond), "b"))
	asc = append(asc, deliverAt(t, s, "", base, "c"))
	for i := 1; i <= 4; i++ {
		asc = append(asc, deliverAt(t, s, "", base.Add(time.Duration(i)*time.Hour), fmt.Sprint(i)))
	}
	deliverAt(t, s, "Sent", base, "elsewhere")

	list := func(desc bool, limit int, between func()) ([]int64, []shard.ListPage) {
		var ids []int64
		var pages []shard.ListPage
		cursor := ""
		for n := 0; n < 20; n++ {
			page, err := s.ListMessages(ctx, alice, shard.ListQuery{Folder: shard.FolderRef{Name: "INBOX"}, Desc: desc, Limit: limit, Cursor: cursor},
				func(m shard.MessageInfo) error {
					if m.Body != nil || !bytes.HasPrefix(m.Summary, []byte("s:")) || m.BodySize == 0 || m.Received.Location() != time.UTC {
						t.Errorf("listed %+v", m)
					}
					ids = append(ids, m.ID)
					return nil
				})
			if err != nil {
				t.Fatal(err)
			}
			pages = append(pages, page)
			if page.NextCursor == "" {
				return ids, pages
			}
			cursor = page.NextCursor
			if n == 0 && between != nil {
				between()
			}
		}
		t.Fatal("paging does not end")
		return nil, nil
	}
	desc := slices.Clone(asc)
	slices.Reverse(desc)
	for _, limit := range []int{1, 3, 8, 200} {
		if got, pages := list(false, limit, nil); !slices.Equal(got, asc) || pages[0].Total != len(asc) {
			t.Errorf("ascending by %d: %v, want %v (%+v)", limit, got, asc, pages[0])
		}
		if got, _ := list(true, limit, nil); !slices.Equal(got, desc) {
			t.Errorf("descending by %d: %v, want %v", limit, got, desc)
		}
	}
	// Mail arriving between pages: the newest sorts before the cursor and is not listed,
	// an old one after it and is; nothing repeats or is skipped.
	var old int64
	got, pages := list(true, 3, func() {
		deliverAt(t, s, "", base.Add(time.Hour*24), "new")
		old = deliverAt(t, s, "", base.Add(-time.Hour*24), "older")
	})
	// desc ends with the message from 1969, which sorts after the older one.
	if want := slices.Insert(slices.Clone(desc), len(desc)-1, old); !slices.Equal(got, want) {
		t.Errorf("with arrivals: %v, want %v", got, want)
	}
	if pages[0].ModSeq >= pages[1].ModSeq {
		t.Errorf("page states %d, %d: want the later page's state ahead", pages[0].ModSeq, pages[1].ModSeq)
	}

	first, err := s.ListMessages(ctx, alice, shard.ListQuery{Folder: shard.FolderRef{Name: "INBOX"}, Limit: 1}, func(shard.MessageInfo) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []shard.ListQuery{
		{Folder: shard.FolderRef{Name: "INBOX"}, Limit: 1, Cursor: "bogus"},
		{Folder: shard.FolderRef{Name: "INBOX"}, Limit: 1, Cursor: "a.1.2"},
		{Folder: shard.FolderRef{Name: "INBOX"}, Limit: 1, Cursor: first.NextCursor, Desc: true},
		{Folder: shard.FolderRef{Name: "Sent"}, Limit: 1, Cursor: first.NextCursor},
	} {
		if _, err := s.ListMessages(ctx, alice, q, func(shard.MessageInfo) error { return nil }); !errors.Is(err, shard.ErrBadCursor) {
			t.Errorf("%+v: %v, want ErrBadCursor", q, err)
		}
	}
	if _, err := s.ListMessages(ctx, alice, shard.ListQuery{Folder: shard.FolderRef{Name: "Nope"}, Limit: 1}, nil); !errors.Is(err, shard.ErrNoSuchFolder) {
		t.Errorf("no such folder: %v", err)
	}
	if _, err := s.ListMessages(ctx, alice, shard.ListQuery{Folder: shard.FolderRef{Name: "INBOX"}}, nil); !errors.Is(err, shard.ErrInvalid) {
		t.Errorf("limit 0: %v", err)
	}
	stop := errors.New("stop")
	if _, err := s.ListMessages(ctx, alice, shard.ListQuery{Folder: shard.FolderRef{Name: "INBOX"}, Limit: 5}, func(shard.MessageInfo) error { return stop }); err != stop {
		t.Errorf("callback error: %v", err)
	}
}

func TestMessageOps(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 1).open(t)
	mustCreate(t, s, alice)
	at := time.Unix(1700000000, 123)
	m1 := deliverAt(t, s, "", at, "one")
	m2 := deliverAt(t, s, "", at, "two")
	inbox, drafts, trash := folderByName(t, s, "INBOX"), folderByName(t, s, "Drafts"), folderByName(t, s, "Trash")

	// Fetch: in the order asked, unknown ids skipped, blobs only when loaded.
	var seen []int64
	err := s.FetchMessages(ctx, alice, []int64{m2, 4242, m1}, func(m shard.MessageInfo, load shard.Loader) error {
		seen = append(seen, m.ID)
		if m.Summary != nil || m.BodySize != 3 || m.SummarySize != 5 || !m.Received.Equal(time.Unix(1700000000, 0)) || m.FolderID != inbox.ID {
			t.Errorf("fetched %+v", m)
		}
		sum, body, err := load(false, true)
		if sum != nil || !bytes.Equal(body, []byte(map[int64]string{m1: "one", m2: "two"}[m.ID])) {
			t.Errorf("load body of %d: %q %q", m.ID, sum, body)
		}
		sum, body, _ = load(true, false)
		if string(sum) != "s:"+string(map[int64]string{m1: "one", m2: "two"}[m.ID]) || body != nil {
			t.Errorf("load summary of %d: %q %q", m.ID, sum, body)
		}
		return err
	})
	if err != nil || !slices.Equal(seen, []int64{m2, m1}) {
		t.Errorf("fetch saw %v, %v", seen, err)
	}

	flags := func(id int64) string {
		t.Helper()
		m, ok := info(t, s, id)
		if !ok {
			t.Fatalf("message %d gone", id)
		}
		return strings.Join(m.Flags, " ")
	}
	// Flags: canonical order, atomic, no-ops leave the modseq alone.
	if err := s.UpdateFlags(ctx, alice, []int64{m1, m2}, shard.FlagsAdd, []string{"$work", shard.FlagFlagged, shard.FlagSeen}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateFlags(ctx, alice, []int64{m2}, shard.FlagsRemove, []string{shard.FlagFlagged}); err != nil {
		t.Fatal(err)
	}
	if f := flags(m1); f != `\Seen \Flagged $work` {
		t.Errorf("m1 flags %q", f)
	}
	if f := flags(m2); f != `\Seen $work` {
		t.Errorf("m2 flags %q", f)
	}
	if c := folderByName(t, s, "INBOX"); c.Unseen != 0 || c.Total != 2 {
		t.Errorf("INBOX counts %+v", c)
	}
	before := modseq(t, s)
	if err := s.UpdateFlags(ctx, alice, []int64{m1}, shard.FlagsAdd, []string{shard.FlagSeen}); err != nil || modseq(t, s) != before {
		t.Errorf("no-op flag change: %v, modseq %d → %d", err, before, modseq(t, s))
	}
	var ide *shard.IDError
	if err := s.UpdateFlags(ctx, alice, []int64{m1, 999}, shard.FlagsAdd, []string{shard.FlagAnswered}); !errors.Is(err, shard.ErrNoSuchMessage) || !errors.As(err, &ide) || ide.ID != 999 {
		t.Errorf("unknown id: %v", err)
	}
	if f := flags(m1); f != `\Seen \Flagged $work` || modseq(t, s) != before {
		t.Errorf("failed update changed m1 to %q", f)
	}
	var many []string
	for i := range shard.MaxFlags {
		many = append(many, fmt.Sprintf("k%02d", i))
	}
	if err := s.UpdateFlags(ctx, alice, []int64{m2, m1}, shard.FlagsAdd, many[:30]); !errors.Is(err, shard.ErrTooManyFlags) || !errors.As(err, &ide) || ide.ID != m1 {
		t.Errorf("too many flags: %v", err)
	}
	for _, bad := range [][]string{{shard.FlagDeleted}, {"a b"}, {""}} {
		if err := s.UpdateFlags(ctx, alice, []int64{m1}, shard.FlagsAdd, bad); !errors.Is(err, shard.ErrInvalid) {
			t.Errorf("flags %q: %v", bad, err)
		}
	}

	// Copy: new ids, same blobs and time, flags without \Deleted.
	copies, err := s.CopyMessages(ctx, alice, []int64{m1, m2}, shard.FolderRef{ID: drafts.ID}, 0, 0)
	if err != nil || len(copies) != 2 || copies[0] == m1 || copies[1] == m2 {
		t.Fatalf("copy: %v %v", copies, err)
	}
	if c, _ := info(t, s, copies[0]); string(c.Body) != "one" || strings.Join(c.Flags, " ") != `\Seen \Flagged $work` || c.FolderID != drafts.ID || !c.Received.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("copy %+v", c)
	}
	if _, err := s.CopyMessages(ctx, alice, []int64{m1, 77}, shard.FolderRef{ID: drafts.ID}, 0, 0); !errors.Is(err, shard.ErrNoSuchMessage) {
		t.Errorf("copy of an unknown id: %v", err)
	}

	// Delete: to Trash, then \Deleted, then expunge destroys.
	if err := s.DeleteMessages(ctx, alice, []int64{m1, copies[0]}); err != nil {
		t.Fatal(err)
	}
	if m, _ := info(t, s, m1); m.FolderID != trash.ID || slices.Contains(m.Flags, shard.FlagDeleted) {
		t.Errorf("after first delete: %+v", m)
	}
	if n, err := s.Expunge(ctx, alice, shard.FolderRef{Name: "Trash"}); n != 0 || err != nil {
		t.Errorf("expunge without \\Deleted: %d %v", n, err)
	}
	if err := s.DeleteMessages(ctx, alice, []int64{m1, copies[0]}); err != nil {
		t.Fatal(err)
	}
	if f := flags(m1); f != `\Seen \Flagged \Deleted $work` {
		t.Errorf("after second delete: %q", f)
	}
	before = modseq(t, s)
	if err := s.DeleteMessages(ctx, alice, []int64{m1}); err != nil || modseq(t, s) != before {
		t.Errorf("third delete: %v, modseq moved", err)
	}
	// replace keeps \Deleted; moving out of Trash clears it.
	if err := s.UpdateFlags(ctx, alice, []int64{copies[0]}, shard.FlagsReplace, nil); err != nil || flags(copies[0]) != `\Deleted` {
		t.Errorf("replace: %v %q", err, flags(copies[0]))
	}
	if err := s.MoveMessages(ctx, alice, []int64{copies[0]}, shard.FolderRef{Name: "INBOX"}); err != nil {
		t.Fatal(err)
	}
	if m, _ := info(t, s, copies[0]); len(m.Flags) != 0 || m.FolderID != inbox.ID {
		t.Errorf("moved out of Trash: %+v", m)
	}
	before = modseq(t, s)
	if err := s.MoveMessages(ctx, alice, []int64{copies[0]}, shard.FolderRef{Name: "INBOX"}); err != nil || modseq(t, s) != before {
		t.Errorf("move to the same folder: %v, modseq moved", err)
	}
	if err := s.MoveMessages(ctx, alice, []int64{m2}, shard.FolderRef{Name: "Nope"}); !errors.Is(err, shard.ErrNoSuchFolder) {
		t.Errorf("move to no folder: %v", err)
	}
	if err := s.MoveMessages(ctx, alice, []int64{m2, 88}, shard.FolderRef{Name: "Junk"}); !errors.Is(err, shard.ErrNoSuchMessage) {
		t.Errorf("move with an unknown id: %v", err)
	}
	if m, _ := info(t, s, m2); m.FolderID != inbox.ID {
		t.Errorf("failed move moved m2: %+v", m)
	}
	usage, _ := s.Usage(ctx, alice)
	if n, err := s.Expunge(ctx, alice, shard.FolderRef{ID: trash.ID}); n != 1 || err != nil {
		t.Errorf("expunge: %d %v", n, err)
	}
	if _, ok := info(t, s, m1); ok {
		t.Error("expunged message still there")
	}
	// copies[0] still holds m1's body, which it shares: only the summary goes.
	if after, _ := s.Usage(ctx, alice); after != usage-int64(len("s:one")) {
		t.Errorf("usage %d → %d after expunging m1", usage, after)
	}

	// Append.
	ap, err := s.Append(ctx, alice, shard.FolderRef{Name: "Drafts"}, shard.NewMessage{
		Flags: []string{shard.FlagDraft, shard.FlagSeen}, Received: time.Unix(1734000000, 999), Summary: []byte("sum"), Body: []byte("draft"),
	}, 0)
	if err != nil || strings.Join(ap.Flags, " ") != `\Seen \Draft` || !ap.Received.Equal(time.Unix(1734000000, 0)) || ap.BodySize != 5 || ap.FolderID != drafts.ID || ap.ModSeq != modseq(t, s) {
		t.Errorf("append %+v %v", ap, err)
	}
	if m, _ := info(t, s, ap.ID); string(m.Body) != "draft" || string(m.Summary) != "sum" || !slices.Equal(m.Flags, ap.Flags) {
		t.Errorf("appended %+v", m)
	}
	for _, tc := range []struct {
		to   shard.FolderRef
		m    shard.NewMessage
		want error
	}{
		{shard.FolderRef{Name: "Nope"}, shard.NewMessage{Body: []byte("x")}, shard.ErrNoSuchFolder},
		{shard.FolderRef{Name: "INBOX"}, shard.NewMessage{Folder: "INBOX", Body: []byte("x")}, shard.ErrInvalid},
		{shard.FolderRef{Name: "INBOX"}, shard.NewMessage{Flags: []string{shard.FlagDeleted}, Body: []byte("x")}, shard.ErrInvalid},
		{shard.FolderRef{Name: "INBOX"}, shard.NewMessage{Flags: append(many, "one-more"), Body: []byte("x")}, shard.ErrTooManyFlags},
	} {
		if _, err := s.Append(ctx, alice, tc.to, tc.m, 0); !errors.Is(err, tc.want) {
			t.Errorf("append %+v: %v, want %v", tc, err, tc.want)
		}
	}
}

func TestQuota(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 1).open(t)
	mustCreate(t, s, alice)
	big := shard.NewMessage{Summary: bytes.Repeat([]byte("s"), 20), Body: bytes.Repeat([]byte("x"), 40)}
	m, err := s.Append(ctx, alice, shard.FolderRef{Name: "INBOX"}, big, 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, alice, shard.FolderRef{Name: "INBOX"}, big, 100); !errors.Is(err, shard.ErrQuota) {
		t.Errorf("append over quota: %v", err)
	}
	// A copy shares the body: it adds its summary only (60 + 20 > 79).
	if _, err := s.CopyMessages(ctx, alice, []int64{m.ID}, shard.FolderRef{Name: "INBOX"}, 79, 0); !errors.Is(err, shard.ErrQuota) {
		t.Errorf("copy over quota: %v", err)
	}
	c, err := s.PutContact(ctx, alice, 0, bytes.Repeat([]byte("c"), 30), 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutContact(ctx, alice, c, bytes.Repeat([]byte("c"), 41), 100); !errors.Is(err, shard.ErrQuota) {
		t.Errorf("contact growing over quota: %v", err)
	}
	if _, err := s.PutContact(ctx, alice, c, bytes.Repeat([]byte("c"), 40), 100); err != nil {
		t.Errorf("contact growing to the quota: %v", err)
	}
	if u, _ := s.Usage(ctx, alice); u != 100 {
		t.Errorf("usage %d, want 100", u)
	}
	if err := s.DeleteContact(ctx, alice, c); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.Usage(ctx, alice); u != 60 {
		t.Errorf("usage %d after deleting the contact, want 60", u)
	}
}

func TestContacts(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 1).open(t)
	mustCreate(t, s, alice)
	var ids []int64
	for i := range 5 {
		id, err := s.PutContact(ctx, alice, 0, []byte(fmt.Sprint("c", i)), 0)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if id, err := s.PutContact(ctx, alice, ids[1], []byte("new"), 0); err != nil || id != ids[1] {
		t.Errorf("replace: %d %v", id, err)
	}
	if _, err := s.PutContact(ctx, alice, 777, []byte("x"), 0); !errors.Is(err, shard.ErrNoSuchContact) {
		t.Errorf("replace unknown: %v", err)
	}
	if _, err := s.PutContact(ctx, alice, 0, nil, 0); !errors.Is(err, shard.ErrInvalid) {
		t.Errorf("empty contact: %v", err)
	}
	if err := s.DeleteContact(ctx, alice, ids[3]); err != nil {
		t.Fatal(err)
	}
	before := modseq(t, s)
	if err := s.DeleteContact(ctx, alice, ids[3]); !errors.Is(err, shard.ErrNoSuchContact) || modseq(t, s) != before {
		t.Errorf("second delete: %v", err)
	}
	var got []string
	cursor := ""
	for range 10 {
		page, err := s.ListContacts(ctx, alice, 2, cursor, func(c shard.Contact) error {
			got = append(got, fmt.Sprintf("%d=%s", c.ID, c.Data))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if page.ModSeq != before {
			t.Errorf("page state %d, want %d", page.ModSeq, before)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	want := []string{fmt.Sprintf("%d=c0", ids[0]), fmt.Sprintf("%d=new", ids[1]), fmt.Sprintf("%d=c2", ids[2]), fmt.Sprintf("%d=c4", ids[4])}
	if !slices.Equal(got, want) {
		t.Errorf("contacts %v, want %v", got, want)
	}
	for _, bad := range []string{"x", "c.", "c.-1", "d.1"} {
		if _, err := s.ListContacts(ctx, alice, 2, bad, nil); !errors.Is(err, shard.ErrBadCursor) {
			t.Errorf("cursor %q: %v", bad, err)
		}
	}
}
