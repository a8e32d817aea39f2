package shard_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"cryptomail/shard"
)

func TestMigrationsIdempotent(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	s := e.open(t)
	u := mustCreate(t, s, "alice@example.org")
	if _, _, err := s.Deliver(ctx, u.Address, msg(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	metaPath := filepath.Join(e.dataDir, shard.MetaFile)
	shardPath := shard.ShardPath(u.Home, u.Address)
	wantMeta, wantShard := countMigrations(t, "meta"), countMigrations(t, "shard")
	for round := range 3 {
		if got := userVersion(t, metaPath); got != wantMeta {
			t.Fatalf("round %d: meta user_version = %d, want %d", round, got, wantMeta)
		}
		if got := userVersion(t, shardPath); got != wantShard {
			t.Fatalf("round %d: shard user_version = %d, want %d", round, got, wantShard)
		}
		s = e.open(t)
		n := 0
		if err := s.Messages(ctx, u.Address, func(shard.Message) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("round %d: %d messages after reopen, want 1", round, n)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	e := newEnv(t, 1)
	s := e.open(t)
	s.Close()
	db := rawDB(t, filepath.Join(e.dataDir, shard.MetaFile), "")
	if _, err := db.Exec("PRAGMA user_version = 999"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err := shard.Open(context.Background(), shard.Options{DataDir: e.dataDir, Homes: e.homes, Logger: quiet})
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open on a newer schema: err = %v, want a refusal", err)
	}
}

func TestSystemFolders(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 1).open(t)
	mustCreate(t, s, "alice@example.org")
	fs, err := s.Folders(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, role string }{
		{"INBOX", "inbox"}, {"Sent", "sent"}, {"Drafts", "drafts"}, {"Trash", "trash"}, {"Junk", "junk"},
	}
	if len(fs) != len(want) {
		t.Fatalf("got %d folders, want %d: %+v", len(fs), len(want), fs)
	}
	for i, f := range fs {
		if f.Name != want[i].name || f.Role != want[i].role || f.UIDNext != 1 || f.UIDValidity == 0 {
			t.Errorf("folder %d = %+v, want %s/%s with uidnext 1 and a uidvalidity", i, f, want[i].name, want[i].role)
		}
	}
}

func TestOpenOptions(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		opts shard.Options
	}{
		{"no data dir", shard.Options{Homes: []string{dir}}},
		{"no homes", shard.Options{DataDir: dir}},
		{"relative home", shard.Options{DataDir: dir, Homes: []string{"rel/home"}}},
		{"duplicate home", shard.Options{DataDir: dir, Homes: []string{dir + "/h", dir + "/h/"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := shard.Open(context.Background(), tt.opts)
			if err == nil {
				s.Close()
			}
			if !errors.Is(err, shard.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestPlacement(t *testing.T) {
	type phase struct {
		homes []int // indexes into the environment's homes, in configured order
		want  []int // home index each new user must land on
	}
	tests := []struct {
		name   string
		nHomes int
		phases []phase
	}{
		{"one home", 1, []phase{{[]int{0}, []int{0, 0, 0}}}},
		{"two homes alternate", 2, []phase{{[]int{0, 1}, []int{0, 1, 0, 1}}}},
		{"three homes round", 3, []phase{{[]int{0, 1, 2}, []int{0, 1, 2, 0, 1, 2, 0}}}},
		{"tie goes to configured order", 3, []phase{{[]int{2, 0, 1}, []int{2, 0, 1, 2}}}},
		{"new home fills up first", 2, []phase{
			{[]int{0}, []int{0, 0, 0}},
			{[]int{0, 1}, []int{1, 1, 1, 0, 1}},
		}},
		{"reordered homes keep their users", 3, []phase{
			{[]int{0, 1, 2}, []int{0, 1, 2}},
			{[]int{2, 0, 1}, []int{2, 0, 1, 2}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.nHomes)
			n := 0
			var created []shard.User
			for pi, ph := range tt.phases {
				var homes []string
				for _, i := range ph.homes {
					homes = append(homes, e.homes[i])
				}
				s := env{dataDir: e.dataDir, homes: homes}.open(t)
				for ui, want := range ph.want {
					n++
					u := mustCreate(t, s, "user"+strings.Repeat("x", n)+"@example.org")
					if u.Home != e.homes[want] {
						t.Fatalf("phase %d user %d: home %s, want %s", pi, ui, u.Home, e.homes[want])
					}
					created = append(created, u)
				}
				// Every earlier user is still reachable, whatever the homes now configured.
				for _, u := range created {
					if _, _, err := s.Deliver(context.Background(), u.Address, msg(0)); err != nil {
						t.Fatalf("phase %d: deliver to %s: %v", pi, u.Address, err)
					}
				}
				s.Close()
			}
		})
	}
}

func TestShardPath(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	s := e.open(t)
	const address = "alice.liddell@wonderland.example"
	u := mustCreate(t, s, address)
	sum := sha256.Sum256([]byte(address))
	h := hex.EncodeToString(sum[:])
	want := filepath.Join(e.homes[0], h[:2], h+".db")
	if got := shard.ShardPath(u.Home, address); got != want {
		t.Fatalf("ShardPath = %s, want %s", got, want)
	}
	rel, err := filepath.Rel(e.homes[0], want)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{"alice", "liddell", "wonderland", "example", "@"} {
		if strings.Contains(rel, part) {
			t.Errorf("shard path %s contains %q from the address", rel, part)
		}
	}
	fi, err := os.Stat(want)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("shard file mode %v, want 0600", perm)
	}
	di, err := os.Stat(filepath.Dir(want))
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm != 0o700 {
		t.Errorf("shard dir mode %v, want 0700", perm)
	}
	mi, err := os.Stat(filepath.Join(e.dataDir, shard.MetaFile))
	if err != nil {
		t.Fatal(err)
	}
	if perm := mi.Mode().Perm(); perm != 0o600 {
		t.Errorf("meta.db mode %v, want 0600", perm)
	}
	if _, _, err := s.Deliver(ctx, address, msg(1)); err != nil {
		t.Fatal(err)
	}
}

func TestUserErrors(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 2).open(t)
	u := mustCreate(t, s, "alice@example.org")
	if _, err := s.CreateUser(ctx, "alice@example.org", []byte("k")); !errors.Is(err, shard.ErrExists) {
		t.Errorf("second CreateUser: %v, want ErrExists", err)
	}
	got, err := s.User(ctx, "alice@example.org")
	if err != nil || got != u {
		t.Errorf("User = %+v, %v; want %+v", got, err, u)
	}
	if got.State != shard.StateActive || time.Since(got.Created) > time.Minute {
		t.Errorf("User = %+v: want active, created now", got)
	}
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"User", func() error { _, err := s.User(ctx, "bob@example.org"); return err }, shard.ErrNotFound},
		{"DeleteUser", func() error { return s.DeleteUser(ctx, "bob@example.org") }, shard.ErrNotFound},
		{"Deliver", func() error { _, _, err := s.Deliver(ctx, "bob@example.org", msg(1)); return err }, shard.ErrNotFound},
		{"Messages", func() error { return s.Messages(ctx, "bob@example.org", func(shard.Message) error { return nil }) }, shard.ErrNotFound},
		{"PublicKey", func() error { _, err := s.PublicKey(ctx, "bob@example.org"); return err }, shard.ErrNotFound},
		{"SetPublicKey", func() error { return s.SetPublicKey(ctx, "bob@example.org", []byte("k")) }, shard.ErrNotFound},
		{"Check", func() error { return s.Check(ctx, "bob@example.org") }, shard.ErrNotFound},
		{"empty address", func() error { _, err := s.CreateUser(ctx, "", []byte("k")); return err }, shard.ErrInvalid},
		{"empty key", func() error { _, err := s.CreateUser(ctx, "carol@example.org", nil); return err }, shard.ErrInvalid},
		{"no such folder", func() error {
			m := msg(1)
			m.Folder = "Archive"
			_, _, err := s.Deliver(ctx, u.Address, m)
			return err
		}, shard.ErrNoSuchFolder},
		{"bad flag", func() error {
			m := msg(1)
			m.Flags = []string{`\Seen`, "two words"}
			_, _, err := s.Deliver(ctx, u.Address, m)
			return err
		}, shard.ErrInvalid},
		{"negative size", func() error {
			m := msg(1)
			m.Size = -1
			_, _, err := s.Deliver(ctx, u.Address, m)
			return err
		}, shard.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	// Refused calls leave no trace.
	if _, err := s.User(ctx, "carol@example.org"); !errors.Is(err, shard.ErrNotFound) {
		t.Errorf("carol after a refused create: %v", err)
	}
	n := 0
	s.Messages(ctx, u.Address, func(shard.Message) error { n++; return nil })
	if n != 0 {
		t.Errorf("%d messages stored by refused deliveries", n)
	}
}

func TestPublicKey(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 1).open(t)
	mustCreate(t, s, "alice@example.org")
	k, err := s.PublicKey(ctx, "alice@example.org")
	if err != nil || !bytes.Contains(k, []byte("key of alice@example.org")) {
		t.Fatalf("PublicKey = %q, %v", k, err)
	}
	before, _ := s.ModSeq(ctx, "alice@example.org")
	if err := s.SetPublicKey(ctx, "alice@example.org", []byte("new key")); err != nil {
		t.Fatal(err)
	}
	k, err = s.PublicKey(ctx, "alice@example.org")
	if err != nil || string(k) != "new key" {
		t.Fatalf("PublicKey after set = %q, %v", k, err)
	}
	if after, _ := s.ModSeq(ctx, "alice@example.org"); after <= before {
		t.Errorf("modseq %d → %d: SetPublicKey must bump it", before, after)
	}
}

func TestDeliverUIDsAndModSeq(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 1).open(t)
	const a = "alice@example.org"
	mustCreate(t, s, a)
	start, err := s.ModSeq(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	before, err := s.Folders(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	inboxModSeq := before[0].ModSeq
	steps := []struct {
		folder  string
		wantUID uint32
	}{
		{"", 1}, {"INBOX", 2}, {"Sent", 1}, {"inbox", 3}, {"Sent", 2}, {"Junk", 1}, {"", 4},
	}
	lastID, lastMod := int64(0), start
	for i, st := range steps {
		m := msg(i)
		m.Folder = st.folder
		id, uid, err := s.Deliver(ctx, a, m)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if uid != st.wantUID {
			t.Errorf("step %d (%q): uid %d, want %d", i, st.folder, uid, st.wantUID)
		}
		if id <= lastID {
			t.Errorf("step %d: id %d not above %d", i, id, lastID)
		}
		mod, err := s.ModSeq(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if mod != lastMod+1 {
			t.Errorf("step %d: modseq %d, want %d", i, mod, lastMod+1)
		}
		lastID, lastMod = id, mod
	}
	// A failed delivery changes nothing, modseq included, and uses no uid.
	bad := msg(99)
	bad.Folder = "nope"
	if _, _, err := s.Deliver(ctx, a, bad); !errors.Is(err, shard.ErrNoSuchFolder) {
		t.Fatal(err)
	}
	if mod, _ := s.ModSeq(ctx, a); mod != lastMod {
		t.Errorf("modseq %d after a failed delivery, want %d", mod, lastMod)
	}
	if _, uid, _ := s.Deliver(ctx, a, msg(100)); uid != 5 {
		t.Errorf("uid after a failed delivery = %d, want 5", uid)
	}
	fs, _ := s.Folders(ctx, a)
	// A folder's modseq tracks the folder itself, not its contents.
	if fs[0].UIDNext != 6 || fs[0].ModSeq != inboxModSeq || fs[0].Total != 5 || fs[0].Unseen != 5 {
		t.Errorf("INBOX = %+v, want uidnext 6, modseq %d, 5 messages unseen", fs[0], inboxModSeq)
	}
}

func TestMessagesRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 1).open(t)
	const a = "alice@example.org"
	mustCreate(t, s, a)
	in := []shard.NewMessage{
		{Folder: "Sent", Flags: []string{`\Seen`}, Received: time.Unix(1700000000, 123456789), Size: 10, Summary: []byte{0, 1, 2}, Body: bytes.Repeat([]byte{0xff, 0}, 5000)},
		{Flags: []string{`\Seen`, `\Flagged`, `\Seen`, "$Label1"}, Received: time.Unix(1600000000, 1), Size: 0, Summary: []byte{}, Body: nil},
		{Folder: "Drafts", Received: time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC), Size: 1 << 40, Summary: []byte("s"), Body: []byte("b")},
		{Received: time.Unix(1700000001, 0), Size: 7, Summary: []byte("s2"), Body: []byte("b2")},
	}
	var want []shard.Message
	for _, m := range in {
		id, uid, err := s.Deliver(ctx, a, m)
		if err != nil {
			t.Fatal(err)
		}
		mod, _ := s.ModSeq(ctx, a)
		folder := m.Folder
		if folder == "" {
			folder = "INBOX"
		}
		var flags []string
		for _, f := range m.Flags {
			if !slices.Contains(flags, f) {
				flags = append(flags, f)
			}
		}
		want = append(want, shard.Message{ID: id, Folder: folder, UID: uid, Flags: flags, Received: m.Received, Size: m.Size, ModSeq: mod, Summary: m.Summary, Body: m.Body})
	}
	// By folder (creation order: INBOX, Sent, Drafts), then uid.
	want = []shard.Message{want[1], want[3], want[0], want[2]}
	var got []shard.Message
	if err := s.Messages(ctx, a, func(m shard.Message) error { got = append(got, m); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Folder != w.Folder || g.UID != w.UID || !slices.Equal(g.Flags, w.Flags) ||
			!g.Received.Equal(w.Received) || g.Size != w.Size || g.ModSeq != w.ModSeq ||
			!bytes.Equal(g.Summary, w.Summary) || !bytes.Equal(g.Body, w.Body) {
			t.Errorf("message %d:\n got  %+v\n want %+v", i, brief(g), brief(w))
		}
	}
	// fn's error stops the walk and comes back as is.
	stop := errors.New("stop")
	n := 0
	if err := s.Messages(ctx, a, func(shard.Message) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("Messages with a failing fn: err %v after %d calls", err, n)
	}
}

func brief(m shard.Message) shard.Message {
	m.Summary, m.Body = m.Summary[:min(len(m.Summary), 8)], m.Body[:min(len(m.Body), 8)]
	return m
}

func TestUsersOrdered(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 2).open(t)
	addrs := []string{"zed@example.org", "alice@example.org", "mallory@example.net", "bob@example.org"}
	for _, a := range addrs {
		mustCreate(t, s, a)
	}
	var got []string
	if err := s.Users(ctx, func(u shard.User) error { got = append(got, u.Address); return nil }); err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(slices.Values(addrs))
	if !slices.Equal(got, want) {
		t.Fatalf("Users = %v, want %v", got, want)
	}
}

func shardFiles(t *testing.T, path string) []string {
	t.Helper()
	m, err := filepath.Glob(path + "*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDeleteUser(t *testing.T) {
	ctx := context.Background()
	s := newEnv(t, 1).open(t)
	const a = "alice@example.org"
	u := mustCreate(t, s, a)
	path := shard.ShardPath(u.Home, a)
	for i := range 3 {
		if _, _, err := s.Deliver(ctx, a, msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	if s.OpenShards() != 1 || len(shardFiles(t, path)) != 3 {
		t.Fatalf("before delete: %d open shards, files %v", s.OpenShards(), shardFiles(t, path))
	}
	if err := s.DeleteUser(ctx, a); err != nil {
		t.Fatal(err)
	}
	if f := shardFiles(t, path); len(f) != 0 {
		t.Errorf("files left after DeleteUser: %v", f)
	}
	if s.OpenShards() != 0 {
		t.Errorf("%d shards open after DeleteUser", s.OpenShards())
	}
	if _, _, err := s.Deliver(ctx, a, msg(9)); !errors.Is(err, shard.ErrNotFound) {
		t.Errorf("Deliver after DeleteUser: %v, want ErrNotFound", err)
	}
	// The address can be taken again, with an empty shard.
	mustCreate(t, s, a)
	n := 0
	if err := s.Messages(ctx, a, func(shard.Message) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("re-created user: %d messages, %v", n, err)
	}
}

func TestLeftoverFilesRemoved(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	s := e.open(t)
	const a = "alice@example.org"
	path := shard.ShardPath(e.homes[0], a)
	leave := func() {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		for _, suf := range []string{"", "-wal", "-shm"} {
			if err := os.WriteFile(path+suf, []byte("left by a crash"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	// DeleteUser of an address without a row still cleans up.
	leave()
	if err := s.DeleteUser(ctx, a); !errors.Is(err, shard.ErrNotFound) {
		t.Fatalf("DeleteUser: %v, want ErrNotFound", err)
	}
	if f := shardFiles(t, path); len(f) != 0 {
		t.Fatalf("leftovers not removed by DeleteUser: %v", f)
	}
	// CreateUser replaces leftovers by a fresh shard.
	leave()
	mustCreate(t, s, a)
	if err := s.Check(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Deliver(ctx, a, msg(1)); err != nil {
		t.Fatal(err)
	}
}

func TestCreateUserFailureLeavesNothing(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	s := e.open(t)
	const a = "alice@example.org"
	path := shard.ShardPath(e.homes[0], a)
	// A file where the <hh> directory belongs makes the shard impossible to create.
	if err := os.WriteFile(filepath.Dir(path), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, a, []byte("key")); err == nil {
		t.Fatal("CreateUser succeeded without a shard directory")
	}
	if _, err := s.User(ctx, a); !errors.Is(err, shard.ErrNotFound) {
		t.Errorf("User after a failed create: %v", err)
	}
	if err := os.Remove(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
	// The failure did not count against the home either.
	mustCreate(t, s, a)
}

func TestCheck(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1)
	s := e.open(t)
	const a = "alice@example.org"
	u := mustCreate(t, s, a)
	for i := range 20 {
		m := msg(i)
		m.Body = bytes.Repeat([]byte{byte(i)}, 8000)
		if _, _, err := s.Deliver(ctx, a, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Check(ctx, a); err != nil {
		t.Fatalf("Check on a healthy shard: %v", err)
	}
	if err := s.CheckMeta(ctx); err != nil {
		t.Fatalf("CheckMeta: %v", err)
	}
	s.Close()

	// Overwrite everything after the first pages (schema, state, folders).
	path := shard.ShardPath(u.Home, a)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 40000 {
		t.Fatalf("shard only %d bytes", len(b))
	}
	for i := 8 * 4096; i < len(b)-4096; i++ {
		b[i] = byte(i * 7)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s = e.open(t)
	if err := s.Check(ctx, a); !errors.Is(err, shard.ErrCorrupt) {
		t.Fatalf("Check on a damaged shard: %v, want ErrCorrupt", err)
	}
}

func TestClosed(t *testing.T) {
	s := newEnv(t, 1).open(t)
	mustCreate(t, s, "alice@example.org")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Deliver(context.Background(), "alice@example.org", msg(1)); err == nil {
		t.Fatal("Deliver after Close succeeded")
	}
}

func TestOpenNoCreate(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2)
	root := filepath.Dir(e.dataDir)
	opts := shard.Options{DataDir: e.dataDir, Homes: e.homes, Logger: quiet, NoCreate: true}
	if _, err := shard.Open(ctx, opts); !errors.Is(err, shard.ErrNoStore) {
		t.Fatalf("Open(NoCreate) on nothing = %v, want ErrNoStore", err)
	}
	if es, _ := os.ReadDir(root); len(es) != 0 {
		t.Fatalf("Open(NoCreate) created %v", es)
	}
	// An empty data dir is no store either, and stays empty.
	if err := os.Mkdir(e.dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := shard.Open(ctx, opts); !errors.Is(err, shard.ErrNoStore) || !strings.Contains(err.Error(), shard.MetaFile) {
		t.Fatalf("Open(NoCreate) on an empty data dir = %v, want ErrNoStore naming %s", err, shard.MetaFile)
	}
	if es, _ := os.ReadDir(e.dataDir); len(es) != 0 {
		t.Fatalf("Open(NoCreate) created %v in the data dir", es)
	}

	s := e.open(t)
	mustCreate(t, s, "alice@example.org")
	s.Close()
	s, err := shard.Open(ctx, opts)
	if err != nil {
		t.Fatalf("Open(NoCreate) on an existing store: %v", err)
	}
	if _, err := s.User(ctx, "alice@example.org"); err != nil {
		t.Errorf("User: %v", err)
	}
	s.Close()

	// A configured home that is missing is not created either.
	opts.Homes = append(opts.Homes, filepath.Join(root, "new-home"))
	if _, err := shard.Open(ctx, opts); !errors.Is(err, shard.ErrNoStore) || !strings.Contains(err.Error(), "new-home") {
		t.Fatalf("Open(NoCreate) with a missing home = %v, want ErrNoStore naming it", err)
	}
	if _, err := os.Stat(filepath.Join(root, "new-home")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(NoCreate) created the missing home (%v)", err)
	}
}
