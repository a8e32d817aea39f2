package server

import (
	"context"
	"io"
	"time"

	"cryptomail/server/internal/accounts"
)

// The admin commands' view of the account rules, which live in an internal
// package: only this package wires it.

// ServerKeyPath is where data_dir keeps the server's static SeXMAP key.
func ServerKeyPath(dataDir string) string { return accounts.ServerKeyPath(dataDir) }

// Inviter keeps invites; *shard.Store is one.
type Inviter interface {
	CreateInvite(ctx context.Context, address string, codeHash []byte, expires time.Time) error
}

// CreateInvite stores a new one-time sign-up code for address, valid until
// expires, and returns it; only its hash is kept (accounts.CreateInvite).
func CreateInvite(ctx context.Context, st Inviter, rng io.Reader, address string, expires time.Time) (string, error) {
	return accounts.CreateInvite(ctx, st, rng, address, expires)
}
