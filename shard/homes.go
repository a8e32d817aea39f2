package shard

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"cryptomail/internal/sqlitedb"
)

// HomeFile is the file in a home directory that holds the home's id: 32
// lowercase hex digits (16 random bytes) and a newline, mode 0600. The
// metabase names homes only by this id; the configuration says where each
// one is mounted now.
const HomeFile = "HOME"

const homeIDBytes = 16

// home is one configured home directory and the id read from its HOME file
// ("" while it has none: only CheckHomes sees such a home).
type home struct {
	dir string
	id  string
}

// homeState is what Open and CheckHomes find in one configured home.
type homeState struct {
	home
	empty bool // holds no shard directory (isEmptyHome)
	known bool // its id is in the metabase's homes table
}

// cleanHomes checks and cleans the configured home directories.
func cleanHomes(dirs []string) ([]string, error) {
	if len(dirs) == 0 {
		return nil, fmt.Errorf("%w: no homes", ErrInvalid)
	}
	out := make([]string, 0, len(dirs))
	for _, h := range dirs {
		if !filepath.IsAbs(h) {
			return nil, fmt.Errorf("%w: home %q is not an absolute path", ErrInvalid, h)
		}
		h = filepath.Clean(h)
		if slices.Contains(out, h) {
			return nil, fmt.Errorf("%w: home %q listed twice", ErrInvalid, h)
		}
		out = append(out, h)
	}
	return out, nil
}

