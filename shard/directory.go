package shard

import (
	"context"
	"errors"
	"time"
)

// Directory is what the MetaBase answers: which users exist, the home each
// one's shard is on, the account's state and generation, invites, device
// tokens and the homes with their user counts. The Store (its consumer)
// keeps the shards; the Directory keeps no file of theirs.
//
// The embedded default is SQLite (meta.db, metasql.go); a cluster keeps the
// same data in etcd. Every method is one operation a transactional KV store
// can do: reads, and writes that are atomic and compare-and-set on what they
// name (a reservation's token, an invite's claim, an entry's account id).
// No method relies on a lock held between two calls, so several processes
// (a server and the admin CLI, or several nodes) may use one Directory at
// once. The rules that need more than one call (creating and deleting a
// user, sign-up) are built by the Store from reservations and claims; see
// the package documentation, "Other processes".
//
// Errors: ErrNotFound, ErrExists, ErrReserved, ErrLost, ErrInvalidInvite,
// ErrInviteExpired, ErrInvalid, ErrBusy and ErrClosed keep their meaning
// whatever the engine (errors.Is), and wrap the engine's own error.
type Directory interface {
	// Lookup returns address's entry: ErrNotFound if it has none (an
	// address only reserved has none: new mail to it is refused).
	Lookup(ctx context.Context, address string) (Entry, error)
	// Users calls fn for every entry, ordered by address, and stops at
	// fn's first error, which it returns. It need not be one snapshot.
	Users(ctx context.Context, fn func(Entry) error) error
	// Homes lists every home the directory has taken in, ordered by id,
	// with its number of users (entries, not reservations).
	Homes(ctx context.Context) ([]HomeLoad, error)
	// AddHome takes in the home id (32 lowercase hex digits, its HOME
	// file), with no users; a home taken in already is no error. The
	// Store adds each new home before placing anyone on it.
	AddHome(ctx context.Context, id string) error

	// Reserve reserves address for a new entry, atomically: it fails with
	// ErrExists if the address has an entry and with ErrReserved if it has
	// a reservation that has not expired. A reservation that has expired
	// is taken over (Reservation.TookOver): its holder crashed, or took
	// longer than its expiry, and must touch no file of the address after
	// it. The home is the one of homes (ids, at least one) with the
	// fewest users and unexpired reservations, ties going to the first.
	// A reservation lasts until Commit, Cancel or its Expires.
	Reserve(ctx context.Context, address string, homes []string) (Reservation, error)
	// Commit turns the reservation into an active entry on its home, with
	// a new account id, atomically and only if the reservation (its
	// token) is still held: else ErrLost, and nothing changes.
	Commit(ctx context.Context, r Reservation) (Entry, error)
	// Cancel drops the reservation if it is still held (its token); a
	// reservation lost already is no error.
	Cancel(ctx context.Context, r Reservation) error
	// Delete removes address's entry (with its device tokens) and, in the
	// same atomic step, leaves a reservation of the address on the
	// entry's home, so that nobody creates the address again before the
	// caller has removed the shard and cancelled the reservation (or the
	// reservation has expired). No entry: ErrNotFound.
	Delete(ctx context.Context, address string) (Reservation, error)

	// CreateInvite stores a one-time invite (only the code's hash). A
	// hash stored already is ErrExists. Invites expired long ago may be
	// purged on the way.
	CreateInvite(ctx context.Context, inv Invite) error
	// ClaimInvite claims the invite of address whose hash is codeHash
	// (compared in constant time with every invite of the address), for
	// one sign-up, atomically: the invite must be unused and not claimed
	// by an unexpired claim (else ErrInvalidInvite) and unexpired at now
	// (else ErrInviteExpired). The claim ends with CompleteSignup,
	// ReleaseInvite or at its Expires; an expired claim leaves the invite
	// unused.
	ClaimInvite(ctx context.Context, address string, codeHash []byte, now time.Time) (InviteClaim, error)
	// ReleaseInvite ends a claim that is still held, leaving the invite
	// unused.
	ReleaseInvite(ctx context.Context, c InviteClaim) error
	// CompleteSignup marks the claimed invite used and, with r not nil,
	// commits r as Commit does, in one atomic step: both happen or
	// neither. The claim (ErrInvalidInvite) and r (ErrLost) must still be
	// held. With r nil the address's entry must exist and be active
	// (else ErrNotFound). It returns the address's entry.
	CompleteSignup(ctx context.Context, c InviteClaim, r *Reservation) (Entry, error)

	// AddDeviceToken stores a device token's hash for the current account
	// id of the active entry address (else ErrNotFound), keeping only the
	// newest max of that account id.
	AddDeviceToken(ctx context.Context, address string, hash []byte, max int, now time.Time) error
	// HasDeviceToken reports whether hash is a device token of the
	// current account id of the active entry address, comparing every
	// stored hash of it in constant time.
	HasDeviceToken(ctx context.Context, address string, hash []byte) (bool, error)
	// ClearDeviceTokens forgets every device token of address's entry; no
	// entry or no token is no error.
	ClearDeviceTokens(ctx context.Context, address string) error
}

// Entry is one user in the Directory.
type Entry struct {
	Address string
	HomeID  string // the home holding the user's shard
	State   string // StateActive, ...
	// AccountID is random, drawn anew whenever the entry is created or
	// its state changes: an account deleted and created again never
	// shares one with its predecessor (Generation).
	AccountID []byte
	Created   time.Time
}

// HomeLoad is one home the Directory knows, with its number of users.
type HomeLoad struct {
	ID    string
	Users int64
}

// Reservation holds an address for one creator (or deleter) until Commit,
// Cancel or Expires.
type Reservation struct {
	Address string
	HomeID  string
	Token   []byte // random; what Commit and Cancel compare
	Expires time.Time
	// TookOver: the address had an expired reservation, whose holder may
	// have left files at its home (or any home): remove them.
	TookOver bool
}

// Invite is a one-time sign-up code for one address.
type Invite struct {
	Address  string
	CodeHash []byte // SHA-256 of the code, InviteHashSize bytes
	Created  time.Time
	Expires  time.Time
}

// InviteClaim holds an invite for one sign-up until CompleteSignup,
// ReleaseInvite or Expires.
type InviteClaim struct {
	Address string
	Token   []byte
	Expires time.Time
}

// Errors of the Directory's reservations.
var (
	// ErrReserved: the address is being created or deleted by someone
	// else (an unexpired reservation); worth a retry later.
	ErrReserved = errors.New("address reserved by another operation")
	// ErrLost: the reservation or claim named is no longer held (it
	// expired and was taken over, or was committed or cancelled).
	ErrLost = errors.New("reservation lost")
)
