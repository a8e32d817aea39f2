package deliver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	cmcrypto "cryptomail/crypto"
	"cryptomail/shard"
	"cryptomail/xmap"
)

// The classes of a failed delivery, for errors.Is. Each edge maps them to
// its own codes in one place.
var (
	// ErrUnknownUser: no account, or one that is not active.
	ErrUnknownUser = errors.New("deliver: no such mailbox")
	// ErrTooLarge: the stored form would be over what a fetch returns.
	ErrTooLarge = errors.New("deliver: message too large")
	// ErrOverQuota: the quota hook's limit would be exceeded.
	ErrOverQuota = errors.New("deliver: over quota")
	// ErrBusy: the mailbox's storage is busy; temporary.
	ErrBusy = errors.New("deliver: storage busy")
	// ErrNoSpace: the disk is full; temporary.
	ErrNoSpace = errors.New("deliver: no space left")
	// ErrKeyUnusable: the stored public key cannot be encrypted to (expired
	// since, say). Temporary for mail from outside: the key may be fixed.
	ErrKeyUnusable = errors.New("deliver: public key unusable")
)

// Store is what delivery needs of storage: the account state, the key and
// the commit. *shard.Store implements it; a cluster routes it.
type Store interface {
	// User answers the account (shard.ErrNotFound: none).
	User(ctx context.Context, address string) (shard.User, error)
	// DeliveryKey answers the current public key, armored.
	DeliveryKey(ctx context.Context, address string) ([]byte, error)
	// DeliverSealed stores m if sealedTo is still the current key
	// (shard.ErrKeyChanged otherwise), durably, honouring m.Quota.
	DeliverSealed(ctx context.Context, address string, sealedTo []byte, m shard.NewMessage) (id int64, uid uint32, err error)
	// Append stores a message the user sealed, durably, within quota.
	Append(ctx context.Context, address string, to shard.FolderRef, m shard.NewMessage, quota int64) (shard.MessageInfo, error)
}

// Quota is the quota hook: the most bytes of ciphertext mailbox may store
// (summaries, bodies, contacts); <= 0: no limit. An error refuses the
// delivery (wrapped, and classed like a storage error).
type Quota func(ctx context.Context, mailbox string) (int64, error)

// Options configure a Deliverer. The zero value works.
type Options struct {
	// Quota is the quota hook; nil: no limit.
	Quota Quota
	// Notify is called with the mailbox once per stored message, after its
	// commit (to wake XMAP waits). It must not block. nil: nothing.
	Notify func(mailbox string)
	// Now is the clock (key validity, signatures' time). nil: time.Now.
	Now func() time.Time
	// MaxKeys bounds the parsed-key cache; <= 0: 4096.
	MaxKeys int
}

// Deliverer stores messages into local mailboxes. Safe for concurrent use.
type Deliverer struct {
	store  Store
	opts   Options
	sealer *cmcrypto.Sealer
	keys   keyCache
}

// New returns a Deliverer storing through st.
func New(st Store, opts Options) *Deliverer {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = 4096
	}
	return &Deliverer{store: st, opts: opts, sealer: &cmcrypto.Sealer{Now: opts.Now}, keys: keyCache{max: opts.MaxKeys}}
}

// Message is one message for one local mailbox, in plaintext: the
// Deliverer seals it. Trace and Body are read, never kept nor changed, so
// one Body may serve many recipients at once.
type Message struct {
	Mailbox  string    // canonical address (the metabase key)
	Folder   string    // folder name; "" → the inbox
	Flags    []string  // e.g. `\Seen`
	Received time.Time // zero → now
	// Trace is whole header fields put before Body (Return-Path,
	// Delivered-To, Received), in Body's line ending; may be nil.
	Trace []byte
	Body  []byte // the RFC 5322 message
	// Summary is an encrypted summary given by a client, stored as it is.
	// nil: the server makes one from Body's headers, completed by EnvFrom
	// and EnvTo. Its origin, as stored, follows from Source and from who
	// made it (see Source).
	Summary []byte
	Source  Source
	// EnvFrom and EnvTo complete a server-made summary whose message has
	// no From, or no To and Cc, field.
	EnvFrom, EnvTo string
	// Checked says the caller ran Active (or Check) for this mailbox at
	// this message's intake (LMTP's RCPT, send's checks), so Deliver does
	// not ask the metabase again: the hot path's one lookup. An account
	// deleted since is still refused (its shard is gone at the commit).
	Checked bool
}

// Source is where a message comes from, which decides its summary's
// origin (shard.SummaryBy*), the rule clients show trust by:
//
//	source       client's summary   summary made here
//	FromOutside  (refused)          server
//	FromUser     sender             sender (headers the sending user wrote)
//	FromSelf     owner              owner
//	SentCopy     owner              server
//
// An append (Deliverer.Append) is always the owner's.
type Source int

