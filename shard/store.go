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
	// Directory, if set, is the metabase (another engine's: etcd), used
	// instead of meta.db, which is then neither opened nor created;
	// DataDir is not used. The caller closes it after the Store.
	Directory Directory
	// ReservationTTL is how long the Directory's reservations and invite
	// claims last (directory.go): meta.db's are made with it, and the
	// Store touches files only during the first half of it. With
	// Directory set it must be that Directory's. <=0 →
	// DefaultReservationTTL.
	ReservationTTL time.Duration
	// Now is the clock of reservations and claims; nil → time.Now.
	// Tests move it on to simulate a holder that crashed.
	Now func() time.Time
}

// Store is the MetaBase (a Directory) and every shard it points to. It is safe for
// concurrent use, and other processes may use the same files at the same
// time (SQLite locking arbitrates; see the package documentation).
type Store struct {
	homes []home            // configured order, each with its id
	dirOf map[string]string // home id → configured directory
	group bool
	busy  time.Duration
	log   *slog.Logger
	dir   Directory // the metabase
	sql   *sqlDir   // dir, on meta.db
	ttl   time.Duration
	now   func() time.Time
	pool  *pool
	count counters

	closeOnce sync.Once
	closeErr  error
}

// User is one Directory entry, with its home's configured directory.
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
	if opts.DataDir == "" && opts.Directory == nil {
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
		ttl:   opts.ReservationTTL,
		now:   opts.Now,
	}
	if s.ttl <= 0 {
		s.ttl = DefaultReservationTTL
	}
	if s.now == nil {
		s.now = time.Now
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
	if opts.Directory != nil {
		// Another engine's metabase: no meta.db here.
		s.dir = opts.Directory
		if err := makeHomes(homes, opts.NoCreate); err != nil {
			return nil, fmt.Errorf("shard: open: %w", err)
		}
		if s.homes, err = openHomes(ctx, s.dir, homes, !opts.NoCreate); err != nil {
			return nil, fmt.Errorf("shard: open: %w", err)
		}
	} else if err := s.openMeta(ctx, opts, homes); err != nil {
		return nil, err
	}
	s.dirOf = make(map[string]string, len(s.homes))
	for _, h := range s.homes {
		s.dirOf[h.id] = h.dir
	}
	return s, nil
}

// openMeta opens (creating, unless opts.NoCreate) and migrates meta.db in
// opts.DataDir, the SQLite Directory, and brings the homes in through it.
func (s *Store) openMeta(ctx context.Context, opts Options, homes []string) error {
	ms, err := metaMigrationsFor(homes)
	if err != nil {
		return fmt.Errorf("shard: open: %w", err)
	}
	metaPath := filepath.Join(opts.DataDir, MetaFile)
	if opts.NoCreate {
		if err := existing(metaPath, homes); err != nil {
			return fmt.Errorf("shard: open: %w", err)
		}
	} else {
		if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
			return fmt.Errorf("shard: open: %w", classify(err))
		}
		if err := makeHomes(homes, false); err != nil {
			return fmt.Errorf("shard: open: %w", err)
		}
		if err := createFile(metaPath); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("shard: open %s: %w", metaPath, err)
		}
	}
	s.sql = &sqlDir{meta: openPair(metaPath, s.busy, kindMeta), ttl: s.ttl, now: s.now}
	s.dir = s.sql
	if err := migrate(ctx, s.sql.meta.w, ms); err != nil {
		_ = s.sql.close()
		return fmt.Errorf("shard: open %s: %w", metaPath, err)
	}
	if s.homes, err = openHomes(ctx, s.dir, homes, !opts.NoCreate); err != nil {
		_ = s.sql.close()
		return fmt.Errorf("shard: open: %w", err)
	}
	return nil
}

// makeHomes creates the home directories (0700) where missing; with
// noCreate it only checks that they exist.
func makeHomes(homes []string, noCreate bool) error {
	if noCreate {
		return existingHomes(homes)
	}
	for _, dir := range homes {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return classify(err)
		}
	}
	return nil
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
	return existingHomes(homes)
}

// existingHomes checks that every home exists.
func existingHomes(homes []string) error {
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
		if s.sql != nil {
			s.closeErr = s.sql.close()
		}
	})
	return s.closeErr
}

// Directory returns the metabase the Store uses.
func (s *Store) Directory() Directory { return s.dir }

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
// public key in it, then commits the directory entry. On failure it leaves
// nothing behind. An address that has an entry, or that another call (in
// any process) is creating or deleting, is ErrExists (the latter matches
// ErrReserved too).
//
// No lock is held across the steps: the address is reserved in the
// Directory first, the shard made under the reservation, and the entry
// committed by compare-and-set on it (package documentation, "Other
// processes").
func (s *Store) CreateUser(ctx context.Context, address string, publicKey []byte) (User, error) {
	if err := checkAddress(address); err != nil {
		return User{}, fmt.Errorf("shard: create user: %w", err)
	}
	if err := checkKey(publicKey); err != nil {
		return User{}, fmt.Errorf("shard: create user: %w", err)
	}
	return s.createUser(ctx, address, publicKey, s.homeIDs())
}

