package xmaptest

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"cryptomail/xmap"
)

const (
	alice = "alice@example.org"
	bob   = "bob@example.org"
)

func testFolders(w *world) {
	t := w.t
	a := w.user(alice)
	fs := a.folders()
	for _, sf := range xmap.SystemFolders {
		if f := fs[sf.Name]; f.Role != sf.Role {
			t.Errorf("system folder %s: %+v", sf.Name, f)
		}
	}
	res := OK[*xmap.ListFoldersResult](t, a.one(&xmap.ListFolders{}))
	for i, sf := range xmap.SystemFolders {
		if res.Folders[i].Name != sf.Name {
			t.Errorf("folder %d is %s, want %s: system folders first, in order", i, res.Folders[i].Name, sf.Name)
		}
	}
	p := OK[*xmap.CreateFolderResult](t, a.one(&xmap.CreateFolder{FolderName: "Projects"})).Folder
	Fails(t, a.one(&xmap.CreateFolder{FolderName: "Projects"}), xmap.CodeConflict)
	Fails(t, a.one(&xmap.CreateFolder{FolderName: "trash"}), xmap.CodeConflict)
	OK[*xmap.CreateFolderResult](t, a.one(&xmap.CreateFolder{FolderName: "Two"}))
	Fails(t, a.one(&xmap.CreateFolder{FolderName: "Three"}), xmap.CodeOverQuota)
	var names []string
	for _, f := range OK[*xmap.ListFoldersResult](t, a.one(&xmap.ListFolders{})).Folders {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, []string{"INBOX", "Sent", "Drafts", "Trash", "Junk", "Projects", "Two"}) {
		t.Errorf("folders %v: system ones, then the others by name", names)
	}

	r := OK[*xmap.RenameFolderResult](t, a.one(&xmap.RenameFolder{Folder: byID(p.ID), NewName: "Work"})).Folder
	if r.ID != p.ID || r.Name != "Work" {
		t.Errorf("renamed %+v", r)
	}
	before := a.state()
	if r := OK[*xmap.RenameFolderResult](t, a.one(&xmap.RenameFolder{Folder: byName("Work"), NewName: "Work"})).Folder; r.ID != p.ID || a.state() != before {
		t.Errorf("rename to the same name: %+v, state %s → %s", r, before, a.state())
	}
	Fails(t, a.one(&xmap.RenameFolder{Folder: byName("Work"), NewName: "Two"}), xmap.CodeConflict)
	Fails(t, a.one(&xmap.RenameFolder{Folder: byName("Work"), NewName: "Junk"}), xmap.CodeConflict)
	Fails(t, a.one(&xmap.RenameFolder{Folder: byName("Projects"), NewName: "X"}), xmap.CodeNotFound)
	for _, sf := range xmap.SystemFolders {
		Fails(t, a.one(&xmap.RenameFolder{Folder: byName(sf.Name), NewName: "X"}), xmap.CodeDenied)
		Fails(t, a.one(&xmap.DeleteFolder{Folder: byName(sf.Name)}), xmap.CodeDenied)
	}
	for _, id := range []string{"0", "-1", "x", "99999999999999999999"} {
		Fails(t, a.one(&xmap.RenameFolder{Folder: byID(id), NewName: "X"}), xmap.CodeNotFound)
	}

	// Deleting a folder moves its messages to Trash.
	id := w.deliver(alice, "m1")
	OK[*xmap.MoveResult](t, a.one(&xmap.Move{Folder: byName("Work"), IDs: []string{id}}))
	if fs := a.folders(); fs["Work"].Total != 1 || fs["Work"].Unseen != 1 || fs["INBOX"].Total != 0 {
		t.Errorf("counts after move: %+v", fs)
	}
	OK[*xmap.DeleteFolderResult](t, a.one(&xmap.DeleteFolder{Folder: byID(p.ID)}))
	fs = a.folders()
	if _, there := fs["Work"]; there || fs["Trash"].Total != 1 || fs["Trash"].Unseen != 1 {
		t.Errorf("after delete: %+v", fs)
	}
	if m := a.message(id); m.FolderID != fs["Trash"].ID {
		t.Errorf("message in %s", m.FolderID)
	}
	Fails(t, a.one(&xmap.DeleteFolder{Folder: byID(p.ID)}), xmap.CodeNotFound)
}

