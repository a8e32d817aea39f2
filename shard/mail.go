package shard

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"cryptomail/internal/sqlitedb"
)

// Mail operations: what a mail-access protocol (XMAP) needs from a shard,
// in the shard's own terms. Every operation acts on one user's shard only,
// so an id or folder of another user cannot even be named: it is simply
// not found. Operations naming several messages are all or nothing.

// MaxFlags bounds the flags of a message set through UpdateFlags, Append
// and DeleteMessages (XMAP's limit).
const MaxFlags = 32

// System flags with a meaning here, in canonical order.
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDraft    = `\Draft`
	FlagDeleted  = `\Deleted`
)

var systemFlags = []string{FlagSeen, FlagAnswered, FlagFlagged, FlagDraft, FlagDeleted}

// FolderRef names a folder: by ID when it is non-zero, else by exact Name.
type FolderRef struct {
	ID   int64
	Name string
}

func (r FolderRef) String() string {
	if r.ID != 0 {
		return "folder " + strconv.FormatInt(r.ID, 10)
	}
	return "folder " + strconv.Quote(r.Name)
}

// MessageInfo is a message as the mail operations show it.
type MessageInfo struct {
	ID       int64
	FolderID int64
	Flags    []string  // canonical order: system flags, then the others sorted
	Received time.Time // UTC, to the second: the listing order is (Received, ID)
	ModSeq   int64     // modseq of the message's last change

	SummarySize int64 // bytes of the stored summary
	BodySize    int64 // bytes of the stored body
	// SummaryBy says who made the summary (SummaryByServer, ...); a copy or
	// a move keeps it.
	SummaryBy string

	Summary, Body []byte // only where asked for
}

// querier is what a write transaction and a read snapshot both offer.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// errUnchanged, returned by a change function, rolls its write back as one
// that turned out to change nothing, so the modseq does not move (and no
// waiter wakes) for it; the caller sees success.
var errUnchanged = errors.New("nothing changed")

// A stamper hands out the modseqs of one write: one per changed object, so
// that delta sync can cut its pages between any two changes (doc.go). The
// first is the modseq the write path already bumped; each further one bumps
// the state again. The tombstone triggers read the state, so a row deleted
// right after its stamp gets that same modseq.
type stamper struct {
	tx     *sql.Tx
	unused int64 // the write's own modseq while not yet handed out, else 0
}

func (st *stamper) stamp(ctx context.Context) (int64, error) {
	if m := st.unused; m != 0 {
		st.unused = 0
		return m, nil
	}
	return bumpModSeq(ctx, st.tx)
}

// change runs fn in a durable write transaction on address's shard.
func (s *Store) change(ctx context.Context, address, op string, fn func(ctx context.Context, tx *sql.Tx, st *stamper) error) error {
	err := s.write(ctx, address, op, func(ctx context.Context, tx *sql.Tx, modseq int64) error {
		return fn(ctx, tx, &stamper{tx: tx, unused: modseq})
	})
	if errors.Is(err, errUnchanged) {
		return nil
	}
	return err
}

// snapshot runs fn inside one read transaction of address's shard, so
// everything fn reads is of one moment; writes go on meanwhile (WAL). fn's
// own errors come back unwrapped.
func (s *Store) snapshot(ctx context.Context, address, op string, fn func(ctx context.Context, q querier) error) error {
	var fnErr error
	err := s.read(ctx, address, op, func(ctx context.Context, db *sql.DB) error {
		conn, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		// Not BeginTx: the driver would say BEGIN IMMEDIATE (the DSN's
		// txlock), taking the write lock for a read.
		if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
			return err
		}
		err = fn(ctx, conn)
		if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); rerr != nil {
			// A connection left inside a transaction would serve this old
			// snapshot to every later read: have the pool drop it.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			if err == nil {
				err = rerr
			}
		}
		var cb *callbackError
		if errors.As(err, &cb) {
			fnErr = cb.err
			return nil
		}
		return err
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

// callbackError carries a caller's callback error through snapshot, which
// returns it as is.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

func callback(err error) error {
	if err == nil {
		return nil
	}
	return &callbackError{err}
}

