package xmapserver_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cryptomail/xmap"
	"cryptomail/xmap/xmapserver"
	"cryptomail/xmap/xmapserver/memback"
)

func flagsOf(m xmap.Message) string {
	s := make([]string, len(m.Flags))
	for i, f := range m.Flags {
		s[i] = string(f)
	}
	return strings.Join(s, " ")
}

func ref(kind xmap.Kind, id string) xmap.ObjectRef { return xmap.ObjectRef{Kind: kind, ID: id} }

func idsOf(ms []xmap.Message) []string {
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	return ids
}

func TestAccounts(t *testing.T) {
	w := newWorld(t, memback.Options{})
	anon := w.anon()

	// Salt lookup for unknown addresses: made up, stable, different per address.
	salt := func(addr string) xmap.KDF {
		return ok[*xmap.SaltLookupResult](t, anon.one(&xmap.SaltLookup{Address: addr})).KDF
	}
	s1, s2, s3 := salt("ghost@example.org"), salt("ghost@example.org"), salt("other@example.org")
	if !bytes.Equal(s1.Salt, s2.Salt) || bytes.Equal(s1.Salt, s3.Salt) || len(s1.Salt) < xmap.MinSaltSize {
		t.Errorf("fake salts %x %x %x", s1.Salt, s2.Salt, s3.Salt)
	}

	w.b.AddInvite("good", "alice@example.org", w.clock.now().Add(time.Hour))
	w.b.AddInvite("late", "late@example.org", w.clock.now().Add(-time.Second))
	fails(t, anon.one(signupReq("nope", "alice@example.org", []byte("k"))), xmap.CodeInvalidInvite)
	fails(t, anon.one(signupReq("good", "mallory@example.org", []byte("k"))), xmap.CodeInvalidInvite)
	fails(t, anon.one(signupReq("late", "late@example.org", []byte("k"))), xmap.CodeExpired)
	ok[*xmap.SignupResult](t, anon.one(signupReq("good", "Alice@Example.org", []byte("alice key"))))
	fails(t, anon.one(signupReq("good", "alice@example.org", []byte("alice key"))), xmap.CodeInvalidInvite) // used
	w.b.AddInvite("again", "alice@example.org", w.clock.now().Add(time.Hour))
	fails(t, anon.one(signupReq("again", "alice@example.org", []byte("alice key"))), xmap.CodeConflict)

	// Known address: the stored parameters.
	if k := salt("alice@example.org"); !bytes.Equal(k.Salt, bytes.Repeat([]byte{1}, 16)) || k.Memory != 65536 {
		t.Errorf("alice's KDF %+v", k)
	}

	// A pre-created account activates only with its own public key, and keeps its mail.
	if err := w.b.AddUser("carol@example.org", []byte("carol key")); err != nil {
		t.Fatal(err)
	}
	w.deliver("carol@example.org", "early mail")
	w.b.AddInvite("c1", "carol@example.org", w.clock.now().Add(time.Hour))
	fails(t, anon.one(signupReq("c1", "carol@example.org", []byte("another key"))), xmap.CodeConflict)
	ok[*xmap.SignupResult](t, anon.one(signupReq("c1", "carol@example.org", []byte("carol key"))))
	if got := w.as("carol@example.org").list("INBOX"); len(got) != 1 {
		t.Errorf("carol's INBOX after activation: %+v", got)
	}

	// Passphrase change replaces all three in one go.
	alice := w.as("alice@example.org")
	ok[*xmap.ChangePassphraseResult](t, alice.one(&xmap.ChangePassphrase{
		LoginKey:  bytes.Repeat([]byte{9}, 32),
		KDF:       xmap.KDF{Alg: xmap.KDFArgon2id, Salt: bytes.Repeat([]byte{2}, 16), Time: 4, Memory: 1 << 17, Threads: 2},
		SealedKey: []byte("resealed"),
	}))
	cr, _ := w.b.Credentials("alice@example.org")
	if cr.LoginKey[0] != 9 || cr.KDF.Time != 4 || string(cr.SealedKey) != "resealed" || !cr.Active {
		t.Errorf("credentials after change: %+v", cr)
	}

	// Public keys of local accounts only.
	pk := ok[*xmap.PublicKeysResult](t, alice.one(&xmap.PublicKeys{Addresses: []string{"Carol@example.org", "ghost@example.org", "x@remote.example"}}))
	if len(pk.Keys) != 1 || pk.Keys[0].Address != "Carol@example.org" || string(pk.Keys[0].Key) != "carol key" ||
		!slices.Equal(pk.NotFound, []string{"ghost@example.org", "x@remote.example"}) {
		t.Errorf("public keys %+v", pk)
	}

	// Logout: the rest of the batch is refused, and Serve tells the transport.
	rs := alice.do(&xmap.ListFolders{}, &xmap.Logout{}, &xmap.ListFolders{})
	ok[*xmap.ListFoldersResult](t, rs[0])
	ok[*xmap.LogoutResult](t, rs[1])
	fails(t, rs[2], xmap.CodeDenied)
	for _, tc := range []struct {
		user, doc string
		out       bool
	}{
		{"alice@example.org", `<logout id="a"/>`, true},
		{"alice@example.org", `<list-folders id="a"/>`, false},
		{"", `<logout id="a"/>`, false}, // anonymous: denied, so no logout
	} {
		doc := `<xmap xmlns="urn:cryptomail:xmap:1" version="1">` + tc.doc + `</xmap>`
		if _, out := w.srv.Serve(context.Background(), tc.user, tc.user == "", []byte(doc)); out != tc.out {
			t.Errorf("%s %s: logged out %v, want %v", tc.user, tc.doc, out, tc.out)
		}
	}
}

