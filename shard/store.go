package shard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Defaults for Options.
const (
	DefaultMaxOpenShards = 1024
	DefaultBusyTimeout   = 5 * time.Second
	// MaxKeySize bounds a stored public key; an armored key is a few KiB.
	MaxKeySize = 1 << 20
)

// User states.
const (
	StateActive   = "active"
	StateInvited  = "invited"
	StateDisabled = "disabled"
)

// MetaFile is the metabase's file name inside Options.DataDir.
const MetaFile = "meta.db"

// Options configures a Store.
type Options struct {
	DataDir       string        // holds meta.db; created 0700 if missing
	Homes         []string      // absolute dirs for shards; created 0700 if missing; at least one; known by their HOME files (homes.go)
	MaxOpenShards int           // <=0 → DefaultMaxOpenShards
	BusyTimeout   time.Duration // how long to wait for another connection's lock; <=0 → DefaultBusyTimeout
	Logger        *slog.Logger  // nil → slog.Default()
	// NoCreate opens an existing store only: the data dir, meta.db and
	// every home must exist, and nothing is created (admin commands use it,
	// so a wrong config cannot start a new, empty server). A missing one is
	// an error wrapping ErrNoStore.
	NoCreate bool
}

// Store is the MetaBase and every shard it points to. It is safe for
// concurrent use, and other processes may use the same files at the same
// time (SQLite locking arbitrates; see the package documentation).
type Store struct {
	homes []home            // configured order, each with its id
	dirOf map[string]string // home id → configured directory
	group bool
	busy  time.Duration
	log   *slog.Logger
	meta  *dbPair
	pool  *pool
	count counters

	closeOnce sync.Once
	closeErr  error
}

// User is one MetaBase row.
type User struct {
	Address string
	HomeID  string // id of the home holding the user's shard (its HOME file)
	Home    string // that home's configured directory; "" if no configured home has the id
	State   string // StateActive, ...
	Created time.Time
}

// Open opens (creating if needed) the metabase and the home directories,
// applies pending metabase migrations, and brings the homes in: it reads
// each home's id from its HOME file, writing one into a new, empty home,
// and refuses (ErrHome, naming them) homes and users the metabase and the
// configuration disagree on; see the package documentation, "Homes".
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.DataDir == "" {
		return nil, fmt.Errorf("shard: open: %w: no data directory", ErrInvalid)
	}
	homes, err := cleanHomes(opts.Homes)
	if err != nil {
		return nil, fmt.Errorf("shard: open: %w", err)
	}
	s := &Store{
		group: groupCommit,
		busy:  opts.BusyTimeout,
		log:   opts.Logger,
	}
	if s.busy <= 0 {
		s.busy = DefaultBusyTimeout
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	max := opts.MaxOpenShards
	if max <= 0 {
		max = DefaultMaxOpenShards
	}
	s.pool = newPool(max, s.log)

	// Fail early on a broken embedded migration set.
	if _, err := shardMigrations(); err != nil {
		return nil, fmt.Errorf("shard: open: %w", err)
	}
	ms, err := metaMigrationsFor(homes)
	if err != nil {
		return nil, fmt.Errorf("shard: open: %w", err)
	}
	metaPath := filepath.Join(opts.DataDir, MetaFile)
	if opts.NoCreate {
		if err := existing(metaPath, homes); err != nil {
			return nil, fmt.Errorf("shard: open: %w", err)
		}
	} else {
		for _, dir := range append([]string{opts.DataDir}, homes...) {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("shard: open: %w", classify(err))
			}
		}
		if err := createFile(metaPath); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("shard: open %s: %w", metaPath, err)
		}
	}
	s.meta = openPair(metaPath, s.busy, kindMeta)
	if err := migrate(ctx, s.meta.w, ms); err != nil {
		_ = s.meta.close()
		return nil, fmt.Errorf("shard: open %s: %w", metaPath, err)
	}
	if s.homes, err = openHomes(ctx, s.meta.w, homes, !opts.NoCreate); err != nil {
		_ = s.meta.close()
		return nil, fmt.Errorf("shard: open: %w", err)
	}
	s.dirOf = make(map[string]string, len(s.homes))
	for _, h := range s.homes {
		s.dirOf[h.id] = h.dir
	}
	return s, nil
}