// CreateUserOn is CreateUser on the configured home with id homeID instead
// of the least-loaded one; another id is ErrHome.
func (s *Store) CreateUserOn(ctx context.Context, address string, publicKey []byte, homeID string) (User, error) {
	if err := checkAddress(address); err != nil {
		return User{}, fmt.Errorf("shard: create user: %w", err)
	}
	if err := checkKey(publicKey); err != nil {
		return User{}, fmt.Errorf("shard: create user: %w", err)
	}
	if s.dirOf[homeID] == "" {
		return User{}, fmt.Errorf("shard: create user: %w: no configured home has id %q", ErrHome, homeID)
	}
	return s.createUser(ctx, address, publicKey, []string{homeID})
}

func (s *Store) createUser(ctx context.Context, address string, publicKey []byte, homes []string) (User, error) {
	r, err := s.reserve(ctx, address, homes)
	if err != nil {
		return User{}, fmt.Errorf("shard: create user: %w", err)
	}
	path, err := s.makeShard(ctx, r, publicKey, nil, time.Time{})
	if err != nil {
		return User{}, err
	}
	e, err := s.dir.Commit(ctx, r)
	if err != nil {
		s.abandon(ctx, r, path, err)
		return User{}, fmt.Errorf("shard: create user: %w", err)
	}
	return s.userOf(e), nil
}

// homeIDs returns the configured homes' ids, in configured order.
func (s *Store) homeIDs() []string {
	ids := make([]string, len(s.homes))
	for i, h := range s.homes {
		ids[i] = h.id
	}
	return ids
}

// reserve reserves address on the least-loaded of homes (ids). An address
// with an entry or a live reservation is ErrExists.
func (s *Store) reserve(ctx context.Context, address string, homes []string) (Reservation, error) {
	r, err := s.dir.Reserve(ctx, address, homes)
	if errors.Is(err, ErrReserved) {
		return Reservation{}, fmt.Errorf("%w: %w", ErrExists, err)
	}
	if err != nil {
		return Reservation{}, err
	}
	if s.dirOf[r.HomeID] == "" {
		_ = s.dir.Cancel(context.WithoutCancel(ctx), r)
		return Reservation{}, fmt.Errorf("%w: directory placed %s on home id %s, which no configured home has", ErrHome, address, r.HomeID)
	}
	return r, nil
}

// holds reports whether the reservation r is still safely held: its holder
// touches files only during the first half of its life, so that one who
// takes it over once it has expired never races it.
func (s *Store) holds(r Reservation) bool {
	return s.now().Before(r.Expires.Add(-s.ttl / 2))
}

// makeShard creates, under the reservation r, the shard of r.Address on
// r's home holding publicKey (and the login material l, if not nil). Files
// an earlier holder of the address left (a crash) are removed first. On
// failure it removes what it made and cancels r.
func (s *Store) makeShard(ctx context.Context, r Reservation, publicKey []byte, l *Login, now time.Time) (string, error) {
	path := ShardPath(s.dirOf[r.HomeID], r.Address)
	fail := func(err error) (string, error) {
		if s.holds(r) {
			s.discard(path)
		}
		_ = s.dir.Cancel(context.WithoutCancel(ctx), r)
		return "", fmt.Errorf("shard %s: create: %w", path, err)
	}
	// A handle left from an earlier holder of this address, deleted by
	// another process, must not be reused.
	if err := s.pool.drop(ctx, keyOf(r.Address)); err != nil {
		return fail(err)
	}
	if r.TookOver {
		// The crashed holder may have been creating on another home.
		for _, h := range s.homes {
			if h.id == r.HomeID {
				continue
			}
			if !s.holds(r) {
				return fail(ErrLost)
			}
			if n, err := s.unlinkShard(ctx, ShardPath(h.dir, r.Address)); err != nil {
				return fail(err)
			} else if n > 0 {
				s.log.Warn("removed leftover shard files of an expired reservation", "path", ShardPath(h.dir, r.Address))
			}
		}
	}
	if !s.holds(r) {
		return fail(ErrLost)
	}
	if err := s.createShard(ctx, path, publicKey); err != nil {
		return fail(err)
	}
	if l != nil {
		if err := s.initLogin(ctx, path, *l, now); err != nil {
			return fail(err)
		}
	}
	return path, nil
}

// abandon cleans up after the commit of r (whose shard is at path) failed
// with err. A reservation lost was taken over, and its files are the
// taker's now: nothing is touched. Otherwise, if no entry exists, the files
// are removed and r cancelled.
func (s *Store) abandon(ctx context.Context, r Reservation, path string, err error) {
	if errors.Is(err, ErrLost) {
		return
	}
	ctx = context.WithoutCancel(ctx)
	if _, lerr := s.dir.Lookup(ctx, r.Address); !errors.Is(lerr, ErrNotFound) {
		return
	}
	if s.holds(r) {
		s.discard(path)
	}
	_ = s.dir.Cancel(ctx, r)
}

