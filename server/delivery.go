package server

import (
	"bytes"
	"container/list"
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
	"cryptomail/xmap"
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
	// The size rule (xmap.MaxDeliverySize): the listener refuses a message
	// over max_message_bytes, which the config keeps within the rule; what
	// is stored must also fit what a fetch returns, so a body whose sealed
	// form is over xmap.MaxMessageSize is refused here too, before anything
	// is stored. Sealing never shrinks a message: one over the limit already
	// is refused without encrypting it.
	if len(msg) > xmap.MaxMessageSize {
		return errSealedTooLarge(len(msg))
	}
	trace := traceHeaders(env, rcpt, msg)
	defer clear(trace)
	// The key comes from the open shard's cache; DeliverSealed checks it is
	// still the current one when it commits. A key replaced in between (a
	// rare admin action) costs one more sealing.
	const attempts = 3
	for attempt := 1; ; attempt++ {
		armored, err := d.store.DeliveryKey(ctx, rcpt.Mailbox)
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
		// The message is stored as trace followed by msg; msg is shared by
		// the recipients' deliveries and is not copied.
		buf := bodyBuffers.Get().(*[]byte)
		body, summary, err := d.sealer.SealWithTraceBuffer(*buf, key, trace, msg)
		if err != nil {
			bodyBuffers.Put(buf)
			return fmt.Errorf("encrypt: %w", err)
		}
		if len(body) > xmap.MaxMessageSize {
			if cap(body) <= maxPooledBody {
				*buf = body[:0]
				bodyBuffers.Put(buf)
			}
			return errSealedTooLarge(len(body))
		}
		_, _, err = d.store.DeliverSealed(ctx, rcpt.Mailbox, armored, shard.NewMessage{
			Folder:    "INBOX",
			Received:  env.Received,
			Size:      int64(len(trace) + len(msg)),
			Summary:   summary,
			Body:      body,
			SummaryBy: shard.SummaryByServer, // sealed here, from the message as received
		})
		// DeliverSealed returns once the body is committed (SQLite has
		// copied it) or will never be, so its buffer can serve the next one.
		if cap(body) <= maxPooledBody {
			*buf = body[:0]
			bodyBuffers.Put(buf)
		}
		if errors.Is(err, shard.ErrKeyChanged) && attempt < attempts {
			continue
		}
		if err != nil {
			return storageError(err)
		}
		break
	}
	if d.onStored != nil {
		d.onStored(rcpt.Mailbox)
	}
	return nil
}

// errSealedTooLarge is the refusal of a message whose stored form (n bytes)
// would be over what a fetch returns: 552 5.3.4, nothing stored. It gives
// sizes only, never content.
func errSealedTooLarge(n int) error {
	return fmt.Errorf("%w: stored form of %d bytes, over the %d a fetch returns", lmtp.ErrTooLarge, n, xmap.MaxMessageSize)
}

// bodyBuffers recycles the ciphertext buffers of message bodies: for large
// messages, a fresh buffer each time costs more (page faults, zeroing) than
// the copy into it. Ciphertext is not secret, so they are not wiped.
var bodyBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBody is the largest buffer kept in bodyBuffers, so that one huge
// message does not pin its buffer.
const maxPooledBody = 8 << 20

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

// traceHeaders returns the Return-Path, Delivered-To and Received lines
// to put before msg, using the message's own line ending.
func traceHeaders(env *lmtp.Envelope, rcpt lmtp.Recipient, msg []byte) []byte {
	eol := "\r\n"
	if i := bytes.IndexByte(msg, '\n'); i >= 0 && (i == 0 || msg[i-1] != '\r') {
		eol = "\n"
	}
	// The listener refuses control characters in these; stripping them here
	// too keeps a header injection out whatever the caller.
	from := noControl(env.Helo)
	if from == "" {
		from = "unknown"
	}
	b := make([]byte, 0, 256+len(env.From)+len(rcpt.Mailbox)+len(from)+len(env.RemoteAddr)+len(env.Hostname)+len(rcpt.Address))
	b = append(b, "Return-Path: <"...)
	b = append(b, noControl(env.From)...)
	b = append(b, '>')
	b = append(b, eol...)
	b = append(b, "Delivered-To: "...)
	b = append(b, rcpt.Mailbox...)
	b = append(b, eol...)
	b = append(b, "Received: from "...)
	b = append(b, from...)
	b = append(b, " ("...)
	b = append(b, env.RemoteAddr...)
	b = append(b, ')')
	b = append(b, eol...)
	b = append(b, "\tby "...)
	b = append(b, env.Hostname...)
	b = append(b, " with "...)
	b = append(b, env.Protocol...)
	b = append(b, eol...)
	b = append(b, "\tfor <"...)
	b = append(b, noControl(rcpt.Address)...)
	b = append(b, ">; "...)
	b = env.Received.AppendFormat(b, time.RFC1123Z)
	b = append(b, eol...)
	return b
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
// It holds the max most recently used keys: parsing one verifies its
// self-signatures, a fraction of a millisecond that a delivery to an active
// recipient should not pay again.
type keyCache struct {
	max int
	mu  sync.Mutex
	m   map[[32]byte]*list.Element // of *keyEntry
	lru *list.List                 // front: most recently used
}

type keyEntry struct {
	hash [32]byte
	key  *cmcrypto.PublicKey
}

func (c *keyCache) get(armored []byte, now time.Time) (*cmcrypto.PublicKey, error) {
	h := sha256.Sum256(armored)
	c.mu.Lock()
	if el, ok := c.m[h]; ok {
		c.lru.MoveToFront(el)
		c.mu.Unlock()
		// Validity at this moment (expiry) is checked again by Seal.
		return el.Value.(*keyEntry).key, nil
	}
	c.mu.Unlock()
	k, err := cmcrypto.ParsePublicKey(armored, now)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[[32]byte]*list.Element)
		c.lru = list.New()
	}
	if el, ok := c.m[h]; ok {
		// Parsed concurrently by another delivery: keep one.
		c.lru.MoveToFront(el)
		return el.Value.(*keyEntry).key, nil
	}
	c.m[h] = c.lru.PushFront(&keyEntry{hash: h, key: k})
	for c.lru.Len() > max(c.max, 1) {
		delete(c.m, c.lru.Remove(c.lru.Back()).(*keyEntry).hash)
	}
	return k, nil
}

// len reports how many keys are cached.
func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