func testListMessagesPaging(w *world) {
	t := w.t
	a := w.user(alice)
	var want []string
	for i := 0; i < 7; i++ {
		want = append(want, w.deliver(alice, fmt.Sprintf("m%d", i)))
	}
	// Three more in one second: ordered by id within it.
	same := w.now.Add(30 * time.Second)
	for i := 0; i < 3; i++ {
		want = append(want, w.deliverAt(alice, []byte("same"), []byte("s"), same))
	}
	listAll := func(sort xmap.Sort, between func()) []string {
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatal("paging does not end")
			}
			res := OK[*xmap.ListMessagesResult](t, a.one(&xmap.ListMessages{Folder: byName("INBOX"), Sort: sort, Limit: 3, Cursor: cursor}))
			if len(res.Messages) > 3 || res.Total < len(want) || res.FolderID != a.folders()["INBOX"].ID {
				t.Fatalf("page %+v", res)
			}
			for _, m := range res.Messages {
				if m.Body != nil || string(m.Summary) == "" || m.FolderID != res.FolderID {
					t.Errorf("listed message %+v", m)
				}
			}
			got = append(got, idsOf(res.Messages)...)
			if res.NextCursor == "" {
				return got
			}
			cursor = res.NextCursor
			if pages == 0 && between != nil {
				between()
			}
		}
	}
	desc := slices.Clone(want)
	slices.Reverse(desc)
	if got := listAll(xmap.SortReceivedAsc, nil); !slices.Equal(got, want) {
		t.Errorf("ascending: %v, want %v", got, want)
	}
	for _, sort := range []xmap.Sort{xmap.SortReceivedDesc, ""} {
		if got := listAll(sort, nil); !slices.Equal(got, desc) {
			t.Errorf("%q: %v, want %v", sort, got, desc)
		}
	}
	// Mail arriving between pages neither repeats nor shifts messages: the newest one sorts
	// before the cursor and is not listed, an old one sorts after it and is.
	var old string
	got := listAll(xmap.SortReceivedDesc, func() {
		w.deliver(alice, "new mail")
		old = w.deliverAt(alice, []byte("old mail"), []byte("s"), w.now.Add(-24*time.Hour))
	})
	if exp := append(slices.Clone(desc), old); !slices.Equal(got, exp) {
		t.Errorf("listing with arrivals: %v, want %v", got, exp)
	}
	Fails(t, a.one(&xmap.ListMessages{Folder: byName("INBOX"), Cursor: "bogus"}), xmap.CodeBadRequest)
	res := OK[*xmap.ListMessagesResult](t, a.one(&xmap.ListMessages{Folder: byName("INBOX"), Sort: xmap.SortReceivedAsc, Limit: 1}))
	Fails(t, a.one(&xmap.ListMessages{Folder: byName("INBOX"), Sort: xmap.SortReceivedDesc, Cursor: res.NextCursor}), xmap.CodeBadRequest)
	Fails(t, a.one(&xmap.ListMessages{Folder: byName("Sent"), Sort: xmap.SortReceivedAsc, Cursor: res.NextCursor}), xmap.CodeBadRequest)
	Fails(t, a.one(&xmap.ListMessages{Folder: byName("Nope")}), xmap.CodeNotFound)
	if res := OK[*xmap.ListMessagesResult](t, a.one(&xmap.ListMessages{Folder: byName("Junk")})); len(res.Messages) != 0 || res.Total != 0 || res.NextCursor != "" || res.State != a.state() {
		t.Errorf("empty folder: %+v", res)
	}
}

