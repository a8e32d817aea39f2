package shard

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"
)

// DefaultReservationTTL is how long the SQLite directory's reservations and
// invite claims last. Creating a shard takes milliseconds; a holder stops
// touching files at half of it (Store.holds), so a taker never races it.
const DefaultReservationTTL = 2 * time.Minute

const tokenSize = 16

// sqlDir is the Directory on SQLite: meta.db (migrations/meta). Every method
// is one transaction; writes start with BEGIN IMMEDIATE, so they are
// serialized with those of other processes, but no lock outlives a call.
type sqlDir struct {
	meta *dbPair
	ttl  time.Duration
	now  func() time.Time
}

var _ Directory = (*sqlDir)(nil)

func (d *sqlDir) close() error { return d.meta.close() }

// write runs fn in one write transaction.
func (d *sqlDir) write(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := d.meta.w.BeginTx(ctx, nil)
	if err != nil {
		return classify(err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return classify(err)
	}
	return classify(tx.Commit())
}

func newToken() ([]byte, error) {
	b := make([]byte, tokenSize)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	return b, nil
}

const entryCols = `address, home_id, state, account_id, created`

func scanEntry(row interface{ Scan(...any) error }) (Entry, error) {
	var e Entry
	var created int64
	if err := row.Scan(&e.Address, &e.HomeID, &e.State, &e.AccountID, &created); err != nil {
		return Entry{}, err
	}
	e.Created = time.Unix(created, 0)
	return e, nil
}

func (d *sqlDir) Lookup(ctx context.Context, address string) (Entry, error) {
	e, err := scanEntry(d.meta.r.QueryRowContext(ctx, `SELECT `+entryCols+` FROM users WHERE address = ?`, address))
	if errors.Is(err, sql.ErrNoRows) {
		return Entry{}, fmt.Errorf("user %w", ErrNotFound)
	}
	if err != nil {
		return Entry{}, classify(err)
	}
	return e, nil
}

func (d *sqlDir) Users(ctx context.Context, fn func(Entry) error) error {
	rows, err := d.meta.r.QueryContext(ctx, `SELECT `+entryCols+` FROM users ORDER BY address`)
	if err != nil {
		return classify(err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return classify(err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return classify(rows.Err())
}

func (d *sqlDir) Homes(ctx context.Context) ([]HomeLoad, error) { return sqlHomes(ctx, d.meta.r) }

// sqlHomes reads the homes table.
func sqlHomes(ctx context.Context, q querier) ([]HomeLoad, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, users FROM homes ORDER BY id`)
	if err != nil {
		return nil, classify(err)
	}
	defer rows.Close()
	var out []HomeLoad
	for rows.Next() {
		var h HomeLoad
		if err := rows.Scan(&h.ID, &h.Users); err != nil {
			return nil, classify(err)
		}
		out = append(out, h)
	}
	return out, classify(rows.Err())
}

func (d *sqlDir) AddHome(ctx context.Context, id string) error {
	if !validHomeID(id) {
		return fmt.Errorf("%w: home id %q", ErrInvalid, id)
	}
	return d.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO homes (id, users) VALUES (?, 0) ON CONFLICT (id) DO NOTHING`, id)
		return err
	})
}

func (d *sqlDir) Reserve(ctx context.Context, address string, homes []string) (Reservation, error) {
	if len(homes) == 0 {
		return Reservation{}, fmt.Errorf("%w: no home to reserve on", ErrInvalid)
	}
	token, err := newToken()
	if err != nil {
		return Reservation{}, err
	}
	now := d.now()
	r := Reservation{Address: address, Token: token, Expires: now.Add(d.ttl)}
	err = d.write(ctx, func(tx *sql.Tx) error {
		var one int
		switch err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE address = ?`, address).Scan(&one); {
		case err == nil:
			return ErrExists
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		var expires int64
		switch err := tx.QueryRowContext(ctx, `SELECT expires FROM reservations WHERE address = ?`, address).Scan(&expires); {
		case err == nil && expires > now.UnixNano():
			return ErrReserved
		case err == nil:
			r.TookOver = true
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		home, err := d.pickHome(ctx, tx, homes, now)
		if err != nil {
			return err
		}
		r.HomeID = home
		return putReservation(ctx, tx, r)
	})
	if err != nil {
		return Reservation{}, err
	}
	return r, nil
}

// putReservation stores r, replacing an expired reservation of its address.
func putReservation(ctx context.Context, tx *sql.Tx, r Reservation) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO reservations (address, home_id, token, expires) VALUES (?, ?, ?, ?)
		ON CONFLICT (address) DO UPDATE SET home_id = excluded.home_id, token = excluded.token, expires = excluded.expires`,
		r.Address, r.HomeID, r.Token, r.Expires.UnixNano())
	return err
}

// pickHome returns the home of ids with the fewest users and live
// reservations; ties go to the first.
func (d *sqlDir) pickHome(ctx context.Context, tx *sql.Tx, ids []string, now time.Time) (string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, users + (SELECT count(*) FROM reservations r WHERE r.home_id = homes.id AND r.expires > ?) FROM homes`, now.UnixNano())
	if err != nil {
		return "", err
	}
	defer rows.Close()
	load := make(map[string]int64)
	for rows.Next() {
		var id string
		var n int64
		if err := rows.Scan(&id, &n); err != nil {
			return "", err
		}
		load[id] = n
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	best, bestN := "", int64(math.MaxInt64)
	for _, id := range ids {
		if n := load[id]; n < bestN {
			best, bestN = id, n
		}
	}
	return best, nil
}

func (d *sqlDir) Commit(ctx context.Context, r Reservation) (Entry, error) {
	var e Entry
	err := d.write(ctx, func(tx *sql.Tx) error {
		var err error
		e, err = commitReservation(ctx, tx, r, d.now())
		return err
	})
	return e, err
}

// commitReservation inserts r's entry in place of r, if r is still held.
func commitReservation(ctx context.Context, tx *sql.Tx, r Reservation, now time.Time) (Entry, error) {
	res, err := tx.ExecContext(ctx, `DELETE FROM reservations WHERE address = ? AND token = ?`, r.Address, r.Token)
	if err != nil {
		return Entry{}, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return Entry{}, err
	} else if n != 1 {
		return Entry{}, ErrLost
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO users (address, home_id, state, created) VALUES (?, ?, ?, ?)`,
		r.Address, r.HomeID, StateActive, now.Unix()); err != nil {
		return Entry{}, err
	}
	return scanEntry(tx.QueryRowContext(ctx, `SELECT `+entryCols+` FROM users WHERE address = ?`, r.Address))
}

func (d *sqlDir) Cancel(ctx context.Context, r Reservation) error {
	return d.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM reservations WHERE address = ? AND token = ?`, r.Address, r.Token)
		return err
	})
}

func (d *sqlDir) Delete(ctx context.Context, address string) (Reservation, error) {
	token, err := newToken()
	if err != nil {
		return Reservation{}, err
	}
	r := Reservation{Address: address, Token: token, Expires: d.now().Add(d.ttl)}
	err = d.write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `DELETE FROM users WHERE address = ? RETURNING home_id`, address).Scan(&r.HomeID)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("user %w", ErrNotFound)
		}
		if err != nil {
			return err
		}
		return putReservation(ctx, tx, r)
	})
	if err != nil {
		return Reservation{}, err
	}
	return r, nil
}

func (d *sqlDir) CreateInvite(ctx context.Context, inv Invite) error {
	return d.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM invites WHERE expires < ?`, inv.Created.Add(-invitePurgeAge).Unix()); err != nil {
			return err
		}
		var one int
		switch err := tx.QueryRowContext(ctx, `SELECT 1 FROM invites WHERE code_hash = ?`, inv.CodeHash).Scan(&one); {
		case err == nil:
			return fmt.Errorf("invite code: %w", ErrExists)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO invites (code_hash, address, created, expires) VALUES (?, ?, ?, ?)`,
			inv.CodeHash, inv.Address, inv.Created.Unix(), inv.Expires.Unix())
		return err
	})
}

func (d *sqlDir) ClaimInvite(ctx context.Context, address string, codeHash []byte, now time.Time) (InviteClaim, error) {
	token, err := newToken()
	if err != nil {
		return InviteClaim{}, err
	}
	at := d.now()
	c := InviteClaim{Address: address, Token: token, Expires: at.Add(d.ttl)}
	err = d.write(ctx, func(tx *sql.Tx) error {
		id, err := findInvite(ctx, tx, address, codeHash, now, at)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE invites SET claim_token = ?, claim_expires = ? WHERE id = ?`, token, c.Expires.UnixNano(), id)
		return err
	})
	if err != nil {
		return InviteClaim{}, err
	}
	return c, nil
}