func TestFolders(t *testing.T) {
	w := newWorld(t, memback.Options{MaxFolders: 7})
	a := w.signup("alice@example.org")
	fs := a.folders()
	for _, sf := range xmap.SystemFolders {
		if f := fs[sf.Name]; f.Role != sf.Role {
			t.Errorf("system folder %s: %+v", sf.Name, f)
		}
	}
	p := ok[*xmap.CreateFolderResult](t, a.one(&xmap.CreateFolder{FolderName: "Projects"})).Folder
	fails(t, a.one(&xmap.CreateFolder{FolderName: "Projects"}), xmap.CodeConflict)
	fails(t, a.one(&xmap.CreateFolder{FolderName: "trash"}), xmap.CodeConflict)
	ok[*xmap.CreateFolderResult](t, a.one(&xmap.CreateFolder{FolderName: "Two"}))
	fails(t, a.one(&xmap.CreateFolder{FolderName: "Three"}), xmap.CodeOverQuota)

	r := ok[*xmap.RenameFolderResult](t, a.one(&xmap.RenameFolder{Folder: byID(p.ID), NewName: "Work"})).Folder
	if r.ID != p.ID || r.Name != "Work" {
		t.Errorf("renamed %+v", r)
	}
	fails(t, a.one(&xmap.RenameFolder{Folder: byName("Work"), NewName: "Two"}), xmap.CodeConflict)
	fails(t, a.one(&xmap.RenameFolder{Folder: byName("Work"), NewName: "Junk"}), xmap.CodeConflict)
	fails(t, a.one(&xmap.RenameFolder{Folder: byName("Projects"), NewName: "X"}), xmap.CodeNotFound)
	for _, sf := range xmap.SystemFolders {
		fails(t, a.one(&xmap.RenameFolder{Folder: byName(sf.Name), NewName: "X"}), xmap.CodeDenied)
		fails(t, a.one(&xmap.DeleteFolder{Folder: byName(sf.Name)}), xmap.CodeDenied)
	}

	// Deleting a folder moves its messages to Trash.
	id := w.deliver("alice@example.org", "m1")
	ok[*xmap.MoveResult](t, a.one(&xmap.Move{Folder: byName("Work"), IDs: []string{id}}))
	ok[*xmap.DeleteFolderResult](t, a.one(&xmap.DeleteFolder{Folder: byID(p.ID)}))
	fs = a.folders()
	if _, there := fs["Work"]; there || fs["Trash"].Total != 1 || fs["Trash"].Unseen != 1 {
		t.Errorf("after delete: %+v", fs)
	}
	if m := a.message(id); m.FolderID != fs["Trash"].ID {
		t.Errorf("message in %s", m.FolderID)
	}
	fails(t, a.one(&xmap.DeleteFolder{Folder: byID(p.ID)}), xmap.CodeNotFound)
}

func TestListMessagesPaging(t *testing.T) {
	w := newWorld(t, memback.Options{})
	a := w.signup("alice@example.org")
	var want []string
	for i := 0; i < 7; i++ {
		want = append(want, w.deliver("alice@example.org", fmt.Sprintf("m%d", i)))
	}
	listAll := func(sort xmap.Sort, between func()) []string {
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("paging does not end")
			}
			res := ok[*xmap.ListMessagesResult](t, a.one(&xmap.ListMessages{Folder: byName("INBOX"), Sort: sort, Limit: 3, Cursor: cursor}))
			if len(res.Messages) > 3 || res.Total < len(want) {
				t.Fatalf("page %+v", res)
			}
			for _, m := range res.Messages {
				if m.Body != nil || string(m.Summary) == "" {
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
		w.deliver("alice@example.org", "new mail")
		w.clock.add(-24 * time.Hour)
		old = w.deliver("alice@example.org", "old mail")
		w.clock.add(24 * time.Hour)
	})
	if exp := append(slices.Clone(desc), old); !slices.Equal(got, exp) {
		t.Errorf("listing with arrivals: %v, want %v", got, exp)
	}
	fails(t, a.one(&xmap.ListMessages{Folder: byName("INBOX"), Cursor: "bogus"}), xmap.CodeBadRequest)
	res := ok[*xmap.ListMessagesResult](t, a.one(&xmap.ListMessages{Folder: byName("INBOX"), Sort: xmap.SortReceivedAsc, Limit: 1}))
	fails(t, a.one(&xmap.ListMessages{Folder: byName("INBOX"), Sort: xmap.SortReceivedDesc, Cursor: res.NextCursor}), xmap.CodeBadRequest)
	fails(t, a.one(&xmap.ListMessages{Folder: byName("Sent"), Sort: xmap.SortReceivedAsc, Cursor: res.NextCursor}), xmap.CodeBadRequest)
	fails(t, a.one(&xmap.ListMessages{Folder: byName("Nope")}), xmap.CodeNotFound)
}