func testMessages(w *world) {
	t := w.t
	a := w.user(alice)
	m1 := w.deliver(alice, "one")
	m2 := w.deliver(alice, "two")

	// Fetch parts.
	f := OK[*xmap.FetchResult](t, a.one(&xmap.Fetch{IDs: []string{m1, "424242", m2, "x", "-1"}}))
	if len(f.Messages) != 2 || string(f.Messages[0].Body) != "one" || f.Messages[0].Summary != nil || !slices.Equal(f.NotFound, []string{"424242", "x", "-1"}) {
		t.Errorf("fetch %+v", f)
	}
	f = OK[*xmap.FetchResult](t, a.one(&xmap.Fetch{IDs: []string{m2}, Parts: xmap.PartSummary}))
	if string(f.Messages[0].Summary) != "summary of two" || f.Messages[0].Body != nil || f.Messages[0].Size != 3 {
		t.Errorf("fetch summary %+v", f)
	}

	// Flags.
	upd := func(action xmap.FlagAction, flags []xmap.Flag, ids ...string) xmap.Response {
		return a.one(&xmap.UpdateFlags{Action: action, Flags: flags, IDs: ids})
	}
	OK[*xmap.UpdateFlagsResult](t, upd(xmap.FlagsAdd, []xmap.Flag{xmap.FlagSeen, "$work", xmap.FlagFlagged}, m1, m2))
	OK[*xmap.UpdateFlagsResult](t, upd(xmap.FlagsRemove, []xmap.Flag{xmap.FlagFlagged}, m2))
	if g := flagsOf(a.message(m1)); g != `\Seen \Flagged $work` {
		t.Errorf("m1 flags %q", g)
	}
	if g := flagsOf(a.message(m2)); g != `\Seen $work` {
		t.Errorf("m2 flags %q", g)
	}
	if fs := a.folders(); fs["INBOX"].Unseen != 0 || fs["INBOX"].Total != 2 {
		t.Errorf("counts %+v", fs["INBOX"])
	}
	// Atomic: one unknown id, nothing changes.
	before := a.state()
	Fails(t, upd(xmap.FlagsAdd, []xmap.Flag{xmap.FlagAnswered}, m1, "999999"), xmap.CodeNotFound)
	Fails(t, upd(xmap.FlagsAdd, []xmap.Flag{xmap.FlagAnswered}, m1, "nonsense"), xmap.CodeNotFound)
	if a.state() != before || flagsOf(a.message(m1)) != `\Seen \Flagged $work` {
		t.Error("failed update-flags changed something")
	}
	var many []xmap.Flag
	for i := 0; i < xmap.MaxFlags; i++ {
		many = append(many, xmap.Flag(fmt.Sprintf("k%d", i)))
	}
	Fails(t, upd(xmap.FlagsAdd, many, m1), xmap.CodeLimitExceeded)

	// Copy, then delete to Trash, delete again (\Deleted), expunge.
	cp := OK[*xmap.CopyResult](t, a.one(&xmap.Copy{Folder: byName("Drafts"), IDs: []string{m1}}))
	if len(cp.Copies) != 1 || cp.Copies[0].From != m1 || cp.Copies[0].ID == m1 {
		t.Fatalf("copy %+v", cp)
	}
	c1 := cp.Copies[0].ID
	if m := a.message(c1); string(m.Body) != "one" || flagsOf(m) != `\Seen \Flagged $work` {
		t.Errorf("copy %+v", m)
	}
	before = a.state()
	Fails(t, a.one(&xmap.Copy{Folder: byName("Drafts"), IDs: []string{m1, "999999"}}), xmap.CodeNotFound)
	Fails(t, a.one(&xmap.Move{Folder: byName("Drafts"), IDs: []string{m1, "999999"}}), xmap.CodeNotFound)
	Fails(t, a.one(&xmap.Delete{IDs: []string{m1, "999999"}}), xmap.CodeNotFound)
	if a.state() != before || len(a.list(byName("Drafts"))) != 1 {
		t.Error("a failed copy, move or delete changed something")
	}
	OK[*xmap.DeleteResult](t, a.one(&xmap.Delete{IDs: []string{m1, c1}}))
	trash := a.folders()["Trash"]
	if trash.Total != 2 || a.message(m1).FolderID != trash.ID || slices.Contains(a.message(m1).Flags, xmap.FlagDeleted) {
		t.Errorf("after first delete: %+v %+v", trash, a.message(m1))
	}
	if n := OK[*xmap.ExpungeResult](t, a.one(&xmap.Expunge{Folder: byName("Trash")})).Count; n != 0 {
		t.Errorf("expunged %d without \\Deleted", n)
	}
	OK[*xmap.DeleteResult](t, a.one(&xmap.Delete{IDs: []string{m1, c1}}))
	if !slices.Contains(a.message(m1).Flags, xmap.FlagDeleted) {
		t.Error("second delete did not set \\Deleted")
	}
	// replace keeps \Deleted; moving out of Trash clears it.
	OK[*xmap.UpdateFlagsResult](t, upd(xmap.FlagsReplace, nil, c1))
	if g := flagsOf(a.message(c1)); g != `\Deleted` {
		t.Errorf("replace: %q", g)
	}
	OK[*xmap.MoveResult](t, a.one(&xmap.Move{Folder: byName("INBOX"), IDs: []string{c1}}))
	if g := a.message(c1); len(g.Flags) != 0 || g.FolderID != a.folders()["INBOX"].ID {
		t.Errorf("moved out of Trash: %+v", g)
	}
	if n := OK[*xmap.ExpungeResult](t, a.one(&xmap.Expunge{Folder: byName("Trash")})).Count; n != 1 {
		t.Errorf("expunged %d, want 1", n)
	}
	f = OK[*xmap.FetchResult](t, a.one(&xmap.Fetch{IDs: []string{m1}}))
	if len(f.Messages) != 0 || len(f.NotFound) != 1 {
		t.Errorf("expunged message still fetched: %+v", f)
	}
	Fails(t, a.one(&xmap.Move{Folder: byName("Nope"), IDs: []string{m2}}), xmap.CodeNotFound)
	Fails(t, a.one(&xmap.Expunge{Folder: byName("Nope")}), xmap.CodeNotFound)

	// Append.
	at := time.Date(2024, 12, 24, 18, 0, 0, 0, time.UTC)
	draft := Sealed("draft")
	ap := OK[*xmap.AppendResult](t, a.one(&xmap.Append{Folder: byName("Drafts"), Flags: []xmap.Flag{xmap.FlagDraft, xmap.FlagSeen}, Received: at, Body: draft, Summary: Sealed("sum")}))
	if m := ap.Message; flagsOf(m) != `\Seen \Draft` || !m.Received.Equal(at) || m.Size != int64(len(draft)) || m.Summary != nil || m.FolderID != a.folders()["Drafts"].ID {
		t.Errorf("append %+v", m)
	}
	if m := a.message(ap.Message.ID); Opened(m.Body) != "draft" || Opened(m.Summary) != "sum" {
		t.Errorf("appended %+v", m)
	}
	Fails(t, a.one(&xmap.Append{Folder: byName("Nope"), Body: Sealed("x")}), xmap.CodeNotFound)

	// Nothing readable is stored: a body or summary that is not an encrypted OpenPGP
	// message is refused (issue 9, item 10), and nothing is appended.
	drafts := a.folders()["Drafts"].Total
	literal := []byte{0xcb, 0x0b, 'b', 0, 0, 0, 0, 0, 'h', 'e', 'l', 'l', 'o'} // a literal data packet
	for _, c := range []*xmap.Append{
		{Folder: byName("Drafts"), Body: []byte("From: ceo@bank.example\r\n\r\nPay now.")},
		{Folder: byName("Drafts"), Body: literal},
		{Folder: byName("Drafts"), Body: append(Sealed("draft"), "trailing readable text"...)},
		{Folder: byName("Drafts"), Body: Sealed("draft"), Summary: []byte(`{"subject":"readable"}`)},
	} {
		Fails(t, a.one(c), xmap.CodeBadRequest)
	}
	if n := a.folders()["Drafts"].Total; n != drafts {
		t.Errorf("refused appends stored %d messages", n-drafts)
	}
}

// quotaForTest is the Quota testQuota runs with.
const quotaForTest = 2000

