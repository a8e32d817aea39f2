package shard

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Login is what a user logs in with (shard table login). All of it is public
// or sealed by the client: the store never holds anything from which the
// passphrase or the private keys could be computed without guessing.
type Login struct {
	Key        []byte // X25519 public login key, LoginKeySize bytes
	Salt       []byte // Argon2id salt, MinSaltSize to MaxSaltSize bytes
	KDFTime    uint32 // Argon2id passes
	KDFMemory  uint32 // Argon2id memory in KiB
	KDFThreads uint8  // Argon2id lanes
	SealedKey  []byte // the private OpenPGP key, sealed by the client; opaque here
	Updated    time.Time
}

// Sizes the store checks in login material. The KDF cost policy (floors and
// ceilings) belongs to the caller; the store only refuses nonsense.
const (
	LoginKeySize = 32
	MinSaltSize  = 16
	MaxSaltSize  = 64
	// InviteHashSize is the size of an invite code's SHA-256.
	InviteHashSize = 32
)

// Errors of Signup. ErrExists also reports an address that already has an
// account (login material) or is not active.
var (
	// ErrInvalidInvite: no unused invite with that code for that address.
	ErrInvalidInvite = errors.New("invalid invite")
	// ErrInviteExpired: the invite exists and is unused but past its expiry.
	ErrInviteExpired = errors.New("invite expired")
	// ErrKeyMismatch: the address was created with another public key.
	ErrKeyMismatch = errors.New("public key differs from the account's")
)

// invitePurgeAge is how long an expired (or used) invite is kept, so that a
// late signup still gets "expired" rather than "invalid" for a while.
const invitePurgeAge = 30 * 24 * time.Hour

func checkLogin(l Login) error {
	switch {
	case len(l.Key) != LoginKeySize:
		return fmt.Errorf("%w: login key must be %d bytes", ErrInvalid, LoginKeySize)
	case len(l.Salt) < MinSaltSize || len(l.Salt) > MaxSaltSize:
		return fmt.Errorf("%w: salt must be %d to %d bytes", ErrInvalid, MinSaltSize, MaxSaltSize)
	case l.KDFTime == 0 || l.KDFMemory == 0 || l.KDFThreads == 0:
		return fmt.Errorf("%w: KDF parameters must be positive", ErrInvalid)
	case len(l.SealedKey) == 0 || len(l.SealedKey) > MaxKeySize:
		return fmt.Errorf("%w: sealed key size %d", ErrInvalid, len(l.SealedKey))
	}
	return nil
}

// CreateInvite records a one-time invite for address, valid until expires.
// Only codeHash, the SHA-256 of the code, is stored. An address that already
// has login material is refused with ErrExists: it has nothing to sign up
// for. Invites that expired more than 30 days ago are purged on the way.
func (s *Store) CreateInvite(ctx context.Context, address string, codeHash []byte, expires time.Time) error {
	if err := checkAddress(address); err != nil {
		return fmt.Errorf("shard: create invite: %w", err)
	}
	if len(codeHash) != InviteHashSize {
		return fmt.Errorf("shard: create invite: %w: code hash must be %d bytes", ErrInvalid, InviteHashSize)
	}
	now := time.Now()
	if expires.Unix() <= now.Unix() {
		return fmt.Errorf("shard: create invite: %w: expiry is not in the future", ErrInvalid)
	}
	switch _, err := s.LoginMaterial(ctx, address); {
	case err == nil:
		return fmt.Errorf("shard: create invite: %s has signed up already: %w", address, ErrExists)
	case !errors.Is(err, ErrNotFound):
		return fmt.Errorf("shard: create invite: %w", err)
	}
	err := s.dir.CreateInvite(ctx, Invite{Address: address, CodeHash: codeHash, Created: now, Expires: expires})
	if err != nil {
		return fmt.Errorf("shard: create invite: %w", err)
	}
	return nil
}

// SignupRequest is what Signup needs. The store knows nothing of OpenPGP, so
// the caller says how to compare public keys.
type SignupRequest struct {
	Address  string // canonical address; must be the invite's
	CodeHash []byte // SHA-256 of the invite code
	// PublicKey is stored as the new user's key. For an address that exists
	// already (created by an administrator) the stored key is kept.
	PublicKey []byte
	// SameKey reports whether the stored key of an existing address is the
	// key the client signs up with (the client holds that key's private
	// half, so mail already delivered stays readable). nil: byte equality.
	SameKey func(stored []byte) bool
	Login   Login
	Now     time.Time // the clock for the invite's expiry; zero: time.Now
}