func TestMessages(t *testing.T) {
	w := newWorld(t, memback.Options{})
	a := w.signup("alice@example.org")
	m1 := w.deliver("alice@example.org", "one")
	m2 := w.deliver("alice@example.org", "two")

	// Fetch parts.
	f := ok[*xmap.FetchResult](t, a.one(&xmap.Fetch{IDs: []string{m1, "424242", m2}}))
	if len(f.Messages) != 2 || string(f.Messages[0].Body) != "one" || f.Messages[0].Summary != nil || !slices.Equal(f.NotFound, []string{"424242"}) {
		t.Errorf("fetch %+v", f)
	}
	f = ok[*xmap.FetchResult](t, a.one(&xmap.Fetch{IDs: []string{m2}, Parts: xmap.PartSummary}))
	if string(f.Messages[0].Summary) != "summary of two" || f.Messages[0].Body != nil || f.Messages[0].Size != 3 {
		t.Errorf("fetch summary %+v", f)
	}

	// Flags.
	upd := func(action xmap.FlagAction, flags []xmap.Flag, ids ...string) xmap.Response {
		return a.one(&xmap.UpdateFlags{Action: action, Flags: flags, IDs: ids})
	}
	ok[*xmap.UpdateFlagsResult](t, upd(xmap.FlagsAdd, []xmap.Flag{xmap.FlagSeen, "$work", xmap.FlagFlagged}, m1, m2))
	ok[*xmap.UpdateFlagsResult](t, upd(xmap.FlagsRemove, []xmap.Flag{xmap.FlagFlagged}, m2))
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
	fails(t, upd(xmap.FlagsAdd, []xmap.Flag{xmap.FlagAnswered}, m1, "999999"), xmap.CodeNotFound)
	if a.state() != before || flagsOf(a.message(m1)) != `\Seen \Flagged $work` {
		t.Error("failed update-flags changed something")
	}
	var many []xmap.Flag
	for i := 0; i < xmap.MaxFlags; i++ {
		many = append(many, xmap.Flag(fmt.Sprintf("k%d", i)))
	}
	fails(t, upd(xmap.FlagsAdd, many, m1), xmap.CodeLimitExceeded)

	// Copy, then delete to Trash, delete again (\Deleted), expunge.
	cp := ok[*xmap.CopyResult](t, a.one(&xmap.Copy{Folder: byName("Drafts"), IDs: []string{m1}}))
	if len(cp.Copies) != 1 || cp.Copies[0].From != m1 || cp.Copies[0].ID == m1 {
		t.Fatalf("copy %+v", cp)
	}
	c1 := cp.Copies[0].ID
	if m := a.message(c1); string(m.Body) != "one" || flagsOf(m) != `\Seen \Flagged $work` {
		t.Errorf("copy %+v", m)
	}
	ok[*xmap.DeleteResult](t, a.one(&xmap.Delete{IDs: []string{m1, c1}}))
	trash := a.folders()["Trash"]
	if trash.Total != 2 || a.message(m1).FolderID != trash.ID || slices.Contains(a.message(m1).Flags, xmap.FlagDeleted) {
		t.Errorf("after first delete: %+v %+v", trash, a.message(m1))
	}
	if n := ok[*xmap.ExpungeResult](t, a.one(&xmap.Expunge{Folder: byName("Trash")})).Count; n != 0 {
		t.Errorf("expunged %d without \\Deleted", n)
	}
	ok[*xmap.DeleteResult](t, a.one(&xmap.Delete{IDs: []string{m1, c1}}))
	if !slices.Contains(a.message(m1).Flags, xmap.FlagDeleted) {
		t.Error("second delete did not set \\Deleted")
	}
	// replace keeps \Deleted; moving out of Trash clears it.
	ok[*xmap.UpdateFlagsResult](t, upd(xmap.FlagsReplace, nil, c1))
	if g := flagsOf(a.message(c1)); g != `\Deleted` {
		t.Errorf("replace: %q", g)
	}
	ok[*xmap.MoveResult](t, a.one(&xmap.Move{Folder: byName("INBOX"), IDs: []string{c1}}))
	if g := a.message(c1); len(g.Flags) != 0 || g.FolderID != a.folders()["INBOX"].ID {
		t.Errorf("moved out of Trash: %+v", g)
	}
	if n := ok[*xmap.ExpungeResult](t, a.one(&xmap.Expunge{Folder: byName("Trash")})).Count; n != 1 {
		t.Errorf("expunged %d, want 1", n)
	}
	f = ok[*xmap.FetchResult](t, a.one(&xmap.Fetch{IDs: []string{m1}}))
	if len(f.Messages) != 0 || len(f.NotFound) != 1 {
		t.Errorf("expunged message still fetched: %+v", f)
	}
	fails(t, a.one(&xmap.Move{Folder: byName("Nope"), IDs: []string{m2}}), xmap.CodeNotFound)

	// Append.
	at := time.Date(2024, 12, 24, 18, 0, 0, 0, time.UTC)
	ap := ok[*xmap.AppendResult](t, a.one(&xmap.Append{Folder: byName("Drafts"), Flags: []xmap.Flag{xmap.FlagDraft, xmap.FlagSeen}, Received: at, Body: []byte("draft"), Summary: []byte("sum")}))
	if m := ap.Message; flagsOf(m) != `\Seen \Draft` || !m.Received.Equal(at) || m.Size != 5 || m.Summary != nil || m.FolderID != a.folders()["Drafts"].ID {
		t.Errorf("append %+v", m)
	}
	if m := a.message(ap.Message.ID); string(m.Body) != "draft" || string(m.Summary) != "sum" {
		t.Errorf("appended %+v", m)
	}
}

func TestQuota(t *testing.T) {
	w := newWorld(t, memback.Options{Quota: 100})
	a := w.signup("alice@example.org")
	r := a.one(&xmap.Append{Folder: byName("INBOX"), Body: bytes.Repeat([]byte("x"), 60)})
	m := ok[*xmap.AppendResult](t, r).Message
	fails(t, a.one(&xmap.Append{Folder: byName("INBOX"), Body: bytes.Repeat([]byte("x"), 60)}), xmap.CodeOverQuota)
	fails(t, a.one(&xmap.Copy{Folder: byName("INBOX"), IDs: []string{m.ID}}), xmap.CodeOverQuota)
	ok[*xmap.DeleteResult](t, a.do(&xmap.Delete{IDs: []string{m.ID}}, &xmap.Delete{IDs: []string{m.ID}})[1])
	ok[*xmap.ExpungeResult](t, a.one(&xmap.Expunge{Folder: byName("Trash")}))
	ok[*xmap.AppendResult](t, a.one(&xmap.Append{Folder: byName("INBOX"), Body: bytes.Repeat([]byte("x"), 60)}))
}