// resolveFolder finds a folder by id or name.
func resolveFolder(ctx context.Context, q querier, ref FolderRef) (Folder, error) {
	var row *sql.Row
	if ref.ID != 0 {
		row = q.QueryRowContext(ctx, `SELECT `+folderCols+` FROM folders WHERE id = ?`, ref.ID)
	} else {
		row = q.QueryRowContext(ctx, `SELECT `+folderCols+` FROM folders WHERE name = ?`, ref.Name)
	}
	f, err := scanFolder(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Folder{}, fmt.Errorf("%v: %w", ref, ErrNoSuchFolder)
	}
	return f, err
}

func roleFolder(ctx context.Context, q querier, role string) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, `SELECT id FROM folders WHERE role = ?`, role).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%w: no %s folder", ErrCorrupt, role)
	}
	return id, err
}

// Folder returns one folder, with its counts.
func (s *Store) Folder(ctx context.Context, address string, ref FolderRef) (Folder, error) {
	var f Folder
	err := s.read(ctx, address, "folder", func(ctx context.Context, db *sql.DB) error {
		var err error
		f, err = resolveFolder(ctx, db, ref)
		return err
	})
	return f, err
}

func checkFolderName(name string) error {
	if name == "" || !utf8.ValidString(name) || strings.ContainsRune(name, 0) {
		return fmt.Errorf("%w: folder name", ErrInvalid)
	}
	return nil
}

// nameFree refuses a name taken by a folder, or a system folder's name in
// any case.
func nameFree(ctx context.Context, q querier, name string) error {
	rows, err := q.QueryContext(ctx, `SELECT name, role IS NOT NULL FROM folders WHERE role IS NOT NULL OR name = ?`, name)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var n string
		var system bool
		if err := rows.Scan(&n, &system); err != nil {
			return err
		}
		if n == name || (system && strings.EqualFold(n, name)) {
			return fmt.Errorf("%q: %w", name, ErrFolderExists)
		}
	}
	return rows.Err()
}

// CreateFolder creates a folder. ErrFolderExists: the name is taken or is a
// system folder's in any case; ErrQuota: the user has maxFolders folders
// (system ones included) already; maxFolders <= 0 means no limit.
func (s *Store) CreateFolder(ctx context.Context, address, name string, maxFolders int) (Folder, error) {
	if err := checkFolderName(name); err != nil {
		return Folder{}, fmt.Errorf("shard: create folder: %w", err)
	}
	var f Folder
	err := s.change(ctx, address, "create folder", func(ctx context.Context, tx *sql.Tx, st *stamper) error {
		if err := nameFree(ctx, tx, name); err != nil {
			return err
		}
		if maxFolders > 0 {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM folders`).Scan(&n); err != nil {
				return err
			}
			if n >= maxFolders {
				return fmt.Errorf("%d folders: %w", n, ErrQuota)
			}
		}
		modseq, err := st.stamp(ctx)
		if err != nil {
			return err
		}
		now := time.Now().Unix()
		f, err = scanFolder(tx.QueryRowContext(ctx,
			`INSERT INTO folders (name, uidvalidity, created, modseq, created_modseq) VALUES (?, ?, ?, ?, ?) RETURNING `+folderCols,
			name, uidValidity(now), now, modseq, modseq))
		return err
	})
	return f, err
}

// uidValidity is a folder's IMAP UIDVALIDITY: the creation time, kept in
// its 32-bit range.
func uidValidity(unix int64) int64 {
	return max(1, unix&0xffffffff)
}

// RenameFolder renames a folder; renaming to its own name changes nothing.
// ErrNoSuchFolder, ErrSystemFolder, ErrFolderExists.
func (s *Store) RenameFolder(ctx context.Context, address string, ref FolderRef, name string) (Folder, error) {
	if err := checkFolderName(name); err != nil {
		return Folder{}, fmt.Errorf("shard: rename folder: %w", err)
	}
	var f Folder
	err := s.change(ctx, address, "rename folder", func(ctx context.Context, tx *sql.Tx, st *stamper) error {
		var err error
		if f, err = resolveFolder(ctx, tx, ref); err != nil {
			return err
		}
		if f.Role != "" {
			return fmt.Errorf("%v: %w", ref, ErrSystemFolder)
		}
		if f.Name == name {
			return errUnchanged
		}
		if err := nameFree(ctx, tx, name); err != nil {
			return err
		}
		modseq, err := st.stamp(ctx)
		if err != nil {
			return err
		}
		f, err = scanFolder(tx.QueryRowContext(ctx, `UPDATE folders SET name = ?, modseq = ? WHERE id = ? RETURNING `+folderCols, name, modseq, f.ID))
		return err
	})
	return f, err
}

// DeleteFolder moves a folder's messages to Trash (they keep their ids) and
// deletes it. ErrNoSuchFolder, ErrSystemFolder.
func (s *Store) DeleteFolder(ctx context.Context, address string, ref FolderRef) error {
	return s.change(ctx, address, "delete folder", func(ctx context.Context, tx *sql.Tx, st *stamper) error {
		f, err := resolveFolder(ctx, tx, ref)
		if err != nil {
			return err
		}
		if f.Role != "" {
			return fmt.Errorf("%v: %w", ref, ErrSystemFolder)
		}
		trash, err := roleFolder(ctx, tx, "trash")
		if err != nil {
			return err
		}
		ids, err := queryIDs(ctx, tx, `SELECT id FROM messages WHERE folder_id = ? ORDER BY id`, f.ID)
		if err != nil {
			return err
		}
		for _, id := range ids {
			// Outside Trash a message has no \Deleted to clear.
			_, flags, err := msgState(ctx, tx, id)
			if err != nil {
				return err
			}
			if err := moveOne(ctx, tx, st, id, trash, strings.Join(flags, " ")); err != nil {
				return err
			}
		}
		if _, err := st.stamp(ctx); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM folders WHERE id = ?`, f.ID); err != nil {
			return err
		}
		return pruneTombstones(ctx, tx, pruneKeep, pruneSlack)
	})
}

