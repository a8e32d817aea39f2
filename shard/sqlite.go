package shard

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/mattn/go-sqlite3"

	"cryptomail/internal/atomicfile"
	"cryptomail/internal/sqlitedb"
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

// newConnector returns a connector with sqlitedb's settings (WAL,
// synchronous=FULL, BEGIN IMMEDIATE, ...) and this package's cache sizes,
// whose connections also get the settings the DSN cannot express.
func newConnector(file string, busy time.Duration, kind dbKind, readOnly bool) driver.Connector {
	cache := shardCacheKiB
	if kind == kindMeta {
		cache = metaCacheKiB
	}
	extra := []string{
		"_cache_size=" + strconv.Itoa(-cache),
		"_stmt_cache_size=" + strconv.Itoa(stmtCache),
	}
	if readOnly {
		extra = append(extra, "_query_only=on")
	}
	return sqlitedb.NewConnector(sqlitedb.DSN(file, busy, extra...), func(c *sqlite3.SQLiteConn) error {
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
	})
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

var (
	metaMigrations  = sync.OnceValues(func() ([]sqlitedb.Migration, error) { return sqlitedb.LoadMigrations(migrationFS, "migrations/meta") })
	shardMigrations = sync.OnceValues(func() ([]sqlitedb.Migration, error) { return sqlitedb.LoadMigrations(migrationFS, "migrations/shard") })
)

// migrate is sqlitedb.Migrate with this package's error classes.
func migrate(ctx context.Context, db *sql.DB, ms []sqlitedb.Migration) error {
	return classify(sqlitedb.Migrate(ctx, db, ms))
}

// createFile is sqlitedb.CreateFile (0600, O_EXCL, directory fsynced) with
// this package's error classes.
func createFile(file string) error { return classify(sqlitedb.CreateFile(file)) }

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

func syncDir(dir string) error { return classify(atomicfile.SyncDir(dir)) }