func TestSend(t *testing.T) {
	w := newWorld(t, memback.Options{})
	a := w.signup("alice@example.org")
	b := w.signup("bob@example.org")
	send := func(rcpts ...xmap.Recipient) xmap.Response {
		s := &xmap.Send{Recipients: rcpts, Body: []byte("pgp/mime"), SentSummary: []byte("sent sum")}
		for _, r := range rcpts {
			if !r.Encrypted {
				s.PlaintextBody = []byte("readable")
			}
		}
		return a.one(s)
	}
	enc := func(addr string) xmap.Recipient { return xmap.Recipient{Address: addr, Encrypted: true} }
	before := a.state()

	// Refusals change nothing anywhere.
	fails(t, send(enc("bob@example.org"), xmap.Recipient{Address: "carol@remote.example"}), xmap.CodePlaintextRefused)
	fails(t, send(xmap.Recipient{Address: "bob@example.org", AllowPlaintext: true}), xmap.CodePlaintextRefused)
	fails(t, send(enc("bob@example.org"), enc("nobody@example.org")), xmap.CodeInvalidRecipient)
	if a.state() != before || len(b.list("INBOX")) != 0 || len(w.b.Outbox()) != 0 {
		t.Fatal("a refused send changed something")
	}

	r := ok[*xmap.SendResult](t, send(
		xmap.Recipient{Address: "bob@example.org", Encrypted: true, Summary: []byte("bob sum")},
		enc("dave@remote.example"),
		xmap.Recipient{Address: "carol@remote.example", AllowPlaintext: true},
	))
	want := []xmap.RecipientStatus{
		{Address: "bob@example.org", Status: xmap.StatusDelivered},
		{Address: "dave@remote.example", Status: xmap.StatusQueued},
		{Address: "carol@remote.example", Status: xmap.StatusQueued},
	}
	if !slices.Equal(r.Recipients, want) {
		t.Errorf("statuses %+v", r.Recipients)
	}
	sent := a.message(r.Sent.ID)
	if sent.FolderID != a.folders()["Sent"].ID || string(sent.Body) != "pgp/mime" || string(sent.Summary) != "sent sum" || flagsOf(sent) != `\Seen` {
		t.Errorf("sent copy %+v", sent)
	}
	inbox := b.list("INBOX")
	if len(inbox) != 1 || string(inbox[0].Summary) != "bob sum" || string(b.message(inbox[0].ID).Body) != "pgp/mime" {
		t.Errorf("bob's INBOX %+v", inbox)
	}
	out := w.b.Outbox()
	if len(out) != 2 || out[0].From != "alice@example.org" || !slices.Equal(out[0].To, []string{"dave@remote.example"}) || string(out[0].Body) != "pgp/mime" ||
		!slices.Equal(out[1].To, []string{"carol@remote.example"}) || string(out[1].Body) != "readable" {
		t.Errorf("outbox %+v", out)
	}
}

