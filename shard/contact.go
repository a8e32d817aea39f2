package shard

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxContactSize bounds a stored contact (XMAP's limit).
const MaxContactSize = 32 << 10

// Contact is one address-book entry: a blob the client encrypted.
type Contact struct {
	ID     int64
	Data   []byte
	ModSeq int64 // modseq of the contact's last change
}

// ContactPage describes a page of ListContacts.
type ContactPage struct {
	ModSeq     int64  // the shard's modseq when the page was read
	NextCursor string // "" on the last page
}

// ListContacts calls fn for each contact of one page, in id order, all read
// from one snapshot. cursor is "" for the first page, else the NextCursor of
// the page before (ErrBadCursor if it is not one). fn's error stops the
// listing and is returned as is.
func (s *Store) ListContacts(ctx context.Context, address string, limit int, cursor string, fn func(Contact) error) (ContactPage, error) {
	if limit < 1 {
		return ContactPage{}, fmt.Errorf("shard: list contacts: %w: limit %d", ErrInvalid, limit)
	}
	var after int64
	if cursor != "" {
		v, ok := strings.CutPrefix(cursor, "c.")
		n, err := strconv.ParseInt(v, 10, 64)
		if !ok || err != nil || n < 0 {
			return ContactPage{}, fmt.Errorf("shard: list contacts: %w", ErrBadCursor)
		}
		after = n
	}
	var page ContactPage
	err := s.snapshot(ctx, address, "list contacts", func(ctx context.Context, db querier) error {
		if err := db.QueryRowContext(ctx, `SELECT modseq FROM state WHERE id = 1`).Scan(&page.ModSeq); err != nil {
			return err
		}
		rows, err := db.QueryContext(ctx, `SELECT id, data, modseq FROM contacts WHERE id > ? ORDER BY id LIMIT ?`, after, limit+1)
		if err != nil {
			return err
		}
		defer rows.Close()
		var last int64
		for n := 0; rows.Next(); n++ {
			if n == limit {
				page.NextCursor = "c." + strconv.FormatInt(last, 10)
				break
			}
			var c Contact
			if err := rows.Scan(&c.ID, &c.Data, &c.ModSeq); err != nil {
				return err
			}
			if err := fn(c); err != nil {
				return callback(err)
			}
			last = c.ID
		}
		return rows.Err()
	})
	if err != nil {
		return ContactPage{}, err
	}
	return page, nil
}

func checkContact(data []byte) error {
	if len(data) == 0 || len(data) > MaxContactSize {
		return fmt.Errorf("%w: contact of %d bytes", ErrInvalid, len(data))
	}
	return nil
}

// PutContact creates a contact (id 0) or replaces the data of contact id,
// and returns the contact's id. ErrNoSuchContact; ErrQuota (stored bytes
// over quota; quota <= 0: no limit).
func (s *Store) PutContact(ctx context.Context, address string, id int64, data []byte, quota int64) (int64, error) {
	if err := checkContact(data); err != nil {
		return 0, fmt.Errorf("shard: put contact: %w", err)
	}
	out := id
	err := s.change(ctx, address, "put contact", func(ctx context.Context, tx *sql.Tx, st *stamper) error {
		grow := int64(len(data))
		if id != 0 {
			var old int64
			err := tx.QueryRowContext(ctx, `SELECT length(data) FROM contacts WHERE id = ?`, id).Scan(&old)
			if errors.Is(err, sql.ErrNoRows) {
				return &IDError{ID: id, Err: ErrNoSuchContact}
			}
			if err != nil {
				return err
			}
			grow -= old
		}
		if err := reserve(ctx, tx, quota, grow); err != nil {
			return err
		}
		modseq, err := st.stamp(ctx)
		if err != nil {
			return err
		}
		if id != 0 {
			_, err = tx.ExecContext(ctx, `UPDATE contacts SET data = ?, modseq = ? WHERE id = ?`, data, modseq, id)
			return err
		}
		return tx.QueryRowContext(ctx, `INSERT INTO contacts (data, created_modseq, modseq) VALUES (?, ?, ?) RETURNING id`, data, modseq, modseq).Scan(&out)
	})
	if err != nil {
		return 0, err
	}
	return out, nil
}

// DeleteContact deletes a contact. ErrNoSuchContact.
func (s *Store) DeleteContact(ctx context.Context, address string, id int64) error {
	return s.change(ctx, address, "delete contact", func(ctx context.Context, tx *sql.Tx, st *stamper) error {
		// The tombstone trigger takes the state's modseq: this stamp.
		if _, err := st.stamp(ctx); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM contacts WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return &IDError{ID: id, Err: ErrNoSuchContact}
		}
		return pruneTombstones(ctx, tx, pruneKeep, pruneSlack)
	})
}
