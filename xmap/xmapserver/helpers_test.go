package xmapserver_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"cryptomail/xmap"
	"cryptomail/xmap/xmapserver"
	"cryptomail/xmap/xmapserver/memback"
	"cryptomail/xmap/xmapserver/xmaptest"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type world struct {
	t     *testing.T
	b     *memback.Backend
	srv   *xmapserver.Server
	clock *clock
}

func newWorld(t *testing.T, opts memback.Options) *world {
	t.Helper()
	c := &clock{t: time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC)}
	opts.Now = c.now
	if opts.LocalDomains == nil {
		opts.LocalDomains = []string{"example.org"}
	}
	b := memback.New(opts)
	return &world{t: t, b: b, srv: &xmapserver.Server{Backend: b}, clock: c}
}

// session talks XMAP as a Go client does: encode, Handle, decode.
type session struct {
	w      *world
	user   string
	anon   bool
	proven bool // requests carry proof of the login key (xmapserver.WithLoginProof)
}

func (w *world) anon() *session { return &session{w: w, anon: true} }

func (w *world) as(user string) *session { return &session{w: w, user: user} }

// proven is as, for the first request of a login just made: with proof of the login key.
func (w *world) proven(user string) *session { return &session{w: w, user: user, proven: true} }

// signup creates an active account through the protocol.
func (w *world) signup(address string) *session {
	w.t.Helper()
	code := "invite-" + address
	w.b.AddInvite(code, address, w.clock.now().Add(time.Hour))
	r := w.anon().one(signupReq(code, address, []byte("key of "+address)))
	xmaptest.OK[*xmap.SignupResult](w.t, r)
	return w.as(address)
}

func signupReq(invite, address string, pub []byte) *xmap.Signup {
	return &xmap.Signup{
		Invite:    invite,
		Address:   address,
		PublicKey: pub,
		LoginKey:  bytes.Repeat([]byte{7}, xmap.LoginKeySize),
		KDF:       xmap.KDF{Alg: xmap.KDFArgon2id, Salt: bytes.Repeat([]byte{1}, 16), Time: 3, Memory: 65536, Threads: 4},
		SealedKey: []byte("sealed"),
	}
}

// raw runs a document and returns the response document.
func (s *session) raw(doc []byte) []byte {
	ctx := context.Background()
	if s.proven {
		ctx = xmapserver.WithLoginProof(ctx)
	}
	return s.w.srv.Handle(ctx, s.user, s.anon, doc)
}

func (s *session) do(cmds ...xmap.Command) []xmap.Response {
	s.w.t.Helper()
	return xmaptest.Exchange(s.w.t, s.raw, cmds...)
}

func (s *session) one(c xmap.Command) xmap.Response {
	s.w.t.Helper()
	return s.do(c)[0]
}

func (s *session) folders() map[string]xmap.Folder {
	s.w.t.Helper()
	res := xmaptest.OK[*xmap.ListFoldersResult](s.w.t, s.one(&xmap.ListFolders{}))
	m := map[string]xmap.Folder{}
	for _, f := range res.Folders {
		m[f.Name] = f
	}
	return m
}

func (s *session) state() string {
	s.w.t.Helper()
	return xmaptest.OK[*xmap.WaitResult](s.w.t, s.one(&xmap.Wait{Since: "none", Timeout: 0})).State
}

func (s *session) list(folder string) []xmap.Message {
	s.w.t.Helper()
	res := xmaptest.OK[*xmap.ListMessagesResult](s.w.t, s.one(&xmap.ListMessages{Folder: byName(folder), Limit: xmap.MaxPageSize}))
	return res.Messages
}

func (s *session) message(id string) xmap.Message {
	s.w.t.Helper()
	res := xmaptest.OK[*xmap.FetchResult](s.w.t, s.one(&xmap.Fetch{IDs: []string{id}, Parts: xmap.PartSummary | xmap.PartBody}))
	if len(res.Messages) != 1 {
		s.w.t.Fatalf("message %s: %+v", id, res)
	}
	return res.Messages[0]
}

func (w *world) deliver(to string, body string) string {
	w.t.Helper()
	w.clock.add(time.Minute)
	id, err := w.b.Deliver(context.Background(), to, []byte(body), []byte("summary of "+body), time.Time{})
	if err != nil {
		w.t.Fatal(err)
	}
	return id
}

func byName(name string) xmap.FolderRef { return xmap.FolderRef{Name: name} }
func byID(id string) xmap.FolderRef     { return xmap.FolderRef{ID: id} }
