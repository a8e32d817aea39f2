// Package xmaptest checks that an xmapserver.Backend behaves as XMAP says
// (docs/XMAP.md) for folders, messages (all but send), contacts, delta sync
// and wait: the executable spec that memback, the in-memory reference, and
// the shard-backed backend both pass. Tests speak XMAP documents through an
// xmapserver.Server, as a client does.
//
//	func TestConformance(t *testing.T) {
//		xmaptest.Run(t, func(t *testing.T, cfg xmaptest.Config) xmaptest.Fixture { ... })
//	}
package xmaptest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"cryptomail/xmap"
	"cryptomail/xmap/xmapserver"
)

// Config is what a test needs the backend under test to be configured with.
type Config struct {
	Quota      int64 // stored bytes per account (summaries, bodies, contacts); 0: none
	MaxFolders int   // folders per account, system ones included; 0: the backend's default
}

// A Fixture is a backend under test, with the powers tests need besides XMAP.
type Fixture interface {
	// Backend is the backend under test. Only its folder, message (but
	// Send), contact and sync methods are used.
	Backend() xmapserver.Backend
	// AddUser creates an account that can log in, with its system folders
	// and nothing else.
	AddUser(ctx context.Context, address string) error
	// Deliver stores an arriving message in address's INBOX, received at
	// the given time, as mail delivery does (waking the user's waits), and
	// returns its id.
	Deliver(ctx context.Context, address string, body, summary []byte, received time.Time) (string, error)
}

// A Snapshotter is a Fixture that can also describe everything an account
// stores, from the storage's side, for the isolation test to compare.
type Snapshotter interface {
	Snapshot(ctx context.Context, address string) (string, error)
}

// Run runs every check, each on a new Fixture.
func Run(t *testing.T, newFixture func(t *testing.T, cfg Config) Fixture) {
	tests := []struct {
		name string
		cfg  Config
		fn   func(*world)
	}{
		{"Folders", Config{MaxFolders: 7}, testFolders},
		{"ListMessagesPaging", Config{}, testListMessagesPaging},
		{"Messages", Config{}, testMessages},
		{"Quota", Config{Quota: quotaForTest}, testQuota},
		{"CopyLimit", Config{}, testCopyLimit},
		{"Contacts", Config{}, testContacts},
		{"ChangesAndWait", Config{}, testChangesAndWait},
		{"Batch", Config{}, testBatch},
		{"Isolation", Config{}, testIsolation},
		{"FetchBudget", Config{}, testFetchBudget},
		{"AppendSize", Config{}, testAppendSize},
		{"ConcurrentSessions", Config{}, testConcurrentSessions},
		{"SummaryOrigin", Config{}, testSummaryOrigin},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, tc.cfg)
			tc.fn(&world{t: t, fx: fx, srv: &xmapserver.Server{Backend: fx.Backend()}, now: time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC)})
		})
	}
}

type world struct {
	t   *testing.T
	fx  Fixture
	srv *xmapserver.Server

	mu  sync.Mutex
	now time.Time // the received time of the next delivery
}

// session talks XMAP as a Go client does: encode, Handle, decode.
type session struct {
	w    *world
	user string
}

func (w *world) user(address string) *session {
	w.t.Helper()
	if err := w.fx.AddUser(context.Background(), address); err != nil {
		w.t.Fatalf("AddUser(%s): %v", address, err)
	}
	return &session{w: w, user: address}
}

// deliver delivers a message a minute after the previous one.
func (w *world) deliver(to, body string) string {
	w.t.Helper()
	w.mu.Lock()
	w.now = w.now.Add(time.Minute)
	at := w.now
	w.mu.Unlock()
	return w.deliverAt(to, []byte(body), []byte("summary of "+body), at)
}

func (w *world) deliverAt(to string, body, summary []byte, at time.Time) string {
	w.t.Helper()
	id, err := w.fx.Deliver(context.Background(), to, body, summary, at)
	if err != nil {
		w.t.Fatalf("Deliver(%s): %v", to, err)
	}
	return id
}

func (s *session) raw(doc []byte) []byte {
	return s.w.srv.Handle(context.Background(), s.user, false, doc)
}

func (s *session) do(cmds ...xmap.Command) []xmap.Response {
	s.w.t.Helper()
	return Exchange(s.w.t, s.raw, cmds...)
}