func newHomeID() (string, error) {
	b := make([]byte, homeIDBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("home id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func validHomeID(id string) bool { return len(id) == 2*homeIDBytes && isLowerHex(id) }

func isLowerHex(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// readHomeID reads dir's HOME file. A missing file gives an error matching
// fs.ErrNotExist.
func readHomeID(dir string) (string, error) {
	file := filepath.Join(dir, HomeFile)
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("home %s: %w", dir, classify(err))
	}
	id := strings.TrimSuffix(string(b), "\n")
	if !validHomeID(id) {
		return "", fmt.Errorf("%s: %w: not a home id (want %d hex digits)", file, ErrHome, 2*homeIDBytes)
	}
	return id, nil
}

// createHomeID gives dir a HOME file with a new random id, unless it has
// one already (perhaps written by another process meanwhile): it returns
// the id the file holds. The file is written and fsync'ed under a temporary
// name and linked into place, so it never exists half written and an
// existing one is never replaced.
func createHomeID(dir string) (string, error) {
	id, err := newHomeID()
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "."+HomeFile+"-*") // 0600
	if err != nil {
		return "", fmt.Errorf("home %s: %w", dir, classify(err))
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.WriteString(id + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("home %s: write %s: %w", dir, HomeFile, classify(err))
	}
	if err := os.Link(tmp, filepath.Join(dir, HomeFile)); errors.Is(err, fs.ErrExist) {
		return readHomeID(dir)
	} else if err != nil {
		return "", fmt.Errorf("home %s: %w", dir, classify(err))
	}
	if err := os.Remove(tmp); err != nil {
		return "", fmt.Errorf("home %s: %w", dir, classify(err))
	}
	if err := syncDir(dir); err != nil {
		return "", fmt.Errorf("home %s: %w", dir, err)
	}
	return id, nil
}

// isEmptyHome reports whether dir holds no shard directory: no <hh>
// directory (two lowercase hex digits), which is where every shard of a
// home lives. Anything else (lost+found at a file system's root, the data
// dir or another home inside this one, files of the admin's) is no user's
// data. A missing dir is empty.
func isEmptyHome(dir string) (bool, error) {
	es, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("home %s: %w", dir, classify(err))
	}
	for _, e := range es {
		if n := e.Name(); len(n) == 2 && e.IsDir() && isLowerHex(n) {
			return false, nil
		}
	}
	return true, nil
}

// readHomes reads each configured home's HOME file and whether it is empty.
func readHomes(dirs []string) ([]homeState, error) {
	hs := make([]homeState, len(dirs))
	for i, dir := range dirs {
		hs[i].dir = dir
		id, err := readHomeID(dir)
		switch {
		case err == nil:
			hs[i].id = id
		case !errors.Is(err, fs.ErrNotExist):
			return nil, err
		}
		if hs[i].empty, err = isEmptyHome(dir); err != nil {
			return nil, err
		}
	}
	return hs, nil
}

// matchHomes checks the configured homes against the homes the metabase
// knows (homes, with their user counts; firstUser names the first user, by
// address, on a home id that has some) and marks the known ones. It returns one error per problem, naming the directory, the id or
// the users concerned (homeProblems makes the list an ErrHome):
//
//   - a home without a HOME file that holds shards (a home copied without
//     it, or a directory that is not a home);
//   - two homes with the same id (a home and a copy of it);
//   - a home whose id the metabase does not know and that holds shards (a
//     home of another data dir);
//   - users on a home whose id is not configured.
//
// A home without a HOME file, or with an id the metabase does not know, that
// holds no shards ("empty", isEmptyHome) is a new home: Open writes its HOME file and
// registers its id.
func matchHomes(hs []homeState, homes []HomeLoad, firstUser func(id string) (string, error)) ([]error, error) {
	known := map[string]int64{}
	var ids []string
	for _, h := range homes {
		known[h.ID] = h.Users
		ids = append(ids, h.ID)
	}

	var problems []error
	dirOf := map[string]string{}
	for i := range hs {
		h := &hs[i]
		if h.id == "" {
			if !h.empty {
				problems = append(problems, fmt.Errorf("home %s has no %s file but holds shards (restored without it?)", h.dir, HomeFile))
			}
			continue
		}
		if other, ok := dirOf[h.id]; ok {
			problems = append(problems, fmt.Errorf("homes %s and %s have the same id %s (one is a copy of the other)", other, h.dir, h.id))
			continue
		}
		dirOf[h.id] = h.dir
		_, h.known = known[h.id]
		if !h.known && !h.empty {
			problems = append(problems, fmt.Errorf("home %s has id %s, which this metabase does not know (a home of another data dir?)", h.dir, h.id))
		}
	}
	for _, id := range ids {
		if n := known[id]; n == 0 || dirOf[id] != "" {
			continue
		}
		first, err := firstUser(id)
		if err != nil {
			return nil, err
		}
		problems = append(problems, fmt.Errorf("home id %s holds %s (%d users in all) but no configured home has that id: add its directory to storage.homes", id, first, known[id]))
	}
	return problems, nil
}

// openHomes brings the configured homes in through the Directory d: it
// checks them (matchHomes), writes a HOME file into each new empty home and
// registers each new id (AddHome) before any user can be placed on it. It
// returns the homes with their ids, in configured order. With create false
// (a store opened only to use what exists, by an admin command) a new home
// without a HOME file is an error instead.
//
// Processes opening at once agree without a lock: HOME files are read
// before the directory's homes, a HOME file is never replaced (createHomeID)
// and a home is registered before a shard is made on it, so a home found
// holding shards has been registered already.
func openHomes(ctx context.Context, d Directory, dirs []string, create bool) ([]home, error) {
	hs, err := readHomes(dirs)
	if err != nil {
		return nil, err
	}
	known, err := d.Homes(ctx)
	if err != nil {
		return nil, err
	}
	problems, err := matchHomes(hs, known, func(id string) (string, error) {
		var first string
		err := d.Users(ctx, func(e Entry) error {
			if e.HomeID != id {
				return nil
			}
			first = e.Address
			return errFound
		})
		if err != nil && err != errFound {
			return "", err
		}
		return first, nil
	})
	if err != nil {
		return nil, err
	}
	if !create {
		for _, h := range hs {
			if h.id == "" {
				problems = append(problems, fmt.Errorf("home %s is new (no %s file yet): start `cryptomail serve` once to take it in", h.dir, HomeFile))
			}
		}
	}
	if len(problems) > 0 {
		return nil, homeProblems(problems)
	}
	out := make([]home, len(hs))
	for i, h := range hs {
		if h.id == "" {
			if h.id, err = createHomeID(h.dir); err != nil {
				return nil, err
			}
		}
		if !h.known {
			if err := d.AddHome(ctx, h.id); err != nil {
				return nil, err
			}
		}
		out[i] = h.home
	}
	return out, nil
}

// errFound stops an iteration that found what it looked for.
var errFound = errors.New("found")

// homeIDMap returns the step that runs before meta migration 0004: it maps
// each home path the users table names to that home's id, reading the
// directory's HOME file or writing one, into temp.home_id_map, which the
// migration's SQL reads and drops. Every such path must be a configured
// home (dirs): a path that is not may be another server's live home (a data
// dir restored elsewhere), so it is an error naming it, and nothing changes.
func homeIDMap(dirs []string) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		legacy, err := legacyHomes(ctx, tx)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE home_id_map (path TEXT PRIMARY KEY, id TEXT NOT NULL)`); err != nil {
			return classify(err)
		}
		// Check them all before writing any HOME file.
		var problems []error
		for _, l := range legacy {
			if !slices.Contains(dirs, filepath.Clean(l.path)) {
				problems = append(problems, l.notConfigured())
			}
		}
		if len(problems) > 0 {
			return homeProblems(problems)
		}
		for _, l := range legacy {
			id, err := readHomeID(l.path)
			if errors.Is(err, fs.ErrNotExist) {
				id, err = createHomeID(l.path)
			}
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO temp.home_id_map (path, id) VALUES (?, ?)`, l.path, id); err != nil {
				return classify(err)
			}
		}
		return nil
	}
}

