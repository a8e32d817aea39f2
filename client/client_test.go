package client_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cryptomail/client"
	cmcrypto "cryptomail/crypto"
	"cryptomail/xmap"
	"cryptomail/xmap/sexmap"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

var inbox = xmap.FolderRef{Name: "INBOX"}

func TestSignupLogin(t *testing.T) {
	e := newEnv(t)
	home := t.TempDir()
	c := e.client(home)
	var pinned []string
	c2, err := client.New(client.Options{Server: e.srv.URL + "/", Home: home, KDFParams: sexmap.MinKDFParams,
		OnPin: func(server, key string) { pinned = append(pinned, server+" "+key) }})
	if err != nil {
		t.Fatal(err)
	}
	fp, err := c2.Signup(e.ctx, client.SignupParams{Invite: e.invite("alice@example.org"), Address: "alice@example.org", Passphrase: []byte("correct horse")})
	if err != nil {
		t.Fatal(err)
	}
	want := e.srv.URL + " " + sexmap.EncodePublicKey(e.srv.PublicKey())
	if len(pinned) != 1 || pinned[0] != want {
		t.Errorf("OnPin calls %q, want [%q]", pinned, want)
	}
	if cur, _ := c.CurrentAddress(); cur != "alice@example.org" {
		t.Errorf("current address %q after signup", cur)
	}

	s := e.login(c, "alice@example.org", "correct horse")
	if s.Fingerprint() != fp {
		t.Errorf("session key %q, signed up with %q", s.Fingerprint(), fp)
	}
	fs, err := s.ListFolders(e.ctx)
	if err != nil || len(fs) != 5 || fs[0].Role != xmap.RoleInbox {
		t.Fatalf("ListFolders = %v, %v", fs, err)
	}

	// The account the server holds is exactly what the client derived and sealed.
	cred, _ := e.srv.Memback.Credentials("alice@example.org")
	if cred.KDF.Time != sexmap.MinKDFParams.Time || cred.KDF.Memory != sexmap.MinKDFParams.MemoryKiB || len(cred.KDF.Salt) != sexmap.SaltSize {
		t.Errorf("server KDF %+v", cred.KDF)
	}
	if cred.SealedKey[0] != client.SealedKeyVersion || bytes.Contains(cred.SealedKey, cred.PublicKey[:20]) {
		t.Error("the sealed key is not sealed")
	}
	if _, err := cmcrypto.ParsePublicKey(cred.PublicKey, time.Now()); err != nil {
		t.Errorf("uploaded public key: %v", err)
	}

	for _, tc := range []struct{ address, pass string }{
		{"alice@example.org", "wrong horse"},
		{"nobody@example.org", "correct horse"},
	} {
		_, err := c.Login(e.ctx, tc.address, []byte(tc.pass))
		if !errors.Is(err, sexmap.ErrLoginFailed) {
			t.Errorf("Login(%s, %s) = %v, want ErrLoginFailed", tc.address, tc.pass, err)
		}
	}
	if _, err := c.Login(e.ctx, "alice@example.org", nil); err == nil {
		t.Error("empty passphrase accepted")
	}

	// The same invite cannot be used twice, and an unknown one is refused.
	_, err = c.Signup(e.ctx, client.SignupParams{Invite: "no-such-code", Address: "bob@example.org", Passphrase: []byte("x")})
	if !errors.Is(err, xmap.ErrInvalidInvite) {
		t.Errorf("signup with a bad invite = %v", err)
	}

	checkHome(t, home, "correct horse")
}

// checkHome checks the home's files are private and hold no passphrase.
func checkHome(t *testing.T, home, passphrase string) {
	t.Helper()
	st, err := os.Stat(home)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("home mode %v, %v", st.Mode(), err)
	}
	found := 0
	filepath.WalkDir(home, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		found++
		info, _ := d.Info()
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", path, info.Mode())
		}
		data, _ := os.ReadFile(path)
		if bytes.Contains(data, []byte(passphrase)) {
			t.Errorf("%s holds the passphrase", path)
		}
		return nil
	})
	for _, name := range []string{client.PinFile, client.StateFile} {
		if _, err := os.Stat(filepath.Join(home, name)); err != nil {
			t.Errorf("missing %s: %v", name, err)
		}
	}
}

