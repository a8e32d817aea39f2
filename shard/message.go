package shard

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// NewMessage is a message to store. Summary and Body are ciphertext made by
// the caller and are stored as given.
type NewMessage struct {
	Folder   string    // folder name; "" (or any case of "INBOX") → the inbox
	Flags    []string  // e.g. `\Seen`; no spaces or control characters; duplicates dropped
	Received time.Time // zero → now; kept to the nanosecond
	Size     int64     // plaintext size as received
	Summary  []byte
	Body     []byte
	// SummaryBy says who made Summary: SummaryByServer, SummaryBySender or
	// SummaryByOwner. Empty is stored as SummaryBySender, the origin no
	// client trusts, so a caller that forgets it cannot make a summary pass
	// as the server's.
	SummaryBy string
	// Quota bounds the user's stored ciphertext (summaries, bodies and
	// contacts) with this message counted: Deliver and DeliverSealed fail
	// with ErrQuota, storing nothing, when it would be over; <= 0: no limit.
	// Append takes its limit as an argument and ignores this field.
	Quota int64
}

// Who made a message's summary (docs/XMAP.md, "Summary origin").
const (
	SummaryByServer = "server" // sealed by the server from the message as it arrived
	SummaryBySender = "sender" // written by another user, through send
	SummaryByOwner  = "owner"  // written by the account's owner: append, the Sent copy
)

// summaryBy validates an origin, mapping empty to SummaryBySender.
func summaryBy(o string) (string, error) {
	switch o {
	case "":
		return SummaryBySender, nil
	case SummaryByServer, SummaryBySender, SummaryByOwner:
		return o, nil
	}
	return "", fmt.Errorf("%w: summary origin", ErrInvalid)
}

// Message is a stored message.
type Message struct {
	ID       int64  // unique within the shard, never reused
	Folder   string // folder name
	UID      uint32 // unique within the folder, increasing, never reused
	Flags    []string
	Received time.Time
	Size     int64
	ModSeq   int64 // modseq of the message's last change
	Summary  []byte
	Body     []byte
	// SummaryBy says who made Summary (SummaryByServer, ...).
	SummaryBy string
}

// Received is stored as unix nanoseconds, which covers these years.
var (
	minReceived = time.Unix(0, math.MinInt64)
	maxReceived = time.Unix(0, math.MaxInt64)
)

// Deliver stores one message in one durable transaction (synchronous=FULL:
// it returns only after the commit reached the disk) and returns the
// message's id and uid.
func (s *Store) Deliver(ctx context.Context, address string, m NewMessage) (id int64, uid uint32, err error) {
	return s.deliver(ctx, address, nil, m)
}

// DeliverSealed is Deliver for a message whose summary and body were
// encrypted to sealedTo, a public key DeliveryKey returned: it stores the
// message only if sealedTo is still the user's current public key, checked
// inside the delivery's own write transaction, and fails with ErrKeyChanged
// otherwise (the message must then be sealed again to the key DeliveryKey
// now returns). No message is ever stored sealed to a key replaced before
// it was committed.
func (s *Store) DeliverSealed(ctx context.Context, address string, sealedTo []byte, m NewMessage) (id int64, uid uint32, err error) {
	if len(sealedTo) == 0 {
		return 0, 0, fmt.Errorf("shard: deliver: %w: no key", ErrInvalid)
	}
	return s.deliver(ctx, address, sealedTo, m)
}

func (s *Store) deliver(ctx context.Context, address string, sealedTo []byte, m NewMessage) (id int64, uid uint32, err error) {
	flags, err := joinFlags(m.Flags)
	if err != nil {
		return 0, 0, fmt.Errorf("shard: deliver: %w", err)
	}
	if m.Size < 0 {
		return 0, 0, fmt.Errorf("shard: deliver: %w: negative size", ErrInvalid)
	}
	by, err := summaryBy(m.SummaryBy)
	if err != nil {
		return 0, 0, fmt.Errorf("shard: deliver: %w", err)
	}
	received := m.Received
	if received.IsZero() {
		received = time.Now()
	}
	if received.Before(minReceived) || received.After(maxReceived) {
		return 0, 0, fmt.Errorf("shard: deliver: %w: received time out of range", ErrInvalid)
	}
	err = s.writeHandle(ctx, address, "deliver", func(h *handle) writeFunc {
		return func(ctx context.Context, tx *sql.Tx, modseq int64) error {
			if sealedTo != nil {
				if err := checkSealedTo(ctx, tx, h, sealedTo); err != nil {
					return err
				}
			}
			if err := reserve(ctx, tx, m.Quota, int64(len(m.Summary)+len(m.Body))); err != nil {
				return err
			}
			var err error
			id, uid, err = insertMessage(ctx, tx, modseq, m.Folder, flags, received.UnixNano(), m.Size, m.Summary, m.Body, by)
			return err
		}
	})
	if err != nil {
		return 0, 0, err
	}
	return id, uid, nil
}

func insertMessage(ctx context.Context, tx *sql.Tx, modseq int64, folder, flags string, received, size int64, summary, body []byte, summaryBy string) (int64, uint32, error) {
	q, arg := `SELECT id FROM folders WHERE name = ?`, folder
	if folder == "" || strings.EqualFold(folder, "INBOX") {
		q, arg = `SELECT id FROM folders WHERE role = ?`, "inbox"
	}
	var folderID int64
	err := tx.QueryRowContext(ctx, q, arg).Scan(&folderID)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, ErrNoSuchFolder
	}
	if err != nil {
		return 0, 0, err
	}
	return insertInto(ctx, tx, modseq, folderID, flags, received, size, summary, body, summaryBy)
}