// existing checks, for Options.NoCreate, that the metabase file and every
// home exist.
func existing(metaPath string, homes []string) error {
	fi, err := os.Stat(metaPath)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s does not exist", ErrNoStore, metaPath)
	}
	if err != nil {
		return classify(err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", metaPath)
	}
	for _, h := range homes {
		fi, err := os.Stat(h)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: home %s does not exist", ErrNoStore, h)
		}
		if err != nil {
			return classify(err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("home %s is not a directory", h)
		}
	}
	return nil
}

// Close closes every idle shard handle and the metabase. Call it after every
// other call has returned; a handle still in use is closed when its call
// returns.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.pool.shutdown()
		s.closeErr = s.meta.close()
	})
	return s.closeErr
}

// OpenShards reports how many shard handles are open; see Stats.
func (s *Store) OpenShards() int { return s.pool.stats().Open }

// Stats reports the pool of open shard handles and write counters.
func (s *Store) Stats() Stats {
	st := s.pool.stats()
	st.Writes = s.count.writes.Load()
	st.Commits = s.count.commits.Load()
	st.Queued = s.count.queued.Load()
	return st
}

// Homes returns the configured homes, cleaned, in configured order.
func (s *Store) Homes() []string {
	dirs := make([]string, len(s.homes))
	for i, h := range s.homes {
		dirs[i] = h.dir
	}
	return dirs
}

// HomeID returns the id of the configured home dir (as Homes lists it), or
// "" if dir is not one.
func (s *Store) HomeID(dir string) string {
	for _, h := range s.homes {
		if h.dir == filepath.Clean(dir) {
			return h.id
		}
	}
	return ""
}

// shardPath is where u's shard lives, through the configured directory of
// its home id.
func (s *Store) shardPath(u User) (string, error) {
	if u.Home == "" {
		return "", fmt.Errorf("%w: %s is on home id %s, which no configured home has", ErrHome, u.Address, u.HomeID)
	}
	return ShardPath(u.Home, u.Address), nil
}

// ShardPath is where the shard of address lives under home:
// <home>/<hh>/<hex sha256(address)>.db, hh being the hash's first two hex
// digits. No part of the address itself reaches the file system.
func ShardPath(home, address string) string {
	k := keyOf(address)
	return filepath.Join(home, k[:2], k+".db")
}

func keyOf(address string) string {
	sum := sha256.Sum256([]byte(address))
	return hex.EncodeToString(sum[:])
}

func checkAddress(address string) error {
	if address == "" || !utf8.ValidString(address) || strings.ContainsRune(address, 0) {
		return fmt.Errorf("%w: address", ErrInvalid)
	}
	return nil
}

func checkKey(key []byte) error {
	if len(key) == 0 || len(key) > MaxKeySize {
		return fmt.Errorf("%w: public key size %d", ErrInvalid, len(key))
	}
	return nil
}

