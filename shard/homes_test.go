package shard_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cryptomail/internal/testenv"
	"cryptomail/shard"
)

func bodies(t *testing.T, s *shard.Store, address string) []string {
	t.Helper()
	var got []string
	if err := s.Messages(context.Background(), address, func(m shard.Message) error {
		got = append(got, string(m.Body))
		return nil
	}); err != nil {
		t.Fatalf("messages of %s: %v", address, err)
	}
	return got
}

func deliverBody(t *testing.T, s *shard.Store, address, body string) {
	t.Helper()
	m := msg(0)
	m.Body = []byte(body)
	if _, _, err := s.Deliver(context.Background(), address, m); err != nil {
		t.Fatalf("deliver to %s: %v", address, err)
	}
}

// TestRestoreToAnotherPath: a data dir (metabase and homes) copied to
// another path, with the homes pointed at the copy, delivers and reads
// there; the original is not touched, not even by the open.
func TestRestoreToAnotherPath(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	layout := func(base string) shard.Options {
		data := filepath.Join(base, "data")
		return shard.Options{DataDir: data, Homes: []string{filepath.Join(data, "homes", "h1"), filepath.Join(data, "homes", "h2")}, Logger: quiet}
	}
	oldOpts, newOpts := layout(filepath.Join(root, "old")), layout(filepath.Join(root, "restored"))
	const alice, bob, carol = "alice@example.org", "bob@example.org", "carol@example.org"

	s, err := shard.Open(ctx, oldOpts)
	if err != nil {
		t.Fatal(err)
	}
	ua, ub := mustCreate(t, s, alice), mustCreate(t, s, bob)
	if ua.HomeID == ub.HomeID || ua.Home != oldOpts.Homes[0] || ub.Home != oldOpts.Homes[1] {
		t.Fatalf("placement: %+v %+v", ua, ub)
	}
	deliverBody(t, s, alice, "before the backup")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	testenv.CopyTree(t, filepath.Join(root, "old"), filepath.Join(root, "restored"))
	// mtimes have a resolution; a write after this would show.
	time.Sleep(20 * time.Millisecond)
	before := testenv.TreeState(t, filepath.Join(root, "old"))

	if err := shard.CheckHomes(ctx, newOpts); err != nil {
		t.Fatalf("check homes of the restored copy: %v", err)
	}
	r, err := shard.Open(ctx, newOpts)
	if err != nil {
		t.Fatalf("open the restored copy: %v", err)
	}
	defer r.Close()
	for i, a := range []string{alice, bob} {
		u, err := r.User(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		want := []shard.User{ua, ub}[i]
		if u.HomeID != want.HomeID || u.Home != newOpts.Homes[i] {
			t.Errorf("%s after restore: home %s (%s), want %s (%s)", a, u.HomeID, u.Home, want.HomeID, newOpts.Homes[i])
		}
	}
	deliverBody(t, r, alice, "after the restore")
	deliverBody(t, r, bob, "to bob")
	uc := mustCreate(t, r, carol)
	if uc.Home != newOpts.Homes[0] {
		t.Errorf("carol placed on %s, want %s", uc.Home, newOpts.Homes[0])
	}
	deliverBody(t, r, carol, "to carol")
	if got := bodies(t, r, alice); len(got) != 2 || got[0] != "before the backup" || got[1] != "after the restore" {
		t.Errorf("alice reads %q", got)
	}
	if got := bodies(t, r, bob); len(got) != 1 || got[0] != "to bob" {
		t.Errorf("bob reads %q", got)
	}
	if got := bodies(t, r, carol); len(got) != 1 {
		t.Errorf("carol reads %q", got)
	}
	for _, u := range []shard.User{ua, uc} {
		if _, err := os.Stat(shard.ShardPath(newOpts.Homes[0], u.Address)); err != nil {
			t.Errorf("%s's shard in the restored home: %v", u.Address, err)
		}
	}
	if err := r.DeleteUser(ctx, bob); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	testenv.SameTree(t, "the original data dir", before, testenv.TreeState(t, filepath.Join(root, "old")))
}

// TestHomeErrors: every disagreement between the configured homes and the
// metabase stops Open and CheckHomes with ErrHome, naming what disagrees.
func TestHomeErrors(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T) (env, shard.User) {
		e := newEnv(t, 2)
		s := e.open(t)
		u := mustCreate(t, s, "alice@example.org")
		mustCreate(t, s, "bob@example.org")
		s.Close()
		return e, u
	}
	other := "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name    string
		breakIt func(t *testing.T, e *env, u shard.User)
		want    []string
	}{
		{"home with another id", func(t *testing.T, e *env, u shard.User) {
			if err := os.WriteFile(filepath.Join(e.homes[0], shard.HomeFile), []byte(other+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"home " + "$home0" + " has id " + other + ", which this metabase does not know", "home id $id0 holds alice@example.org"}},
		{"home not configured", func(t *testing.T, e *env, u shard.User) {
			e.homes = e.homes[1:]
		}, []string{"home id $id0 holds alice@example.org (1 users in all) but no configured home has that id"}},
		{"home moved without telling", func(t *testing.T, e *env, u shard.User) {
			// The directory moved, the config still names the old path:
			// an empty new home there, and alice's id nowhere.
			if err := os.Rename(e.homes[0], e.homes[0]+".moved"); err != nil {
				t.Fatal(err)
			}
		}, []string{"home id $id0 holds alice@example.org"}},
		{"HOME file lost", func(t *testing.T, e *env, u shard.User) {
			if err := os.Remove(filepath.Join(e.homes[0], shard.HomeFile)); err != nil {
				t.Fatal(err)
			}
		}, []string{"home $home0 has no HOME file but holds shards", "home id $id0 holds alice@example.org"}},
		{"a copy of a home beside it", func(t *testing.T, e *env, u shard.User) {
			testenv.CopyTree(t, e.homes[0], e.homes[0]+".copy")
			e.homes = append(e.homes, e.homes[0]+".copy")
		}, []string{"homes $home0 and $home0.copy have the same id $id0"}},
		{"home of another data dir", func(t *testing.T, e *env, u shard.User) {
			e.dataDir += ".other"
		}, []string{"$home0 holds shards but " + "$data.other/meta.db does not exist"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, u := setup(t)
			home0, data := e.homes[0], e.dataDir
			tt.breakIt(t, &e, u)
			opts := shard.Options{DataDir: e.dataDir, Homes: e.homes, Logger: quiet}
			root := filepath.Dir(e.dataDir)
			before := testenv.TreeState(t, root)
			checkErr := shard.CheckHomes(ctx, opts)
			testenv.SameTree(t, "CheckHomes", before, testenv.TreeState(t, root))
			_, openErr := shard.Open(ctx, opts)
			for _, want := range tt.want {
				want = strings.NewReplacer("$home0", home0, "$id0", u.HomeID, "$data", data).Replace(want)
				if !errors.Is(checkErr, shard.ErrHome) || !strings.Contains(checkErr.Error(), want) {
					t.Errorf("CheckHomes: %v\nwant ErrHome naming %q", checkErr, want)
				}
				if strings.Contains(want, "meta.db does not exist") {
					continue // Open makes a new metabase: the next case
				}
				if !errors.Is(openErr, shard.ErrHome) || !strings.Contains(openErr.Error(), want) {
					t.Errorf("Open: %v\nwant ErrHome naming %q", openErr, want)
				}
			}
		})
	}
}

// TestNewHomes: a new empty home gets a HOME file (0600) on open, also
// beside homes that hold users, and a home whose HOME file was written
// but whose id was never registered (a crash between the two) is taken in.
func TestNewHomes(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 3)
	s := env{dataDir: e.dataDir, homes: e.homes[:1]}.open(t)
	mustCreate(t, s, "alice@example.org")
	s.Close()
	// A HOME file without a registration, as a crash would leave it.
	if err := os.MkdirAll(e.homes[2], 0o700); err != nil {
		t.Fatal(err)
	}
	const id2 = "00112233445566778899aabbccddeeff"
	if err := os.WriteFile(filepath.Join(e.homes[2], shard.HomeFile), []byte(id2+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := shard.CheckHomes(ctx, shard.Options{DataDir: e.dataDir, Homes: e.homes}); err != nil {
		t.Fatalf("CheckHomes with new homes: %v", err)
	}
	if _, err := os.Stat(e.homes[1]); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("CheckHomes created %s: %v", e.homes[1], err)
	}
	s = e.open(t)
	ids := map[string]bool{}
	for _, h := range e.homes {
		b, err := os.ReadFile(filepath.Join(h, shard.HomeFile))
		fi, serr := os.Stat(filepath.Join(h, shard.HomeFile))
		if err != nil || serr != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: HOME %v %v", h, err, fi)
		}
		id := strings.TrimSpace(string(b))
		if s.HomeID(h) != id || ids[id] || len(id) != 32 {
			t.Errorf("%s: id %q, store says %q", h, id, s.HomeID(h))
		}
		ids[id] = true
	}
	if s.HomeID(e.homes[2]) != id2 {
		t.Errorf("crashed registration: id %q", s.HomeID(e.homes[2]))
	}
	// The new homes fill up first, in configured order.
	if u := mustCreate(t, s, "bob@example.org"); u.Home != e.homes[1] {
		t.Errorf("bob on %s", u.Home)
	}
	if u := mustCreate(t, s, "carol@example.org"); u.Home != e.homes[2] {
		t.Errorf("carol on %s", u.Home)
	}
	// A bad HOME file is named.
	s.Close()
	if err := os.WriteFile(filepath.Join(e.homes[1], shard.HomeFile), []byte("not an id\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := shard.Open(ctx, shard.Options{DataDir: e.dataDir, Homes: e.homes, Logger: quiet}); !errors.Is(err, shard.ErrHome) ||
		!strings.Contains(err.Error(), filepath.Join(e.homes[1], shard.HomeFile)) {
		t.Errorf("open with a bad HOME file: %v", err)
	}
}

// TestHomeHoldsDataDir: only shard directories make a home "not empty": a
// home that holds the data dir (or lost+found, or other files) is new.
func TestHomeHoldsDataDir(t *testing.T) {
	root := t.TempDir()
	h := filepath.Join(root, "srv")
	if err := os.MkdirAll(filepath.Join(h, "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	e := env{dataDir: filepath.Join(h, "data"), homes: []string{h}}
	s := e.open(t)
	u := mustCreate(t, s, "alice@example.org")
	s.Close()
	s = e.open(t)
	if got, err := s.User(context.Background(), u.Address); err != nil || got.Home != h || got.HomeID != u.HomeID {
		t.Errorf("after reopen: %+v %v", got, err)
	}
}
