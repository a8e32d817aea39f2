package mailback_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"cryptomail/server/internal/mailback"
	"cryptomail/shard"
	"cryptomail/xmap"
	"cryptomail/xmap/xmapserver"
	"cryptomail/xmap/xmapserver/xmaptest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testBackend is a whole xmapserver.Backend for tests: mailback for what it
// implements, and nothing for accounts and send, which other packages
// implement and these tests never call (a call would panic, and the server
// would answer internal).
type testBackend struct {
	*mailback.Mailboxes
	xmapserver.AccountBackend
	sender
}

type sender interface {
	Send(ctx context.Context, user string, req *xmap.Send) (*xmap.SendResult, error)
}

// fixture is mailback on a real store in a temporary directory.
type fixture struct {
	store *shard.Store
	mb    *mailback.Mailboxes
}

func openStore(t testing.TB) *shard.Store {
	t.Helper()
	root := t.TempDir()
	s, err := shard.Open(context.Background(), shard.Options{DataDir: filepath.Join(root, "data"), Homes: []string{filepath.Join(root, "home")}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newFixture(t testing.TB, opts mailback.Options) *fixture {
	t.Helper()
	s := openStore(t)
	opts.Logger = quiet
	return &fixture{store: s, mb: mailback.New(s, opts)}
}

func (f *fixture) Backend() xmapserver.Backend { return testBackend{Mailboxes: f.mb} }

func (f *fixture) AddUser(ctx context.Context, address string) error {
	_, err := f.store.CreateUser(ctx, address, []byte("key of "+address))
	return err
}

// Deliver stores as the LMTP delivery path does, then calls the Notifier hook.
func (f *fixture) Deliver(ctx context.Context, address string, body, summary []byte, received time.Time) (string, error) {
	id, _, err := f.store.Deliver(ctx, address, shard.NewMessage{Received: received, Size: int64(len(body)), Summary: summary, Body: body, SummaryBy: shard.SummaryByServer})
	if err != nil {
		return "", err
	}
	f.mb.Notifier().Notify(address)
	return strconv.FormatInt(id, 10), nil
}

// Snapshot describes everything the user's shard holds, tombstones and
// counters included.
func (f *fixture) Snapshot(ctx context.Context, address string) (string, error) {
	var b strings.Builder
	m, err := f.store.ModSeq(ctx, address)
	if err != nil {
		return "", err
	}
	used, err := f.store.Usage(ctx, address)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "modseq %d used %d\n", m, used)
	fs, err := f.store.Folders(ctx, address)
	if err != nil {
		return "", err
	}
	for _, f := range fs {
		fmt.Fprintf(&b, "folder %+v\n", f)
	}
	err = f.store.Messages(ctx, address, func(m shard.Message) error {
		fmt.Fprintf(&b, "message %+v\n", m)
		return nil
	})
	if err != nil {
		return "", err
	}
	if _, err := f.store.ListContacts(ctx, address, 1000, "", func(c shard.Contact) error {
		fmt.Fprintf(&b, "contact %+v\n", c)
		return nil
	}); err != nil {
		return "", err
	}
	cs, err := f.store.Changes(ctx, address, 0, 5000)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "changes %+v\n", cs)
	return b.String(), nil
}

// TestConformance runs the checks memback passes, on shards.
func TestConformance(t *testing.T) {
	xmaptest.Run(t, func(t *testing.T, cfg xmaptest.Config) xmaptest.Fixture {
		return newFixture(t, mailback.Options{Quota: cfg.Quota, MaxFolders: cfg.MaxFolders})
	})
}

// run runs one request as user and returns its response.
func run(t *testing.T, b xmapserver.Backend, user string, c xmap.Command) xmap.Response {
	t.Helper()
	var req bytes.Buffer
	if err := xmap.EncodeRequest(&req, &xmap.Batch{Requests: []xmap.Request{{ID: "r", Command: c}}}); err != nil {
		t.Fatal(err)
	}
	srv := &xmapserver.Server{Backend: b, Logger: quiet}
	resp, err := xmap.DecodeResponse(bytes.NewReader(srv.Handle(context.Background(), user, false, req.Bytes())))
	if err != nil || resp.Error != nil || len(resp.Responses) != 1 {
		t.Fatalf("%s: %+v %v", c.Name(), resp, err)
	}
	return resp.Responses[0]
}

func code(r xmap.Response) xmap.ErrorCode {
	if r.Err == nil {
		return ""
	}
	return r.Err.Code
}

// TestIDs: only the canonical decimal form of an id names an object, so each object has
// one id string, and anything else is not found.
func TestIDs(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, mailback.Options{})
	const a = "alice@example.org"
	if err := f.AddUser(ctx, a); err != nil {
		t.Fatal(err)
	}
	id, err := f.Deliver(ctx, a, []byte("body"), []byte("sum"), time.Time{})
	if err != nil || id != "1" {
		t.Fatalf("first message %q %v", id, err)
	}
	if _, err := f.store.PutContact(ctx, a, 0, []byte("c"), 0); err != nil {
		t.Fatal(err)
	}
	b := f.Backend()
	for _, bad := range []string{"01", "1.0", "-1", "0", "x1", "9223372036854775808"} {
		r := run(t, b, a, &xmap.Fetch{IDs: []string{bad}})
		if fr, _ := r.Result.(*xmap.FetchResult); fr == nil || len(fr.Messages) != 0 || len(fr.NotFound) != 1 {
			t.Errorf("fetch %q: %+v", bad, r)
		}
		for _, c := range []xmap.Command{
			&xmap.UpdateFlags{Action: xmap.FlagsAdd, Flags: []xmap.Flag{xmap.FlagSeen}, IDs: []string{bad}},
			&xmap.Move{Folder: xmap.FolderRef{Name: "Junk"}, IDs: []string{bad}},
			&xmap.Copy{Folder: xmap.FolderRef{Name: "Junk"}, IDs: []string{bad}},
			&xmap.Delete{IDs: []string{bad}},
			&xmap.ListMessages{Folder: xmap.FolderRef{ID: bad}},
			&xmap.Expunge{Folder: xmap.FolderRef{ID: bad}},
			&xmap.Append{Folder: xmap.FolderRef{ID: bad}, Body: xmaptest.Sealed("x")},
			&xmap.DeleteFolder{Folder: xmap.FolderRef{ID: bad}},
			&xmap.PutContact{Contact: xmap.Contact{ID: bad, Data: []byte("x")}},
			&xmap.DeleteContact{ID: bad},
		} {
			if r := run(t, b, a, c); code(r) != xmap.CodeNotFound {
				t.Errorf("%s with id %q: %+v", c.Name(), bad, r)
			}
		}
	}
	if r := run(t, b, a, &xmap.Changes{Since: "007"}); code(r) != xmap.CodeResyncRequired {
		t.Errorf("changes since 007: %+v", r)
	}
}