// CreateUser creates the user's shard on the least-loaded home, stores the
// public key in it, then adds the metabase row. On failure it leaves nothing
// behind.
//
// The metabase write lock is held throughout, so placement counts stay exact
// and only one creator (in any process) touches the shard path at a time.
func (s *Store) CreateUser(ctx context.Context, address string, publicKey []byte) (User, error) {
	if err := checkAddress(address); err != nil {
		return User{}, fmt.Errorf("shard: create user: %w", err)
	}
	if err := checkKey(publicKey); err != nil {
		return User{}, fmt.Errorf("shard: create user: %w", err)
	}
	tx, err := s.meta.w.BeginTx(ctx, nil)
	if err != nil {
		return User{}, fmt.Errorf("shard: create user: %w", classify(err))
	}
	defer tx.Rollback()
	var one int
	switch err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE address = ?`, address).Scan(&one); {
	case err == nil:
		return User{}, fmt.Errorf("shard: create user: %w", ErrExists)
	case !errors.Is(err, sql.ErrNoRows):
		return User{}, fmt.Errorf("shard: create user: %w", classify(err))
	}
	home, err := s.pickHome(ctx, tx)
	if err != nil {
		return User{}, fmt.Errorf("shard: create user: %w", err)
	}
	path := ShardPath(home.dir, address)
	// A handle left from an earlier holder of this address, deleted by
	// another process, must not be reused.
	if err := s.pool.drop(ctx, keyOf(address)); err != nil {
		return User{}, fmt.Errorf("shard: create user: %w", err)
	}
	if err := s.createShard(ctx, path, publicKey); err != nil {
		return User{}, fmt.Errorf("shard %s: create: %w", path, err)
	}
	u := User{Address: address, HomeID: home.id, Home: home.dir, State: StateActive, Created: time.Unix(time.Now().Unix(), 0)}
	_, err = tx.ExecContext(ctx, `INSERT INTO users (address, home_id, state, created) VALUES (?, ?, ?, ?)`,
		u.Address, u.HomeID, u.State, u.Created.Unix())
	if err == nil {
		err = tx.Commit()
	}
	if err != nil {
		s.discard(path)
		return User{}, fmt.Errorf("shard: create user: %w", classify(err))
	}
	return u, nil
}

// pickHome returns the configured home with the fewest users; ties go to the
// first in configured order.
func (s *Store) pickHome(ctx context.Context, tx *sql.Tx) (home, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, users FROM homes`)
	if err != nil {
		return home{}, classify(err)
	}
	defer rows.Close()
	load := make(map[string]int64)
	for rows.Next() {
		var p string
		var n int64
		if err := rows.Scan(&p, &n); err != nil {
			return home{}, classify(err)
		}
		load[p] = n
	}
	if err := rows.Err(); err != nil {
		return home{}, classify(err)
	}
	best, bestN := home{}, int64(math.MaxInt64)
	for _, h := range s.homes {
		if n := load[h.id]; n < bestN {
			best, bestN = h, n
		}
	}
	return best, nil
}