func TestSendAndRead(t *testing.T) {
	e := newEnv(t)
	alice := e.signup(e.client(""), "alice@example.org", "alice pass")
	bob := e.signup(e.client(""), "bob@example.org", "bob pass")
	carol := e.signup(e.client(""), "carol@example.org", "carol pass")

	attachment := bytes.Repeat([]byte("binary\x00\xff data "), 500)
	rep, err := alice.SendMail(e.ctx, &client.Draft{
		FromName:    "Alice",
		To:          []string{"Bob <bob@example.org>"},
		Cc:          []string{"carol@example.org"},
		Subject:     "Quarterly plans – draft",
		Text:        "Hi Bob,\nthe plan is attached.\n",
		Attachments: []client.Attachment{{Filename: "/tmp/plan.bin", Data: attachment}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Recipients) != 2 || rep.Recipients[0].Status != xmap.StatusDelivered || rep.Recipients[1].Status != xmap.StatusDelivered || len(rep.Plaintext) != 0 {
		t.Fatalf("report %+v", rep)
	}

	for _, who := range []struct {
		s      *client.Session
		folder string
	}{{bob, "INBOX"}, {carol, "INBOX"}, {alice, "Sent"}} {
		page, err := who.s.List(e.ctx, xmap.FolderRef{Name: who.folder}, client.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Messages) != 1 {
			t.Fatalf("%s %s: %d messages", who.s.Address(), who.folder, len(page.Messages))
		}
		l := page.Messages[0]
		if l.SummaryErr != nil || l.Summary == nil {
			t.Fatalf("summary: %v", l.SummaryErr)
		}
		if l.Summary.Subject != "Quarterly plans – draft" || !l.Summary.HasAttachments || l.Summary.From != "Alice <alice@example.org>" ||
			!strings.HasPrefix(l.Summary.Snippet, "Hi Bob, the plan") || l.Summary.MessageID != rep.MessageID {
			t.Errorf("%s summary %+v", who.s.Address(), l.Summary)
		}
		m, err := who.s.Read(e.ctx, l.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !m.Encrypted || m.Signature.Status != client.SignatureVerified || m.Signature.Signer != alice.Fingerprint() {
			t.Errorf("%s: encrypted %v, signature %+v", who.s.Address(), m.Encrypted, m.Signature)
		}
		if m.Subject != "Quarterly plans – draft" || m.Text != "Hi Bob,\r\nthe plan is attached.\r\n" ||
			m.From != `"Alice" <alice@example.org>` || len(m.To) != 1 || len(m.Cc) != 1 || m.MessageID != rep.MessageID {
			t.Errorf("%s read %q %q %q %q %q", who.s.Address(), m.Subject, m.Text, m.From, m.To, m.Cc)
		}
		if len(m.Attachments) != 1 || m.Attachments[0].Filename != "plan.bin" || !bytes.Equal(m.Attachments[0].Data, attachment) {
			t.Errorf("attachments %d", len(m.Attachments))
		}
		if !bytes.Contains(m.Raw, []byte("Subject: =?utf-8?q?Quarterly_plans")) || !bytes.Contains(m.Raw, []byte("the plan is attached")) ||
			bytes.Contains(m.Raw, []byte("BEGIN PGP")) {
			t.Errorf("raw message lacks the decrypted content:\n%.600s", m.Raw)
		}
	}

	// What the server stored reveals neither the subject nor the text.
	r, err := bob.Fetch(e.ctx, &xmap.Fetch{IDs: []string{rep.Sent.ID}, Parts: xmap.PartBody})
	if err != nil || len(r.NotFound) != 1 {
		t.Errorf("bob can fetch alice's Sent copy: %v %v", r, err)
	}
	r, err = alice.Fetch(e.ctx, &xmap.Fetch{IDs: []string{rep.Sent.ID}, Parts: xmap.PartSummary | xmap.PartBody})
	if err != nil || len(r.Messages) != 1 {
		t.Fatal(r, err)
	}
	for _, blob := range [][]byte{r.Messages[0].Body, r.Messages[0].Summary} {
		for _, secret := range []string{"Quarterly", "the plan is attached", "plan.bin"} {
			if bytes.Contains(blob, []byte(secret)) {
				t.Errorf("the stored message holds %q in clear", secret)
			}
		}
	}
	if !bytes.Contains(r.Messages[0].Body, []byte("multipart/encrypted")) && r.Messages[0].Body[0]&0x80 == 0 {
		t.Error("the stored body is neither PGP/MIME nor OpenPGP")
	}
}

func TestSendRemote(t *testing.T) {
	e := newEnv(t)
	alice := e.signup(e.client(""), "alice@example.org", "alice pass")
	e.signup(e.client(""), "bob@example.org", "bob pass")
	remoteKey, err := cmcrypto.GenerateKey("Dave", "dave@remote.example", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var remotePub bytes.Buffer
	if err := remoteKey.Serialize(&remotePub); err != nil {
		t.Fatal(err)
	}

	draft := &client.Draft{To: []string{"bob@example.org", "carol@remote.example"}, Subject: "Lunch", Text: "Noon?"}
	_, err = alice.SendMail(e.ctx, draft)
	var mk *client.MissingKeysError
	if !errors.As(err, &mk) || len(mk.Addresses) != 1 || mk.Addresses[0] != "carol@remote.example" {
		t.Fatalf("send to a remote recipient without key = %v", err)
	}
	if n := len(e.srv.Memback.Outbox()); n != 0 {
		t.Fatalf("a refused send queued %d messages", n)
	}
	page, _ := alice.List(e.ctx, xmap.FolderRef{Name: "Sent"}, client.ListOptions{})
	if len(page.Messages) != 0 {
		t.Fatal("a refused send left a Sent copy")
	}

	// Consent for carol, a known key for dave.
	draft.AllowPlaintext = []string{"Carol <carol@remote.example>"}
	draft.To = append(draft.To, "dave@remote.example")
	draft.RecipientKeys = map[string][]byte{"Dave@Remote.Example": remotePub.Bytes()}
	rep, err := alice.SendMail(e.ctx, draft)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Plaintext) != 1 || rep.Plaintext[0] != "carol@remote.example" {
		t.Errorf("plaintext to %v", rep.Plaintext)
	}
	out := e.srv.Memback.Outbox()
	if len(out) != 2 {
		t.Fatalf("outbox %d", len(out))
	}
	for _, o := range out {
		switch {
		case len(o.To) == 1 && o.To[0] == "dave@remote.example":
			if bytes.Contains(o.Body, []byte("Noon?")) || !bytes.Contains(o.Body, []byte("multipart/encrypted")) {
				t.Error("dave's copy is not encrypted")
			}
			m := decryptPGPMIME(t, o.Body, remoteKey)
			if !bytes.Contains(m, []byte("Subject: Lunch")) || !bytes.Contains(m, []byte("Noon?")) {
				t.Errorf("dave cannot read his copy:\n%s", m)
			}
		case len(o.To) == 1 && o.To[0] == "carol@remote.example":
			if !bytes.Contains(o.Body, []byte("Noon?")) || !bytes.Contains(o.Body, []byte("Subject: Lunch")) || bytes.Contains(o.Body, []byte("BEGIN PGP")) {
				t.Errorf("carol's readable copy:\n%s", o.Body)
			}
		default:
			t.Errorf("unexpected outgoing %v", o.To)
		}
	}
}

// decryptPGPMIME is what a remote recipient's mail client does, with go-crypto alone.
func decryptPGPMIME(t *testing.T, body []byte, key *openpgp.Entity) []byte {
	t.Helper()
	i := bytes.Index(body, []byte("-----BEGIN PGP MESSAGE-----"))
	if i < 0 {
		t.Fatal("no armored message")
	}
	block, err := armor.Decode(bytes.NewReader(body[i:]))
	if err != nil {
		t.Fatal(err)
	}
	md, err := openpgp.ReadMessage(block.Body, openpgp.EntityList{key}, nil, &packet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(md.UnverifiedBody); err != nil {
		t.Fatal(err)
	}
	if !md.IsSigned {
		t.Error("not signed")
	}
	return buf.Bytes()
}

func TestDeliveredMail(t *testing.T) {
	e := newEnv(t)
	bob := e.signup(e.client(""), "bob@example.org", "bob pass")
	state, err := bob.State(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw := "From: Ext Sender <ext@remote.example>\r\nTo: bob@example.org\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n" +
		"Date: Sat, 01 Mar 2025 09:00:00 +0000\r\nMessage-ID: <ext1@remote.example>\r\n\r\nHello from outside.\r\n"
	id, err := e.srv.Deliver(e.ctx, "bob@example.org", []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := bob.Changes(e.ctx, state, 0)
	if err != nil || len(ch.Created) != 1 || ch.Created[0] != (xmap.ObjectRef{Kind: xmap.KindMessage, ID: id}) || ch.State == state {
		t.Errorf("changes since %s: %+v %v", state, ch, err)
	}
	page, err := bob.List(e.ctx, inbox, client.ListOptions{})
	if err != nil || len(page.Messages) != 1 || page.Messages[0].ID != id {
		t.Fatalf("list %+v %v", page, err)
	}
	if sm := page.Messages[0].Summary; sm == nil || sm.Subject != "Grüße" || sm.From != "Ext Sender <ext@remote.example>" || sm.Date.IsZero() {
		t.Errorf("summary %+v (%v)", sm, page.Messages[0].SummaryErr)
	}
	m, err := bob.Read(e.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if m.Encrypted || m.Signature.Status != client.SignatureNone || !m.StorageEncrypted || m.Text != "Hello from outside.\r\n" || string(m.Raw) != raw {
		t.Errorf("read %+v", m)
	}
	if _, err := bob.Read(e.ctx, "999999"); !errors.Is(err, xmap.ErrNotFound) {
		t.Errorf("read of a missing id = %v", err)
	}
}

func TestOrganise(t *testing.T) {
	e := newEnv(t)
	s := e.signup(e.client(""), "alice@example.org", "pass")
	var ids []string
	for _, subj := range []string{"one", "two", "three"} {
		id, err := e.srv.Deliver(e.ctx, "alice@example.org", []byte("Subject: "+subj+"\r\n\r\nbody\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	work, err := s.CreateFolder(e.ctx, "Work")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateFolder(e.ctx, "inbox"); !errors.Is(err, xmap.ErrConflict) {
		t.Errorf("create inbox = %v", err)
	}
	if err := s.UpdateFlags(e.ctx, xmap.FlagsAdd, []xmap.Flag{xmap.FlagSeen, "$important"}, ids[0], ids[1]); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateFlags(e.ctx, xmap.FlagsRemove, []xmap.Flag{"$important"}, ids[1]); err != nil {
		t.Fatal(err)
	}
	if err := s.Move(e.ctx, xmap.FolderRef{ID: work.ID}, ids[0]); err != nil {
		t.Fatal(err)
	}
	copies, err := s.Copy(e.ctx, xmap.FolderRef{Name: "Work"}, ids[1])
	if err != nil || len(copies) != 1 || copies[0].From != ids[1] || copies[0].ID == ids[1] {
		t.Fatalf("copy %v %v", copies, err)
	}
	if err := s.Move(e.ctx, xmap.FolderRef{Name: "Nope"}, ids[2]); !errors.Is(err, xmap.ErrNotFound) {
		t.Errorf("move to a missing folder = %v", err)
	}
	page, err := s.List(e.ctx, xmap.FolderRef{Name: "Work"}, client.ListOptions{Sort: xmap.SortReceivedAsc})
	if err != nil || page.Total != 2 {
		t.Fatalf("Work: %+v %v", page, err)
	}
	flags := map[string]string{}
	for _, m := range page.Messages {
		flags[m.ID] = flagString(m.Flags)
	}
	if flags[ids[0]] != `\Seen $important` || flags[copies[0].ID] != `\Seen` {
		t.Errorf("flags %v", flags)
	}

	// rm twice, then expunge Trash.
	if err := s.Delete(e.ctx, ids[2]); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(e.ctx, ids[2]); err != nil {
		t.Fatal(err)
	}
	n, err := s.Expunge(e.ctx, xmap.FolderRef{Name: "Trash"})
	if err != nil || n != 1 {
		t.Errorf("expunge = %d, %v", n, err)
	}

	renamed, err := s.RenameFolder(e.ctx, xmap.FolderRef{Name: "Work"}, "Projects")
	if err != nil || renamed.ID != work.ID || renamed.Name != "Projects" {
		t.Errorf("rename %+v %v", renamed, err)
	}
	if _, err := s.RenameFolder(e.ctx, inbox, "Old"); !errors.Is(err, xmap.ErrDenied) {
		t.Errorf("rename INBOX = %v", err)
	}
	if err := s.DeleteFolder(e.ctx, xmap.FolderRef{ID: work.ID}); err != nil {
		t.Fatal(err)
	}
	folders, err := s.ListFolders(e.ctx)
	if err != nil || len(folders) != 5 || folders[3].Name != "Trash" || folders[3].Total != 2 {
		t.Errorf("folders after rmdir %+v %v", folders, err)
	}

	// A batch: each request stands alone, later ones see earlier ones.
	rs, err := s.Do(e.ctx,
		&xmap.CreateFolder{FolderName: "Receipts"},
		&xmap.Move{Folder: xmap.FolderRef{Name: "Receipts"}, IDs: []string{"424242"}},
		&xmap.ListFolders{})
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Err != nil || !errors.Is(rs[1].Err, xmap.ErrNotFound) || rs[2].Err != nil {
		t.Fatalf("batch results %+v", rs)
	}
	if fs := rs[2].Result.(*xmap.ListFoldersResult).Folders; fs[len(fs)-1].Name != "Receipts" {
		t.Errorf("the batch's listing misses the folder it created: %+v", fs)
	}
	if _, err := s.Do(e.ctx); err == nil {
		t.Error("an empty batch was sent")
	}

	// Contacts and append round-trip through the client's encryption.
	cid, err := s.SaveContact(e.ctx, client.Contact{Name: "Bob", Emails: []string{"bob@example.org"}})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := s.Contacts(e.ctx)
	if err != nil || len(cs) != 1 || cs[0].ID != cid || cs[0].Name != "Bob" {
		t.Errorf("contacts %+v %v", cs, err)
	}
	draft := []byte("Subject: draft\r\n\r\nunfinished\r\n")
	am, err := s.AppendMessage(e.ctx, xmap.FolderRef{Name: "Drafts"}, draft, []xmap.Flag{xmap.FlagDraft})
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Read(e.ctx, am.ID)
	if err != nil || m.Subject != "draft" || !m.StorageEncrypted {
		t.Errorf("appended draft %+v %v", m, err)
	}
}

func flagString(fs []xmap.Flag) string {
	var s []string
	for _, f := range fs {
		s = append(s, string(f))
	}
	return strings.Join(s, " ")
}

func TestWatch(t *testing.T) {
	e := newEnv(t)
	s := e.signup(e.client(""), "alice@example.org", "pass")
	state, err := s.State(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	got := make(chan client.Listed, 4)
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, state, 5*time.Second, func(l client.Listed) error {
			got <- l
			return nil
		})
	}()
	if _, err := s.CreateFolder(e.ctx, "Other"); err != nil { // a change that is not new mail
		t.Fatal(err)
	}
	id, err := e.srv.Deliver(e.ctx, "alice@example.org", []byte("Subject: ping\r\n\r\nnew!\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-got:
		if l.ID != id || l.Summary == nil || l.Summary.Subject != "ping" {
			t.Errorf("watch reported %+v", l)
		}
	case err := <-done:
		t.Fatalf("watch ended: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("watch did not report the new message")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("watch ended with %v", err)
	}
}

func TestChangePassphrase(t *testing.T) {
	e := newEnv(t)
	home := t.TempDir()
	c := e.client(home)
	s := e.signup(c, "alice@example.org", "old pass")
	id, err := e.srv.Deliver(e.ctx, "alice@example.org", []byte("Subject: before\r\n\r\nkept\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	oldCred, _ := e.srv.Memback.Credentials("alice@example.org")
	other := e.login(e.client(""), "alice@example.org", "old pass")
	oldID, otherID := s.ID(), other.ID()
	if err := s.ChangePassphrase(e.ctx, []byte("new pass")); err != nil {
		t.Fatal(err)
	}
	// Every session of the account ended; s logged in again at once with the new key.
	if s.ID() == oldID {
		t.Error("the session that changed the passphrase kept its old SeXMAP session")
	}
	if _, err := s.ListFolders(e.ctx); err != nil {
		t.Errorf("the changing session after the change: %v", err)
	}
	if _, err := other.ListFolders(e.ctx); !errors.Is(err, sexmap.ErrLoginFailed) {
		t.Errorf("another device's session after the change: %v, want its renewal to fail (old passphrase)", err)
	}
	if other.ID() != otherID {
		t.Error("the other device got a new session without the new passphrase")
	}
	newCred, _ := e.srv.Memback.Credentials("alice@example.org")
	if bytes.Equal(oldCred.KDF.Salt, newCred.KDF.Salt) || bytes.Equal(oldCred.LoginKey, newCred.LoginKey) || bytes.Equal(oldCred.SealedKey, newCred.SealedKey) {
		t.Error("salt, login key or sealed key unchanged")
	}
	if _, err := c.Login(e.ctx, "alice@example.org", []byte("old pass")); !errors.Is(err, sexmap.ErrLoginFailed) {
		t.Errorf("old passphrase: %v", err)
	}
	s2 := e.login(c, "alice@example.org", "new pass")
	if s2.Fingerprint() != s.Fingerprint() {
		t.Error("the key changed with the passphrase")
	}
	if m, err := s2.Read(e.ctx, id); err != nil || m.Text != "kept\r\n" {
		t.Errorf("old mail after passphrase change: %v", err)
	}
	// The first session renews with the new login key.
	e.srv.EndSession(s.ID())
	if _, err := s.ListFolders(e.ctx); err != nil {
		t.Errorf("renewal after passphrase change: %v", err)
	}
	checkHome(t, home, "new pass")
}

func TestPinChanged(t *testing.T) {
	e := newEnv(t)
	home := t.TempDir()
	c := e.client(home)
	e.signup(c, "alice@example.org", "pass")
	old := sexmap.EncodePublicKey(e.srv.PublicKey())
	if err := e.srv.RotateKey(); err != nil {
		t.Fatal(err)
	}
	_, err := c.Login(e.ctx, "alice@example.org", []byte("pass"))
	var kc *client.KeyChangedError
	if !errors.As(err, &kc) || !errors.Is(err, sexmap.ErrServerKeyChanged) {
		t.Fatalf("login after the key changed = %v", err)
	}
	presented := sexmap.EncodePublicKey(e.srv.PublicKey())
	msg := err.Error()
	if kc.Pinned != old || kc.Presented != presented || !strings.Contains(msg, old) || !strings.Contains(msg, presented) ||
		!strings.Contains(msg, filepath.Join(home, client.PinFile)) {
		t.Errorf("error %q", msg)
	}
	// A second client of the same home refuses too: the pin is on disk.
	if _, err := e.client(home).LookupSalt(e.ctx, "alice@example.org"); !errors.As(err, &kc) {
		t.Errorf("same home, new client: %v", err)
	}
	// An explicitly configured key that differs from the pin is refused as well.
	c3, _ := client.New(client.Options{Server: e.srv.URL, Home: home, ServerKey: e.srv.PublicKey(), KDFParams: sexmap.MinKDFParams})
	if _, err := c3.LookupSalt(e.ctx, "alice@example.org"); !errors.As(err, &kc) {
		t.Errorf("configured key vs pin: %v", err)
	}
	if err := c.ResetPin(); err != nil {
		t.Fatal(err)
	}
	e.login(c, "alice@example.org", "pass")
}

func TestSessionRenewal(t *testing.T) {
	e := newEnv(t)
	s := e.signup(e.client(""), "alice@example.org", "pass")
	first := s.ID()
	e.srv.Clock().Advance(31 * time.Minute) // past the idle timeout
	if _, err := s.ListFolders(e.ctx); err != nil {
		t.Fatalf("after idle expiry: %v", err)
	}
	second := s.ID()
	if second == first {
		t.Error("session not renewed")
	}
	// Many requests find the session gone at once: one renewal serves them all.
	e.srv.EndSession(second)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := s.ListFolders(e.ctx)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if err := s.Logout(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListFolders(e.ctx); !errors.Is(err, client.ErrSessionClosed) {
		t.Errorf("after logout: %v", err)
	}
	if s.Fingerprint() != "" {
		t.Error("the key outlived the logout")
	}
}

func TestLoginFromAnotherHome(t *testing.T) {
	e := newEnv(t)
	first := e.signup(e.client(""), "alice@example.org", "pass")
	id, err := e.srv.Deliver(e.ctx, "alice@example.org", []byte("Subject: hi\r\n\r\nreadable anywhere\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	s := e.login(e.client(home), "Alice@Example.org", "pass") // another device, another spelling
	if s.Fingerprint() != first.Fingerprint() {
		t.Fatalf("key %q on the second device, %q on the first", s.Fingerprint(), first.Fingerprint())
	}
	if m, err := s.Read(e.ctx, id); err != nil || m.Text != "readable anywhere\r\n" {
		t.Errorf("read on the second device: %v", err)
	}
	acct, err := s.Account(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The home holds no key material, sealed or not.
	filepath.WalkDir(home, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := os.ReadFile(path)
			if bytes.Contains(data, acct.SealedKey[1:25]) || bytes.Contains(data, []byte(base64Prefix(acct.SealedKey))) {
				t.Errorf("%s holds the sealed key", path)
			}
		}
		return err
	})
}

func base64Prefix(b []byte) string { return base64.StdEncoding.EncodeToString(b)[:32] }

func TestActivatePreCreated(t *testing.T) {
	e := newEnv(t)
	key, err := cmcrypto.GenerateKey("Alice", "alice@example.org", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	if err := key.Serialize(&pub); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.AddUser("alice@example.org", pub.Bytes()); err != nil {
		t.Fatal(err)
	}
	id, err := e.srv.Deliver(e.ctx, "alice@example.org", []byte("Subject: early\r\n\r\nwaiting for you\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := key.EncryptPrivateKeys([]byte("gpg pass"), nil); err != nil {
		t.Fatal(err)
	}
	var armored bytes.Buffer
	w, _ := armor.Encode(&armored, openpgp.PrivateKeyType, nil)
	if err := key.SerializePrivateWithoutSigning(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()

	c := e.client("")
	params := client.SignupParams{Invite: e.invite("alice@example.org"), Address: "alice@example.org", Passphrase: []byte("new pass"), PrivateKey: armored.Bytes()}
	params.KeyPassphrase = func() ([]byte, error) { return []byte("wrong"), nil }
	if _, err := c.Signup(e.ctx, params); !errors.Is(err, client.ErrBadKey) {
		t.Fatalf("wrong key passphrase = %v", err)
	}
	params.KeyPassphrase = func() ([]byte, error) { return []byte("gpg pass"), nil }
	if _, err := c.Signup(e.ctx, params); err != nil {
		t.Fatal(err)
	}
	s := e.login(c, "alice@example.org", "new pass")
	m, err := s.Read(e.ctx, id)
	if err != nil || m.Text != "waiting for you\r\n" {
		t.Errorf("mail delivered before activation: %+v %v", m, err)
	}

	// A public key file is not a private key.
	armored.Reset()
	w, _ = armor.Encode(&armored, openpgp.PublicKeyType, nil)
	key.Serialize(w)
	w.Close()
	if _, err := client.ReadPrivateKey(armored.Bytes(), nil); !errors.Is(err, client.ErrBadKey) {
		t.Errorf("public key accepted as private: %v", err)
	}
}

func TestServerURL(t *testing.T) {
	for _, bad := range []string{"", "ftp://x", "127.0.0.1:8080", "http://", "http://u:p@host", "http://h/?q=1"} {
		if _, err := client.New(client.Options{Server: bad}); err == nil {
			t.Errorf("server %q accepted", bad)
		}
	}
	c, err := client.New(client.Options{Server: "HTTP://Example.ORG:8080/"})
	if err != nil || c.Server() != "http://example.org:8080" {
		t.Errorf("normalized %q, %v", c.Server(), err)
	}
	if _, err := client.New(client.Options{Server: "http://x", KDFParams: sexmap.KDFParams{Time: 1, MemoryKiB: 8, Threads: 1}}); err == nil {
		t.Error("KDF parameters below the floor accepted")
	}
}