// findInvite returns the id of the usable invite for address with codeHash:
// unused, unclaimed (or its claim expired at at) and unexpired at now.
// Every invite of the address is compared, in constant time, so neither the
// SQL index nor an early exit says how close a guess came.
func findInvite(ctx context.Context, tx *sql.Tx, address string, codeHash []byte, now, at time.Time) (int64, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, code_hash, expires, used, claim_expires FROM invites WHERE address = ?`, address)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var (
		id      int64
		expires int64
		used    sql.NullInt64
		claim   sql.NullInt64
		found   bool
	)
	for rows.Next() {
		var rid, rexp int64
		var hash []byte
		var rused, rclaim sql.NullInt64
		if err := rows.Scan(&rid, &hash, &rexp, &rused, &rclaim); err != nil {
			return 0, err
		}
		if subtle.ConstantTimeCompare(hash, codeHash) == 1 {
			id, expires, used, claim, found = rid, rexp, rused, rclaim, true
		}
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	switch {
	case !found || used.Valid:
		return 0, ErrInvalidInvite
	case claim.Valid && claim.Int64 > at.UnixNano():
		// Another sign-up holds it: one of the two would fail anyway.
		return 0, ErrInvalidInvite
	case now.Unix() >= expires:
		return 0, ErrInviteExpired
	}
	return id, nil
}

func (d *sqlDir) ReleaseInvite(ctx context.Context, c InviteClaim) error {
	return d.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE invites SET claim_token = NULL, claim_expires = NULL
			WHERE address = ? AND claim_token = ? AND used IS NULL`, c.Address, c.Token)
		return err
	})
}