func TestContacts(t *testing.T) {
	w := newWorld(t, memback.Options{})
	a := w.signup("alice@example.org")
	var ids []string
	for i := 0; i < 5; i++ {
		r := ok[*xmap.PutContactResult](t, a.one(&xmap.PutContact{Contact: xmap.Contact{Data: []byte(fmt.Sprint("c", i))}}))
		ids = append(ids, r.ID)
	}
	if r := ok[*xmap.PutContactResult](t, a.one(&xmap.PutContact{Contact: xmap.Contact{ID: ids[1], Data: []byte("new")}})); r.ID != ids[1] {
		t.Errorf("replace gave %s", r.ID)
	}
	fails(t, a.one(&xmap.PutContact{Contact: xmap.Contact{ID: "777777", Data: []byte("x")}}), xmap.CodeNotFound)
	ok[*xmap.DeleteContactResult](t, a.one(&xmap.DeleteContact{ID: ids[3]}))
	fails(t, a.one(&xmap.DeleteContact{ID: ids[3]}), xmap.CodeNotFound)

	var got []string
	cursor := ""
	for {
		res := ok[*xmap.ListContactsResult](t, a.one(&xmap.ListContacts{Limit: 2, Cursor: cursor}))
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
	fails(t, a.one(&xmap.ListContacts{Cursor: "x"}), xmap.CodeBadRequest)
}

func TestChangesAndWait(t *testing.T) {
	w := newWorld(t, memback.Options{})
	a := w.signup("alice@example.org")
	s0 := a.state()
	m1 := w.deliver("alice@example.org", "one")
	m2 := w.deliver("alice@example.org", "two")
	s1 := a.state()
	m3 := w.deliver("alice@example.org", "three")
	ok[*xmap.UpdateFlagsResult](t, a.one(&xmap.UpdateFlags{Action: xmap.FlagsAdd, Flags: []xmap.Flag{xmap.FlagSeen}, IDs: []string{m1}}))
	a.do(&xmap.Delete{IDs: []string{m2}}, &xmap.Delete{IDs: []string{m2}}, &xmap.Expunge{Folder: byName("Trash")})
	folder := ok[*xmap.CreateFolderResult](t, a.one(&xmap.CreateFolder{FolderName: "F"})).Folder
	contact := ok[*xmap.PutContactResult](t, a.one(&xmap.PutContact{Contact: xmap.Contact{Data: []byte("c")}})).ID

	refs := func(rs []xmap.ObjectRef) []string {
		var s []string
		for _, r := range rs {
			s = append(s, string(r.Kind)+":"+r.ID)
		}
		slices.Sort(s)
		return s
	}
	c := ok[*xmap.ChangesResult](t, a.one(&xmap.Changes{Since: s1}))
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
		c := ok[*xmap.ChangesResult](t, a.one(&xmap.Changes{Since: state, MaxChanges: 2}))
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
	c = ok[*xmap.ChangesResult](t, a.one(&xmap.Changes{Since: a.state()}))
	if c.HasMore || len(c.Created)+len(c.Updated)+len(c.Destroyed) != 0 {
		t.Errorf("changes since now: %+v", c)
	}
	fails(t, a.one(&xmap.Changes{Since: "99999"}), xmap.CodeResyncRequired)
	fails(t, a.one(&xmap.Changes{Since: "abc"}), xmap.CodeResyncRequired)

	// Wait.
	now := a.state()
	if r := ok[*xmap.WaitResult](t, a.one(&xmap.Wait{Since: now, Timeout: 0})); r.Changed || r.State != now {
		t.Errorf("wait 0: %+v", r)
	}
	if r := ok[*xmap.WaitResult](t, a.one(&xmap.Wait{Since: s0, Timeout: xmap.MaxWaitSeconds})); !r.Changed || r.State != now {
		t.Errorf("wait on an old state: %+v", r)
	}
	done := make(chan *xmap.WaitResult)
	go func() {
		done <- ok[*xmap.WaitResult](t, a.one(&xmap.Wait{Since: now, Timeout: xmap.MaxWaitSeconds}))
	}()
	id := w.deliver("alice@example.org", "wake up")
	if r := <-done; !r.Changed || r.State == now {
		t.Errorf("wait woken by %s: %+v", id, r)
	}
}

// TestBatch: a failing request in the middle does not stop the others, and they run in order.
func TestBatch(t *testing.T) {
	w := newWorld(t, memback.Options{})
	a := w.signup("alice@example.org")
	rs := a.do(
		&xmap.CreateFolder{FolderName: "A"},
		&xmap.Move{Folder: byName("A"), IDs: []string{"123456"}},
		&xmap.CreateFolder{FolderName: "A"},
		&xmap.RenameFolder{Folder: byName("A"), NewName: "B"},
		&xmap.ListFolders{},
	)
	ok[*xmap.CreateFolderResult](t, rs[0])
	fails(t, rs[1], xmap.CodeNotFound)
	fails(t, rs[2], xmap.CodeConflict)
	ok[*xmap.RenameFolderResult](t, rs[3])
	var names []string
	for _, f := range ok[*xmap.ListFoldersResult](t, rs[4]).Folders {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, []string{"INBOX", "Sent", "Drafts", "Trash", "Junk", "B"}) {
		t.Errorf("folders %v", names)
	}
}

// TestSessions: an anonymous session can only look up salts and sign up; a logged-in one
// can do everything but sign up.
func TestSessions(t *testing.T) {
	w := newWorld(t, memback.Options{})
	a := w.signup("alice@example.org")
	all := everyCommand("1", "2")
	for _, c := range all {
		r := w.anon().one(c)
		if xmap.Anonymous(c) {
			if r.Err != nil && r.Err.Code == xmap.CodeDenied {
				t.Errorf("anonymous %s denied", c.Name())
			}
		} else {
			fails(t, r, xmap.CodeDenied)
		}
	}
	fails(t, a.one(signupReq("x", "z@example.org", []byte("k"))), xmap.CodeDenied)
	ok[*xmap.SaltLookupResult](t, a.one(&xmap.SaltLookup{Address: "z@example.org"}))
	fails(t, w.as("").one(&xmap.ListFolders{}), xmap.CodeDenied)
	fails(t, w.as("ghost@example.org").one(&xmap.ListFolders{}), xmap.CodeDenied)
	if len(all) != len(xmap.CommandNames()) {
		t.Errorf("everyCommand has %d commands, want %d", len(all), len(xmap.CommandNames()))
	}
}

// everyCommand returns one request of every kind, naming the given message and folder ids
// and some folder names.
func everyCommand(msg, folder string) []xmap.Command {
	return []xmap.Command{
		&xmap.SaltLookup{Address: "alice@example.org"},
		signupReq("x", "alice@example.org", []byte("k")),
		&xmap.ChangePassphrase{LoginKey: bytes.Repeat([]byte{1}, 32), KDF: xmap.KDF{Alg: xmap.KDFArgon2id, Salt: bytes.Repeat([]byte{3}, 16), Time: 3, Memory: 65536, Threads: 4}, SealedKey: []byte("s")},
		&xmap.PublicKeys{Addresses: []string{"alice@example.org"}},
		&xmap.ListFolders{},
		&xmap.CreateFolder{FolderName: "New"},
		&xmap.RenameFolder{Folder: byID(folder), NewName: "Renamed"},
		&xmap.DeleteFolder{Folder: byID(folder)},
		&xmap.ListMessages{Folder: byID(folder)},
		&xmap.Fetch{IDs: []string{msg}},
		&xmap.UpdateFlags{Action: xmap.FlagsAdd, Flags: []xmap.Flag{xmap.FlagSeen}, IDs: []string{msg}},
		&xmap.Move{Folder: byID(folder), IDs: []string{msg}},
		&xmap.Copy{Folder: byID(folder), IDs: []string{msg}},
		&xmap.Delete{IDs: []string{msg}},
		&xmap.Expunge{Folder: byID(folder)},
		&xmap.Append{Folder: byID(folder), Body: []byte("b")},
		&xmap.Send{Recipients: []xmap.Recipient{{Address: "bob@example.org", Encrypted: true}}, Body: []byte("b")},
		&xmap.ListContacts{},
		&xmap.PutContact{Contact: xmap.Contact{ID: msg, Data: []byte("c")}},
		&xmap.DeleteContact{ID: msg},
		&xmap.Changes{Since: "1"},
		&xmap.Wait{Since: "1", Timeout: 0},
		&xmap.Logout{},
	}
}

// TestIsolation: bob tries every request on alice's folders, messages and contacts, by id
// and by name, and reaches nothing: each is not found, and alice's state does not move.
func TestIsolation(t *testing.T) {
	w := newWorld(t, memback.Options{})
	a := w.signup("alice@example.org")
	b := w.signup("bob@example.org")
	secret := ok[*xmap.CreateFolderResult](t, a.one(&xmap.CreateFolder{FolderName: "Secret"})).Folder
	msg := w.deliver("alice@example.org", "alice's mail")
	ok[*xmap.MoveResult](t, a.one(&xmap.Move{Folder: byName("Secret"), IDs: []string{msg}}))
	trashed := w.deliver("alice@example.org", "alice's trash")
	a.do(&xmap.Delete{IDs: []string{trashed}}, &xmap.Delete{IDs: []string{trashed}})
	contact := ok[*xmap.PutContactResult](t, a.one(&xmap.PutContact{Contact: xmap.Contact{Data: []byte("alice's friend")}})).ID
	own := w.deliver("bob@example.org", "bob's mail")
	aliceFolders := a.folders()
	before := a.state()

	var aliceFolderIDs []string
	for _, f := range aliceFolders {
		aliceFolderIDs = append(aliceFolderIDs, f.ID)
	}
	for _, fid := range aliceFolderIDs {
		for _, mid := range []string{msg, trashed, contact} {
			for _, c := range everyCommand(mid, fid) {
				r := b.one(c)
				switch c.(type) {
				case *xmap.SaltLookup, *xmap.Signup, *xmap.ChangePassphrase, *xmap.PublicKeys,
					*xmap.ListFolders, *xmap.CreateFolder, *xmap.ListContacts, *xmap.Changes, *xmap.Wait, *xmap.Logout:
					continue // name no object of alice's; checked below
				case *xmap.Fetch:
					if f := ok[*xmap.FetchResult](t, r); len(f.Messages) != 0 || len(f.NotFound) != 1 {
						t.Errorf("bob fetched alice's %s: %+v", mid, f)
					}
				case *xmap.Send:
					ok[*xmap.SendResult](t, r) // bob's own send to bob: fine
				default:
					fails(t, r, xmap.CodeNotFound)
				}
			}
		}
		// Bob's own message cannot go into alice's folder either.
		fails(t, b.one(&xmap.Move{Folder: byID(fid), IDs: []string{own}}), xmap.CodeNotFound)
		fails(t, b.one(&xmap.Copy{Folder: byID(fid), IDs: []string{own}}), xmap.CodeNotFound)
		fails(t, b.one(&xmap.Append{Folder: byID(fid), Body: []byte("x")}), xmap.CodeNotFound)
	}
	// By name: alice's folder "Secret" does not exist for bob.
	for _, c := range []xmap.Command{
		&xmap.ListMessages{Folder: byName("Secret")},
		&xmap.RenameFolder{Folder: byName("Secret"), NewName: "Mine"},
		&xmap.DeleteFolder{Folder: byName("Secret")},
		&xmap.Expunge{Folder: byName("Secret")},
		&xmap.Move{Folder: byName("Secret"), IDs: []string{own}},
	} {
		fails(t, b.one(c), xmap.CodeNotFound)
	}
	// Bob's listings and changes show nothing of alice's.
	for name := range b.folders() {
		if name == "Secret" {
			t.Error("bob sees alice's folder")
		}
	}
	c := ok[*xmap.ChangesResult](t, b.one(&xmap.Changes{Since: "0", MaxChanges: xmap.MaxChanges}))
	aliceIDs := append(slices.Clone(aliceFolderIDs), msg, trashed, contact, secret.ID)
	for _, list := range [][]xmap.ObjectRef{c.Created, c.Updated, c.Destroyed} {
		for _, o := range list {
			if slices.Contains(aliceIDs, o.ID) {
				t.Errorf("bob's changes show alice's %s %s", o.Kind, o.ID)
			}
		}
	}
	if got := ok[*xmap.ListContactsResult](t, b.one(&xmap.ListContacts{})); len(got.Contacts) != 0 {
		t.Errorf("bob lists contacts %+v", got.Contacts)
	}
	// Nothing of alice's changed.
	if after := a.state(); after != before {
		t.Errorf("alice's state moved from %s to %s", before, after)
	}
	if m := a.message(msg); string(m.Body) != "alice's mail" || m.FolderID != secret.ID || len(m.Flags) != 0 {
		t.Errorf("alice's message %+v", m)
	}
	if fs := a.folders(); len(fs) != len(aliceFolders) || fs["Secret"].Total != 1 || fs["Trash"].Total != 1 {
		t.Errorf("alice's folders %+v", fs)
	}
}

// brokenBackend fails in the ways a real backend can.
type brokenBackend struct {
	*memback.Backend
	err   error
	panic bool
}

func (b *brokenBackend) ListFolders(ctx context.Context, user string) ([]xmap.Folder, error) {
	if b.panic {
		panic("secret state in panic")
	}
	return nil, b.err
}

// TestErrorMapping: client-safe errors keep their code and message; anything else is
// internal, says nothing, and is logged.
func TestErrorMapping(t *testing.T) {
	w := newWorld(t, memback.Options{})
	w.signup("alice@example.org")
	tests := []struct {
		err   error
		panic bool
		code  xmap.ErrorCode
		msg   string
	}{
		{err: fmt.Errorf("open /var/lib/shard/ab/secret.db: disk on fire"), code: xmap.CodeInternal, msg: "internal error"},
		{err: fmt.Errorf("shard /var/lib/x: %w", xmap.ErrNotFound), code: xmap.CodeNotFound, msg: "not found"},
		{err: fmt.Errorf("wrapped: %w", xmap.Errorf(xmap.CodeRateLimited, "slow down")), code: xmap.CodeRateLimited, msg: "slow down"},
		{err: xmap.Errorf(xmap.CodeInternal, "sql: constraint on secret column"), code: xmap.CodeInternal, msg: "internal error"},
		{err: xmap.Errorf(xmap.CodeConflict, "bad\x00char"), code: xmap.CodeConflict, msg: "bad char"},
		{err: context.Canceled, code: xmap.CodeInternal, msg: "internal error"},
		{panic: true, code: xmap.CodeInternal, msg: "internal error"},
	}
	for _, tc := range tests {
		var logged bytes.Buffer
		srv := &xmapserver.Server{
			Backend: &brokenBackend{Backend: w.b, err: tc.err, panic: tc.panic},
			Logger:  slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug})),
		}
		doc := []byte(`<xmap xmlns="urn:cryptomail:xmap:1" version="1"><list-folders id="a"/><create-folder id="b" name="After"/><delete-folder id="c" folder="After"/></xmap>`)
		out := srv.Handle(context.Background(), "alice@example.org", false, doc)
		resp, err := xmap.DecodeResponse(bytes.NewReader(out))
		if err != nil {
			t.Fatal(err)
		}
		r := resp.Responses[0]
		if r.Err == nil || r.Err.Code != tc.code || r.Err.Message != tc.msg {
			t.Errorf("%v: got %+v, want %s %q", tc.err, r.Err, tc.code, tc.msg)
		}
		if resp.Responses[1].Err != nil || resp.Responses[2].Err != nil {
			t.Errorf("%v: later requests failed: %+v", tc.err, resp.Responses[1:])
		}
		for _, leak := range []string{"/var/lib", "secret", "disk on fire", "sql"} {
			if bytes.Contains(out, []byte(leak)) {
				t.Errorf("%v: response shows %q:\n%s", tc.err, leak, out)
			}
		}
		if tc.code == xmap.CodeInternal && !strings.Contains(logged.String(), "list-folders") {
			t.Errorf("%v: not logged: %q", tc.err, logged.String())
		}
	}
}