func queryIDs(ctx context.Context, q querier, query string, args ...any) ([]int64, error) {
	return sqlitedb.QueryIDs(ctx, q, query, args...)
}

// moveOne moves a message to folder with a new uid there and flags as
// given, under a fresh stamp.
func moveOne(ctx context.Context, tx *sql.Tx, st *stamper, id, folder int64, flags string) error {
	uid, err := nextUID(ctx, tx, folder)
	if err != nil {
		return err
	}
	modseq, err := st.stamp(ctx)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE messages SET folder_id = ?, uid = ?, flags = ?, modseq = ? WHERE id = ?`, folder, uid, flags, modseq, id)
	return err
}

// ListQuery asks for one page of a folder.
type ListQuery struct {
	Folder FolderRef
	Desc   bool   // newest first
	Limit  int    // messages per page, at least 1
	Cursor string // "" for the first page, else the NextCursor of the page before
}

// ListPage describes a page of ListMessages.
type ListPage struct {
	FolderID   int64
	Total      int    // messages in the folder
	ModSeq     int64  // the shard's modseq when the page was read
	NextCursor string // "" on the last page
}

// ListMessages calls fn for each message of one page of a folder, in
// (Received, ID) order, ascending or descending, with the summary (no body),
// all read from one snapshot. A cursor is the position after the last
// message of its page, so messages arriving between pages neither repeat
// nor shift the listing; it is valid only for the folder and direction that
// made it (else ErrBadCursor). fn's error stops the listing and is returned
// as is.
func (s *Store) ListMessages(ctx context.Context, address string, q ListQuery, fn func(MessageInfo) error) (ListPage, error) {
	if q.Limit < 1 {
		return ListPage{}, fmt.Errorf("shard: list messages: %w: limit %d", ErrInvalid, q.Limit)
	}
	var page ListPage
	err := s.snapshot(ctx, address, "list messages", func(ctx context.Context, db querier) error {
		f, err := resolveFolder(ctx, db, q.Folder)
		if err != nil {
			return err
		}
		if err := db.QueryRowContext(ctx, `SELECT modseq FROM state WHERE id = 1`).Scan(&page.ModSeq); err != nil {
			return err
		}
		page.FolderID, page.Total = f.ID, f.Total
		const cols = `SELECT id, folder_id, flags, received_s, modseq, length(summary), ` + bodyLength + `, summary_by, summary FROM messages WHERE folder_id = ?`
		order, cmp := ` ORDER BY received_s ASC, id ASC LIMIT ?`, `>`
		if q.Desc {
			order, cmp = ` ORDER BY received_s DESC, id DESC LIMIT ?`, `<`
		}
		var rows *sql.Rows
		if q.Cursor == "" {
			rows, err = db.QueryContext(ctx, cols+order, f.ID, q.Limit+1)
		} else {
			at, after, ok := parseCursor(q.Cursor, q.Desc, f.ID)
			if !ok {
				return ErrBadCursor
			}
			rows, err = db.QueryContext(ctx, cols+` AND (received_s, id) `+cmp+` (?, ?)`+order, f.ID, at, after, q.Limit+1)
		}
		if err != nil {
			return err
		}
		defer rows.Close()
		var last MessageInfo
		for n := 0; rows.Next(); n++ {
			if n == q.Limit {
				page.NextCursor = makeCursor(q.Desc, f.ID, last.Received.Unix(), last.ID)
				break
			}
			m, err := scanInfo(rows, true)
			if err != nil {
				return err
			}
			if err := fn(m); err != nil {
				return callback(err)
			}
			last = m
		}
		return rows.Err()
	})
	if err != nil {
		return ListPage{}, err
	}
	return page, nil
}

// bodyLength is the length of a messages row's body, as a column of a
// query on messages.
const bodyLength = `(SELECT length(data) FROM bodies WHERE bodies.id = messages.body_id)`

// scanInfo reads the columns id, folder_id, flags, received_s, modseq,
// length(summary), the body's length, summary_by and, if withSummary, summary.
func scanInfo(r rowScanner, withSummary bool) (MessageInfo, error) {
	var m MessageInfo
	var flags string
	var received int64
	dest := []any{&m.ID, &m.FolderID, &flags, &received, &m.ModSeq, &m.SummarySize, &m.BodySize, &m.SummaryBy}
	if withSummary {
		dest = append(dest, &m.Summary)
	}
	if err := r.Scan(dest...); err != nil {
		return MessageInfo{}, err
	}
	m.Flags = splitFlags(flags)
	m.Received = time.Unix(received, 0).UTC()
	return m, nil
}

// A cursor is the sort key of the last message of a page: direction,
// folder, received second and id.
func makeCursor(desc bool, folder, at, id int64) string {
	dir := "a"
	if desc {
		dir = "d"
	}
	return fmt.Sprintf("%s.%d.%d.%d", dir, folder, at, id)
}

func parseCursor(s string, desc bool, folder int64) (at, id int64, ok bool) {
	p := strings.Split(s, ".")
	want := "a"
	if desc {
		want = "d"
	}
	if len(p) != 4 || p[0] != want {
		return 0, 0, false
	}
	f, err1 := strconv.ParseInt(p[1], 10, 64)
	at, err2 := strconv.ParseInt(p[2], 10, 64)
	id, err3 := strconv.ParseInt(p[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || f != folder {
		return 0, 0, false
	}
	return at, id, true
}

// A Loader reads the summary and/or body of the message FetchMessages
// handed it with, from the same snapshot. It is valid only during that call.
type Loader func(summary, body bool) (summaryData, bodyData []byte, err error)

// FetchMessages calls fn, in the order of ids, for each id that is a
// message, with its metadata and sizes and a Loader for its blobs, so the
// caller can decide from the sizes whether to load them. Ids that are not
// messages are skipped. Everything is read from one snapshot. fn's error
// stops the fetch and is returned as is.
func (s *Store) FetchMessages(ctx context.Context, address string, ids []int64, fn func(MessageInfo, Loader) error) error {
	return s.snapshot(ctx, address, "fetch messages", func(ctx context.Context, db querier) error {
		for _, id := range ids {
			m, err := scanInfo(db.QueryRowContext(ctx,
				`SELECT id, folder_id, flags, received_s, modseq, length(summary), `+bodyLength+`, summary_by FROM messages WHERE id = ?`, id), false)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			load := func(summary, body bool) (sum, b []byte, err error) {
				switch {
				case summary && body:
					err = db.QueryRowContext(ctx, `SELECT m.summary, b.data FROM messages m JOIN bodies b ON b.id = m.body_id WHERE m.id = ?`, id).Scan(&sum, &b)
				case summary:
					err = db.QueryRowContext(ctx, `SELECT summary FROM messages WHERE id = ?`, id).Scan(&sum)
				case body:
					err = db.QueryRowContext(ctx, `SELECT b.data FROM messages m JOIN bodies b ON b.id = m.body_id WHERE m.id = ?`, id).Scan(&b)
				}
				return sum, b, err
			}
			if err := fn(m, load); err != nil {
				return callback(err)
			}
		}
		return nil
	})
}

// FlagOp is how UpdateFlags combines the given flags with a message's.
type FlagOp int

const (
	FlagsAdd     FlagOp = iota + 1 // add them
	FlagsRemove                    // remove them
	FlagsReplace                   // the message's flags become exactly these, \Deleted kept
)

// checkFlags validates flags set by a caller: stored form, and no \Deleted,
// which only DeleteMessages sets.
func checkFlags(flags []string) error {
	if _, err := joinFlags(flags); err != nil {
		return err
	}
	if slices.Contains(flags, FlagDeleted) {
		return fmt.Errorf("%w: %s is set by delete only", ErrInvalid, FlagDeleted)
	}
	return nil
}

// canonicalFlags orders flags as the system flags in a fixed order, then
// the others sorted, without repeats, so equal sets compare equal.
func canonicalFlags(flags []string) []string {
	var out, other []string
	for _, f := range systemFlags {
		if slices.Contains(flags, f) {
			out = append(out, f)
		}
	}
	for _, f := range flags {
		if !slices.Contains(systemFlags, f) {
			other = append(other, f)
		}
	}
	slices.Sort(other)
	return append(out, slices.Compact(other)...)
}

// msgState reads what the write operations need of a message.
func msgState(ctx context.Context, tx *sql.Tx, id int64) (folder int64, flags []string, err error) {
	var fl string
	err = tx.QueryRowContext(ctx, `SELECT folder_id, flags FROM messages WHERE id = ?`, id).Scan(&folder, &fl)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, &IDError{ID: id, Err: ErrNoSuchMessage}
	}
	return folder, splitFlags(fl), err
}

func setFlags(ctx context.Context, tx *sql.Tx, st *stamper, id int64, flags []string) error {
	modseq, err := st.stamp(ctx)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE messages SET flags = ?, modseq = ? WHERE id = ?`, strings.Join(flags, " "), modseq, id)
	return err
}