// createShard makes a fresh shard file at path holding publicKey. The caller
// holds a reservation of the address (makeShard), so no user owns path and
// files already there are leftovers of a crash and are removed first.
func (s *Store) createShard(ctx context.Context, path string, publicKey []byte) error {
	if err := mkdirSync(filepath.Dir(path)); err != nil {
		return err
	}
	if n, err := removeFiles(path); err != nil {
		return err
	} else if n > 0 {
		s.log.Warn("removed leftover shard files that had no directory entry", "path", path)
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

// User returns the directory entry of address.
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
	e, err := s.dir.Lookup(ctx, address)
	if err != nil {
		return User{}, err
	}
	return s.userOf(e), nil
}

func (s *Store) userOf(e Entry) User {
	return User{Address: e.Address, HomeID: e.HomeID, Home: s.dirOf[e.HomeID], State: e.State, Created: e.Created}
}

// Users calls fn for every user, ordered by address, and stops at fn's
// first error, which it returns.
func (s *Store) Users(ctx context.Context, fn func(User) error) error {
	var fnErr error
	err := s.dir.Users(ctx, func(e Entry) error {
		fnErr = fn(s.userOf(e))
		return fnErr
	})
	if err != nil && fnErr == nil {
		return fmt.Errorf("shard: users: %w", err)
	}
	return err
}

// DeleteUser removes the user's directory entry (new mail is refused from
// then on), waits for running calls on the user's shard, closes it and
// removes its files (-wal, -shm too). The Directory keeps the address
// reserved until the files are gone, so nobody creates it again meanwhile.
// Shard files left by an earlier crash for an address with no entry are
// removed too, and the call still reports ErrNotFound.
func (s *Store) DeleteUser(ctx context.Context, address string) error {
	if err := checkAddress(address); err != nil {
		return fmt.Errorf("shard: delete user: %w", err)
	}
	e, err := s.dir.Lookup(ctx, address)
	if errors.Is(err, ErrNotFound) {
		if err := s.removeLeftovers(ctx, address); err != nil {
			return fmt.Errorf("shard: delete user: %w", err)
		}
		return fmt.Errorf("shard: delete user: %w", ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("shard: delete user: %w", err)
	}
	if s.dirOf[e.HomeID] == "" {
		// Its files could not be removed: keep the entry.
		return fmt.Errorf("shard: delete user: %w: %s is on home id %s, which no configured home has", ErrHome, address, e.HomeID)
	}
	r, err := s.dir.Delete(ctx, address)
	if err != nil {
		return fmt.Errorf("shard: delete user: %w", err)
	}
	// No new call reaches the shard now (the pool opens only what the
	// directory lists); wait for the running ones and close the handle.
	err = s.pool.drop(ctx, keyOf(address))
	if err == nil {
		err = s.removeShard(ctx, r)
	}
	if err != nil {
		// The reservation stays until it expires; whoever takes it
		// over removes the files.
		return fmt.Errorf("shard: delete user: %w", err)
	}
	if err := s.dir.Cancel(ctx, r); err != nil {
		return fmt.Errorf("shard: delete user: %w", err)
	}
	return nil
}

// removeShard removes the shard files of the reservation r's address on
// r's home, unless r is no longer safely held.
func (s *Store) removeShard(ctx context.Context, r Reservation) error {
	dir := s.dirOf[r.HomeID]
	if dir == "" {
		return fmt.Errorf("%w: %s was on home id %s, which no configured home has", ErrHome, r.Address, r.HomeID)
	}
	if !s.holds(r) {
		return ErrLost
	}
	path := ShardPath(dir, r.Address)
	if _, err := s.unlinkShard(ctx, path); err != nil {
		return fmt.Errorf("shard %s: delete: %w", path, err)
	}
	return nil
}

// removeLeftovers removes, under a reservation, the shard files of an
// address without an entry on every configured home. An address another
// call is creating or deleting is left to it.
func (s *Store) removeLeftovers(ctx context.Context, address string) error {
	r, err := s.dir.Reserve(ctx, address, s.homeIDs())
	if errors.Is(err, ErrReserved) || errors.Is(err, ErrExists) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.pool.drop(ctx, keyOf(address)); err != nil {
		return err
	}
	for _, h := range s.homes {
		if !s.holds(r) {
			return ErrLost
		}
		path := ShardPath(h.dir, address)
		n, err := s.unlinkShard(ctx, path)
		if err != nil {
			return fmt.Errorf("shard %s: delete: %w", path, err)
		}
		if n > 0 {
			s.log.Warn("removed leftover shard files that had no directory entry", "path", path)
		}
	}
	return s.dir.Cancel(ctx, r)
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
	if s.sql == nil {
		return nil // another engine's: nothing of it is in a file here
	}
	if err := s.sql.check(ctx); err != nil {
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