func TestDocumentErrors(t *testing.T) {
	w := newWorld(t, memback.Options{})
	a := w.signup("alice@example.org")
	for _, tc := range []struct {
		doc  string
		code xmap.ErrorCode
	}{
		{"not xml", xmap.CodeBadRequest},
		{`<xmap xmlns="urn:cryptomail:xmap:1" version="9"/>`, xmap.CodeUnsupportedVersion},
		{`<xmap xmlns="urn:cryptomail:xmap:1" version="1">` + strings.Repeat(`<logout id="x"/>`, 51) + `</xmap>`, xmap.CodeLimitExceeded},
		{`<xmap xmlns="urn:cryptomail:xmap:1" version="1"><create-folder id="a" name="A"/><nonsense id="b"/></xmap>`, xmap.CodeBadRequest},
	} {
		resp, err := xmap.DecodeResponse(bytes.NewReader(a.raw([]byte(tc.doc))))
		if err != nil || resp.Error == nil || resp.Error.Code != tc.code || len(resp.Responses) != 0 {
			t.Errorf("%.40q: %+v %v, want %s", tc.doc, resp, err, tc.code)
		}
	}
	// Nothing of a refused document ran.
	if _, there := a.folders()["A"]; there {
		t.Error("a request of a refused document ran")
	}
}