// UpdateFlags adds, removes or replaces flags of messages, all or nothing:
// an *IDError with ErrNoSuchMessage for the first id that is not a message,
// with ErrTooManyFlags for the first that would get more than MaxFlags.
// Flags may not include \Deleted (ErrInvalid).
func (s *Store) UpdateFlags(ctx context.Context, address string, ids []int64, op FlagOp, flags []string) error {
	if err := checkFlags(flags); err != nil {
		return fmt.Errorf("shard: update flags: %w", err)
	}
	if op != FlagsAdd && op != FlagsRemove && op != FlagsReplace {
		return fmt.Errorf("shard: update flags: %w: operation %d", ErrInvalid, op)
	}
	return s.change(ctx, address, "update flags", func(ctx context.Context, tx *sql.Tx, st *stamper) error {
		changed := false
		for _, id := range ids {
			_, old, err := msgState(ctx, tx, id)
			if err != nil {
				return err
			}
			var next []string
			switch op {
			case FlagsAdd:
				next = append(slices.Clone(old), flags...)
			case FlagsRemove:
				next = slices.DeleteFunc(slices.Clone(old), func(f string) bool { return slices.Contains(flags, f) })
			case FlagsReplace:
				next = slices.Clone(flags)
				if slices.Contains(old, FlagDeleted) {
					next = append(next, FlagDeleted)
				}
			}
			next = canonicalFlags(next)
			if len(next) > MaxFlags {
				return &IDError{ID: id, Err: ErrTooManyFlags}
			}
			if slices.Equal(next, old) {
				continue
			}
			if err := setFlags(ctx, tx, st, id, next); err != nil {
				return err
			}
			changed = true
		}
		if !changed {
			return errUnchanged
		}
		return nil
	})
}

