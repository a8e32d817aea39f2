package outbound

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"sync"
	"time"

	"cryptomail/internal/sqlitedb"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// busyTimeout is how long a queue statement waits for another connection's
// lock (an admin tool reading the queue) before failing.
const busyTimeout = 10 * time.Second

// Recipient states in the queue.
const (
	statusPending = "pending" // to be tried
	statusSent    = "sent"    // the relay accepted it
	statusFailed  = "failed"  // permanently failed; the bounce is not stored yet
	statusBounced = "bounced" // the bounce is in the sender's INBOX
)

// queue is the SQLite file holding messages waiting for the relay.
type queue struct {
	db *sql.DB
}

// queueMigrations are the queue's embedded schema steps.
var queueMigrations = sync.OnceValues(func() ([]sqlitedb.Migration, error) {
	return sqlitedb.LoadMigrations(migrationFS, "migrations")
})

// openQueue opens (creating with mode 0600 if missing) and migrates the
// queue file, with the settings of every CryptoMail database (sqlitedb).
func openQueue(ctx context.Context, file string) (*queue, error) {
	ms, err := queueMigrations()
	if err != nil {
		return nil, fmt.Errorf("outbound queue: %w", err)
	}
	db, err := sqlitedb.Open(ctx, file, busyTimeout, ms)
	if err != nil {
		return nil, fmt.Errorf("outbound queue: %w", err)
	}
	// One connection: the queue is small and every statement is short, and
	// it serializes the writers without SQLITE_BUSY between them.
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	return &queue{db: db}, nil
}

func (q *queue) close() error { return q.db.Close() }

// batch is one queue row to add: a body and the recipients it goes to.
type batch struct {
	body  []byte
	rcpts []string
}

// insertHeld adds the batches as held rows in one durable transaction.
func (q *queue) insertHeld(ctx context.Context, sender string, now time.Time, bs []batch) ([]int64, error) {
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	ids := make([]int64, 0, len(bs))
	for _, b := range bs {
		var id int64
		err := tx.QueryRowContext(ctx,
			`INSERT INTO queue (sender, body, created, next_attempt, held) VALUES (?, ?, ?, ?, 1) RETURNING id`,
			sender, b.body, now.UnixNano(), now.UnixNano()).Scan(&id)
		if err != nil {
			return nil, err
		}
		for i, r := range b.rcpts {
			if _, err := tx.ExecContext(ctx, `INSERT INTO queue_rcpts (queue_id, pos, address) VALUES (?, ?, ?)`, id, i, r); err != nil {
				return nil, err
			}
		}
		ids = append(ids, id)
	}
	return ids, tx.Commit()
}

// release makes held rows eligible for delivery.
func (q *queue) release(ctx context.Context, ids []int64) error {
	return q.each(ctx, ids, `UPDATE queue SET held = 0 WHERE id = ?`)
}

// drop deletes rows and their recipients.
func (q *queue) drop(ctx context.Context, ids []int64) error {
	if err := q.each(ctx, ids, `DELETE FROM queue WHERE id = ?`); err != nil {
		return err
	}
	q.scrub(ctx)
	return nil
}

// scrub empties the WAL after a delete. secure_delete zeroes the freed
// pages, but the WAL would keep the frames that wrote the body (which may
// be a plaintext the user allowed) until they happen to be overwritten.
// Best effort: a reader in another process can keep a checkpoint from
// completing, and the next one catches up.
func (q *queue) scrub(ctx context.Context) {
	q.db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
}

func (q *queue) each(ctx context.Context, ids []int64, stmt string) error {
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, stmt, id); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// dropHeld deletes every held row: at start-up they belong to sends that
// never completed.
func (q *queue) dropHeld(ctx context.Context) (int64, error) {
	res, err := q.db.ExecContext(ctx, `DELETE FROM queue WHERE held = 1`)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if n > 0 {
		q.scrub(ctx)
	}
	return n, err
}

// due returns up to limit ids of rows whose next attempt has come, oldest
// appointment first.
func (q *queue) due(ctx context.Context, now time.Time, limit int) ([]int64, error) {
	return sqlitedb.QueryIDs(ctx, q.db,
		`SELECT id FROM queue WHERE held = 0 AND next_attempt <= ? ORDER BY next_attempt, id LIMIT ?`,
		now.UnixNano(), limit)
}

