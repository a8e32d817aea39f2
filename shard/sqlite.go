package shard

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
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
	"sync"
	"time"

	"github.com/mattn/go-sqlite3"
)

//go:embed migrations/meta/*.sql migrations/shard/*.sql
var migrationFS embed.FS

// Per-connection tuning. A server keeps up to MaxOpenShards handles, each
// with a writer and at most one idle reader (opened only for reads), so the
// page cache per connection is kept small.
const (
	shardCacheKiB  = 512
	metaCacheKiB   = 8192
	stmtCache      = 32
	walSizeLimit   = 4 << 20 // bytes the WAL may keep after a checkpoint
	shardReadConns = 4
	metaReadConns  = 8
)

// dbKind selects connection settings.
type dbKind int

const (
	kindShard dbKind = iota
	kindMeta
)

// connector opens mattn/go-sqlite3 connections for one DSN and runs a hook on
// each, without registering a global driver name.
type connector struct {
	dsn string
	drv *sqlite3.SQLiteDriver
}

func (c *connector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c *connector) Driver() driver.Driver                        { return c.drv }

// dsn builds a mattn/go-sqlite3 URI DSN. mode=rw never creates a file: shard
// and metabase files are created by this package (0600, O_EXCL) beforehand,
// so a vanished file is an error rather than a silently empty database.
func dsn(file string, busy time.Duration, cacheKiB int, readOnly bool) string {
	q := []string{
		"mode=rw",
		"_journal_mode=WAL",
		"_synchronous=FULL",
		"_foreign_keys=on",
		"_secure_delete=on",
		"_busy_timeout=" + strconv.FormatInt(busy.Milliseconds(), 10),
		"_cache_size=" + strconv.Itoa(-cacheKiB),
		"_stmt_cache_size=" + strconv.Itoa(stmtCache),
		// BEGIN IMMEDIATE: a write transaction takes the write lock at
		// BEGIN, so a busy database surfaces there (after busy_timeout),
		// never at COMMIT after work was done.
		"_txlock=immediate",
	}
	if readOnly {
		q = append(q, "_query_only=on")
	}
	u := url.URL{Path: file}
	return "file:" + u.EscapedPath() + "?" + strings.Join(q, "&")
}

// newConnector returns a connector whose connections also get the settings
// the DSN cannot express.
func newConnector(file string, busy time.Duration, kind dbKind, readOnly bool) *connector {
	cache := shardCacheKiB
	if kind == kindMeta {
		cache = metaCacheKiB
	}
	return &connector{
		dsn: dsn(file, busy, cache, readOnly),
		drv: &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
			// Without a limit a WAL keeps its high-water size (one large
			// message) for as long as the handle stays open.
			if _, err := c.Exec("PRAGMA journal_size_limit = "+strconv.Itoa(walSizeLimit), nil); err != nil {
				return err
			}
			if kind != kindShard {
				return nil
			}
			// Keep -wal and -shm when the last connection closes: SQLite
			// still checkpoints the WAL (fsync'ed) and, journal_size_limit
			// being set, truncates it to zero bytes, but does not unlink
			// it. Reopening a pooled-out shard then creates no files, so
			// the first delivery after a (re)open allocates no inodes and
			// dirties no directory.
			return c.SetFileControlInt("main", sqlite3.SQLITE_FCNTL_PERSIST_WAL, 1)
		}},
	}
}

// dbPair is one database file seen through two pools: a single writer
// connection (writes in this process never contend with each other inside
// SQLite, they queue in database/sql) and a few query_only readers, which WAL
// lets run beside the writer so a long read never delays a delivery.
type dbPair struct {
	w, r *sql.DB
}

func openPair(file string, busy time.Duration, kind dbKind) *dbPair {
	w := sql.OpenDB(newConnector(file, busy, kind, false))
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	r := sql.OpenDB(newConnector(file, busy, kind, true))
	if kind == kindMeta {
		// One file, read on every RCPT: keep its readers open.
		r.SetMaxOpenConns(metaReadConns)
		r.SetMaxIdleConns(metaReadConns)
	} else {
		r.SetMaxOpenConns(shardReadConns)
		r.SetMaxIdleConns(1)
	}
	return &dbPair{w: w, r: r}
}

// close closes the readers first, so the writer is the last connection and
// its close checkpoints the WAL into the database file and truncates it to
// zero bytes (unless another connection, maybe in another process, still
// uses it). Shard connections keep the -wal and -shm files (see
// newConnector), so closing a handle whose user was deleted and re-created
// by another process touches only the unlinked files it has open.
func (p *dbPair) close() error {
	return errors.Join(p.r.Close(), p.w.Close())
}

// migration is one numbered schema step.
type migration struct {
	version int
	name    string
	sql     string
	// before, if set, runs in the migration's transaction just before its
	// SQL, for a step that needs what only the program knows (meta 0004
	// needs the path → id map of the homes; see homes.go).
	before func(ctx context.Context, tx *sql.Tx) error
}

var (
	metaMigrations  = sync.OnceValues(func() ([]migration, error) { return loadMigrations(migrationFS, "migrations/meta") })
	shardMigrations = sync.OnceValues(func() ([]migration, error) { return loadMigrations(migrationFS, "migrations/shard") })
)

// loadMigrations reads NNNN_name.sql files and insists on 1..N without gaps,
// so PRAGMA user_version is exactly the number of applied steps.
func loadMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations %s: %w", dir, err)
	}
	var ms []migration
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
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migrations %s: expected version %d, found %s", dir, i+1, m.name)
		}
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("migrations %s: none found", dir)
	}
	return ms, nil
}

// migrate brings db up to the latest version in one write transaction. The
// common case (already current) costs one read and takes no lock.
func migrate(ctx context.Context, db *sql.DB, ms []migration) error {
	latest := len(ms)
	v, err := userVersion(ctx, db)
	if err != nil {
		return err
	}
	if v == latest {
		return nil
	}
	if v > latest {
		return fmt.Errorf("schema version %d is newer than this program's %d", v, latest)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return classify(err)
	}
	defer tx.Rollback()
	// Another process may have migrated while we waited for the lock.
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return classify(err)
	}
	if v > latest {
		return fmt.Errorf("schema version %d is newer than this program's %d", v, latest)
	}
	for _, m := range ms[v:] {
		if m.before != nil {
			if err := m.before(ctx, tx); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, classify(err))
		}
	}
	// PRAGMA takes no bound parameters; latest is an int we computed.
	if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(latest)); err != nil {
		return classify(err)
	}
	return classify(tx.Commit())
}

func userVersion(ctx context.Context, db *sql.DB) (int, error) {
	var v int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, classify(err)
	}
	return v, nil
}

// createFile creates an empty database file with mode 0600 (SQLite would use
// 0644) and fsyncs its directory so the name survives a power cut. It fails
// if the file exists.
func createFile(file string) error {
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return classify(err)
	}
	if err := f.Close(); err != nil {
		return classify(err)
	}
	return syncDir(filepath.Dir(file))
}

// mkdirSync creates dir (0700) if missing and fsyncs its parent when it did.
func mkdirSync(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s: not a directory", dir)
		}
		return nil
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return classify(err)
	}
	return syncDir(filepath.Dir(dir))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return classify(err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return classify(err)
}