// metaMigrationsFor returns the metabase migrations for a store with the
// configured homes dirs: 0004 gets the step that maps their paths to ids.
func metaMigrationsFor(dirs []string) ([]sqlitedb.Migration, error) {
	ms, err := metaMigrations()
	if err != nil {
		return nil, err
	}
	ms = slices.Clone(ms)
	m := &ms[homeIDsVersion-1]
	if !strings.HasPrefix(m.Name, "0004_home_ids") {
		return nil, fmt.Errorf("meta migration %d is %s, want 0004_home_ids", homeIDsVersion, m.Name)
	}
	m.Before = homeIDMap(dirs)
	return ms, nil
}

// legacyHome is a home path in a metabase older than meta migration 0004.
type legacyHome struct {
	path  string
	users int64
	first string // first address on it
}

func (l legacyHome) notConfigured() error {
	return fmt.Errorf("home %s holds %s (%d users in all) but is not in storage.homes: start this version once with the data dir and homes where they were, then move them", l.path, l.first, l.users)
}

func legacyHomes(ctx context.Context, q querier) ([]legacyHome, error) {
	rows, err := q.QueryContext(ctx, `SELECT home, count(*), min(address) FROM users GROUP BY home ORDER BY home`)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	var out []legacyHome
	for rows.Next() {
		var l legacyHome
		if err := rows.Scan(&l.path, &l.users, &l.first); err != nil {
			return nil, classify(err)
		}
		out = append(out, l)
	}
	return out, classify(rows.Err())
}