// MoveMessages moves messages to a folder, all or nothing. They keep their
// ids, get new uids there, and lose \Deleted; a message already in the
// folder is left alone. ErrNoSuchFolder, or an *IDError with
// ErrNoSuchMessage.
func (s *Store) MoveMessages(ctx context.Context, address string, ids []int64, to FolderRef) error {
	return s.change(ctx, address, "move messages", func(ctx context.Context, tx *sql.Tx, st *stamper) error {
		f, err := resolveFolder(ctx, tx, to)
		if err != nil {
			return err
		}
		changed := false
		for _, id := range ids {
			folder, flags, err := msgState(ctx, tx, id)
			if err != nil {
				return err
			}
			if folder == f.ID {
				continue
			}
			flags = slices.DeleteFunc(flags, func(f string) bool { return f == FlagDeleted })
			if err := moveOne(ctx, tx, st, id, f.ID, strings.Join(flags, " ")); err != nil {
				return err
			}
			changed = true
		}
		if !changed {
			return errUnchanged
		}
		return nil
	})
}

// reserve refuses n more stored bytes over quota (bytes; <= 0: no limit).
func reserve(ctx context.Context, tx *sql.Tx, quota, n int64) error {
	if quota <= 0 || n <= 0 {
		return nil
	}
	var used int64
	if err := tx.QueryRowContext(ctx, `SELECT used FROM state WHERE id = 1`).Scan(&used); err != nil {
		return err
	}
	if used+n > quota {
		return fmt.Errorf("%d of %d bytes used, %d more: %w", used, quota, n, ErrQuota)
	}
	return nil
}