// TestAccountGone: a session whose account was deleted is denied, and says nothing else.
func TestAccountGone(t *testing.T) {
	f := newFixture(t, mailback.Options{})
	b := f.Backend()
	for _, c := range []xmap.Command{
		&xmap.ListFolders{},
		&xmap.ListMessages{Folder: xmap.FolderRef{Name: "INBOX"}},
		&xmap.Append{Folder: xmap.FolderRef{Name: "INBOX"}, Body: xmaptest.Sealed("x")},
		&xmap.Changes{Since: "1"},
		&xmap.Wait{Since: "1", Timeout: 1},
		&xmap.ListContacts{},
	} {
		r := run(t, b, "ghost@example.org", c)
		if code(r) != xmap.CodeDenied || strings.Contains(r.Err.Message, "/") {
			t.Errorf("%s for a deleted account: %+v", c.Name(), r.Err)
		}
	}
}

// TestWaitHook: a wait wakes when another part of the server stores mail and calls the
// Notifier, and, with no notification (another process wrote), answers the new state at
// its timeout.
func TestWaitHook(t *testing.T) {
	ctx := context.Background()
	n := new(mailback.Notifier)
	f := newFixture(t, mailback.Options{Notifier: n})
	if f.mb.Notifier() != n {
		t.Fatal("Mailboxes.Notifier is not the one given")
	}
	const a = "alice@example.org"
	if err := f.AddUser(ctx, a); err != nil {
		t.Fatal(err)
	}
	b := f.Backend()
	state := func() string { return run(t, b, a, &xmap.Wait{Since: "x", Timeout: 0}).Result.(*xmap.WaitResult).State }
	s0 := state()
	done := make(chan xmap.Response)
	go func() { done <- run(t, b, a, &xmap.Wait{Since: s0, Timeout: xmap.MaxWaitSeconds}) }()
	if _, _, err := f.store.Deliver(ctx, a, shard.NewMessage{Body: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	n.Notify("Alice@Example.org") // addresses compare ignoring case
	if r := (<-done).Result.(*xmap.WaitResult); !r.Changed || r.State == s0 || r.State != state() {
		t.Errorf("woken wait: %+v", r)
	}

	s1 := state()
	go func() { done <- run(t, b, a, &xmap.Wait{Since: s1, Timeout: 1}) }()
	if _, _, err := f.store.Deliver(ctx, a, shard.NewMessage{Body: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	if r := (<-done).Result.(*xmap.WaitResult); !r.Changed || r.State != state() {
		t.Errorf("wait without notification, at its timeout: %+v", r)
	}
}
