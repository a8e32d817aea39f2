package deliver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	cmcrypto "cryptomail/crypto"
	"cryptomail/server/internal/deliver"
	"cryptomail/shard"
	"cryptomail/xmap"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// key is a generated key pair: the private half to read what was stored,
// the armored public one for the store.
type key struct {
	priv    openpgp.EntityList
	armored []byte
}

var (
	keysOnce sync.Once
	keyA     key
	keyB     key
)

func keys(t *testing.T) (key, key) {
	t.Helper()
	keysOnce.Do(func() {
		for _, k := range []*key{&keyA, &keyB} {
			e, err := cmcrypto.GenerateKey("U", "u@example.test", nil, time.Now())
			if err != nil {
				panic(err)
			}
			pk, err := cmcrypto.NewPublicKey(e, time.Now())
			if err != nil {
				panic(err)
			}
			k.armored, _ = pk.Armored()
			k.priv = openpgp.EntityList{e}
		}
	})
	return keyA, keyB
}

// fakeStore is a Store in memory whose behaviour is set by fields.
type fakeStore struct {
	mu      sync.Mutex
	state   string // "" : no such user
	key     []byte
	used    int64
	stored  []shard.NewMessage
	commits int
	// beforeCommit runs inside DeliverSealed before its key check (a key
	// replaced in between, say).
	beforeCommit func(s *fakeStore)
	commitErr    error
}

func (s *fakeStore) User(_ context.Context, a string) (shard.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == "" {
		return shard.User{}, shard.ErrNotFound
	}
	return shard.User{Address: a, State: s.state}, nil
}

func (s *fakeStore) DeliveryKey(context.Context, string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key == nil {
		return nil, shard.ErrNotFound
	}
	return bytes.Clone(s.key), nil
}

func (s *fakeStore) DeliverSealed(_ context.Context, _ string, sealedTo []byte, m shard.NewMessage) (int64, uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commits++
	if s.beforeCommit != nil {
		s.beforeCommit(s)
	}
	if s.commitErr != nil {
		return 0, 0, s.commitErr
	}
	if !bytes.Equal(sealedTo, s.key) {
		return 0, 0, shard.ErrKeyChanged
	}
	return s.insert(m, m.Quota)
}

func (s *fakeStore) Append(_ context.Context, _ string, _ shard.FolderRef, m shard.NewMessage, quota int64) (shard.MessageInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commits++
	if s.commitErr != nil {
		return shard.MessageInfo{}, s.commitErr
	}
	id, _, err := s.insert(m, quota)
	return shard.MessageInfo{ID: id, SummaryBy: m.SummaryBy}, err
}

func (s *fakeStore) insert(m shard.NewMessage, quota int64) (int64, uint32, error) {
	n := int64(len(m.Summary) + len(m.Body))
	if quota > 0 && s.used+n > quota {
		return 0, 0, shard.ErrQuota
	}
	s.used += n
	s.stored = append(s.stored, m)
	return int64(len(s.stored)), uint32(len(s.stored)), nil
}

var _ deliver.Store = (*fakeStore)(nil)

const mailbox = "bob@example.test"

var msg = []byte("From: alice@elsewhere.test\r\nSubject: hello\r\n\r\nHi Bob.\r\n")