const (
	FromOutside Source = iota // LMTP, SMTP, a bounce: as it arrived
	FromUser                  // send's copy for another local user
	FromSelf                  // send's copy for the sender's own mailbox
	SentCopy                  // send's Sent copy
)

// summaryBy is the origin a summary is stored with; given: the client gave it.
func (src Source) summaryBy(given bool) (string, error) {
	switch {
	case src == FromOutside && !given, src == SentCopy && !given:
		return shard.SummaryByServer, nil
	case src == FromUser:
		return shard.SummaryBySender, nil
	case src == FromSelf, src == SentCopy:
		return shard.SummaryByOwner, nil
	}
	return "", fmt.Errorf("deliver: a summary from %d cannot be given", src)
}

// Stored describes a stored message.
type Stored struct {
	ID        int64  // within the mailbox's shard
	Size      int64  // bytes of the stored (sealed) body
	SummaryBy string // the summary's origin as stored
}

// Check tells whether mailbox can receive now: an active account with a
// usable key. A caller that must refuse before it starts storing anything
// (send, with several copies) checks first, then sets Message.Checked;
// Deliver checks the key again (and the account unless Checked).
func (d *Deliverer) Check(ctx context.Context, mailbox string) error {
	if err := d.Active(ctx, mailbox); err != nil {
		return err
	}
	_, _, err := d.key(ctx, mailbox)
	return err
}

// Deliver seals m to its mailbox's key and stores it durably. See the
// package documentation for the rules and what an error means.
func (d *Deliverer) Deliver(ctx context.Context, m *Message) (Stored, error) {
	// Sealing never shrinks a message: one over the limit already is
	// refused without encrypting it.
	if n := len(m.Trace) + len(m.Body); n > xmap.MaxMessageSize {
		return Stored{}, tooLarge(n)
	}
	if !m.Checked {
		if err := d.Active(ctx, m.Mailbox); err != nil {
			return Stored{}, err
		}
	}
	limit, err := d.limit(ctx, m.Mailbox)
	if err != nil {
		return Stored{}, err
	}
	received := m.Received
	if received.IsZero() {
		received = d.opts.Now()
	}
	// The key comes from the open shard's cache; DeliverSealed checks it is
	// still the current one when it commits. A key replaced in between (a
	// rare admin action) costs one more sealing.
	const attempts = 3
	for attempt := 1; ; attempt++ {
		armored, key, err := d.key(ctx, m.Mailbox)
		if err != nil {
			return Stored{}, err
		}
		buf := bodyBuffers.Get().(*[]byte)
		st, err := d.commit(ctx, *buf, m, armored, key, received, limit)
		// DeliverSealed returns once the body is committed (SQLite has
		// copied it) or will never be, so its buffer can serve the next one.
		if cap(st.body) > 0 && cap(st.body) <= maxPooledBody {
			*buf = st.body[:0]
		}
		bodyBuffers.Put(buf)
		if errors.Is(err, shard.ErrKeyChanged) && attempt < attempts {
			continue
		}
		if err != nil {
			return Stored{}, classify(err)
		}
		d.notify(m.Mailbox)
		return st.Stored, nil
	}
}

type sealed struct {
	Stored
	body []byte // the ciphertext buffer, to recycle
}

// commit seals m into buf's memory and stores it.
func (d *Deliverer) commit(ctx context.Context, buf []byte, m *Message, armored []byte, key *cmcrypto.PublicKey, received time.Time, limit int64) (sealed, error) {
	body, err := d.sealer.EncryptBuffer(buf, key, m.Trace, m.Body)
	if err != nil {
		return sealed{}, fmt.Errorf("deliver: encrypt: %w", err)
	}
	out := sealed{body: body}
	if len(body) > xmap.MaxMessageSize {
		return out, tooLarge(len(body))
	}
	summary := m.Summary
	by, err := m.Source.summaryBy(len(summary) > 0)
	if err != nil {
		return out, err
	}
	if len(summary) == 0 {
		if summary, err = d.summary(key, m); err != nil {
			return out, err
		}
	}
	id, _, err := d.store.DeliverSealed(ctx, m.Mailbox, armored, shard.NewMessage{
		Folder:    m.Folder,
		Flags:     m.Flags,
		Received:  received,
		Size:      int64(len(m.Trace) + len(m.Body)),
		Summary:   summary,
		Body:      body,
		SummaryBy: by,
		Quota:     limit,
	})
	out.Stored = Stored{ID: id, Size: int64(len(body)), SummaryBy: by}
	return out, err
}