// TestFetchBudget: fetch defers what does not fit in the response, always takes at least
// one message, and requests after the budget is spent are not run.
func TestFetchBudget(t *testing.T) {
	w := newWorld(t, memback.Options{})
	a := w.signup("alice@example.org")
	body := bytes.Repeat([]byte{0xa5}, 5<<20)
	var ids []string
	for i := 0; i < 8; i++ {
		id, err := w.b.Deliver(context.Background(), "alice@example.org", body, []byte("s"), time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	f := ok[*xmap.FetchResult](t, a.one(&xmap.Fetch{IDs: ids}))
	if len(f.Messages) == 0 || len(f.Deferred) == 0 || len(f.Messages)+len(f.Deferred) != len(ids) || len(f.NotFound) != 0 {
		t.Fatalf("fetched %d, deferred %v, not found %v", len(f.Messages), f.Deferred, f.NotFound)
	}
	got := append(idsOf(f.Messages), f.Deferred...)
	if !slices.Equal(got, ids) {
		t.Errorf("fetched then deferred %v, want %v", got, ids)
	}

	// Two fetches of one big message each: both run (a fetch always makes progress),
	// then the budget is spent and the last request does not run.
	big := bytes.Repeat([]byte{0x5a}, xmap.MaxMessageSize)
	b1, _ := w.b.Deliver(context.Background(), "alice@example.org", big, nil, time.Time{})
	b2, _ := w.b.Deliver(context.Background(), "alice@example.org", big, nil, time.Time{})
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
		if r := ok[*xmap.FetchResult](t, resp.Responses[i]); len(r.Messages) != 1 || !bytes.Equal(r.Messages[0].Body, big) {
			t.Errorf("fetch %d: %d messages, deferred %v", i, len(r.Messages), r.Deferred)
		}
	}
	fails(t, resp.Responses[2], xmap.CodeTooLarge)
	if _, there := a.folders()["Late"]; there {
		t.Error("a request past the budget ran")
	}
}

func TestBackendWriterMisuse(t *testing.T) {
	w := newWorld(t, memback.Options{})
	a := w.signup("alice@example.org")
	id := w.deliver("alice@example.org", "x")
	srv := &xmapserver.Server{Backend: &greedyBackend{Backend: w.b}, Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))}
	doc := fmt.Sprintf(`<xmap xmlns="urn:cryptomail:xmap:1" version="1"><fetch id="a"><id>%s</id></fetch><list-messages id="b" folder="INBOX" limit="1"/></xmap>`, id)
	resp, err := xmap.DecodeResponse(bytes.NewReader(srv.Handle(context.Background(), a.user, false, []byte(doc))))
	if err != nil {
		t.Fatal(err)
	}
	fails(t, resp.Responses[0], xmap.CodeInternal)
	fails(t, resp.Responses[1], xmap.CodeInternal)
}