// Signup consumes an invite and creates or activates the account, all or
// nothing:
//
//   - the invite must be unused, for Address, with CodeHash (compared in
//     constant time): else ErrInvalidInvite; and unexpired: else
//     ErrInviteExpired;
//   - a new address becomes an active user (placed like CreateUser) whose
//     shard holds PublicKey and the login material;
//   - an address created without login material (user add) gets the login
//     material if SameKey accepts its stored key: else ErrKeyMismatch;
//   - an address with login material, or not active, is ErrExists.
//
// It reports whether the user was created (false: activated).
//
// No lock is held across the steps (package documentation, "Other
// processes"): the invite is claimed first (concurrent sign-ups with one
// invite: one claims it, the others get ErrInvalidInvite at once); a new
// address is then reserved, its shard made with the key and the login
// material, and the invite marked used and the entry committed in one
// Directory step. An activation writes the login material into the shard
// (refused if some is there already) before the invite is marked used: a
// crash between leaves an account that works and an invite that can do
// nothing more (the address has signed up). A crash anywhere else leaves
// a claim and a reservation that expire, and nothing an account could use.
func (s *Store) Signup(ctx context.Context, req SignupRequest) (created bool, err error) {
	if err := checkAddress(req.Address); err != nil {
		return false, fmt.Errorf("shard: signup: %w", err)
	}
	if err := checkKey(req.PublicKey); err != nil {
		return false, fmt.Errorf("shard: signup: %w", err)
	}
	if err := checkLogin(req.Login); err != nil {
		return false, fmt.Errorf("shard: signup: %w", err)
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	claim, err := s.dir.ClaimInvite(ctx, req.Address, req.CodeHash, now)
	if err != nil {
		return false, fmt.Errorf("shard: signup: %w", err)
	}
	completed := false
	defer func() {
		if !completed {
			_ = s.dir.ReleaseInvite(context.WithoutCancel(ctx), claim)
		}
	}()
	switch u, err := s.lookup(ctx, req.Address); {
	case errors.Is(err, ErrNotFound):
		created = true
	case err != nil:
		return false, fmt.Errorf("shard: signup: %w", err)
	case u.State != StateActive:
		return false, fmt.Errorf("shard: signup: account is %s: %w", u.State, ErrExists)
	}

	if created {
		r, err := s.reserve(ctx, req.Address, s.homeIDs())
		if err != nil {
			return false, fmt.Errorf("shard: signup: %w", err)
		}
		path, err := s.makeShard(ctx, r, req.PublicKey, &req.Login, now)
		if err != nil {
			return false, err
		}
		if _, err := s.dir.CompleteSignup(ctx, claim, &r); err != nil {
			s.abandon(ctx, r, path, err)
			return false, fmt.Errorf("shard: signup: %w", err)
		}
		completed = true
		return true, nil
	}
	sameKey := req.SameKey
	if sameKey == nil {
		sameKey = func(stored []byte) bool { return bytes.Equal(stored, req.PublicKey) }
	}
	err = s.write(ctx, req.Address, "signup", func(ctx context.Context, tx *sql.Tx, modseq int64) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM login`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("address has signed up already: %w", ErrExists)
		}
		var stored []byte
		err := tx.QueryRowContext(ctx, `SELECT public_key FROM keys ORDER BY id DESC LIMIT 1`).Scan(&stored)
		if errors.Is(err, sql.ErrNoRows) || err == nil && !sameKey(stored) {
			return ErrKeyMismatch
		}
		if err != nil {
			return err
		}
		return insertLogin(ctx, tx, req.Login, now)
	})
	if err != nil {
		return false, err
	}
	if _, err := s.dir.CompleteSignup(ctx, claim, nil); err != nil {
		return false, fmt.Errorf("shard: signup: %w", err)
	}
	completed = true
	return false, nil
}

// initLogin writes the login material into a shard just made by createShard,
// before any directory entry points to it.
func (s *Store) initLogin(ctx context.Context, path string, l Login, now time.Time) error {
	db, ident, err := openShardFile(ctx, path, s.busy)
	if err != nil {
		return err
	}
	h := &handle{path: path, db: db, ident: ident}
	err = h.write(ctx, func(ctx context.Context, tx *sql.Tx, modseq int64) error {
		return insertLogin(ctx, tx, l, now)
	})
	if cerr := h.close(); err == nil {
		err = cerr
	}
	return err
}

func insertLogin(ctx context.Context, tx *sql.Tx, l Login, now time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO login (id, login_key, salt, kdf_time, kdf_memory, kdf_threads, sealed_key, updated)
		VALUES (1, ?, ?, ?, ?, ?, ?, ?)`, l.Key, l.Salt, l.KDFTime, l.KDFMemory, l.KDFThreads, l.SealedKey, now.Unix())
	return err
}

// LoginMaterial returns the login material of an active user. A user that
// does not exist, is not active or has not signed up is ErrNotFound.
func (s *Store) LoginMaterial(ctx context.Context, address string) (Login, error) {
	if err := checkAddress(address); err != nil {
		return Login{}, fmt.Errorf("shard: login material: %w", err)
	}
	u, err := s.lookup(ctx, address)
	if err != nil {
		return Login{}, fmt.Errorf("shard: login material: %w", err)
	}
	if u.State != StateActive {
		return Login{}, fmt.Errorf("shard: login material: account is %s: %w", u.State, ErrNotFound)
	}
	var l Login
	err = s.read(ctx, address, "login material", func(ctx context.Context, db *sql.DB) error {
		var updated int64
		err := db.QueryRowContext(ctx, `SELECT login_key, salt, kdf_time, kdf_memory, kdf_threads, sealed_key, updated
			FROM login WHERE id = 1`).Scan(&l.Key, &l.Salt, &l.KDFTime, &l.KDFMemory, &l.KDFThreads, &l.SealedKey, &updated)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("no login material: %w", ErrNotFound)
		}
		l.Updated = time.Unix(updated, 0)
		return err
	})
	if err != nil {
		return Login{}, err
	}
	return l, nil
}

// ChangeLoginMaterial replaces login key, salt, KDF parameters and sealed
// key in one durable transaction: once it returns, only the new material
// works. A user without login material is ErrNotFound.
func (s *Store) ChangeLoginMaterial(ctx context.Context, address string, l Login) error {
	if err := checkLogin(l); err != nil {
		return fmt.Errorf("shard: change login material: %w", err)
	}
	return s.write(ctx, address, "change login material", func(ctx context.Context, tx *sql.Tx, modseq int64) error {
		res, err := tx.ExecContext(ctx, `UPDATE login SET login_key = ?, salt = ?, kdf_time = ?, kdf_memory = ?,
			kdf_threads = ?, sealed_key = ?, updated = ? WHERE id = 1`,
			l.Key, l.Salt, l.KDFTime, l.KDFMemory, l.KDFThreads, l.SealedKey, time.Now().Unix())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("no login material: %w", ErrNotFound)
		}
		return nil
	})
}
