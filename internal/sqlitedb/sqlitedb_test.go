package sqlitedb_test

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"cryptomail/internal/sqlitedb"
)

var testFS = fstest.MapFS{
	"m/0001_init.sql":  {Data: []byte("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);")},
	"m/0002_more.sql":  {Data: []byte("ALTER TABLE t ADD COLUMN w TEXT;")},
	"m/README":         {Data: []byte("not a migration")},
	"gap/0001_a.sql":   {Data: []byte("SELECT 1;")},
	"gap/0003_c.sql":   {Data: []byte("SELECT 1;")},
	"badname/init.sql": {Data: []byte("SELECT 1;")},
	"empty/README":     {Data: []byte("")},
}

func load(t *testing.T) []sqlitedb.Migration {
	t.Helper()
	ms, err := sqlitedb.LoadMigrations(testFS, "m")
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestLoadMigrations(t *testing.T) {
	ms := load(t)
	if len(ms) != 2 || ms[0].Version != 1 || ms[1].Name != "0002_more.sql" {
		t.Fatalf("LoadMigrations = %+v", ms)
	}
	for dir, want := range map[string]string{
		"gap":     "expected version 2",
		"badname": "NNNN_name.sql",
		"empty":   "none found",
		"missing": "read migrations",
	} {
		if _, err := sqlitedb.LoadMigrations(testFS, dir); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want ~%q", dir, err, want)
		}
	}
}

func TestOpenCreatesAndMigrates(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "q.db")
	ms := load(t)
	db, err := sqlitedb.Open(ctx, file, 1234*time.Millisecond, ms[:1])
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("created %v (%v), want mode 0600", fi, err)
	}
	for pragma, want := range map[string]string{
		"journal_mode":  "wal",
		"synchronous":   "2", // FULL
		"foreign_keys":  "1",
		"secure_delete": "1",
		"busy_timeout":  "1234",
		"user_version":  "1",
	} {
		var got string
		if err := db.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil || got != want {
			t.Errorf("PRAGMA %s = %q (%v), want %q", pragma, got, err, want)
		}
	}
	if _, err := db.Exec(`INSERT INTO t (v) VALUES ('kept')`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	// Reopened by a newer program: the next step runs, the data stays.
	db, err = sqlitedb.Open(ctx, file, time.Second, ms)
	if err != nil {
		t.Fatal(err)
	}
	var v string
	if err := db.QueryRow(`SELECT v FROM t WHERE w IS NULL`).Scan(&v); err != nil || v != "kept" {
		t.Errorf("after migration 2: %q, %v", v, err)
	}
	if n, err := sqlitedb.UserVersion(ctx, db); err != nil || n != 2 {
		t.Errorf("UserVersion = %d, %v; want 2", n, err)
	}
	// Already current: nothing to do.
	if err := sqlitedb.Migrate(ctx, db, ms); err != nil {
		t.Errorf("Migrate when current: %v", err)
	}
	db.Close()

	// An older program refuses the file and leaves it alone.
	if _, err := sqlitedb.Open(ctx, file, time.Second, ms[:1]); !errors.Is(err, sqlitedb.ErrNewerSchema) || !strings.Contains(err.Error(), file) {
		t.Errorf("Open by an older program = %v, want ErrNewerSchema naming the file", err)
	}
}

func TestMigrateFailureRollsBack(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "x.db")
	bad := append(load(t), sqlitedb.Migration{Version: 3, Name: "0003_bad.sql", SQL: "CREATE TABLE t (x);"})
	if _, err := sqlitedb.Open(ctx, file, time.Second, bad); err == nil || !strings.Contains(err.Error(), "0003_bad.sql") {
		t.Fatalf("Open with a failing migration = %v, want it named", err)
	}
	db := sql.OpenDB(sqlitedb.NewConnector(sqlitedb.DSN(file, time.Second), nil))
	defer db.Close()
	if n, err := sqlitedb.UserVersion(ctx, db); err != nil || n != 0 {
		t.Errorf("after a failed migration: version %d (%v), want 0: all steps roll back together", n, err)
	}
}

func TestCreateFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a.db")
	if err := sqlitedb.CreateFile(file); err != nil {
		t.Fatal(err)
	}
	if err := sqlitedb.CreateFile(file); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second CreateFile = %v, want fs.ErrExist", err)
	}
	// mode=rw never creates: a vanished file is an error, not an empty database.
	gone := filepath.Join(t.TempDir(), "gone.db")
	db := sql.OpenDB(sqlitedb.NewConnector(sqlitedb.DSN(gone, time.Second), nil))
	defer db.Close()
	if err := db.Ping(); err == nil {
		t.Error("opened a missing file")
	}
	if _, err := os.Stat(gone); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("opening a missing file created it (%v)", err)
	}
}