// CheckHomes checks, as Open would, that opts.Homes match the metabase in
// opts.DataDir, without creating or changing anything: it reads the HOME
// files and opens meta.db read-only (if it exists). An error matching
// ErrHome names every problem found (see Open). A home that does not exist
// yet, or is empty, passes: Open gives it an id. A data dir without a
// metabase has no users, so then only homes with data in them are an error.
// A metabase not yet migrated to home ids passes if every home its users are
// on is configured (Open migrates it).
func CheckHomes(ctx context.Context, opts Options) error {
	dirs, err := cleanHomes(opts.Homes)
	if err != nil {
		return fmt.Errorf("shard: check homes: %w", err)
	}
	if opts.DataDir == "" {
		return fmt.Errorf("shard: check homes: %w: no data directory", ErrInvalid)
	}
	hs, err := readHomes(dirs)
	if err != nil {
		return fmt.Errorf("shard: check homes: %w", err)
	}
	metaPath := filepath.Join(opts.DataDir, MetaFile)
	// Without a metabase (or with one never migrated) there are no users,
	// so a home holding shards cannot be this data dir's.
	noUsers := func(why string) error {
		var problems []error
		for _, h := range hs {
			if !h.empty {
				problems = append(problems, fmt.Errorf("home %s holds shards but %s %s (wrong server.data_dir?)", h.dir, metaPath, why))
			}
		}
		return joinHomeProblems(problems)
	}
	if _, err := os.Stat(metaPath); errors.Is(err, fs.ErrNotExist) {
		return noUsers("does not exist")
	} else if err != nil {
		return fmt.Errorf("shard: check homes: %w", classify(err))
	}
	busy := opts.BusyTimeout
	if busy <= 0 {
		busy = DefaultBusyTimeout
	}
	db := sql.OpenDB(sqlitedb.NewConnector(readOnlyDSN(metaPath, busy), nil))
	defer db.Close()
	db.SetMaxOpenConns(1)
	// One read transaction: the version and the tables it describes are
	// read from one snapshot, even beside a server that migrates.
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("shard: check homes: %s: %w", metaPath, classify(err))
	}
	defer tx.Rollback()
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("shard: check homes: %s: %w", metaPath, classify(err))
	}
	ms, err := metaMigrations()
	if err != nil {
		return fmt.Errorf("shard: check homes: %w", err)
	}
	var problems []error
	switch {
	case v > len(ms):
		return fmt.Errorf("shard: check homes: %s: schema version %d is newer than this program's %d", metaPath, v, len(ms))
	case v == 0:
		return noUsers("is empty")
	case v < homeIDsVersion:
		legacy, err := legacyHomes(ctx, tx)
		if err != nil {
			return fmt.Errorf("shard: check homes: %s: %w", metaPath, err)
		}
		for _, l := range legacy {
			if !slices.Contains(dirs, filepath.Clean(l.path)) {
				problems = append(problems, l.notConfigured())
			}
		}
	default:
		known, err := sqlHomes(ctx, tx)
		if err != nil {
			return fmt.Errorf("shard: check homes: %s: %w", metaPath, err)
		}
		firstUser := func(id string) (string, error) {
			var first string
			err := tx.QueryRowContext(ctx, `SELECT address FROM users WHERE home_id = ? ORDER BY address LIMIT 1`, id).Scan(&first)
			return first, classify(err)
		}
		if problems, err = matchHomes(hs, known, firstUser); err != nil {
			return fmt.Errorf("shard: check homes: %s: %w", metaPath, err)
		}
	}
	return joinHomeProblems(problems)
}

func joinHomeProblems(problems []error) error {
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("shard: check homes: %w", homeProblems(problems))
}

// homeProblems lists every problem found with the homes, on one line (an
// admin command prints it as its one error line).
type homeProblems []error

func (p homeProblems) Error() string {
	msgs := make([]string, len(p))
	for i, e := range p {
		msgs[i] = e.Error()
	}
	return ErrHome.Error() + ": " + strings.Join(msgs, "; ")
}

// Unwrap makes it match ErrHome, and each problem.
func (p homeProblems) Unwrap() []error { return append([]error{ErrHome}, p...) }

// homeIDsVersion is the meta schema version that names homes by id.
const homeIDsVersion = 4

// readOnlyDSN opens a database file for reading only (mode=ro): SQLite
// neither creates it nor writes to it. A WAL database still needs its -wal
// and -shm files, which SQLite would create and leave behind; they exist
// while a server has the metabase open, and when they do not, the whole
// database is in the file, which is then read as immutable (no lock, no
// side files).
func readOnlyDSN(file string, busy time.Duration) string {
	u := url.URL{Path: file}
	q := "?mode=ro&_busy_timeout=" + strconv.FormatInt(busy.Milliseconds(), 10)
	_, werr := os.Stat(file + "-wal")
	_, serr := os.Stat(file + "-shm")
	if errors.Is(werr, fs.ErrNotExist) && errors.Is(serr, fs.ErrNotExist) {
		q += "&immutable=1"
	}
	return "file:" + u.EscapedPath() + q
}