// TestDeliver: every refusal stores nothing and notifies nobody; every
// success stores once and notifies once, after the commit.
func TestDeliver(t *testing.T) {
	a, b := keys(t)
	big := bytes.Repeat([]byte("x"), xmap.MaxMessageSize+1)
	for _, tt := range []struct {
		name    string
		store   *fakeStore
		quota   deliver.Quota
		msg     deliver.Message
		want    error // nil: stored
		commits int   // DeliverSealed calls
	}{
		{name: "stored", store: &fakeStore{state: shard.StateActive, key: a.armored}, commits: 1},
		{name: "unknown user", store: &fakeStore{key: a.armored}, want: deliver.ErrUnknownUser},
		{name: "inactive user", store: &fakeStore{state: "disabled", key: a.armored}, want: deliver.ErrUnknownUser},
		{name: "checked at intake: no second lookup", store: &fakeStore{state: "disabled", key: a.armored},
			msg: deliver.Message{Checked: true}, commits: 1},
		{name: "no key", store: &fakeStore{state: shard.StateActive}, want: deliver.ErrUnknownUser},
		{name: "key unusable", store: &fakeStore{state: shard.StateActive, key: []byte("not a key")}, want: deliver.ErrKeyUnusable},
		{name: "too large", store: &fakeStore{state: shard.StateActive, key: a.armored}, msg: deliver.Message{Body: big}, want: deliver.ErrTooLarge},
		{name: "too large with its trace", store: &fakeStore{state: shard.StateActive, key: a.armored},
			msg: deliver.Message{Trace: []byte("X: y\r\n"), Body: big[:xmap.MaxMessageSize-3]}, want: deliver.ErrTooLarge},
		{name: "sealed form too large", store: &fakeStore{state: shard.StateActive, key: a.armored},
			msg: deliver.Message{Body: big[:xmap.MaxMessageSize-10]}, want: deliver.ErrTooLarge},
		{name: "quota refuses", store: &fakeStore{state: shard.StateActive, key: a.armored, used: 1000},
			quota: func(context.Context, string) (int64, error) { return 1010, nil }, want: deliver.ErrOverQuota, commits: 1},
		{name: "quota hook fails", store: &fakeStore{state: shard.StateActive, key: a.armored},
			quota: func(context.Context, string) (int64, error) { return 0, shard.ErrBusy }, want: deliver.ErrBusy},
		{name: "quota allows", store: &fakeStore{state: shard.StateActive, key: a.armored},
			quota: func(context.Context, string) (int64, error) { return 1 << 20, nil }, commits: 1},
		{name: "key changed between lookup and commit", commits: 2,
			store: &fakeStore{state: shard.StateActive, key: a.armored, beforeCommit: func(s *fakeStore) {
				s.key, s.beforeCommit = b.armored, nil
			}}},
		{name: "key changing at every commit", commits: 3, want: shard.ErrKeyChanged,
			store: &fakeStore{state: shard.StateActive, key: a.armored, beforeCommit: func(s *fakeStore) {
				if bytes.Equal(s.key, a.armored) {
					s.key = b.armored
				} else {
					s.key = a.armored
				}
			}}},
		{name: "busy", store: &fakeStore{state: shard.StateActive, key: a.armored, commitErr: shard.ErrBusy}, want: deliver.ErrBusy, commits: 1},
		{name: "disk full", store: &fakeStore{state: shard.StateActive, key: a.armored, commitErr: shard.ErrNoSpace}, want: deliver.ErrNoSpace, commits: 1},
		{name: "deleted before the commit", store: &fakeStore{state: shard.StateActive, key: a.armored, commitErr: shard.ErrNotFound},
			want: deliver.ErrUnknownUser, commits: 1},
		{name: "summary given from outside", store: &fakeStore{state: shard.StateActive, key: a.armored},
			msg: deliver.Message{Summary: []byte("x"), Source: deliver.FromOutside}, want: errors.New("any")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := tt.store
			var notified []string
			d := deliver.New(st, deliver.Options{Quota: tt.quota, Notify: func(mb string) {
				st.mu.Lock()
				n := len(st.stored)
				st.mu.Unlock()
				if n == 0 {
					t.Error("notified before the commit")
				}
				notified = append(notified, mb)
			}})
			m := tt.msg
			m.Mailbox = mailbox
			if m.Body == nil {
				m.Body = msg
			}
			res, err := d.Deliver(context.Background(), &m)
			if st.commits != tt.commits {
				t.Errorf("%d commits, want %d", st.commits, tt.commits)
			}
			if tt.want != nil {
				if err == nil {
					t.Fatal("stored, want an error")
				}
				if tt.want.Error() != "any" && !errors.Is(err, tt.want) {
					t.Fatalf("%v, want %v", err, tt.want)
				}
				if strings.Contains(err.Error(), "Hi Bob") || strings.Contains(err.Error(), "xxxx") {
					t.Errorf("message content in the error: %v", err)
				}
				if len(st.stored) != 0 || len(notified) != 0 {
					t.Fatalf("%d stored, %d notified on an error", len(st.stored), len(notified))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(st.stored) != 1 || len(notified) != 1 || notified[0] != mailbox {
				t.Fatalf("%d stored, notified %v; want one of each", len(st.stored), notified)
			}
			got := st.stored[0]
			if res.ID != 1 || res.Size != int64(len(got.Body)) || res.SummaryBy != got.SummaryBy {
				t.Errorf("result %+v does not describe what was stored", res)
			}
			// Sealed to the key that was current at the commit.
			priv := a.priv
			if bytes.Equal(st.key, b.armored) {
				priv = b.priv
			}
			plain, err := cmcrypto.Decrypt(priv, got.Body)
			if err != nil || !bytes.Equal(plain, msg) {
				t.Fatalf("stored body does not decrypt to the message: %v", err)
			}
			if got.Size != int64(len(msg)) {
				t.Errorf("size %d, want %d", got.Size, len(msg))
			}
		})
	}
}

// TestSummaryOrigin: the summary's origin per caller, and the summary the
// server makes, completed from the envelope.
func TestSummaryOrigin(t *testing.T) {
	a, _ := keys(t)
	client := []byte("a client's sealed summary")
	noFrom := []byte("Subject: no from\r\n\r\nbody\r\n")
	for _, tt := range []struct {
		name    string
		src     deliver.Source
		summary []byte
		want    string
	}{
		{"LMTP, SMTP or bounce", deliver.FromOutside, nil, shard.SummaryByServer},
		{"send to another user, client's summary", deliver.FromUser, client, shard.SummaryBySender},
		{"send to another user, made here", deliver.FromUser, nil, shard.SummaryBySender},
		{"send to oneself, client's summary", deliver.FromSelf, client, shard.SummaryByOwner},
		{"send to oneself, made here", deliver.FromSelf, nil, shard.SummaryByOwner},
		{"Sent copy, client's summary", deliver.SentCopy, client, shard.SummaryByOwner},
		{"Sent copy, made here", deliver.SentCopy, nil, shard.SummaryByServer},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := &fakeStore{state: shard.StateActive, key: a.armored}
			d := deliver.New(st, deliver.Options{})
			res, err := d.Deliver(context.Background(), &deliver.Message{
				Mailbox: mailbox, Body: noFrom, Summary: tt.summary, Source: tt.src,
				EnvFrom: "alice@example.test", EnvTo: mailbox,
			})
			if err != nil {
				t.Fatal(err)
			}
			got := st.stored[0]
			if got.SummaryBy != tt.want || res.SummaryBy != tt.want {
				t.Errorf("origin %q (result %q), want %q", got.SummaryBy, res.SummaryBy, tt.want)
			}
			if tt.summary != nil {
				if !bytes.Equal(got.Summary, tt.summary) {
					t.Error("the client's summary was not stored as given")
				}
				return
			}
			js, err := cmcrypto.Decrypt(a.priv, got.Summary)
			if err != nil {
				t.Fatal(err)
			}
			var sm cmcrypto.Summary
			if err := json.Unmarshal(js, &sm); err != nil {
				t.Fatal(err)
			}
			if sm.From != "alice@example.test" || len(sm.To) != 1 || sm.To[0] != mailbox || sm.Subject != "no from" {
				t.Errorf("summary %+v not completed from the envelope", sm)
			}
		})
	}
}