// nextDue returns the earliest next attempt of a row not in skip.
func (q *queue) nextDue(ctx context.Context, skip map[int64]bool) (time.Time, bool, error) {
	// Rows being worked on are few (at most the concurrency): read past them.
	rows, err := q.db.QueryContext(ctx,
		`SELECT id, next_attempt FROM queue WHERE held = 0 ORDER BY next_attempt, id LIMIT ?`, len(skip)+1)
	if err != nil {
		return time.Time{}, false, err
	}
	defer rows.Close()
	for rows.Next() {
		var id, next int64
		if err := rows.Scan(&id, &next); err != nil {
			return time.Time{}, false, err
		}
		if !skip[id] {
			return time.Unix(0, next), true, nil
		}
	}
	return time.Time{}, false, rows.Err()
}

// entry is one queue row with its recipients.
type entry struct {
	id        int64
	sender    string
	body      []byte // nil unless loaded with the body
	created   time.Time
	next      time.Time
	attempts  int
	held      bool
	lastError string
	rcpts     []rcptState
}

type rcptState struct {
	pos     int
	address string
	status  string
	dsnCode string
	reply   string // the relay's last reply
	reason  string // our own words when there was no reply
}

// load reads one row; withBody also reads the message. It returns
// sql.ErrNoRows if the row is gone.
func (q *queue) load(ctx context.Context, id int64, withBody bool) (*entry, error) {
	cols := `id, sender, NULL, created, next_attempt, attempts, held, last_error`
	if withBody {
		cols = `id, sender, body, created, next_attempt, attempts, held, last_error`
	}
	e, err := scanEntry(q.db.QueryRowContext(ctx, `SELECT `+cols+` FROM queue WHERE id = ?`, id))
	if err != nil {
		return nil, err
	}
	if err := q.loadRcpts(ctx, []*entry{e}); err != nil {
		return nil, err
	}
	return e, nil
}

type scanner interface{ Scan(...any) error }

func scanEntry(s scanner) (*entry, error) {
	var e entry
	var created, next int64
	var held int
	if err := s.Scan(&e.id, &e.sender, &e.body, &created, &next, &e.attempts, &held, &e.lastError); err != nil {
		return nil, err
	}
	e.created, e.next, e.held = time.Unix(0, created), time.Unix(0, next), held == 1
	return &e, nil
}

func (q *queue) loadRcpts(ctx context.Context, es []*entry) error {
	for _, e := range es {
		rows, err := q.db.QueryContext(ctx,
			`SELECT pos, address, status, dsn_code, reply, reason FROM queue_rcpts WHERE queue_id = ? ORDER BY pos`, e.id)
		if err != nil {
			return err
		}
		for rows.Next() {
			var r rcptState
			if err := rows.Scan(&r.pos, &r.address, &r.status, &r.dsnCode, &r.reply, &r.reason); err != nil {
				rows.Close()
				return err
			}
			e.rcpts = append(e.rcpts, r)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// all reads every row without bodies, oldest first.
func (q *queue) all(ctx context.Context) ([]*entry, error) {
	rows, err := q.db.QueryContext(ctx,
		`SELECT id, sender, NULL, created, next_attempt, attempts, held, last_error FROM queue ORDER BY id`)
	if err != nil {
		return nil, err
	}
	var es []*entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		es = append(es, e)
	}
	err = rows.Err()
	rows.Close() // before loadRcpts: there is a single connection
	if err != nil {
		return nil, err
	}
	return es, q.loadRcpts(ctx, es)
}

// save writes e's recipients and attempt bookkeeping back in one durable
// transaction, and deletes the row once no recipient is pending or failed.
func (q *queue) save(ctx context.Context, e *entry) (done bool, err error) {
	tx, err := q.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	done = true
	for _, r := range e.rcpts {
		if r.status == statusPending || r.status == statusFailed {
			done = false
		}
		if _, err := tx.ExecContext(ctx,
			`UPDATE queue_rcpts SET status = ?, dsn_code = ?, reply = ?, reason = ? WHERE queue_id = ? AND pos = ?`,
			r.status, r.dsnCode, r.reply, r.reason, e.id, r.pos); err != nil {
			return false, err
		}
	}
	if done {
		_, err = tx.ExecContext(ctx, `DELETE FROM queue WHERE id = ?`, e.id)
	} else {
		_, err = tx.ExecContext(ctx, `UPDATE queue SET attempts = ?, next_attempt = ?, last_error = ? WHERE id = ?`,
			e.attempts, e.next.UnixNano(), e.lastError, e.id)
	}
	if err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, err
	}
	if done {
		q.scrub(ctx)
	}
	return done, nil
}
