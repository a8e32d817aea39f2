package shard

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Delivery key: the public key a delivery encrypts to is cached in the open
// shard's handle, so the delivery path reads no row (and, for a shard just
// opened, opens no reader connection) before its write. The cache is only a
// hint: DeliverSealed compares the key the message was sealed to with the
// stored one inside its own write transaction, under the write lock, so a
// key replaced meanwhile (by SetPublicKey here or by another process) is
// noticed before anything is committed, and the cache is refreshed then.

const currentKeyQuery = `SELECT public_key FROM keys ORDER BY id DESC LIMIT 1`

// rowQuerier is what both *sql.DB and *sql.Tx offer for one-row queries.
type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func currentKey(ctx context.Context, q rowQuerier) ([]byte, error) {
	var key []byte
	err := q.QueryRowContext(ctx, currentKeyQuery).Scan(&key)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("no public key: %w", ErrNotFound)
	}
	if err != nil {
		return nil, classify(err)
	}
	return key, nil
}

// DeliveryKey returns the user's current public key, to seal a message to
// before DeliverSealed stores it. It is answered from the open shard's
// cache when it can be, so it may lag behind a key change made by another
// process; DeliverSealed notices that and fails with ErrKeyChanged.
func (s *Store) DeliveryKey(ctx context.Context, address string) ([]byte, error) {
	// No file check: a key cached by a handle whose file was replaced
	// meanwhile fails DeliverSealed's own check, which runs on the new file.
	h, err := s.acquireChecked(ctx, address, false)
	if err != nil {
		return nil, fmt.Errorf("shard: delivery key: %w", err)
	}
	defer s.pool.release(h)
	if k := h.pubKey.Load(); k != nil {
		return bytes.Clone(*k), nil
	}
	key, err := currentKey(ctx, h.db.r)
	if err != nil {
		return nil, fmt.Errorf("shard %s: delivery key: %w", h.path, err)
	}
	// A write may have cached a newer key meanwhile: keep that one.
	h.pubKey.CompareAndSwap(nil, &key)
	return bytes.Clone(key), nil
}

// checkSealedTo fails with ErrKeyChanged unless sealedTo is the current
// public key as tx sees it, and leaves that key in h's cache either way.
func checkSealedTo(ctx context.Context, tx *sql.Tx, h *handle, sealedTo []byte) error {
	cur, err := currentKey(ctx, tx)
	if errors.Is(err, ErrNotFound) {
		h.pubKey.Store(nil)
		return err
	}
	if err != nil {
		return err
	}
	if c := h.pubKey.Load(); c == nil || !bytes.Equal(*c, cur) {
		h.pubKey.Store(&cur)
	}
	if !bytes.Equal(cur, sealedTo) {
		return ErrKeyChanged
	}
	return nil
}