// TestAppend: append keeps the owner's ciphertext and summary, under the
// same account and quota rules, and notifies once.
func TestAppend(t *testing.T) {
	a, _ := keys(t)
	limit := func(n int64) deliver.Quota {
		return func(context.Context, string) (int64, error) { return n, nil }
	}
	for _, tt := range []struct {
		name  string
		store *fakeStore
		quota deliver.Quota
		body  []byte
		want  error
	}{
		{name: "stored", store: &fakeStore{state: shard.StateActive, key: a.armored}},
		{name: "unknown user", store: &fakeStore{}, want: deliver.ErrUnknownUser},
		{name: "inactive user", store: &fakeStore{state: "disabled"}, want: deliver.ErrUnknownUser},
		{name: "too large", store: &fakeStore{state: shard.StateActive}, body: make([]byte, xmap.MaxMessageSize+1), want: deliver.ErrTooLarge},
		{name: "quota refuses", store: &fakeStore{state: shard.StateActive}, quota: limit(10), want: deliver.ErrOverQuota},
		{name: "busy", store: &fakeStore{state: shard.StateActive, commitErr: shard.ErrBusy}, want: deliver.ErrBusy},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := tt.store
			n := 0
			d := deliver.New(st, deliver.Options{Quota: tt.quota, Notify: func(string) { n++ }})
			body := tt.body
			if body == nil {
				body = []byte("the owner's ciphertext")
			}
			info, err := d.Append(context.Background(), mailbox, shard.FolderRef{Name: "Archive"}, shard.NewMessage{
				Summary: []byte("owner's summary"), Body: body, SummaryBy: shard.SummaryByServer, // overruled
			})
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("%v, want %v", err, tt.want)
				}
				if len(st.stored) != 0 || n != 0 {
					t.Fatalf("%d stored, %d notified on an error", len(st.stored), n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(st.stored) != 1 || n != 1 {
				t.Fatalf("%d stored, %d notified; want one of each", len(st.stored), n)
			}
			got := st.stored[0]
			if !bytes.Equal(got.Body, body) || got.SummaryBy != shard.SummaryByOwner || info.SummaryBy != shard.SummaryByOwner || got.Received.IsZero() {
				t.Errorf("stored %+v", got)
			}
		})
	}
}