// summary seals the summary the server can know: the message's outer
// headers, completed from the envelope.
func (d *Deliverer) summary(key *cmcrypto.PublicKey, m *Message) ([]byte, error) {
	sm := cmcrypto.ExtractSummary(m.Body)
	if sm.From == "" {
		sm.From = m.EnvFrom
	}
	if len(sm.To) == 0 && len(sm.Cc) == 0 && m.EnvTo != "" {
		sm.To = []string{m.EnvTo}
	}
	out, err := d.sealer.SealSummary(key, sm)
	if err != nil {
		return nil, fmt.Errorf("deliver: %w", err)
	}
	return out, nil
}

// Append stores a message the mailbox's owner sealed (XMAP append) in the
// folder to, with the owner's summary. The same account, size and quota
// rules hold, and the same notification follows.
func (d *Deliverer) Append(ctx context.Context, mailbox string, to shard.FolderRef, m shard.NewMessage) (shard.MessageInfo, error) {
	if len(m.Body) > xmap.MaxMessageSize {
		return shard.MessageInfo{}, tooLarge(len(m.Body))
	}
	if err := d.Active(ctx, mailbox); err != nil {
		return shard.MessageInfo{}, err
	}
	limit, err := d.limit(ctx, mailbox)
	if err != nil {
		return shard.MessageInfo{}, err
	}
	if m.Received.IsZero() {
		m.Received = d.opts.Now()
	}
	m.SummaryBy = shard.SummaryByOwner // the user's own append
	info, err := d.store.Append(ctx, mailbox, to, m, limit)
	if err != nil {
		return shard.MessageInfo{}, classify(err)
	}
	d.notify(mailbox)
	return info, nil
}

// Limit answers the quota hook's limit for mailbox (<= 0: none), for the
// other writes that grow a mailbox (copy, contacts), so that quotas live
// in one place.
func (d *Deliverer) Limit(ctx context.Context, mailbox string) (int64, error) {
	return d.limit(ctx, mailbox)
}

func (d *Deliverer) limit(ctx context.Context, mailbox string) (int64, error) {
	if d.opts.Quota == nil {
		return 0, nil
	}
	n, err := d.opts.Quota(ctx, mailbox)
	if err != nil {
		return 0, classify(fmt.Errorf("deliver: quota of %s: %w", mailbox, err))
	}
	return n, nil
}

func (d *Deliverer) notify(mailbox string) {
	if d.opts.Notify != nil {
		d.opts.Notify(mailbox)
	}
}

// Active checks that mailbox has an active account (ErrUnknownUser
// otherwise): the rule LMTP applies at RCPT, before the message comes.
func (d *Deliverer) Active(ctx context.Context, mailbox string) error {
	u, err := d.store.User(ctx, mailbox)
	if err != nil {
		return classify(err)
	}
	if u.State != shard.StateActive {
		return fmt.Errorf("%w: account %s", ErrUnknownUser, u.State)
	}
	return nil
}

// key answers mailbox's current key, armored (for DeliverSealed) and parsed.
func (d *Deliverer) key(ctx context.Context, mailbox string) ([]byte, *cmcrypto.PublicKey, error) {
	armored, err := d.store.DeliveryKey(ctx, mailbox)
	if err != nil {
		return nil, nil, classify(err)
	}
	key, err := d.keys.get(armored, d.opts.Now())
	if err != nil {
		// A stored key that no longer validates (expired since) must not
		// make mail be dropped: the edge decides (LMTP tempfails).
		return nil, nil, fmt.Errorf("%w: %w", ErrKeyUnusable, err)
	}
	return armored, key, nil
}

// tooLarge is the refusal of a message whose stored form (n bytes) would be
// over what a fetch returns. It gives sizes only, never content.
func tooLarge(n int) error {
	return fmt.Errorf("%w: stored form of %d bytes, over the %d a fetch returns", ErrTooLarge, n, xmap.MaxMessageSize)
}

// classify wraps a storage failure in its class.
func classify(err error) error {
	switch {
	case errors.Is(err, ErrUnknownUser), errors.Is(err, ErrTooLarge), errors.Is(err, ErrOverQuota),
		errors.Is(err, ErrBusy), errors.Is(err, ErrNoSpace), errors.Is(err, ErrKeyUnusable):
		return err
	case errors.Is(err, shard.ErrNotFound):
		return fmt.Errorf("%w: %w", ErrUnknownUser, err)
	case errors.Is(err, shard.ErrQuota):
		return fmt.Errorf("%w: %w", ErrOverQuota, err)
	case errors.Is(err, shard.ErrBusy):
		return fmt.Errorf("%w: %w", ErrBusy, err)
	case errors.Is(err, shard.ErrNoSpace):
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// bodyBuffers recycles the ciphertext buffers of message bodies: for large
// messages, a fresh buffer each time costs more (page faults, zeroing) than
// the copy into it. Ciphertext is not secret, so they are not wiped.
var bodyBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBody is the largest buffer kept in bodyBuffers, so that one huge
// message does not pin its buffer.
const maxPooledBody = 8 << 20
