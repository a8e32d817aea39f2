package shard

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// AccountIDSize is the size of a directory entry's random account id.
const AccountIDSize = 16

// GenerationSize is the size of what Generation returns.
const GenerationSize = AccountIDSize + LoginKeySize

// DeviceTokenHashSize is the size of a stored device token hash (SHA-256).
const DeviceTokenHashSize = 32

// Generation returns the generation of an active, signed-up account: its
// directory entry's random account id followed by its current public login
// key. The id changes when the row is deleted and inserted again and when
// the account's state changes; the key changes with the passphrase. Both
// are read from the files, so a change made by another process (the admin
// CLI) is seen at once. An account that does not exist, is not active or
// has not signed up is ErrNotFound.
//
// This runs on every request of a logged-in SeXMAP session: one metabase
// read by primary key and one single-row read of the shard (whose handle
// the request uses next anyway); about 25 µs (BenchmarkGeneration).
func (s *Store) Generation(ctx context.Context, address string) ([]byte, error) {
	if err := checkAddress(address); err != nil {
		return nil, fmt.Errorf("shard: generation: %w", err)
	}
	gen := make([]byte, 0, GenerationSize)
	e, err := s.dir.Lookup(ctx, address)
	switch {
	case err != nil:
		return nil, fmt.Errorf("shard: generation: %w", err)
	case e.State != StateActive:
		return nil, fmt.Errorf("shard: generation: account is %s: %w", e.State, ErrNotFound)
	case len(e.AccountID) != AccountIDSize:
		return nil, fmt.Errorf("shard: generation: account id of %d bytes: %w", len(e.AccountID), ErrCorrupt)
	}
	gen = append(gen, e.AccountID...)
	// No file check (a stat) here: a shard replaced by another process comes
	// with a new directory entry, whose account id was just read, so whatever a
	// stale handle says, the generation differs. A passphrase changed by
	// another process is in the same file, which this handle sees.
	h, err := s.acquireChecked(ctx, address, false)
	if err != nil {
		return nil, fmt.Errorf("shard: generation: %w", err)
	}
	defer s.pool.release(h)
	var key []byte
	err = h.db.r.QueryRowContext(ctx, `SELECT login_key FROM login WHERE id = 1`).Scan(&key)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("shard %s: generation: no login material: %w", h.path, ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("shard %s: generation: %w", h.path, classify(err))
	}
	return append(gen, key...), nil
}

// AddDeviceToken stores the SHA-256 of a new device token for the current
// generation of an active account, keeping only the newest max tokens of
// that generation. An account that is not active is ErrNotFound.
func (s *Store) AddDeviceToken(ctx context.Context, address string, hash []byte, max int, now time.Time) error {
	if err := checkAddress(address); err != nil {
		return fmt.Errorf("shard: add device token: %w", err)
	}
	if len(hash) != DeviceTokenHashSize || max < 1 {
		return errors.New("shard: add device token: bad hash size or limit")
	}
	if err := s.dir.AddDeviceToken(ctx, address, hash, max, now); err != nil {
		return fmt.Errorf("shard: add device token: %w", err)
	}
	return nil
}

// HasDeviceToken reports whether hash is the SHA-256 of a device token of
// the current generation of the active account address. Every stored hash of
// the account is compared in constant time.
func (s *Store) HasDeviceToken(ctx context.Context, address string, hash []byte) (bool, error) {
	if err := checkAddress(address); err != nil {
		return false, fmt.Errorf("shard: device token: %w", err)
	}
	ok, err := s.dir.HasDeviceToken(ctx, address, hash)
	if err != nil {
		return false, fmt.Errorf("shard: device token: %w", err)
	}
	return ok, nil
}

// ClearDeviceTokens forgets every device token of address (after a
// passphrase change). An address without tokens or without a row is fine.
func (s *Store) ClearDeviceTokens(ctx context.Context, address string) error {
	if err := checkAddress(address); err != nil {
		return fmt.Errorf("shard: clear device tokens: %w", err)
	}
	if err := s.dir.ClearDeviceTokens(ctx, address); err != nil {
		return fmt.Errorf("shard: clear device tokens: %w", err)
	}
	return nil
}