func testQuota(w *world) {
	t := w.t
	a := w.user(alice)
	// A big summary and a small body: a copy shares the body and adds its summary only.
	summary, body := Sealed(strings.Repeat("s", 900)), Sealed("b")
	used := int64(len(summary) + len(body))
	if 2*used <= quotaForTest || used+int64(len(summary)) <= quotaForTest || used > quotaForTest {
		t.Fatalf("test messages of %d and %d bytes do not fit the quota test", len(summary), len(body))
	}
	r := a.one(&xmap.Append{Folder: byName("INBOX"), Summary: summary, Body: body})
	m := OK[*xmap.AppendResult](t, r).Message
	Fails(t, a.one(&xmap.Append{Folder: byName("INBOX"), Summary: summary, Body: body}), xmap.CodeOverQuota)
	Fails(t, a.one(&xmap.Copy{Folder: byName("INBOX"), IDs: []string{m.ID}}), xmap.CodeOverQuota)
	Fails(t, a.one(&xmap.PutContact{Contact: xmap.Contact{Data: bytes.Repeat([]byte("c"), int(quotaForTest-used+1))}}), xmap.CodeOverQuota)
	OK[*xmap.PutContactResult](t, a.one(&xmap.PutContact{Contact: xmap.Contact{Data: bytes.Repeat([]byte("c"), int(quotaForTest-used))}}))
	OK[*xmap.DeleteResult](t, a.do(&xmap.Delete{IDs: []string{m.ID}}, &xmap.Delete{IDs: []string{m.ID}})[1])
	OK[*xmap.ExpungeResult](t, a.one(&xmap.Expunge{Folder: byName("Trash")}))
	OK[*xmap.AppendResult](t, a.one(&xmap.Append{Folder: byName("INBOX"), Summary: summary, Body: body}))
}

// testCopyLimit: a copy shares the body, and one copy may add at most MaxCopyBytes
// (each copy's summary plus 128 bytes); over it nothing is copied (issue 9, item 5).
func testCopyLimit(w *world) {
	t := w.t
	a := w.user(alice)
	summary := Sealed(strings.Repeat("s", 30_000))
	per := len(summary) + 128
	over := xmap.MaxCopyBytes/per + 1 // messages whose copy is just over the limit
	if over > xmap.MaxIDs || len(summary) > xmap.MaxSummarySize {
		t.Fatalf("a summary of %d bytes does not fit the copy-limit test", len(summary))
	}
	body := Sealed(strings.Repeat("b", 100_000))
	var ids []string
	for len(ids) < over {
		var cmds []xmap.Command
		for i := 0; i < min(xmap.MaxBatchSize, over-len(ids)); i++ {
			cmds = append(cmds, &xmap.Append{Folder: byName("INBOX"), Summary: summary, Body: body})
		}
		for _, r := range a.do(cmds...) {
			ids = append(ids, OK[*xmap.AppendResult](t, r).Message.ID)
		}
	}
	Fails(t, a.one(&xmap.Copy{Folder: byName("Drafts"), IDs: ids}), xmap.CodeLimitExceeded)
	if n := a.folders()["Drafts"].Total; n != 0 {
		t.Errorf("a refused copy stored %d messages", n)
	}
	c := OK[*xmap.CopyResult](t, a.one(&xmap.Copy{Folder: byName("Drafts"), IDs: ids[1:]}))
	if len(c.Copies) != over-1 || a.folders()["Drafts"].Total != over-1 {
		t.Errorf("copy at the limit: %d copies", len(c.Copies))
	}
	if cm := a.message(c.Copies[0].ID); Opened(cm.Body) != strings.Repeat("b", 100_000) {
		t.Error("a copy lost its body")
	}
}

func testContacts(w *world) {
	t := w.t
	a := w.user(alice)
	var ids []string
	for i := 0; i < 5; i++ {
		r := OK[*xmap.PutContactResult](t, a.one(&xmap.PutContact{Contact: xmap.Contact{Data: []byte(fmt.Sprint("c", i))}}))
		ids = append(ids, r.ID)
	}
	if r := OK[*xmap.PutContactResult](t, a.one(&xmap.PutContact{Contact: xmap.Contact{ID: ids[1], Data: []byte("new")}})); r.ID != ids[1] {
		t.Errorf("replace gave %s", r.ID)
	}
	Fails(t, a.one(&xmap.PutContact{Contact: xmap.Contact{ID: "777777", Data: []byte("x")}}), xmap.CodeNotFound)
	Fails(t, a.one(&xmap.PutContact{Contact: xmap.Contact{ID: "c1", Data: []byte("x")}}), xmap.CodeNotFound)
	OK[*xmap.DeleteContactResult](t, a.one(&xmap.DeleteContact{ID: ids[3]}))
	Fails(t, a.one(&xmap.DeleteContact{ID: ids[3]}), xmap.CodeNotFound)
	Fails(t, a.one(&xmap.DeleteContact{ID: "nope"}), xmap.CodeNotFound)

	var got []string
	cursor := ""
	for {
		res := OK[*xmap.ListContactsResult](t, a.one(&xmap.ListContacts{Limit: 2, Cursor: cursor}))
		if res.State != a.state() {
			t.Errorf("list-contacts state %s, want %s", res.State, a.state())
		}
		for _, c := range res.Contacts {
			got = append(got, c.ID+"="+string(c.Data))
		}
		if cursor = res.NextCursor; cursor == "" {
			break
		}
	}
	want := []string{ids[0] + "=c0", ids[1] + "=new", ids[2] + "=c2", ids[4] + "=c4"}
	if !slices.Equal(got, want) {
		t.Errorf("contacts %v, want %v", got, want)
	}
	Fails(t, a.one(&xmap.ListContacts{Cursor: "x"}), xmap.CodeBadRequest)
}