// CopyRowBytes is what CopyMessages counts for a copy's row and index
// entries, on top of its summary, against the limit of one copy.
const CopyRowBytes = 128

// CopyMessages copies messages into a folder, all or nothing, and returns
// the copies' ids in the order of ids. A copy has the original's summary
// (and who made it), received time and body, and its flags without \Deleted.
// The body is not written again: the copy shares the original's (doc.go,
// Bodies), so a copy stores only a row and its summary. ErrNoSuchFolder, an
// *IDError with ErrNoSuchMessage, ErrQuota (stored bytes over quota; quota
// <= 0: no limit), ErrLimit (the copies would add more than limit bytes,
// counting each copy's summary and CopyRowBytes; limit <= 0: no limit).
func (s *Store) CopyMessages(ctx context.Context, address string, ids []int64, to FolderRef, quota, limit int64) ([]int64, error) {
	var out []int64
	err := s.change(ctx, address, "copy messages", func(ctx context.Context, tx *sql.Tx, st *stamper) error {
		out = out[:0]
		f, err := resolveFolder(ctx, tx, to)
		if err != nil {
			return err
		}
		flags := make([]string, len(ids))
		var size int64
		for i, id := range ids {
			var fl string
			var n int64
			err := tx.QueryRowContext(ctx, `SELECT flags, length(summary) FROM messages WHERE id = ?`, id).Scan(&fl, &n)
			if errors.Is(err, sql.ErrNoRows) {
				return &IDError{ID: id, Err: ErrNoSuchMessage}
			}
			if err != nil {
				return err
			}
			flags[i] = strings.Join(slices.DeleteFunc(splitFlags(fl), func(f string) bool { return f == FlagDeleted }), " ")
			size += n
			if limit > 0 && size+int64(i+1)*CopyRowBytes > limit {
				return fmt.Errorf("copy of %d messages: more than %d bytes: %w", len(ids), limit, ErrLimit)
			}
		}
		// Quota hook: what the copies add to the stored bytes is their
		// summaries; their bodies are shared.
		if err := reserve(ctx, tx, quota, size); err != nil {
			return err
		}
		for i, id := range ids {
			uid, err := nextUID(ctx, tx, f.ID)
			if err != nil {
				return err
			}
			modseq, err := st.stamp(ctx)
			if err != nil {
				return err
			}
			var copyID int64
			err = tx.QueryRowContext(ctx, `
				INSERT INTO messages (folder_id, uid, flags, received, size, modseq, created_modseq, summary, body_id, summary_by)
				SELECT ?, ?, ?, received, size, ?, ?, summary, body_id, summary_by FROM messages WHERE id = ?
				RETURNING id`, f.ID, uid, flags[i], modseq, modseq, id).Scan(&copyID)
			if err != nil {
				return err
			}
			out = append(out, copyID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteMessages deletes messages the way a mail client's delete key does,
// all or nothing: a message outside Trash moves to Trash; a message in
// Trash gets \Deleted, and the next Expunge of Trash destroys it. An
// *IDError with ErrNoSuchMessage, or with ErrTooManyFlags for a message in
// Trash that already has MaxFlags flags.
func (s *Store) DeleteMessages(ctx context.Context, address string, ids []int64) error {
	return s.change(ctx, address, "delete messages", func(ctx context.Context, tx *sql.Tx, st *stamper) error {
		trash, err := roleFolder(ctx, tx, "trash")
		if err != nil {
			return err
		}
		changed := false
		for _, id := range ids {
			folder, flags, err := msgState(ctx, tx, id)
			if err != nil {
				return err
			}
			switch {
			case folder != trash:
				// Outside Trash a message has no \Deleted to keep.
				err = moveOne(ctx, tx, st, id, trash, strings.Join(flags, " "))
			case !slices.Contains(flags, FlagDeleted):
				flags = canonicalFlags(append(flags, FlagDeleted))
				if len(flags) > MaxFlags {
					return &IDError{ID: id, Err: ErrTooManyFlags}
				}
				err = setFlags(ctx, tx, st, id, flags)
			default:
				continue
			}
			if err != nil {
				return err
			}
			changed = true
		}
		if !changed {
			return errUnchanged
		}
		return nil
	})
}

// Expunge destroys the messages of a folder that have \Deleted, for good,
// and returns how many. ErrNoSuchFolder.
func (s *Store) Expunge(ctx context.Context, address string, ref FolderRef) (int, error) {
	var n int
	err := s.change(ctx, address, "expunge", func(ctx context.Context, tx *sql.Tx, st *stamper) error {
		n = 0
		f, err := resolveFolder(ctx, tx, ref)
		if err != nil {
			return err
		}
		ids, err := queryIDs(ctx, tx, `SELECT id FROM messages WHERE folder_id = ? AND instr(' ' || flags || ' ', ' \Deleted ') > 0 ORDER BY id`, f.ID)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return errUnchanged
		}
		for _, id := range ids {
			// The tombstone trigger takes the state's modseq: this stamp.
			if _, err := st.stamp(ctx); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE id = ?`, id); err != nil {
				return err
			}
		}
		n = len(ids)
		return pruneTombstones(ctx, tx, pruneKeep, pruneSlack)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Append stores a message the user made (a draft, an imported message) in a
// folder and returns its metadata. m.Folder must be empty: the folder is to.
// Flags may not include \Deleted (ErrInvalid), nor be more than MaxFlags
// (ErrTooManyFlags). ErrNoSuchFolder; ErrQuota (stored bytes over quota;
// quota <= 0: no limit).
func (s *Store) Append(ctx context.Context, address string, to FolderRef, m NewMessage, quota int64) (MessageInfo, error) {
	if m.Folder != "" {
		return MessageInfo{}, fmt.Errorf("shard: append: %w: folder given twice", ErrInvalid)
	}
	if err := checkFlags(m.Flags); err != nil {
		return MessageInfo{}, fmt.Errorf("shard: append: %w", err)
	}
	flags := canonicalFlags(m.Flags)
	if len(flags) > MaxFlags {
		return MessageInfo{}, fmt.Errorf("shard: append: %w", ErrTooManyFlags)
	}
	if m.Size < 0 {
		return MessageInfo{}, fmt.Errorf("shard: append: %w: negative size", ErrInvalid)
	}
	by, err := summaryBy(m.SummaryBy)
	if err != nil {
		return MessageInfo{}, fmt.Errorf("shard: append: %w", err)
	}
	received := m.Received
	if received.IsZero() {
		received = time.Now()
	}
	if received.Before(minReceived) || received.After(maxReceived) {
		return MessageInfo{}, fmt.Errorf("shard: append: %w: received time out of range", ErrInvalid)
	}
	info := MessageInfo{
		Flags:       flags,
		Received:    time.Unix(received.Unix(), 0).UTC(),
		SummarySize: int64(len(m.Summary)),
		BodySize:    int64(len(m.Body)),
		SummaryBy:   by,
	}
	err = s.change(ctx, address, "append", func(ctx context.Context, tx *sql.Tx, st *stamper) error {
		f, err := resolveFolder(ctx, tx, to)
		if err != nil {
			return err
		}
		if err := reserve(ctx, tx, quota, info.SummarySize+info.BodySize); err != nil {
			return err
		}
		modseq, err := st.stamp(ctx)
		if err != nil {
			return err
		}
		id, _, err := insertInto(ctx, tx, modseq, f.ID, strings.Join(flags, " "), received.UnixNano(), m.Size, m.Summary, m.Body, by)
		info.ID, info.FolderID, info.ModSeq = id, f.ID, modseq
		return err
	})
	if err != nil {
		return MessageInfo{}, err
	}
	return info, nil
}

// Usage returns the bytes of ciphertext the user stores: message summaries
// and bodies, and contacts.
func (s *Store) Usage(ctx context.Context, address string) (int64, error) {
	var n int64
	err := s.read(ctx, address, "usage", func(ctx context.Context, db *sql.DB) error {
		return db.QueryRowContext(ctx, `SELECT used FROM state WHERE id = 1`).Scan(&n)
	})
	return n, err
}