// Exchange sends cmds as one XMAP document (request ids r0, r1, ...) through
// handle, which returns the response document, and returns the responses. It
// fails t when the response does not decode, the document is refused, or the
// responses do not answer the requests one to one.
func Exchange(t testing.TB, handle func(doc []byte) []byte, cmds ...xmap.Command) []xmap.Response {
	t.Helper()
	batch := &xmap.Batch{}
	for i, c := range cmds {
		batch.Requests = append(batch.Requests, xmap.Request{ID: fmt.Sprintf("r%d", i), Command: c})
	}
	var req bytes.Buffer
	if err := xmap.EncodeRequest(&req, batch); err != nil {
		t.Fatal(err)
	}
	resp, err := xmap.DecodeResponse(bytes.NewReader(handle(req.Bytes())))
	if err != nil {
		t.Fatalf("response does not decode: %v", err)
	}
	if resp.Error != nil {
		t.Fatalf("document refused: %v", resp.Error)
	}
	if len(resp.Responses) != len(cmds) {
		t.Fatalf("%d responses for %d requests", len(resp.Responses), len(cmds))
	}
	for i, r := range resp.Responses {
		if r.ID != batch.Requests[i].ID || r.Name != cmds[i].Name() {
			t.Fatalf("response %d is %s %q, want %s %q", i, r.Name, r.ID, cmds[i].Name(), batch.Requests[i].ID)
		}
	}
	return resp.Responses
}

func (s *session) one(c xmap.Command) xmap.Response {
	s.w.t.Helper()
	return s.do(c)[0]
}

// OK returns a response's result as T, failing t on an error or another
// result type.
func OK[T xmap.Result](t testing.TB, r xmap.Response) T {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("%s: %v", r.Name, r.Err)
	}
	res, good := r.Result.(T)
	if !good {
		t.Fatalf("%s: result %T", r.Name, r.Result)
	}
	return res
}

// Fails checks that a response is an error with code.
func Fails(t testing.TB, r xmap.Response, code xmap.ErrorCode) {
	t.Helper()
	if r.Err == nil {
		t.Fatalf("%s: succeeded (%+v), want %s", r.Name, r.Result, code)
	}
	if r.Err.Code != code {
		t.Fatalf("%s: %v, want %s", r.Name, r.Err, code)
	}
}

func (s *session) folders() map[string]xmap.Folder {
	s.w.t.Helper()
	res := OK[*xmap.ListFoldersResult](s.w.t, s.one(&xmap.ListFolders{}))
	m := map[string]xmap.Folder{}
	for _, f := range res.Folders {
		m[f.Name] = f
	}
	return m
}

func (s *session) state() string {
	s.w.t.Helper()
	return OK[*xmap.WaitResult](s.w.t, s.one(&xmap.Wait{Since: "none", Timeout: 0})).State
}

// list returns a whole folder, newest first.
func (s *session) list(folder xmap.FolderRef) []xmap.Message {
	s.w.t.Helper()
	var all []xmap.Message
	cursor := ""
	for {
		res := OK[*xmap.ListMessagesResult](s.w.t, s.one(&xmap.ListMessages{Folder: folder, Limit: xmap.MaxPageSize, Cursor: cursor}))
		all = append(all, res.Messages...)
		if cursor = res.NextCursor; cursor == "" {
			return all
		}
	}
}

func (s *session) message(id string) xmap.Message {
	s.w.t.Helper()
	res := OK[*xmap.FetchResult](s.w.t, s.one(&xmap.Fetch{IDs: []string{id}, Parts: xmap.PartSummary | xmap.PartBody}))
	if len(res.Messages) != 1 {
		s.w.t.Fatalf("message %s: %+v", id, res)
	}
	return res.Messages[0]
}

func (s *session) contacts() []xmap.Contact {
	s.w.t.Helper()
	var all []xmap.Contact
	cursor := ""
	for {
		res := OK[*xmap.ListContactsResult](s.w.t, s.one(&xmap.ListContacts{Limit: xmap.MaxPageSize, Cursor: cursor}))
		all = append(all, res.Contacts...)
		if cursor = res.NextCursor; cursor == "" {
			return all
		}
	}
}

// dump describes everything of the session's account that XMAP shows: state,
// folders with counts, every message with flags, summary and body, contacts.
func (s *session) dump() string {
	s.w.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "state %s\n", s.state())
	fs := s.folders()
	names := make([]string, 0, len(fs))
	for n := range fs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := fs[n]
		fmt.Fprintf(&b, "folder %+v\n", f)
		for _, m := range s.list(byID(f.ID)) {
			full := s.message(m.ID)
			full.Summary = m.Summary
			fmt.Fprintf(&b, "  message %s in %s flags %q size %d received %s summary %q body %q\n",
				full.ID, full.FolderID, flagsOf(full), full.Size, full.Received.Format(time.RFC3339), full.Summary, full.Body)
		}
	}
	for _, c := range s.contacts() {
		fmt.Fprintf(&b, "contact %s %q\n", c.ID, c.Data)
	}
	return b.String()
}

func byName(name string) xmap.FolderRef { return xmap.FolderRef{Name: name} }
func byID(id string) xmap.FolderRef     { return xmap.FolderRef{ID: id} }

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

func refs(rs []xmap.ObjectRef) []string {
	var s []string
	for _, r := range rs {
		s = append(s, string(r.Kind)+":"+r.ID)
	}
	slices.Sort(s)
	return s
}