// TestTraceFields: the trace fields of mail from a client and of a local
// submission, in the message's own line ending, without control characters.
func TestTraceFields(t *testing.T) {
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tt := range []struct {
		name string
		env  deliver.Envelope
		msg  string
		want string
	}{
		{"LMTP", deliver.Envelope{From: "a@x.test", Helo: "mx.x.test", RemoteAddr: "192.0.2.1:25", Hostname: "h.test", Protocol: "LMTP", Received: when},
			"S: s\r\n\r\nb\r\n",
			"Return-Path: <a@x.test>\r\nDelivered-To: bob@example.test\r\nReceived: from mx.x.test (192.0.2.1:25)\r\n\tby h.test with LMTP\r\n\tfor <Bob@example.test>; Fri, 02 Jan 2026 03:04:05 +0000\r\n"},
		{"send, bare LF", deliver.Envelope{From: "a@example.test", Hostname: "h.test", Protocol: "XMAP", Received: when},
			"S: s\n\nb\n",
			"Return-Path: <a@example.test>\nDelivered-To: bob@example.test\nReceived: by h.test with XMAP\n\tfor <Bob@example.test>; Fri, 02 Jan 2026 03:04:05 +0000\n"},
		{"injection", deliver.Envelope{From: "a@x.test\r\nX-Evil: 1", Helo: "h\r\nX: y", Hostname: "h.test", Protocol: "SMTP", Received: when},
			"S: s\r\n\r\nb\r\n",
			"Return-Path: <a@x.testX-Evil: 1>\r\nDelivered-To: bob@example.test\r\nReceived: from hX: y ()\r\n\tby h.test with SMTP\r\n\tfor <Bob@example.test>; Fri, 02 Jan 2026 03:04:05 +0000\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := string(deliver.TraceFields(&tt.env, mailbox, "Bob@example.test", []byte(tt.msg)))
			if got != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// TestConcurrentNotify: concurrent deliveries to one mailbox each store
// once and notify once.
func TestConcurrentNotify(t *testing.T) {
	a, _ := keys(t)
	st := &fakeStore{state: shard.StateActive, key: a.armored}
	var mu sync.Mutex
	n := 0
	d := deliver.New(st, deliver.Options{Notify: func(string) { mu.Lock(); n++; mu.Unlock() }})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := d.Deliver(context.Background(), &deliver.Message{Mailbox: mailbox, Body: msg}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if len(st.stored) != 8 || n != 8 {
		t.Fatalf("%d stored, %d notified; want 8 of each", len(st.stored), n)
	}
}

// TestRealStore: on a real shard store, the quota is checked inside the
// commit and a refused message leaves the usage as it was.
func TestRealStore(t *testing.T) {
	a, _ := keys(t)
	ctx := context.Background()
	root := t.TempDir()
	st, err := shard.Open(ctx, shard.Options{DataDir: root + "/data", Homes: []string{root + "/home"}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.CreateUser(ctx, mailbox, a.armored); err != nil {
		t.Fatal(err)
	}
	var limit int64
	d := deliver.New(st, deliver.Options{Quota: func(context.Context, string) (int64, error) { return limit, nil }})
	if _, err := d.Deliver(ctx, &deliver.Message{Mailbox: mailbox, Body: msg}); err != nil {
		t.Fatal(err)
	}
	used, err := st.Usage(ctx, mailbox)
	if err != nil {
		t.Fatal(err)
	}
	limit = used + 10
	if _, err := d.Deliver(ctx, &deliver.Message{Mailbox: mailbox, Body: msg}); !errors.Is(err, deliver.ErrOverQuota) {
		t.Fatalf("%v, want ErrOverQuota", err)
	}
	if now, _ := st.Usage(ctx, mailbox); now != used {
		t.Fatalf("usage %d after a refusal, want %d", now, used)
	}
	limit = 0
	if _, err := d.Deliver(ctx, &deliver.Message{Mailbox: mailbox, Body: msg}); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := st.Messages(ctx, mailbox, func(shard.Message) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d messages stored, want 2", n)
	}
}
