package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"cryptomail/server"
	"cryptomail/shard"
	"cryptomail/xmap/sexmap"
)

// Bounds of `user invite --expires`: long enough to reach someone by post,
// short enough that a forgotten code does not stay usable for long.
const (
	defaultInviteTTL = 72 * time.Hour
	maxInviteTTL     = 30 * 24 * time.Hour
)

func cmdUserInvite(args []string, stdout, stderr io.Writer) error {
	c := newCommand("user invite", stderr)
	ttl := c.fs.Duration("expires", defaultInviteTTL, "how long the code stays valid (at most 720h)")
	raw, err := c.oneAddress(args)
	if err != nil {
		return err
	}
	if *ttl < time.Minute || *ttl > maxInviteTTL {
		return usagef("user invite: --expires must be between 1m and %s", maxInviteTTL)
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	addr, err := accountAddress(cfg, raw)
	if err != nil {
		return err
	}
	ctx := context.Background()
	st, err := c.openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	expires := time.Now().Add(*ttl).Truncate(time.Second)
	code, err := server.CreateInvite(ctx, st, rand.Reader, addr, expires)
	if errors.Is(err, shard.ErrExists) {
		return fmt.Errorf("%s has signed up already", addr)
	}
	if err != nil {
		return fmt.Errorf("invite %s: %w", addr, err)
	}
	// Scripts take the last line; the code is printed nowhere else and
	// stored only as a hash.
	fmt.Fprintf(stdout, "one-time invite for %s, valid until %s; sign up with: cmail signup --invite CODE %s\n",
		addr, expires.UTC().Format(time.RFC3339), addr)
	fmt.Fprintln(stdout, code)
	return nil
}

func cmdServerKey(args []string, stdout, stderr io.Writer) error {
	c := newCommand("server-key", stderr)
	cfg, err := c.noArgsConfig(args)
	if err != nil {
		return err
	}
	if err := requireServer(cfg); err != nil {
		return err
	}
	// Never created here: a key printed from a wrong config would be
	// published and pinned for a server that does not exist. serve and init
	// create it.
	key, err := sexmap.LoadServerKey(server.ServerKeyPath(cfg.Server.DataDir))
	if errors.Is(err, fs.ErrNotExist) {
		return noServerError(cfg, fmt.Errorf("no server key: %w", err))
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, sexmap.EncodePublicKey(key.Public))
	return nil
}
