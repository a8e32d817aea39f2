package xmapserver_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"cryptomail/xmap"
	"cryptomail/xmap/xmapserver"
	"cryptomail/xmap/xmapserver/memback"
	"cryptomail/xmap/xmapserver/xmaptest"
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
		return xmaptest.OK[*xmap.SaltLookupResult](t, anon.one(&xmap.SaltLookup{Address: addr})).KDF
	}
	s1, s2, s3 := salt("ghost@example.org"), salt("ghost@example.org"), salt("other@example.org")
	if !bytes.Equal(s1.Salt, s2.Salt) || bytes.Equal(s1.Salt, s3.Salt) || len(s1.Salt) < xmap.MinSaltSize {
		t.Errorf("fake salts %x %x %x", s1.Salt, s2.Salt, s3.Salt)
	}

	w.b.AddInvite("good", "alice@example.org", w.clock.now().Add(time.Hour))
	w.b.AddInvite("late", "late@example.org", w.clock.now().Add(-time.Second))
	xmaptest.Fails(t, anon.one(signupReq("nope", "alice@example.org", []byte("k"))), xmap.CodeInvalidInvite)
	xmaptest.Fails(t, anon.one(signupReq("good", "mallory@example.org", []byte("k"))), xmap.CodeInvalidInvite)
	xmaptest.Fails(t, anon.one(signupReq("late", "late@example.org", []byte("k"))), xmap.CodeExpired)
	xmaptest.OK[*xmap.SignupResult](t, anon.one(signupReq("good", "Alice@Example.org", []byte("alice key"))))
	xmaptest.Fails(t, anon.one(signupReq("good", "alice@example.org", []byte("alice key"))), xmap.CodeInvalidInvite) // used
	w.b.AddInvite("again", "alice@example.org", w.clock.now().Add(time.Hour))
	xmaptest.Fails(t, anon.one(signupReq("again", "alice@example.org", []byte("alice key"))), xmap.CodeConflict)

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
	xmaptest.Fails(t, anon.one(signupReq("c1", "carol@example.org", []byte("another key"))), xmap.CodeConflict)
	xmaptest.OK[*xmap.SignupResult](t, anon.one(signupReq("c1", "carol@example.org", []byte("carol key"))))
	if got := w.as("carol@example.org").list("INBOX"); len(got) != 1 {
		t.Errorf("carol's INBOX after activation: %+v", got)
	}

	// Passphrase change replaces all three in one go, and only with proof of the current
	// login key (the first request of a login just made): a session that is merely
	// logged in, perhaps stolen, cannot change it.
	change := &xmap.ChangePassphrase{
		LoginKey:  bytes.Repeat([]byte{9}, 32),
		KDF:       xmap.KDF{Alg: xmap.KDFArgon2id, Salt: bytes.Repeat([]byte{2}, 16), Time: 4, Memory: 1 << 17, Threads: 2},
		SealedKey: []byte("resealed"),
	}
	alice := w.as("alice@example.org")
	xmaptest.Fails(t, alice.one(change), xmap.CodeDenied)
	if cr, _ := w.b.Credentials("alice@example.org"); cr.LoginKey[0] == 9 {
		t.Fatal("change-passphrase without proof changed the login key")
	}
	xmaptest.OK[*xmap.ChangePassphraseResult](t, w.proven("alice@example.org").one(change))
	cr, _ := w.b.Credentials("alice@example.org")
	if cr.LoginKey[0] != 9 || cr.KDF.Time != 4 || string(cr.SealedKey) != "resealed" || !cr.Active {
		t.Errorf("credentials after change: %+v", cr)
	}

	// Public keys of local accounts only.
	pk := xmaptest.OK[*xmap.PublicKeysResult](t, alice.one(&xmap.PublicKeys{Addresses: []string{"Carol@example.org", "ghost@example.org", "x@remote.example"}}))
	if len(pk.Keys) != 1 || pk.Keys[0].Address != "Carol@example.org" || string(pk.Keys[0].Key) != "carol key" ||
		!slices.Equal(pk.NotFound, []string{"ghost@example.org", "x@remote.example"}) {
		t.Errorf("public keys %+v", pk)
	}

	// Logout: the rest of the batch is refused, and Serve tells the transport.
	rs := alice.do(&xmap.ListFolders{}, &xmap.Logout{}, &xmap.ListFolders{})
	xmaptest.OK[*xmap.ListFoldersResult](t, rs[0])
	xmaptest.OK[*xmap.LogoutResult](t, rs[1])
	xmaptest.Fails(t, rs[2], xmap.CodeDenied)
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

