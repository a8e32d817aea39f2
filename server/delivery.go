package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	cmcrypto "cryptomail/crypto"
	"cryptomail/lmtp"
	"cryptomail/shard"
)

// delivery is the application step between the listeners and storage: it
// resolves recipients through the metabase, encrypts to each recipient's key
// and stores the ciphertext. It implements lmtp.Backend.
type delivery struct {
	cfg    *Config
	store  *shard.Store
	sealer *cmcrypto.Sealer
	now    func() time.Time
	keys   keyCache
	// onStored wakes the recipient's long polls (XMAP wait).
	onStored func(mailbox string)
}

var _ lmtp.Backend = (*delivery)(nil)

func newDelivery(cfg *Config, store *shard.Store) *delivery {
	return &delivery{
		cfg:    cfg,
		store:  store,
		sealer: &cmcrypto.Sealer{},
		now:    time.Now,
		keys:   keyCache{max: 4096},
	}
}

func (d *delivery) Resolve(ctx context.Context, rcpt string) (string, error) {
	mailbox, err := d.cfg.ServedAddress(rcpt)
	switch {
	case errors.Is(err, ErrDomainNotServed):
		return "", fmt.Errorf("%w: %w", lmtp.ErrDomainNotServed, err)
	case err != nil:
		return "", fmt.Errorf("%w: %w", lmtp.ErrBadAddress, err)
	}
	u, err := d.store.User(ctx, mailbox)
	if err != nil {
		return "", storageError(err)
	}
	if u.State != "active" {
		return "", fmt.Errorf("%w: account %s", lmtp.ErrUnknownUser, u.State)
	}
	return mailbox, nil
}

func (d *delivery) Deliver(ctx context.Context, env *lmtp.Envelope, rcpt lmtp.Recipient, msg []byte) error {
	armored, err := d.store.PublicKey(ctx, rcpt.Mailbox)
	if err != nil {
		return storageError(err)
	}
	key, err := d.keys.get(armored, d.now())
	if err != nil {
		// A stored key that no longer validates (expired since) must not
		// make us drop mail: tempfail, so the MTA keeps it while the admin
		// or user fixes the key. The reason goes to the log via the caller.
		return fmt.Errorf("public key of recipient unusable: %w", err)
	}
	raw := withTraceHeaders(env, rcpt, msg)
	body, summary, err := d.sealer.Seal(key, raw)
	clear(raw[:len(raw)-len(msg)]) // our copy of the headers; msg is the caller's
	if err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	_, _, err = d.store.Deliver(ctx, rcpt.Mailbox, shard.NewMessage{
		Folder:   "INBOX",
		Received: env.Received,
		Size:     int64(len(raw)),
		Summary:  summary,
		Body:     body,
	})
	if err != nil {
		return storageError(err)
	}
	if d.onStored != nil {
		d.onStored(rcpt.Mailbox)
	}
	return nil
}

// storageError maps storage failures onto the listener's error classes.
func storageError(err error) error {
	switch {
	case errors.Is(err, shard.ErrNotFound):
		return fmt.Errorf("%w: %w", lmtp.ErrUnknownUser, err)
	case errors.Is(err, shard.ErrBusy):
		return fmt.Errorf("%w: %w", lmtp.ErrBusy, err)
	case errors.Is(err, shard.ErrNoSpace):
		return fmt.Errorf("%w: %w", lmtp.ErrNoSpace, err)
	}
	return err
}

// withTraceHeaders returns Return-Path, Delivered-To and Received lines
// followed by msg, using the message's own line ending.
func withTraceHeaders(env *lmtp.Envelope, rcpt lmtp.Recipient, msg []byte) []byte {
	eol := "\r\n"
	if i := bytes.IndexByte(msg, '\n'); i >= 0 && (i == 0 || msg[i-1] != '\r') {
		eol = "\n"
	}
	var b bytes.Buffer
	b.Grow(512 + len(msg))
	// The listener refuses control characters in these; stripping them here
	// too keeps a header injection out whatever the caller.
	fmt.Fprintf(&b, "Return-Path: <%s>%s", noControl(env.From), eol)
	fmt.Fprintf(&b, "Delivered-To: %s%s", rcpt.Mailbox, eol)
	from := noControl(env.Helo)
	if from == "" {
		from = "unknown"
	}
	fmt.Fprintf(&b, "Received: from %s (%s)%s\tby %s with %s%s\tfor <%s>; %s%s",
		from, env.RemoteAddr, eol, env.Hostname, env.Protocol, eol,
		noControl(rcpt.Address), env.Received.Format(time.RFC1123Z), eol)
	b.Write(msg)
	return b.Bytes()
}

// noControl drops ASCII control characters.
func noControl(v string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, v)
}

// keyCache keeps parsed public keys keyed by the hash of their stored bytes,
// so a key replaced by the admin CLI (another process) is picked up at once.
type keyCache struct {
	max int
	mu  sync.Mutex
	m   map[[32]byte]*cmcrypto.PublicKey
}

func (c *keyCache) get(armored []byte, now time.Time) (*cmcrypto.PublicKey, error) {
	h := sha256.Sum256(armored)
	c.mu.Lock()
	k, ok := c.m[h]
	c.mu.Unlock()
	if ok {
		// Validity at this moment (expiry) is checked again by Seal.
		return k, nil
	}
	k, err := cmcrypto.ParsePublicKey(armored, now)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= c.max {
		// Crude but bounded: the working set of keys is the set of active
		// recipients, and re-parsing costs microseconds.
		c.m = make(map[[32]byte]*cmcrypto.PublicKey)
	}
	c.m[h] = k
	c.mu.Unlock()
	return k, nil
}
