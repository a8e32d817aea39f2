// Package sqlitedb is how CryptoMail opens its SQLite files (the metabase,
// the shards, the outbound queue): created by us with mode 0600 and their
// directory fsynced, then opened in WAL mode with synchronous=FULL,
// foreign keys, secure delete and BEGIN IMMEDIATE, and brought to the
// program's schema by numbered migrations embedded in the binary.
//
// Migrations are files NNNN_name.sql numbered 1..N without gaps; after they
// ran, PRAGMA user_version is N. A file at a higher version than the
// program knows is refused (ErrNewerSchema), never written.
package sqlitedb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"

	"cryptomail/internal/atomicfile"
)

// ErrNewerSchema: the file was migrated by a newer program.
var ErrNewerSchema = errors.New("schema newer than this program's")

// Open opens file, creating it (mode 0600) if missing, with DSN's settings,
// and migrates it to ms. For files that need per-connection hooks or several
// pools, use CreateFile, NewConnector and Migrate.
func Open(ctx context.Context, file string, busy time.Duration, ms []Migration) (*sql.DB, error) {
	if err := CreateFile(file); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	db := sql.OpenDB(NewConnector(DSN(file, busy), nil))
	if err := Migrate(ctx, db, ms); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return db, nil
}

// DSN is a mattn/go-sqlite3 URI for file with the settings every CryptoMail
// database has, followed by extra "_key=value" parameters. mode=rw never
// creates a file: files are made by CreateFile beforehand, so a vanished
// file is an error rather than a silently empty database.
func DSN(file string, busy time.Duration, extra ...string) string {
	q := append([]string{
		"mode=rw",
		"_journal_mode=WAL",
		"_synchronous=FULL",
		"_foreign_keys=on",
		"_secure_delete=on",
		"_busy_timeout=" + strconv.FormatInt(busy.Milliseconds(), 10),
		// BEGIN IMMEDIATE: a write transaction takes the write lock at
		// BEGIN, so a busy database surfaces there (after busy_timeout),
		// never at COMMIT after work was done.
		"_txlock=immediate",
	}, extra...)
	u := url.URL{Path: file}
	return "file:" + u.EscapedPath() + "?" + strings.Join(q, "&")
}

// connector opens connections for one DSN, running a hook on each, without
// registering a global driver name.
type connector struct {
	dsn string
	drv *sqlite3.SQLiteDriver
}

func (c *connector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c *connector) Driver() driver.Driver                        { return c.drv }

// NewConnector returns a connector for sql.OpenDB whose connections run
// hook (if not nil) for the settings a DSN cannot express.
func NewConnector(dsn string, hook func(*sqlite3.SQLiteConn) error) driver.Connector {
	return &connector{dsn: dsn, drv: &sqlite3.SQLiteDriver{ConnectHook: hook}}
}

// CreateFile creates an empty database file with mode 0600 (SQLite would use
// 0644) and fsyncs its directory so the name survives a power cut. If the
// file exists it is left alone and the error wraps fs.ErrExist.
func CreateFile(file string) error {
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(file))
}

// Migration is one numbered schema step.
type Migration struct {
	Version int
	Name    string // NNNN_name.sql
	SQL     string
	// Before, if set, runs in the migration's transaction just before SQL,
	// for a step that needs what only the program knows (shard's meta 0004
	// needs the configured homes' path → id map).
	Before func(ctx context.Context, tx *sql.Tx) error
}

// LoadMigrations reads the NNNN_name.sql files of dir (other files are
// ignored) and insists on 1..N without gaps, so PRAGMA user_version is
// exactly the number of applied steps.
func LoadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations %s: %w", dir, err)
	}
	var ms []Migration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("migration %s/%s: name must be NNNN_name.sql", dir, name)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("read migration %s/%s: %w", dir, name, err)
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migrations %s: expected version %d, found %s", dir, i+1, m.Name)
		}
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("migrations %s: none found", dir)
	}
	return ms, nil
}

// Migrate brings db up to len(ms) in one write transaction. The common case
// (already current) costs one read and takes no lock; another process that
// migrated while this one waited for the lock is noticed.
func Migrate(ctx context.Context, db *sql.DB, ms []Migration) error {
	latest := len(ms)
	v, err := UserVersion(ctx, db)
	if err != nil {
		return err
	}
	if v == latest {
		return nil
	}
	if v > latest {
		return fmt.Errorf("%w (file at version %d, this program knows %d)", ErrNewerSchema, v, latest)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if v > latest {
		return fmt.Errorf("%w (file at version %d, this program knows %d)", ErrNewerSchema, v, latest)
	}
	for _, m := range ms[v:] {
		if m.Before != nil {
			if err := m.Before(ctx, tx); err != nil {
				return fmt.Errorf("migration %s: %w", m.Name, err)
			}
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
	}
	// PRAGMA takes no bound parameters; latest is an int we computed.
	if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(latest)); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// UserVersion returns PRAGMA user_version: the number of migrations applied.
func UserVersion(ctx context.Context, db *sql.DB) (int, error) {
	var v int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	return v, nil
}

// Querier is what QueryIDs needs: a *sql.DB, *sql.Tx or *sql.Conn.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// QueryIDs runs a query whose one column is an integer id and returns the ids
// in the order the query gives them.
func QueryIDs(ctx context.Context, q Querier, query string, args ...any) ([]int64, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