func (d *sqlDir) CompleteSignup(ctx context.Context, c InviteClaim, r *Reservation) (Entry, error) {
	var e Entry
	err := d.write(ctx, func(tx *sql.Tx) error {
		now := d.now()
		res, err := tx.ExecContext(ctx, `UPDATE invites SET used = ?, claim_token = NULL, claim_expires = NULL
			WHERE address = ? AND claim_token = ? AND used IS NULL`, now.Unix(), c.Address, c.Token)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return fmt.Errorf("claim lost: %w", ErrInvalidInvite)
		}
		if r != nil {
			e, err = commitReservation(ctx, tx, *r, now)
			return err
		}
		e, err = scanEntry(tx.QueryRowContext(ctx, `SELECT `+entryCols+` FROM users WHERE address = ? AND state = ?`, c.Address, StateActive))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("active user %w", ErrNotFound)
		}
		return err
	})
	return e, err
}

func (d *sqlDir) AddDeviceToken(ctx context.Context, address string, hash []byte, max int, now time.Time) error {
	return d.write(ctx, func(tx *sql.Tx) error {
		var id []byte
		err := tx.QueryRowContext(ctx, `SELECT account_id FROM users WHERE address = ? AND state = ?`, address, StateActive).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("user %w", ErrNotFound)
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO device_tokens (account_id, token_hash, created) VALUES (?, ?, ?)`,
			id, hash, now.Unix()); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM device_tokens WHERE account_id = ? AND id NOT IN
			(SELECT id FROM device_tokens WHERE account_id = ? ORDER BY id DESC LIMIT ?)`, id, id, max)
		return err
	})
}

func (d *sqlDir) HasDeviceToken(ctx context.Context, address string, hash []byte) (bool, error) {
	rows, err := d.meta.r.QueryContext(ctx, `SELECT t.token_hash FROM device_tokens t JOIN users u ON t.account_id = u.account_id
		WHERE u.address = ? AND u.state = ?`, address, StateActive)
	if err != nil {
		return false, classify(err)
	}
	defer rows.Close()
	found := 0
	for rows.Next() {
		var h []byte
		if err := rows.Scan(&h); err != nil {
			return false, classify(err)
		}
		found |= subtle.ConstantTimeCompare(h, hash)
	}
	if err := rows.Err(); err != nil {
		return false, classify(err)
	}
	return found == 1, nil
}

func (d *sqlDir) ClearDeviceTokens(ctx context.Context, address string) error {
	return d.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM device_tokens WHERE account_id IN
			(SELECT account_id FROM users WHERE address = ?)`, address)
		return err
	})
}

// check runs SQLite's integrity and foreign key checks on meta.db.
func (d *sqlDir) check(ctx context.Context) error { return classify(checkDB(ctx, d.meta.r)) }