func testChangesAndWait(w *world) {
	t := w.t
	a := w.user(alice)
	s0 := a.state()
	m1 := w.deliver(alice, "one")
	m2 := w.deliver(alice, "two")
	s1 := a.state()
	m3 := w.deliver(alice, "three")
	OK[*xmap.UpdateFlagsResult](t, a.one(&xmap.UpdateFlags{Action: xmap.FlagsAdd, Flags: []xmap.Flag{xmap.FlagSeen}, IDs: []string{m1}}))
	a.do(&xmap.Delete{IDs: []string{m2}}, &xmap.Delete{IDs: []string{m2}}, &xmap.Expunge{Folder: byName("Trash")})
	folder := OK[*xmap.CreateFolderResult](t, a.one(&xmap.CreateFolder{FolderName: "F"})).Folder
	contact := OK[*xmap.PutContactResult](t, a.one(&xmap.PutContact{Contact: xmap.Contact{Data: []byte("c")}})).ID

	c := OK[*xmap.ChangesResult](t, a.one(&xmap.Changes{Since: s1}))
	if c.HasMore || c.State != a.state() ||
		!slices.Equal(refs(c.Created), refs([]xmap.ObjectRef{ref(xmap.KindMessage, m3), ref(xmap.KindFolder, folder.ID), ref(xmap.KindContact, contact)})) ||
		!slices.Equal(refs(c.Updated), []string{"message:" + m1}) ||
		!slices.Equal(refs(c.Destroyed), []string{"message:" + m2}) {
		t.Errorf("changes since %s: %+v", s1, c)
	}
	// From s0 in pages of 2: applying every page to what the client had at s0 (no
	// messages) gives exactly what is there now. A page may name an object destroyed
	// before the client saw it created (m2 here), which the client ignores.
	have := map[string]bool{}
	state, rounds := s0, 0
	for {
		rounds++
		c := OK[*xmap.ChangesResult](t, a.one(&xmap.Changes{Since: state, MaxChanges: 2}))
		if n := len(c.Created) + len(c.Updated) + len(c.Destroyed); n > 2 || (c.HasMore && n == 0) {
			t.Fatalf("page of %d changes: %+v", n, c)
		}
		for _, r := range slices.Concat(c.Created, c.Updated) {
			have[string(r.Kind)+":"+r.ID] = true
		}
		for _, r := range c.Destroyed {
			delete(have, string(r.Kind)+":"+r.ID)
		}
		state = c.State
		if !c.HasMore {
			break
		}
	}
	var final []string
	for k := range have {
		final = append(final, k)
	}
	slices.Sort(final)
	if exp := refs([]xmap.ObjectRef{ref(xmap.KindMessage, m1), ref(xmap.KindMessage, m3), ref(xmap.KindFolder, folder.ID), ref(xmap.KindContact, contact)}); rounds < 3 || state != a.state() || !slices.Equal(final, exp) {
		t.Errorf("paged changes from %s: have %v, want %v, after %d rounds", s0, final, exp, rounds)
	}
	c = OK[*xmap.ChangesResult](t, a.one(&xmap.Changes{Since: a.state()}))
	if c.HasMore || len(c.Created)+len(c.Updated)+len(c.Destroyed) != 0 || c.State != a.state() {
		t.Errorf("changes since now: %+v", c)
	}
	Fails(t, a.one(&xmap.Changes{Since: "99999"}), xmap.CodeResyncRequired)
	Fails(t, a.one(&xmap.Changes{Since: "abc"}), xmap.CodeResyncRequired)

	// A request that changes nothing moves no state.
	now := a.state()
	a.do(&xmap.UpdateFlags{Action: xmap.FlagsAdd, Flags: []xmap.Flag{xmap.FlagSeen}, IDs: []string{m1}},
		&xmap.Move{Folder: byName("INBOX"), IDs: []string{m1}},
		&xmap.Expunge{Folder: byName("INBOX")})
	if a.state() != now {
		t.Errorf("no-op requests moved the state from %s to %s", now, a.state())
	}

	// Wait.
	if r := OK[*xmap.WaitResult](t, a.one(&xmap.Wait{Since: now, Timeout: 0})); r.Changed || r.State != now {
		t.Errorf("wait 0: %+v", r)
	}
	if r := OK[*xmap.WaitResult](t, a.one(&xmap.Wait{Since: s0, Timeout: xmap.MaxWaitSeconds})); !r.Changed || r.State != now {
		t.Errorf("wait on an old state: %+v", r)
	}
	if r := OK[*xmap.WaitResult](t, a.one(&xmap.Wait{Since: now, Timeout: 1})); r.Changed || r.State != now {
		t.Errorf("wait timing out: %+v", r)
	}
	// Woken by a delivery, and by another session's request.
	for i, change := range []func(){
		func() { w.deliver(alice, "wake up") },
		func() {
			OK[*xmap.PutContactResult](t, a.one(&xmap.PutContact{Contact: xmap.Contact{Data: []byte("d")}}))
		},
	} {
		now := a.state()
		done := make(chan xmap.Response)
		go func() {
			done <- a.one(&xmap.Wait{Since: now, Timeout: xmap.MaxWaitSeconds})
		}()
		change()
		if r := OK[*xmap.WaitResult](t, <-done); !r.Changed || r.State == now || r.State != a.state() {
			t.Errorf("wait %d woken: %+v", i, r)
		}
	}
}

// testBatch: a failing request in the middle does not stop the others, and they run in order.
func testBatch(w *world) {
	t := w.t
	a := w.user(alice)
	rs := a.do(
		&xmap.CreateFolder{FolderName: "A"},
		&xmap.Move{Folder: byName("A"), IDs: []string{"123456"}},
		&xmap.CreateFolder{FolderName: "A"},
		&xmap.RenameFolder{Folder: byName("A"), NewName: "B"},
		&xmap.ListFolders{},
	)
	OK[*xmap.CreateFolderResult](t, rs[0])
	Fails(t, rs[1], xmap.CodeNotFound)
	Fails(t, rs[2], xmap.CodeConflict)
	OK[*xmap.RenameFolderResult](t, rs[3])
	var names []string
	for _, f := range OK[*xmap.ListFoldersResult](t, rs[4]).Folders {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, []string{"INBOX", "Sent", "Drafts", "Trash", "Junk", "B"}) {
		t.Errorf("folders %v", names)
	}
}