// insertInto stores a new message in folderID, stamped (and marked created)
// with modseq. summaryBy must be valid (see summaryBy).
func insertInto(ctx context.Context, tx *sql.Tx, modseq, folderID int64, flags string, received, size int64, summary, body []byte, summaryBy string) (int64, uint32, error) {
	uid, err := nextUID(ctx, tx, folderID)
	if err != nil {
		return 0, 0, err
	}
	// The body goes in first: a message always has one (doc.go, Bodies).
	var bodyID int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO bodies (data) VALUES (?) RETURNING id`, nonNil(body)).Scan(&bodyID); err != nil {
		return 0, 0, err
	}
	res, err := tx.ExecContext(ctx,
		`INSERT INTO messages (folder_id, uid, flags, received, size, modseq, created_modseq, summary, body_id, summary_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		folderID, uid, flags, received, size, modseq, modseq, nonNil(summary), bodyID, summaryBy)
	if err != nil {
		return 0, 0, err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, 0, err
	}
	return id, uid, nil
}

// nextUID allocates the next uid of a folder. It does not stamp the folder:
// a folder's modseq tracks changes to the folder itself, not its contents.
func nextUID(ctx context.Context, tx *sql.Tx, folderID int64) (uint32, error) {
	var uid int64
	err := tx.QueryRowContext(ctx, `UPDATE folders SET uidnext = uidnext + 1 WHERE id = ? RETURNING uidnext - 1`, folderID).Scan(&uid)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNoSuchFolder
	}
	if err != nil {
		// The uidnext CHECK fails once the folder's 2^32-1 uids are spent.
		return 0, err
	}
	return uint32(uid), nil
}

// nonNil keeps an empty blob from being bound as NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// joinFlags validates flags and joins them with single spaces, the stored
// form.
func joinFlags(flags []string) (string, error) {
	if len(flags) == 0 {
		return "", nil
	}
	out := make([]string, 0, len(flags))
	seen := make(map[string]bool, len(flags))
	for _, f := range flags {
		if f == "" || !utf8.ValidString(f) || strings.ContainsFunc(f, func(r rune) bool {
			return unicode.IsSpace(r) || unicode.IsControl(r)
		}) {
			return "", fmt.Errorf("%w: flag", ErrInvalid)
		}
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	return strings.Join(out, " "), nil
}

func splitFlags(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, " ")
}

// Messages calls fn for every message of the user, all folders, ordered by
// folder (in creation order, so the inbox first) then uid. It reads one
// consistent snapshot; deliveries go on meanwhile. It stops at fn's first
// error, which it returns.
func (s *Store) Messages(ctx context.Context, address string, fn func(Message) error) error {
	var fnErr error
	err := s.read(ctx, address, "messages", func(ctx context.Context, db *sql.DB) error {
		rows, err := db.QueryContext(ctx, `
			SELECT m.id, f.name, m.uid, m.flags, m.received, m.size, m.modseq, m.summary, b.data, m.summary_by
			FROM messages m JOIN folders f ON f.id = m.folder_id JOIN bodies b ON b.id = m.body_id
			ORDER BY m.folder_id, m.uid`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var m Message
			var uid, received int64
			var flags string
			if err := rows.Scan(&m.ID, &m.Folder, &uid, &flags, &received, &m.Size, &m.ModSeq, &m.Summary, &m.Body, &m.SummaryBy); err != nil {
				return err
			}
			m.UID = uint32(uid)
			m.Flags = splitFlags(flags)
			m.Received = time.Unix(0, received)
			if err := fn(m); err != nil {
				fnErr = err
				return err
			}
		}
		return rows.Err()
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

// Folder is one folder of a shard.
type Folder struct {
	ID          int64
	Name        string
	Role        string // "inbox", "sent", "drafts", "trash", "junk" or ""
	UIDNext     uint32 // 0 once the folder's uids are spent
	UIDValidity uint32
	ModSeq      int64 // last change to the folder itself (created, renamed), not to its messages
	Created     time.Time
	Total       int // messages in the folder
	Unseen      int // of which without \Seen
}

const folderCols = `id, name, coalesce(role, ''), uidnext, uidvalidity, modseq, created, total, unseen`

type rowScanner interface{ Scan(dest ...any) error }

func scanFolder(r rowScanner) (Folder, error) {
	var f Folder
	var next, validity, created int64
	if err := r.Scan(&f.ID, &f.Name, &f.Role, &next, &validity, &f.ModSeq, &created, &f.Total, &f.Unseen); err != nil {
		return Folder{}, err
	}
	if next <= math.MaxUint32 {
		f.UIDNext = uint32(next)
	}
	f.UIDValidity = uint32(validity)
	f.Created = time.Unix(created, 0)
	return f, nil
}

// Folders returns the user's folders in creation order.
func (s *Store) Folders(ctx context.Context, address string) ([]Folder, error) {
	var fs []Folder
	err := s.read(ctx, address, "folders", func(ctx context.Context, db *sql.DB) error {
		rows, err := db.QueryContext(ctx, `SELECT `+folderCols+` FROM folders ORDER BY id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			f, err := scanFolder(rows)
			if err != nil {
				return err
			}
			fs = append(fs, f)
		}
		return rows.Err()
	})
	return fs, err
}