// greedyBackend writes more than it was asked for.
type greedyBackend struct{ *memback.Backend }

func (g *greedyBackend) Fetch(ctx context.Context, user string, req *xmap.Fetch, w *xmapserver.FetchWriter) error {
	if err := g.Backend.Fetch(ctx, user, req, w); err != nil {
		return err
	}
	// An id not asked for (another user's message, say), with the writer's error ignored:
	// the writer remembers, and the request fails all the same.
	_ = w.WriteMessage(&xmap.Message{ID: "31337", FolderID: "1", Received: time.Now()})
	return nil
}

func (g *greedyBackend) ListMessages(ctx context.Context, user string, req *xmap.ListMessages, w *xmapserver.MessageWriter) error {
	w.SetFolderID("1")
	w.SetState("1")
	for i := 0; i <= req.Limit; i++ {
		_ = w.WriteMessage(&xmap.Message{ID: fmt.Sprint(i), FolderID: "1", Received: time.Now()})
	}
	return nil
}

// corruptBackend hands back stored data a client could not decode.
type corruptBackend struct{ *memback.Backend }

func (c *corruptBackend) Fetch(ctx context.Context, user string, req *xmap.Fetch, w *xmapserver.FetchWriter) error {
	return w.WriteMessage(&xmap.Message{ID: req.IDs[0], FolderID: "1", Flags: []xmap.Flag{"Bad Flag"}, Body: []byte("x"), Received: time.Now()})
}

func (c *corruptBackend) PublicKeys(ctx context.Context, user string, req *xmap.PublicKeys) ([]xmap.PublicKey, error) {
	return []xmap.PublicKey{{Address: req.Addresses[0], Key: make([]byte, xmap.MaxKeySize+1)}}, nil
}

// TestCorruptData: one bad stored object fails its own request as internal; the rest of the
// response stays readable.
func TestCorruptData(t *testing.T) {
	w := newWorld(t, memback.Options{})
	a := w.signup("alice@example.org")
	srv := &xmapserver.Server{Backend: &corruptBackend{w.b}, Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))}
	doc := `<xmap xmlns="urn:cryptomail:xmap:1" version="1"><fetch id="a"><id>1</id></fetch><public-keys id="b"><address>bob@example.org</address></public-keys><list-folders id="c"/></xmap>`
	resp, err := xmap.DecodeResponse(bytes.NewReader(srv.Handle(context.Background(), a.user, false, []byte(doc))))
	if err != nil {
		t.Fatal(err)
	}
	fails(t, resp.Responses[0], xmap.CodeInternal)
	fails(t, resp.Responses[1], xmap.CodeInternal)
	ok[*xmap.ListFoldersResult](t, resp.Responses[2])
}

// TestConcurrentSessions runs sessions of several users at once (run with -race): each
// user's data stays its own and waits wake up.
func TestConcurrentSessions(t *testing.T) {
	w := newWorld(t, memback.Options{})
	users := []string{"u0@example.org", "u1@example.org", "u2@example.org", "u3@example.org"}
	for _, u := range users {
		w.signup(u)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(users)*2)
	for _, u := range users {
		s := w.as(u)
		start := s.state()
		wg.Add(2)
		go func() {
			defer wg.Done()
			r := s.one(&xmap.Wait{Since: start, Timeout: xmap.MaxWaitSeconds})
			if r.Err != nil || !r.Result.(*xmap.WaitResult).Changed {
				errs <- fmt.Errorf("%s: wait %+v", u, r)
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				r := s.one(&xmap.Append{Folder: byName("INBOX"), Body: []byte(u)})
				if r.Err != nil {
					errs <- fmt.Errorf("%s: append %v", u, r.Err)
					return
				}
				id := r.Result.(*xmap.AppendResult).Message.ID
				s.do(&xmap.UpdateFlags{Action: xmap.FlagsAdd, Flags: []xmap.Flag{xmap.FlagSeen}, IDs: []string{id}}, &xmap.Delete{IDs: []string{id}})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, u := range users {
		s := w.as(u)
		trash := s.list("Trash")
		if len(trash) != 20 {
			t.Errorf("%s: %d in Trash", u, len(trash))
		}
		for _, m := range trash {
			if string(s.message(m.ID).Body) != u {
				t.Errorf("%s sees another user's message %s", u, m.ID)
			}
		}
	}
}