// testIsolation: bob tries every folder, message, contact and sync request with alice's
// ids and folder names. Where such an id is not also one of bob's own (storage may number
// each account from 1), the request finds nothing; either way nothing of alice's is
// reachable, and nothing of hers changes.
func testIsolation(w *world) {
	t := w.t
	a := w.user(alice)
	b := w.user(bob)
	ctx := context.Background()
	OK[*xmap.CreateFolderResult](t, a.one(&xmap.CreateFolder{FolderName: "Secret"}))
	OK[*xmap.CreateFolderResult](t, a.one(&xmap.CreateFolder{FolderName: "Other"}))
	var msgs []string
	for i := 0; i < 6; i++ {
		msgs = append(msgs, w.deliver(alice, fmt.Sprintf("alice's mail %d", i)))
	}
	OK[*xmap.MoveResult](t, a.one(&xmap.Move{Folder: byName("Secret"), IDs: msgs[:2]}))
	a.do(&xmap.Delete{IDs: msgs[2:3]}, &xmap.Delete{IDs: msgs[2:3]})
	OK[*xmap.UpdateFlagsResult](t, a.one(&xmap.UpdateFlags{Action: xmap.FlagsAdd, Flags: []xmap.Flag{xmap.FlagSeen, "$secret"}, IDs: msgs[3:5]}))
	var contacts []string
	for i := 0; i < 3; i++ {
		contacts = append(contacts, OK[*xmap.PutContactResult](t, a.one(&xmap.PutContact{Contact: xmap.Contact{Data: []byte(fmt.Sprint("alice's friend ", i))}})).ID)
	}
	own := w.deliver(bob, "bob's mail")
	OK[*xmap.PutContactResult](t, b.one(&xmap.PutContact{Contact: xmap.Contact{Data: []byte("bob's friend")}}))

	var aliceFolders []string
	for _, f := range a.folders() {
		aliceFolders = append(aliceFolders, f.ID)
	}
	before := a.dump()
	snap, _ := w.fx.(Snapshotter)
	var rawBefore string
	if snap != nil {
		var err error
		if rawBefore, err = snap.Snapshot(ctx, alice); err != nil {
			t.Fatal(err)
		}
	}

	// What bob has of each kind, to tell an id that is also bob's from one that is not.
	bobs := func() (folders, messages, contacts map[string]bool) {
		folders, messages, contacts = map[string]bool{}, map[string]bool{}, map[string]bool{}
		for _, f := range b.folders() {
			folders[f.ID] = true
			for _, m := range b.list(byID(f.ID)) {
				messages[m.ID] = true
			}
		}
		for _, c := range b.contacts() {
			contacts[c.ID] = true
		}
		return
	}
	notFound := func(r xmap.Response, what string) {
		t.Helper()
		if r.Err == nil || r.Err.Code != xmap.CodeNotFound {
			t.Errorf("bob's %s with alice's %s: %+v %v, want not-found", r.Name, what, r.Result, r.Err)
		}
	}
	// Newest first: a copy bob makes of his own message takes his next id, which then
	// is no longer one of alice's that bob lacks.
	for _, mid := range slices.Backward(msgs) {
		_, bobMsgs, _ := bobs()
		f := OK[*xmap.FetchResult](t, b.one(&xmap.Fetch{IDs: []string{mid}, Parts: xmap.PartSummary | xmap.PartBody}))
		for _, m := range f.Messages {
			if bytes.Contains(m.Body, []byte("alice")) {
				t.Errorf("bob fetched alice's message %s", mid)
			}
		}
		cmds := []xmap.Command{
			&xmap.UpdateFlags{Action: xmap.FlagsAdd, Flags: []xmap.Flag{xmap.FlagFlagged}, IDs: []string{mid}},
			&xmap.Move{Folder: byName("Junk"), IDs: []string{mid}},
			&xmap.Copy{Folder: byName("Junk"), IDs: []string{mid}},
			&xmap.Delete{IDs: []string{mid}},
		}
		for _, c := range cmds {
			r := b.one(c)
			if !bobMsgs[mid] {
				notFound(r, "message "+mid)
			}
		}
		if !bobMsgs[mid] && (len(f.Messages) != 0 || !slices.Equal(f.NotFound, []string{mid})) {
			t.Errorf("bob's fetch of alice's %s: %+v", mid, f)
		}
	}
	for _, fid := range aliceFolders {
		bobFolders, _, _ := bobs()
		cmds := []xmap.Command{
			&xmap.ListMessages{Folder: byID(fid)},
			&xmap.Expunge{Folder: byID(fid)},
			&xmap.Append{Folder: byID(fid), Body: Sealed("bob's append")},
			&xmap.Move{Folder: byID(fid), IDs: []string{own}},
			&xmap.Copy{Folder: byID(fid), IDs: []string{own}},
			&xmap.RenameFolder{Folder: byID(fid), NewName: "Bob renamed " + fid},
			&xmap.DeleteFolder{Folder: byID(fid)},
		}
		for _, c := range cmds {
			r := b.one(c)
			if lm, isList := r.Result.(*xmap.ListMessagesResult); isList {
				for _, m := range lm.Messages {
					if bytes.Contains(m.Summary, []byte("alice")) {
						t.Errorf("bob listed alice's message %s", m.ID)
					}
				}
			}
			if !bobFolders[fid] {
				notFound(r, "folder "+fid)
			}
		}
	}
	// By name: alice's folders do not exist for bob.
	for _, name := range []string{"Secret", "Other"} {
		for _, c := range []xmap.Command{
			&xmap.ListMessages{Folder: byName(name)},
			&xmap.RenameFolder{Folder: byName(name), NewName: "Mine"},
			&xmap.DeleteFolder{Folder: byName(name)},
			&xmap.Expunge{Folder: byName(name)},
			&xmap.Move{Folder: byName(name), IDs: []string{own}},
			&xmap.Copy{Folder: byName(name), IDs: []string{own}},
			&xmap.Append{Folder: byName(name), Body: Sealed("x")},
		} {
			notFound(b.one(c), "folder "+name)
		}
	}
	for _, cid := range slices.Backward(contacts) {
		_, _, bobContacts := bobs()
		for _, c := range []xmap.Command{
			&xmap.PutContact{Contact: xmap.Contact{ID: cid, Data: []byte("bob's data")}},
			&xmap.DeleteContact{ID: cid},
		} {
			if r := b.one(c); !bobContacts[cid] {
				notFound(r, "contact "+cid)
			}
		}
	}
	// Bob's listings, changes and waits show nothing of alice's.
	for name := range b.folders() {
		if name == "Secret" || name == "Other" {
			t.Errorf("bob sees alice's folder %s", name)
		}
	}
	for _, c := range b.contacts() {
		if bytes.Contains(c.Data, []byte("alice")) {
			t.Errorf("bob lists alice's contact %s", c.ID)
		}
	}
	c := OK[*xmap.ChangesResult](t, b.one(&xmap.Changes{Since: "0", MaxChanges: xmap.MaxChanges}))
	var ids []string
	for _, o := range slices.Concat(c.Created, c.Updated) {
		if o.Kind == xmap.KindMessage {
			ids = append(ids, o.ID)
		}
	}
	if len(ids) > 0 {
		for _, m := range OK[*xmap.FetchResult](t, b.one(&xmap.Fetch{IDs: ids, Parts: xmap.PartSummary | xmap.PartBody})).Messages {
			if bytes.Contains(m.Body, []byte("alice")) || bytes.Contains(m.Summary, []byte("alice")) {
				t.Errorf("bob's changes lead to alice's message %s", m.ID)
			}
		}
	}
	if r := OK[*xmap.WaitResult](t, b.one(&xmap.Wait{Since: a.state(), Timeout: 0})); r.State != b.state() {
		t.Errorf("bob's wait answered %s, bob's state is %s", r.State, b.state())
	}

	// Nothing of alice's changed.
	if after := a.dump(); after != before {
		t.Errorf("alice's account changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if snap != nil {
		rawAfter, err := snap.Snapshot(ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		if rawAfter != rawBefore {
			t.Errorf("alice's storage changed:\nbefore:\n%s\nafter:\n%s", rawBefore, rawAfter)
		}
	}
}

// testFetchBudget: fetch defers what does not fit in the response, always takes at least
// one message, and requests after the budget is spent are not run.
func testFetchBudget(w *world) {
	t := w.t
	a := w.user(alice)
	body := bytes.Repeat([]byte{0xa5}, 5<<20)
	var ids []string
	for i := 0; i < 8; i++ {
		ids = append(ids, w.deliverAt(alice, body, []byte("s"), w.now.Add(time.Duration(i)*time.Second)))
	}
	f := OK[*xmap.FetchResult](t, a.one(&xmap.Fetch{IDs: ids}))
	if len(f.Messages) == 0 || len(f.Deferred) == 0 || len(f.Messages)+len(f.Deferred) != len(ids) || len(f.NotFound) != 0 {
		t.Fatalf("fetched %d, deferred %v, not found %v", len(f.Messages), f.Deferred, f.NotFound)
	}
	got := append(idsOf(f.Messages), f.Deferred...)
	if !slices.Equal(got, ids) {
		t.Errorf("fetched then deferred %v, want %v", got, ids)
	}
	// Summaries alone all fit.
	if f := OK[*xmap.FetchResult](t, a.one(&xmap.Fetch{IDs: ids, Parts: xmap.PartSummary})); len(f.Messages) != len(ids) {
		t.Errorf("summaries: fetched %d, deferred %d", len(f.Messages), len(f.Deferred))
	}

	// Two fetches of one big message each: both run (a fetch always makes progress),
	// then the budget is spent and the last request does not run.
	big := bytes.Repeat([]byte{0x5a}, xmap.MaxMessageSize)
	b1 := w.deliverAt(alice, big, []byte("s1"), w.now)
	b2 := w.deliverAt(alice, big, []byte("s2"), w.now)
	doc := fmt.Sprintf(`<xmap xmlns="urn:cryptomail:xmap:1" version="1"><fetch id="a"><id>%s</id></fetch><fetch id="b"><id>%s</id></fetch><create-folder id="c" name="Late"/></xmap>`, b1, b2)
	out := a.raw([]byte(doc))
	if len(out) > xmap.MaxResponseSize {
		t.Fatalf("response of %d bytes", len(out))
	}
	resp, err := xmap.DecodeResponse(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if r := OK[*xmap.FetchResult](t, resp.Responses[i]); len(r.Messages) != 1 || !bytes.Equal(r.Messages[0].Body, big) {
			t.Errorf("fetch %d: %d messages, deferred %v", i, len(r.Messages), r.Deferred)
		}
	}
	Fails(t, resp.Responses[2], xmap.CodeTooLarge)
	if _, there := a.folders()["Late"]; there {
		t.Error("a request past the budget ran")
	}
}

// testAppendSize: an appended body is stored as it is, so the size rule for append is
// xmap.MaxMessageSize itself: a body of exactly that size is stored and fetched back
// whole; one byte more is too-large and nothing is stored.
func testAppendSize(w *world) {
	t := w.t
	a := w.user(alice)
	before := a.folders()["INBOX"].Total

	over := base64.StdEncoding.EncodeToString(make([]byte, xmap.MaxMessageSize+1))
	doc := `<xmap xmlns="urn:cryptomail:xmap:1" version="1"><append id="a" folder="INBOX"><body>` + over + `</body></append></xmap>`
	resp, err := xmap.DecodeResponse(bytes.NewReader(a.raw([]byte(doc))))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Error == nil || resp.Error.Code != xmap.CodeTooLarge {
		t.Errorf("append one byte over xmap.MaxMessageSize: %+v, want too-large", resp.Error)
	}
	if n := a.folders()["INBOX"].Total; n != before {
		t.Fatalf("a refused append stored %d messages", n-before)
	}

	// A real encrypted message of exactly xmap.MaxMessageSize bytes.
	n := xmap.MaxMessageSize - len(Sealed(""))
	var body []byte
	for range 4 {
		body = Sealed(strings.Repeat("a", n))
		if len(body) == xmap.MaxMessageSize {
			break
		}
		n -= len(body) - xmap.MaxMessageSize
	}
	if len(body) != xmap.MaxMessageSize {
		t.Fatalf("could not seal a message of %d bytes", xmap.MaxMessageSize)
	}
	m := OK[*xmap.AppendResult](t, a.one(&xmap.Append{Folder: byName("INBOX"), Body: body})).Message
	f := OK[*xmap.FetchResult](t, a.one(&xmap.Fetch{IDs: []string{m.ID}, Parts: xmap.PartBody}))
	if len(f.Messages) != 1 || !bytes.Equal(f.Messages[0].Body, body) {
		t.Errorf("fetched %d messages, deferred %v, not the appended body", len(f.Messages), f.Deferred)
	}
}

// testConcurrentSessions runs sessions of several users at once (run with -race): each
// user's data stays its own and waits wake up.
func testConcurrentSessions(w *world) {
	t := w.t
	users := []string{"u0@example.org", "u1@example.org", "u2@example.org", "u3@example.org"}
	var sessions []*session
	for _, u := range users {
		sessions = append(sessions, w.user(u))
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(users)*2)
	for i, u := range users {
		s := sessions[i]
		start := s.state()
		wg.Add(2)
		go func() {
			defer wg.Done()
			r := s.one(&xmap.Wait{Since: start, Timeout: xmap.MaxWaitSeconds})
			if r.Err != nil || !r.Result.(*xmap.WaitResult).Changed {
				errs <- fmt.Errorf("%s: wait %+v", u, r)
			}
		}()
		body := Sealed(u)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				r := s.one(&xmap.Append{Folder: byName("INBOX"), Body: body})
				if r.Err != nil {
					errs <- fmt.Errorf("%s: append %v", u, r.Err)
					return
				}
				id := r.Result.(*xmap.AppendResult).Message.ID
				for _, r := range s.do(&xmap.UpdateFlags{Action: xmap.FlagsAdd, Flags: []xmap.Flag{xmap.FlagSeen}, IDs: []string{id}}, &xmap.Delete{IDs: []string{id}}) {
					if r.Err != nil {
						errs <- fmt.Errorf("%s: %s %v", u, r.Name, r.Err)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, u := range users {
		s := sessions[i]
		trash := s.list(byName("Trash"))
		if len(trash) != 20 {
			t.Errorf("%s: %d in Trash", u, len(trash))
		}
		for _, m := range trash {
			if Opened(s.message(m.ID).Body) != u {
				t.Errorf("%s sees another user's message %s", u, m.ID)
			}
		}
		if fs := s.folders(); fs["Trash"].Total != 20 || fs["Trash"].Unseen != 0 || fs["INBOX"].Total != 0 {
			t.Errorf("%s: counts %+v", u, fs)
		}
	}
}

// testSummaryOrigin: every message says who made its summary (docs/XMAP.md,
// "Summary origin"): the server for delivered mail, the owner for append,
// and a move or a copy keeps it, in listings and fetches alike.
func testSummaryOrigin(w *world) {
	t := w.t
	a := w.user(alice)
	delivered := w.deliver(alice, "arrived")
	appended := OK[*xmap.AppendResult](t, a.one(&xmap.Append{Folder: byName("Drafts"), Body: Sealed("draft"), Summary: Sealed("my summary")}))
	if appended.Message.SummaryBy != xmap.SummaryByOwner {
		t.Errorf("append result: summary-by %q, want owner", appended.Message.SummaryBy)
	}
	want := map[string]xmap.SummaryOrigin{delivered: xmap.SummaryByServer, appended.Message.ID: xmap.SummaryByOwner}
	cp := OK[*xmap.CopyResult](t, a.one(&xmap.Copy{Folder: byName("Junk"), IDs: []string{delivered, appended.Message.ID}}))
	for _, c := range cp.Copies {
		want[c.ID] = want[c.From]
	}
	OK[*xmap.MoveResult](t, a.one(&xmap.Move{Folder: byName("Trash"), IDs: []string{delivered}}))
	for _, f := range []string{"INBOX", "Drafts", "Junk", "Trash"} {
		for _, m := range a.list(byName(f)) {
			if m.SummaryBy != want[m.ID] {
				t.Errorf("list %s: message %s summary-by %q, want %q", f, m.ID, m.SummaryBy, want[m.ID])
			}
		}
	}
	for id, by := range want {
		if m := a.message(id); m.SummaryBy != by {
			t.Errorf("fetch %s: summary-by %q, want %q", id, m.SummaryBy, by)
		}
	}
}