// createShard makes a fresh shard file at path holding publicKey. The caller
// holds the metabase write lock and has checked that no user owns path, so
// files already there are leftovers of a crash and are removed first.
func (s *Store) createShard(ctx context.Context, path string, publicKey []byte) error {
	if err := mkdirSync(filepath.Dir(path)); err != nil {
		return err
	}
	if n, err := removeFiles(path); err != nil {
		return err
	} else if n > 0 {
		s.log.Warn("removed leftover shard files that had no metabase row", "path", path)
	}
	if err := createFile(path); err != nil {
		return err
	}
	db, ident, err := openShardFile(ctx, path, s.busy)
	if err != nil {
		s.discard(path)
		return err
	}
	h := &handle{path: path, db: db, ident: ident}
	err = h.write(ctx, func(ctx context.Context, tx *sql.Tx, modseq int64) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO keys (public_key, created) VALUES (?, ?)`, publicKey, time.Now().Unix())
		return err
	})
	// Closing checkpoints the WAL into the (fsync'ed) database file.
	if cerr := h.close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.discard(path)
		return err
	}
	return nil
}

func (s *Store) discard(path string) {
	if _, err := removeFiles(path); err != nil {
		s.log.Error("removing shard files after a failed create", "path", path, "err", err)
	}
}

// shardFileSuffixes are the files SQLite may keep next to a database.
var shardFileSuffixes = []string{"", "-wal", "-shm", "-journal"}

// removeFiles removes path and its SQLite side files, reporting how many
// existed.
func removeFiles(path string) (int, error) {
	n := 0
	var errs []error
	for _, suf := range shardFileSuffixes {
		switch err := os.Remove(path + suf); {
		case err == nil:
			n++
		case !errors.Is(err, fs.ErrNotExist):
			errs = append(errs, err)
		}
	}
	return n, classify(errors.Join(errs...))
}

// User returns the metabase row of address.
func (s *Store) User(ctx context.Context, address string) (User, error) {
	if err := checkAddress(address); err != nil {
		return User{}, fmt.Errorf("shard: user: %w", err)
	}
	u, err := s.lookup(ctx, address)
	if err != nil {
		return User{}, fmt.Errorf("shard: user: %w", err)
	}
	return u, nil
}

func (s *Store) lookup(ctx context.Context, address string) (User, error) {
	var u User
	var created int64
	err := s.meta.r.QueryRowContext(ctx, `SELECT address, home_id, state, created FROM users WHERE address = ?`, address).
		Scan(&u.Address, &u.HomeID, &u.State, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("user %w", ErrNotFound)
	}
	if err != nil {
		return User{}, classify(err)
	}
	u.Created = time.Unix(created, 0)
	u.Home = s.dirOf[u.HomeID]
	return u, nil
}

// Users calls fn for every user, ordered by address, and stops at fn's
// first error, which it returns.
func (s *Store) Users(ctx context.Context, fn func(User) error) error {
	rows, err := s.meta.r.QueryContext(ctx, `SELECT address, home_id, state, created FROM users ORDER BY address`)
	if err != nil {
		return fmt.Errorf("shard: users: %w", classify(err))
	}
	defer rows.Close()
	for rows.Next() {
		var u User
		var created int64
		if err := rows.Scan(&u.Address, &u.HomeID, &u.State, &created); err != nil {
			return fmt.Errorf("shard: users: %w", classify(err))
		}
		u.Created = time.Unix(created, 0)
		u.Home = s.dirOf[u.HomeID]
		if err := fn(u); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("shard: users: %w", classify(err))
	}
	return nil
}

// DeleteUser removes the user's metabase row, waits for running calls on the
// user's shard, closes it and removes its files (-wal, -shm too). Shard files
// left by an earlier crash for an address with no row are removed too, and
// the call still reports ErrNotFound.
func (s *Store) DeleteUser(ctx context.Context, address string) error {
	if err := checkAddress(address); err != nil {
		return fmt.Errorf("shard: delete user: %w", err)
	}
	var id string
	found := true
	err := s.metaWrite(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `DELETE FROM users WHERE address = ? RETURNING home_id`, address).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			found = false
			return nil
		}
		if err == nil && s.dirOf[id] == "" {
			// Its files could not be removed: keep the row.
			return fmt.Errorf("%w: %s is on home id %s, which no configured home has", ErrHome, address, id)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("shard: delete user: %w", err)
	}
	// No new call reaches the shard now (the pool opens only what the
	// metabase lists); wait for the running ones and close the handle.
	if err := s.pool.drop(ctx, keyOf(address)); err != nil {
		return fmt.Errorf("shard: delete user: %w", err)
	}
	homes := []home{{dir: s.dirOf[id], id: id}}
	if !found {
		homes = s.homes
	}
	for _, h := range homes {
		path := ShardPath(h.dir, address)
		n, err := s.removeShard(ctx, address, h.id, path)
		if err != nil {
			return fmt.Errorf("shard %s: delete: %w", path, err)
		}
		if !found && n > 0 {
			s.log.Warn("removed leftover shard files that had no metabase row", "path", path)
		}
	}
	if !found {
		return fmt.Errorf("shard: delete user: %w", ErrNotFound)
	}
	return nil
}

// removeShard removes the shard files at path, on home id, unless the
// address has been claimed again for the same home meanwhile (a CreateUser
// that ran between the row's deletion and now, perhaps in another process).
func (s *Store) removeShard(ctx context.Context, address, id, path string) (int, error) {
	var n int
	err := s.metaWrite(ctx, func(tx *sql.Tx) error {
		var now string
		err := tx.QueryRowContext(ctx, `SELECT home_id FROM users WHERE address = ?`, address).Scan(&now)
		if err == nil && now == id {
			return nil
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		n, err = s.unlinkShard(ctx, path)
		return err
	})
	return n, err
}

// unlinkShard removes a shard's files while holding its write lock, so a
// writer in another process has either committed before (the mail goes with
// the user) or, once it gets the lock, finds the file gone and rolls back.
func (s *Store) unlinkShard(ctx context.Context, path string) (int, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return removeFiles(path)
	}
	db := sql.OpenDB(newConnector(path, s.busy, kindShard, false))
	defer db.Close()
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err == nil {
		defer conn.Close()
		if _, err = conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err == nil {
			defer conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}
	// A file that is not a database cannot be locked, nor written to by
	// anyone: remove it anyway.
	if err := classify(err); err != nil && !errors.Is(err, ErrCorrupt) {
		return 0, err
	}
	return removeFiles(path)
}

// metaWrite runs fn in one metabase write transaction.
func (s *Store) metaWrite(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.meta.w.BeginTx(ctx, nil)
	if err != nil {
		return classify(err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return classify(err)
	}
	return classify(tx.Commit())
}

// acquire returns the pooled handle of address's shard, opening it if
// needed, after checking that its file is still the one at its path. The
// caller must release it.
func (s *Store) acquire(ctx context.Context, address string) (*handle, error) {
	return s.acquireChecked(ctx, address, true)
}

// acquireChecked is acquire, with the file check optional: a write checks
// the file again inside its transaction, under the write lock (commitBatch),
// and retries on a fresh handle if it was replaced, so checking before too
// would only cost a second stat of the path.
func (s *Store) acquireChecked(ctx context.Context, address string, check bool) (*handle, error) {
	if err := checkAddress(address); err != nil {
		return nil, err
	}
	key := keyOf(address)
	open := func(ctx context.Context, h *handle) error {
		u, err := s.lookup(ctx, address)
		if err != nil {
			return err
		}
		if h.path, err = s.shardPath(u); err != nil {
			return err
		}
		db, ident, err := openShardFile(ctx, h.path, s.busy)
		if err != nil {
			return fmt.Errorf("shard %s: open: %w", h.path, err)
		}
		h.db, h.ident, h.group, h.count = db, ident, s.group, &s.count
		// The writer is open and idle now: fill the delivery key cache
		// with it, so a delivery to a shard just opened needs no reader.
		if key, err := currentKey(ctx, db.w); err == nil {
			h.pubKey.Store(&key)
		}
		return nil
	}
	for attempt := 0; ; attempt++ {
		h, err := s.pool.acquire(ctx, key, open)
		if err != nil {
			if errors.Is(err, errStale) && attempt == 0 {
				continue
			}
			return nil, err
		}
		if !check || h.sameFile() {
			return h, nil
		}
		s.pool.invalidate(h)
		s.pool.release(h)
		if attempt > 0 {
			return nil, fmt.Errorf("shard %s: %w", h.path, errStale)
		}
		s.log.Info("shard file removed or replaced by another process; reopening", "path", h.path)
	}
}

// write runs fn in a durable write transaction on address's shard; fn gets
// the transaction's modseq. If another process removed or replaced the shard
// file, the transaction is rolled back and retried once on a fresh handle.
func (s *Store) write(ctx context.Context, address, op string, fn func(ctx context.Context, tx *sql.Tx, modseq int64) error) error {
	return s.writeHandle(ctx, address, op, func(*handle) writeFunc { return fn })
}

// writeHandle is write for a function that needs the handle it runs on.
func (s *Store) writeHandle(ctx context.Context, address, op string, fnOf func(*handle) writeFunc) error {
	for attempt := 0; ; attempt++ {
		h, err := s.acquireChecked(ctx, address, false)
		if err != nil {
			return fmt.Errorf("shard: %s: %w", op, err)
		}
		err = h.write(ctx, fnOf(h))
		if errors.Is(err, errStale) {
			s.pool.invalidate(h)
		}
		s.pool.release(h)
		if errors.Is(err, errStale) && attempt == 0 {
			continue
		}
		if err != nil {
			return fmt.Errorf("shard %s: %s: %w", h.path, op, err)
		}
		return nil
	}
}

// read runs fn with a reader of address's shard.
func (s *Store) read(ctx context.Context, address, op string, fn func(ctx context.Context, db *sql.DB) error) error {
	h, err := s.acquire(ctx, address)
	if err != nil {
		return fmt.Errorf("shard: %s: %w", op, err)
	}
	defer s.pool.release(h)
	if err := fn(ctx, h.db.r); err != nil {
		return fmt.Errorf("shard %s: %s: %w", h.path, op, classify(err))
	}
	return nil
}

// PublicKey returns the user's current public key.
func (s *Store) PublicKey(ctx context.Context, address string) ([]byte, error) {
	var key []byte
	err := s.read(ctx, address, "public key", func(ctx context.Context, db *sql.DB) error {
		err := db.QueryRowContext(ctx, `SELECT public_key FROM keys ORDER BY id DESC LIMIT 1`).Scan(&key)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("no public key: %w", ErrNotFound)
		}
		return err
	})
	return key, err
}

// SetPublicKey replaces the user's public key.
func (s *Store) SetPublicKey(ctx context.Context, address string, key []byte) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("shard: set public key: %w", err)
	}
	return s.writeHandle(ctx, address, "set public key", func(h *handle) writeFunc {
		return func(ctx context.Context, tx *sql.Tx, modseq int64) error {
			if _, err := tx.ExecContext(ctx, `DELETE FROM keys`); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO keys (public_key, created) VALUES (?, ?)`, key, time.Now().Unix()); err != nil {
				return err
			}
			// Deliveries check their key inside their own transaction, so
			// the cache may run ahead of a commit that then fails.
			k := bytes.Clone(key)
			h.pubKey.Store(&k)
			return nil
		}
	})
}