func TestSend(t *testing.T) {
	w := newWorld(t, memback.Options{})
	a := w.signup("alice@example.org")
	b := w.signup("bob@example.org")
	body, sentSum, bobSum := xmaptest.PGPMIME("alice@example.org", "hello"), xmaptest.Sealed("sent sum"), xmaptest.Sealed("bob sum")
	send := func(rcpts ...xmap.Recipient) xmap.Response {
		s := &xmap.Send{Recipients: rcpts, Body: body, SentSummary: sentSum}
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
	xmaptest.Fails(t, send(enc("bob@example.org"), xmap.Recipient{Address: "carol@remote.example"}), xmap.CodePlaintextRefused)
	xmaptest.Fails(t, send(xmap.Recipient{Address: "bob@example.org", AllowPlaintext: true}), xmap.CodePlaintextRefused)
	xmaptest.Fails(t, send(enc("bob@example.org"), enc("nobody@example.org")), xmap.CodeInvalidRecipient)
	if a.state() != before || len(b.list("INBOX")) != 0 || len(w.b.Outbox()) != 0 {
		t.Fatal("a refused send changed something")
	}

	r := xmaptest.OK[*xmap.SendResult](t, send(
		xmap.Recipient{Address: "bob@example.org", Encrypted: true, Summary: bobSum},
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
	if sent.FolderID != a.folders()["Sent"].ID || !bytes.Equal(sent.Body, body) || xmaptest.Opened(sent.Summary) != "sent sum" || flagsOf(sent) != `\Seen` {
		t.Errorf("sent copy %+v", sent)
	}
	inbox := b.list("INBOX")
	if len(inbox) != 1 || xmaptest.Opened(inbox[0].Summary) != "bob sum" || !bytes.Equal(b.message(inbox[0].ID).Body, body) {
		t.Errorf("bob's INBOX %+v", inbox)
	}
	out := w.b.Outbox()
	if len(out) != 2 || out[0].From != "alice@example.org" || !slices.Equal(out[0].To, []string{"dave@remote.example"}) || !bytes.Equal(out[0].Body, body) ||
		!slices.Equal(out[1].To, []string{"carol@remote.example"}) || string(out[1].Body) != "readable" {
		t.Errorf("outbox %+v", out)
	}
}

// TestSessions: an anonymous session can only look up salts and sign up; a logged-in one
// can do everything but sign up.
// TestGetAccount: a logged-in user gets back exactly what signup, and then
// change-passphrase, stored for it; an anonymous session is denied.
func TestGetAccount(t *testing.T) {
	w := newWorld(t, memback.Options{})
	alice := w.signup("alice@example.org")
	bob := w.signup("bob@example.org")
	signed := signupReq("", "alice@example.org", []byte("key of alice@example.org"))
	changed := &xmap.ChangePassphrase{
		LoginKey:  bytes.Repeat([]byte{9}, xmap.LoginKeySize),
		KDF:       xmap.KDF{Alg: xmap.KDFArgon2id, Salt: bytes.Repeat([]byte{2}, 32), Time: 4, Memory: 1 << 17, Threads: 2},
		SealedKey: []byte("resealed"),
	}
	want := func(kdf xmap.KDF, sealed []byte) xmap.Account {
		return xmap.Account{Address: "alice@example.org", PublicKey: signed.PublicKey, KDF: kdf, SealedKey: sealed}
	}
	tests := []struct {
		name   string
		before xmap.Command // run first by alice, if set
		s      *session
		want   *xmap.Account // nil: fails with code
		code   xmap.ErrorCode
	}{
		{"anonymous", nil, w.anon(), nil, xmap.CodeDenied},
		{"no account", nil, w.as("ghost@example.org"), nil, xmap.CodeDenied},
		{"after signup", nil, alice, ptr(want(signed.KDF, signed.SealedKey)), ""},
		{"after change-passphrase", changed, alice, ptr(want(changed.KDF, changed.SealedKey)), ""},
		{"other user unchanged", nil, bob, &xmap.Account{Address: "bob@example.org", PublicKey: []byte("key of bob@example.org"), KDF: signed.KDF, SealedKey: signed.SealedKey}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				if r := w.proven(alice.user).one(tc.before); r.Err != nil {
					t.Fatalf("%s: %v", tc.before.Name(), r.Err)
				}
			}
			r := tc.s.one(&xmap.GetAccount{})
			if tc.want == nil {
				xmaptest.Fails(t, r, tc.code)
				return
			}
			if got := xmaptest.OK[*xmap.GetAccountResult](t, r).Account; !reflect.DeepEqual(got, *tc.want) {
				t.Errorf("got %+v\nwant %+v", got, *tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

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
			xmaptest.Fails(t, r, xmap.CodeDenied)
		}
	}
	xmaptest.Fails(t, a.one(signupReq("x", "z@example.org", []byte("k"))), xmap.CodeDenied)
	xmaptest.OK[*xmap.SaltLookupResult](t, a.one(&xmap.SaltLookup{Address: "z@example.org"}))
	xmaptest.Fails(t, w.as("").one(&xmap.ListFolders{}), xmap.CodeDenied)
	xmaptest.Fails(t, w.as("ghost@example.org").one(&xmap.ListFolders{}), xmap.CodeDenied)
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
		&xmap.GetAccount{},
		&xmap.DeviceToken{},
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
		&xmap.Append{Folder: byID(folder), Body: xmaptest.Sealed("b")},
		&xmap.Send{Recipients: []xmap.Recipient{{Address: "bob@example.org", Encrypted: true}}, Body: xmaptest.PGPMIME("bob@example.org", "b")},
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
	secret := xmaptest.OK[*xmap.CreateFolderResult](t, a.one(&xmap.CreateFolder{FolderName: "Secret"})).Folder
	msg := w.deliver("alice@example.org", "alice's mail")
	xmaptest.OK[*xmap.MoveResult](t, a.one(&xmap.Move{Folder: byName("Secret"), IDs: []string{msg}}))
	trashed := w.deliver("alice@example.org", "alice's trash")
	a.do(&xmap.Delete{IDs: []string{trashed}}, &xmap.Delete{IDs: []string{trashed}})
	contact := xmaptest.OK[*xmap.PutContactResult](t, a.one(&xmap.PutContact{Contact: xmap.Contact{Data: []byte("alice's friend")}})).ID
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
					*xmap.ListFolders, *xmap.CreateFolder, *xmap.ListContacts, *xmap.Changes, *xmap.Wait, *xmap.Logout, *xmap.DeviceToken:
					continue // name no object of alice's; checked below
				case *xmap.Fetch:
					if f := xmaptest.OK[*xmap.FetchResult](t, r); len(f.Messages) != 0 || len(f.NotFound) != 1 {
						t.Errorf("bob fetched alice's %s: %+v", mid, f)
					}
				case *xmap.Send:
					xmaptest.OK[*xmap.SendResult](t, r) // bob's own send to bob: fine
				case *xmap.GetAccount:
					// Names no account: bob gets his own, never alice's.
					if acct := xmaptest.OK[*xmap.GetAccountResult](t, r).Account; acct.Address != "bob@example.org" || string(acct.PublicKey) != "key of bob@example.org" {
						t.Errorf("bob's get-account returned %s with key %q", acct.Address, acct.PublicKey)
					}
				default:
					xmaptest.Fails(t, r, xmap.CodeNotFound)
				}
			}
		}
		// Bob's own message cannot go into alice's folder either.
		xmaptest.Fails(t, b.one(&xmap.Move{Folder: byID(fid), IDs: []string{own}}), xmap.CodeNotFound)
		xmaptest.Fails(t, b.one(&xmap.Copy{Folder: byID(fid), IDs: []string{own}}), xmap.CodeNotFound)
		xmaptest.Fails(t, b.one(&xmap.Append{Folder: byID(fid), Body: xmaptest.Sealed("x")}), xmap.CodeNotFound)
	}
	// By name: alice's folder "Secret" does not exist for bob.
	for _, c := range []xmap.Command{
		&xmap.ListMessages{Folder: byName("Secret")},
		&xmap.RenameFolder{Folder: byName("Secret"), NewName: "Mine"},
		&xmap.DeleteFolder{Folder: byName("Secret")},
		&xmap.Expunge{Folder: byName("Secret")},
		&xmap.Move{Folder: byName("Secret"), IDs: []string{own}},
	} {
		xmaptest.Fails(t, b.one(c), xmap.CodeNotFound)
	}
	// Bob's listings and changes show nothing of alice's.
	for name := range b.folders() {
		if name == "Secret" {
			t.Error("bob sees alice's folder")
		}
	}
	c := xmaptest.OK[*xmap.ChangesResult](t, b.one(&xmap.Changes{Since: "0", MaxChanges: xmap.MaxChanges}))
	aliceIDs := append(slices.Clone(aliceFolderIDs), msg, trashed, contact, secret.ID)
	for _, list := range [][]xmap.ObjectRef{c.Created, c.Updated, c.Destroyed} {
		for _, o := range list {
			if slices.Contains(aliceIDs, o.ID) {
				t.Errorf("bob's changes show alice's %s %s", o.Kind, o.ID)
			}
		}
	}
	if got := xmaptest.OK[*xmap.ListContactsResult](t, b.one(&xmap.ListContacts{})); len(got.Contacts) != 0 {
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
	xmaptest.Fails(t, resp.Responses[0], xmap.CodeInternal)
	xmaptest.Fails(t, resp.Responses[1], xmap.CodeInternal)
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

func (c *corruptBackend) Account(ctx context.Context, user string) (xmap.Account, error) {
	acct, err := c.Backend.Account(ctx, user)
	acct.KDF.Memory = 1 // below the floor: a client would refuse the response
	return acct, err
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
	doc := `<xmap xmlns="urn:cryptomail:xmap:1" version="1"><fetch id="a"><id>1</id></fetch><public-keys id="b"><address>bob@example.org</address></public-keys><get-account id="d"/><list-folders id="c"/></xmap>`
	resp, err := xmap.DecodeResponse(bytes.NewReader(srv.Handle(context.Background(), a.user, false, []byte(doc))))
	if err != nil {
		t.Fatal(err)
	}
	xmaptest.Fails(t, resp.Responses[0], xmap.CodeInternal)
	xmaptest.Fails(t, resp.Responses[1], xmap.CodeInternal)
	xmaptest.Fails(t, resp.Responses[2], xmap.CodeInternal)
	xmaptest.OK[*xmap.ListFoldersResult](t, resp.Responses[3])
}
