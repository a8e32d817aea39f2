package shard

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"cryptomail/internal/sqlitedb"
)

// TestMigrateMail: a shard written by the first schema (deliveries stamping their
// folder with the message's modseq) comes out of migration 0002 with counts, usage,
// and one modseq per object, so delta sync pages through it one change at a time.
func TestMigrateMail(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	opts := Options{DataDir: filepath.Join(root, "data"), Homes: []string{filepath.Join(root, "home")}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	const a = "alice@example.org"
	s, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.CreateUser(ctx, a, []byte("key"))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Replace the shard with one at schema version 1, filled as the old code did.
	path := ShardPath(u.Home, a)
	if _, err := removeFiles(path); err != nil {
		t.Fatal(err)
	}
	if err := createFile(path); err != nil {
		t.Fatal(err)
	}
	ms, err := shardMigrations()
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(newConnector(path, DefaultBusyTimeout, kindShard, false))
	if err := migrate(ctx, db, ms[:1]); err != nil {
		t.Fatal(err)
	}
	old := []struct {
		folder, flags string
		body          string
	}{{"inbox", "", "one"}, {"inbox", `\Seen`, "two"}, {"sent", `\Seen`, "three"}, {"inbox", "$x", "four"}}
	for i, m := range old {
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		var modseq, folder, uid int64
		if err := tx.QueryRow(`UPDATE state SET modseq = modseq + 1 RETURNING modseq`).Scan(&modseq); err != nil {
			t.Fatal(err)
		}
		if err := tx.QueryRow(`UPDATE folders SET uidnext = uidnext + 1, modseq = ? WHERE role = ? RETURNING id, uidnext - 1`, modseq, m.folder).Scan(&folder, &uid); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(`INSERT INTO messages (folder_id, uid, flags, received, size, modseq, summary, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			folder, uid, m.flags, int64(1700000000+i)*1e9+7, len(m.body), modseq, []byte("s"), []byte(m.body)); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("rebuilt shard: %v %v", fi, err)
	}

	s, err = Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fs, err := s.Folders(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	var maxMsg int64
	if err := s.Messages(ctx, a, func(m Message) error {
		maxMsg = max(maxMsg, m.ModSeq)
		// Migration 0005: nobody recorded who wrote an old summary; the origin
		// no client trusts is the safe one.
		if m.SummaryBy != SummaryBySender {
			t.Errorf("old message %d: summary origin %q, want sender", m.ID, m.SummaryBy)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for _, f := range fs {
		if f.ModSeq <= maxMsg || seen[f.ModSeq] {
			t.Errorf("folder %s has modseq %d: want its own, above the messages' %d", f.Name, f.ModSeq, maxMsg)
		}
		seen[f.ModSeq] = true
	}
	if fs[0].Total != 3 || fs[0].Unseen != 2 || fs[1].Total != 1 || fs[1].Unseen != 0 || fs[3].Total != 0 {
		t.Errorf("counts after migration: %+v", fs)
	}
	if used, err := s.Usage(ctx, a); err != nil || used != int64(4+len("onetwothreefour")) {
		t.Errorf("usage %d %v", used, err)
	}
	// Every object apart: changes since 0 page one by one, all as updated.
	since, n := int64(0), 0
	for {
		cs, err := s.Changes(ctx, a, since, 1)
		if err != nil {
			t.Fatalf("changes since %d: %v", since, err)
		}
		for _, c := range cs.Changes {
			n++
			if c.Type != Updated {
				t.Errorf("old object %+v: want updated", c)
			}
		}
		if since = cs.ModSeq; !cs.HasMore {
			break
		}
	}
	if n != len(old)+len(fs) {
		t.Errorf("%d changes since 0, want %d", n, len(old)+len(fs))
	}
	var ids []int64
	if _, err := s.ListMessages(ctx, a, ListQuery{Folder: FolderRef{Name: "INBOX"}, Desc: true, Limit: 2}, func(m MessageInfo) error {
		ids = append(ids, m.ID)
		if m.Received.Unix() != 1700000000+m.ID-1 {
			t.Errorf("message %d received %v", m.ID, m.Received)
		}
		return nil
	}); err != nil || len(ids) != 2 || ids[0] != 4 || ids[1] != 2 {
		t.Errorf("listing after migration: %v %v", ids, err)
	}
	// New writes continue above the renumbered folders.
	id, _, err := s.Deliver(ctx, a, NewMessage{Body: []byte("new")})
	if err != nil {
		t.Fatal(err)
	}
	if cs, err := s.Changes(ctx, a, since, 10); err != nil || len(cs.Changes) != 1 || cs.Changes[0] != (Change{KindMessage, id, Created}) {
		t.Errorf("changes after a new delivery: %+v %v", cs, err)
	}
}

// TestMigrateBodies: a shard written before migration 0006 (a body in each
// messages row) comes out with its bodies in the bodies table, readable,
// usage unchanged, and with copies sharing them and expunge freeing them.
func TestMigrateBodies(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	opts := Options{DataDir: filepath.Join(root, "data"), Homes: []string{filepath.Join(root, "home")}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	const a = "alice@example.org"
	s, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.CreateUser(ctx, a, []byte("key"))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Replace the shard with one at the schema before 0006, filled as the
	// old code did.
	path := ShardPath(u.Home, a)
	if _, err := removeFiles(path); err != nil {
		t.Fatal(err)
	}
	if err := createFile(path); err != nil {
		t.Fatal(err)
	}
	ms, err := shardMigrations()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ms, func(m sqlitedb.Migration) bool { return strings.HasPrefix(m.Name, "0006_") })
	if i < 0 {
		t.Fatal("no migration 0006")
	}
	db := sql.OpenDB(newConnector(path, DefaultBusyTimeout, kindShard, false))
	if err := migrate(ctx, db, ms[:i]); err != nil {
		t.Fatal(err)
	}
	bodies := []string{"one", "two", "three"}
	for n, b := range bodies {
		if _, err := db.Exec(`UPDATE state SET modseq = modseq + 1`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO messages (folder_id, uid, flags, received, size, modseq, created_modseq, summary, body)
			SELECT id, ?, '', ?, ?, (SELECT modseq FROM state), (SELECT modseq FROM state), ?, ? FROM folders WHERE role = 'inbox'`,
			n+1, int64(1700000000+n)*1e9, len(b), []byte("sum"), []byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	var usedBefore int64
	if err := db.QueryRow(`SELECT used FROM state`).Scan(&usedBefore); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err = Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if used, err := s.Usage(ctx, a); err != nil || used != usedBefore || used != int64(3*3+len("onetwothree")) {
		t.Errorf("usage %d %v after migration, want %d", used, err, usedBefore)
	}
	var got []string
	var ids []int64
	if err := s.Messages(ctx, a, func(m Message) error {
		got = append(got, string(m.Body))
		ids = append(ids, m.ID)
		return nil
	}); err != nil || !slices.Equal(got, bodies) {
		t.Fatalf("bodies after migration: %q %v", got, err)
	}
	raw := sql.OpenDB(newConnector(path, DefaultBusyTimeout, kindShard, true))
	defer raw.Close()
	count := func(table string) int {
		var n int
		if err := raw.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count("bodies"); n != 3 {
		t.Errorf("%d bodies after migration, want 3", n)
	}
	// A migrated message's copy shares its body, which the last one frees.
	copies, err := s.CopyMessages(ctx, a, []int64{ids[0], ids[0]}, FolderRef{Name: "Trash"}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n := count("bodies"); n != 3 {
		t.Errorf("%d bodies after a copy, want 3", n)
	}
	if err := s.DeleteMessages(ctx, a, append([]int64{ids[0]}, copies...)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMessages(ctx, a, append([]int64{ids[0]}, copies...)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Expunge(ctx, a, FolderRef{Name: "Trash"}); err != nil || n != 3 {
		t.Fatalf("expunge: %d %v", n, err)
	}
	if n := count("bodies"); n != 2 {
		t.Errorf("%d bodies after expunging a message and its copies, want 2", n)
	}
	if used, err := s.Usage(ctx, a); err != nil || used != int64(2*3+len("twothree")) {
		t.Errorf("usage %d %v after expunge", used, err)
	}
}

// TestMigrateAccountIDs: users created before meta migration 0003 get a random
// account id each, and rows inserted afterwards (by code that does not name
// the column) get one too.
func TestMigrateAccountIDs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ms, err := metaMigrations()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, MetaFile)
	if err := createFile(path); err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(newConnector(path, DefaultBusyTimeout, kindMeta, false))
	defer db.Close()
	if err := migrate(ctx, db, ms[:2]); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"a@example.org", "b@example.org"} {
		if _, err := db.Exec(`INSERT INTO users (address, home, state, created) VALUES (?, '/h', 'active', 1)`, a); err != nil {
			t.Fatal(err)
		}
	}
	// Up to 0003 only: 0004 needs the homes to exist (TestMigrateHomeIDs).
	if err := migrate(ctx, db, ms[:3]); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO users (address, home, state, created) VALUES ('c@example.org', '/h', 'active', 1)`); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(`SELECT address, account_id FROM users`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var a string
		var id []byte
		if err := rows.Scan(&a, &id); err != nil {
			t.Fatal(err)
		}
		if len(id) != AccountIDSize || seen[string(id)] {
			t.Errorf("%s: account id %x", a, id)
		}
		seen[string(id)] = true
	}
	if len(seen) != 3 {
		t.Errorf("%d account ids, want 3", len(seen))
	}
}

// TestMigrateHomeIDs: a data dir made by the schema before meta migration
// 0004 (users.home an absolute path) opens with each of its homes given an
// id (a HOME file written into it), the users on them, the placement counts
// kept, and mail delivered and read where it was. A path that is not
// configured stops the migration, naming it, and changes nothing.
func TestMigrateHomeIDs(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	root := t.TempDir()
	data := filepath.Join(root, "data")
	h1, h2, h3 := filepath.Join(root, "h1"), filepath.Join(root, "h2"), filepath.Join(root, "h3")
	for _, d := range []string{data, h1, h2} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// The previous version's data dir: its metabase and shards.
	ms, err := metaMigrations()
	if err != nil {
		t.Fatal(err)
	}
	metaPath := filepath.Join(data, MetaFile)
	if err := createFile(metaPath); err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(newConnector(metaPath, DefaultBusyTimeout, kindMeta, false))
	if err := migrate(ctx, db, ms[:homeIDsVersion-1]); err != nil {
		t.Fatal(err)
	}
	old := &Store{busy: DefaultBusyTimeout, log: quiet}
	users := map[string]string{"a@example.org": h1, "b@example.org": h2, "c@example.org": h1}
	for a, h := range users {
		if err := old.createShard(ctx, ShardPath(h, a), []byte("key of "+a)); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO users (address, home, state, created) VALUES (?, ?, 'active', 1)`, a, h); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	// Not every home configured: refused, naming it; nothing written.
	partial := Options{DataDir: data, Homes: []string{h1}, Logger: quiet}
	for name, err := range map[string]error{"CheckHomes": CheckHomes(ctx, partial), "Open": openErr(ctx, partial)} {
		if !errors.Is(err, ErrHome) || !strings.Contains(err.Error(), "home "+h2+" holds b@example.org (1 users in all) but is not in storage.homes") {
			t.Errorf("%s with %s unconfigured: %v", name, h2, err)
		}
	}
	for _, h := range []string{h1, h2} {
		if _, err := os.Stat(filepath.Join(h, HomeFile)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: HOME file after a refused migration: %v", h, err)
		}
	}
	full := Options{DataDir: data, Homes: []string{h1, h2, h3}, Logger: quiet}
	if err := CheckHomes(ctx, full); err != nil {
		t.Fatalf("CheckHomes before the migration: %v", err)
	}

	s, err := Open(ctx, full)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for a, h := range users {
		u, err := s.User(ctx, a)
		id, rerr := readHomeID(h)
		if err != nil || rerr != nil || u.HomeID != id || u.Home != h {
			t.Errorf("%s: %+v %v; HOME of %s: %q %v", a, u, err, h, id, rerr)
		}
		if k, err := s.PublicKey(ctx, a); err != nil || string(k) != "key of "+a {
			t.Errorf("%s: key %q %v", a, k, err)
		}
		if _, _, err := s.Deliver(ctx, a, NewMessage{Body: []byte("after")}); err != nil {
			t.Errorf("deliver to %s: %v", a, err)
		}
		if _, err := os.Stat(ShardPath(h, a)); err != nil {
			t.Error(err)
		}
	}
	var n int
	if err := s.sql.meta.r.QueryRow(`SELECT count(*) FROM sqlite_temp_master`).Scan(&n); err != nil || n != 0 {
		t.Errorf("temp tables left: %d %v", n, err)
	}
	// Counts kept: h1 has 2, h2 1, h3 (new) 0: then h3, then h2 and h3 tie.
	for i, want := range []string{h3, h2, h3} {
		u, err := s.CreateUser(ctx, fmt.Sprintf("new%d@example.org", i), []byte("k"))
		if err != nil || u.Home != want {
			t.Errorf("placement after migration: %+v %v, want %s", u, err, want)
		}
	}
}

func openErr(ctx context.Context, opts Options) error {
	s, err := Open(ctx, opts)
	if err == nil {
		s.Close()
	}
	return err
}

// TestOpenHomesNoCreate: opened without the right to create (an admin
// command), a new home without a HOME file is named, and no file is written.
func TestOpenHomesNoCreate(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	opts := Options{DataDir: filepath.Join(root, "data"), Homes: []string{filepath.Join(root, "h1")}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h2 := filepath.Join(root, "h2")
	if err := os.Mkdir(h2, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err = openHomes(ctx, s.dir, []string{opts.Homes[0], h2}, false)
	if !errors.Is(err, ErrHome) || !strings.Contains(err.Error(), "home "+h2+" is new") {
		t.Errorf("openHomes without create: %v", err)
	}
	if _, err := os.Stat(filepath.Join(h2, HomeFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("HOME written without create: %v", err)
	}
	if hs, err := openHomes(ctx, s.dir, opts.Homes, false); err != nil || len(hs) != 1 || hs[0].id != s.homes[0].id {
		t.Errorf("openHomes of a known home without create: %v %v", hs, err)
	}
}