// ModSeq returns the shard's highest modseq: every change made so far is
// stamped with a value at most this.
func (s *Store) ModSeq(ctx context.Context, address string) (int64, error) {
	var m int64
	err := s.read(ctx, address, "modseq", func(ctx context.Context, db *sql.DB) error {
		return db.QueryRowContext(ctx, `SELECT modseq FROM state WHERE id = 1`).Scan(&m)
	})
	return m, err
}

// Check runs SQLite's integrity and foreign key checks on the user's shard.
// A damaged shard gives an error matching ErrCorrupt.
func (s *Store) Check(ctx context.Context, address string) error {
	return s.read(ctx, address, "check", checkDB)
}

// CheckMeta runs SQLite's integrity and foreign key checks on the metabase.
func (s *Store) CheckMeta(ctx context.Context) error {
	if err := checkDB(ctx, s.meta.r); err != nil {
		return fmt.Errorf("shard: metabase check: %w", classify(err))
	}
	return nil
}

func checkDB(ctx context.Context, db *sql.DB) error {
	// Both pragmas report only page numbers, table names and rowids.
	const maxLines = 10
	var problems []string
	rows, err := db.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return err
		}
		if line != "ok" && len(problems) < maxLines {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	fk, err := db.QueryContext(ctx, `PRAGMA foreign_key_check`)
	if err != nil {
		return err
	}
	defer fk.Close()
	for fk.Next() {
		var table, parent string
		var rowid sql.NullInt64
		var idx int64
		if err := fk.Scan(&table, &rowid, &parent, &idx); err != nil {
			return err
		}
		if len(problems) < maxLines {
			problems = append(problems, fmt.Sprintf("foreign key: %s row %d references missing %s", table, rowid.Int64, parent))
		}
	}
	if err := fk.Err(); err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrCorrupt, strings.Join(problems, "; "))
	}
	return nil
}
