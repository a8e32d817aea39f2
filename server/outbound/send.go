package outbound

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	cmcrypto "cryptomail/crypto"
	"cryptomail/shard"
	"cryptomail/xmap"
)

// Resolver tells a local address from a remote one. For an address in one
// of the served domains it returns the canonical mailbox (the metabase key)
// and local=true, whether or not an account exists; for any other address
// local=false. err is for an address it cannot parse.
type Resolver func(addr string) (mailbox string, local bool, err error)

// Sender implements the send request of XMAP (xmapserver.MessageBackend's
// Send) and relays queued mail to the smarthost. See the package
// documentation for what happens when.
type Sender struct {
	cfg     Config
	store   *shard.Store
	resolve Resolver
	q       *queue
	sealer  *cmcrypto.Sealer
	log     *slog.Logger
	kick    chan struct{}
	limit   sendLimiter

	mu      sync.Mutex
	busy    map[int64]bool      // rows an attempt is working on
	penalty map[int64]time.Time // rows whose last attempt failed here, not at the relay: not before then
}

// New opens (creating if needed, mode 0600) the queue file at path and
// returns a Sender storing through store. It drops rows left held by a
// send that never completed (see the package documentation). Call Run to
// relay, and Close when Run has returned.
func New(ctx context.Context, path string, store *shard.Store, resolve Resolver, cfg Config) (*Sender, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("outbound: config: %w", err)
	}
	if store == nil || resolve == nil {
		return nil, errors.New("outbound: a store and a resolver are required")
	}
	q, err := openQueue(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("outbound: open queue %s: %w", path, err)
	}
	s := &Sender{
		cfg:     cfg,
		store:   store,
		resolve: resolve,
		q:       q,
		sealer:  &cmcrypto.Sealer{Now: cfg.Now},
		log:     cfg.Logger,
		kick:    make(chan struct{}, 1),
		limit:   sendLimiter{perHour: cfg.MaxRecipientsPerHour},
		busy:    map[int64]bool{},
		penalty: map[int64]time.Time{},
	}
	n, err := q.dropHeld(ctx)
	if err != nil {
		q.close()
		return nil, fmt.Errorf("outbound: open queue %s: %w", path, err)
	}
	if n > 0 {
		s.log.Warn("outbound: dropped queue entries of sends that did not complete", "count", n)
	}
	return s, nil
}

// Close closes the queue file. Call it after Run has returned and no Send
// is running.
func (s *Sender) Close() error { return s.q.close() }

// Sender answers exactly the Send method of xmapserver.MessageBackend.
var _ interface {
	Send(ctx context.Context, user string, req *xmap.Send) (*xmap.SendResult, error)
} = (*Sender)(nil)

// localRcpt is one local mailbox a send stores a copy for.
type localRcpt struct {
	mailbox string
	address string // as the request gave it first
	key     *cmcrypto.PublicKey
	summary []byte // the client's, or nil
}

// Send implements xmapserver.MessageBackend's Send: it checks everything,
// then queues the remote copies (held), stores the local copies and the
// Sent copy, and releases the queued ones. The envelope sender is always
// user.
func (s *Sender) Send(ctx context.Context, user string, req *xmap.Send) (*xmap.SendResult, error) {
	now := s.cfg.Now()
	senderKey, err := s.userKey(ctx, user, now)
	if err != nil {
		return nil, err
	}
	// The size rule (xmap.MaxDeliverySize): every copy stored here is body
	// with trace fields, encrypted again, and must fit what a fetch returns.
	if len(req.Body) > xmap.MaxDeliverySize {
		return nil, xmap.Errorf(xmap.CodeTooLarge, "message body over %d bytes", xmap.MaxDeliverySize)
	}
	if err := s.checkContent(user, req); err != nil {
		return nil, err
	}

	var (
		locals      []*localRcpt
		byMailbox   = map[string]*localRcpt{}
		remoteEnc   []string
		remotePlain []string
		statuses    = make([]xmap.RecipientStatus, 0, len(req.Recipients))
	)
	for _, r := range req.Recipients {
		addr := r.Address
		if !xmap.ValidAddress(addr) {
			return nil, xmap.Errorf(xmap.CodeBadRequest, "%q is not a valid address", clip(addr))
		}
		mailbox, local, err := s.resolve(addr)
		if err != nil {
			return nil, xmap.Errorf(xmap.CodeBadRequest, "%s is not a valid address", addr)
		}
		if local {
			if !r.Encrypted {
				return nil, xmap.Errorf(xmap.CodePlaintextRefused, "%s is a local recipient and must be encrypted to", addr)
			}
			l := byMailbox[mailbox]
			if l == nil {
				key, err := s.recipientKey(ctx, mailbox, addr, now)
				if err != nil {
					return nil, err
				}
				l = &localRcpt{mailbox: mailbox, address: addr, key: key}
				byMailbox[mailbox] = l
				locals = append(locals, l)
			}
			if l.summary == nil && len(r.Summary) > 0 {
				l.summary = r.Summary
			}
			statuses = append(statuses, xmap.RecipientStatus{Address: addr, Status: xmap.StatusDelivered})
			continue
		}
		if s.cfg.Smarthost == "" {
			return nil, xmap.Errorf(xmap.CodeDenied, "no relay configured: this server cannot send to %s", addr)
		}
		if r.Encrypted {
			remoteEnc = append(remoteEnc, addr)
		} else {
			if !r.AllowPlaintext {
				return nil, xmap.Errorf(xmap.CodePlaintextRefused, "%s is not encrypted to and allow-plaintext is not set", addr)
			}
			remotePlain = append(remotePlain, addr)
		}
		statuses = append(statuses, xmap.RecipientStatus{Address: addr, Status: xmap.StatusQueued})
	}
	if len(statuses) == 0 {
		return nil, xmap.Errorf(xmap.CodeBadRequest, "no recipient")
	}
	if len(remotePlain) > 0 && len(req.PlaintextBody) == 0 {
		return nil, xmap.Errorf(xmap.CodeBadRequest, "a recipient is not encrypted to but there is no plaintext body")
	}
	sent, err := s.sentFolder(ctx, user)
	if err != nil {
		return nil, err
	}
	if err := s.limit.allow(user, len(statuses), now); err != nil {
		return nil, err
	}

	// Everything is checked. From here on a client going away must not cut
	// the send in half: the stores run to their end whatever ctx does.
	cctx := context.WithoutCancel(ctx)
	var batches []batch
	if len(remoteEnc) > 0 {
		batches = append(batches, batch{body: req.Body, rcpts: remoteEnc})
	}
	if len(remotePlain) > 0 {
		batches = append(batches, batch{body: req.PlaintextBody, rcpts: remotePlain})
	}
	var held []int64
	if len(batches) > 0 {
		if held, err = s.q.insertHeld(cctx, user, now, batches); err != nil {
			return nil, fmt.Errorf("outbound: queue: %w", err)
		}
	}
	stored := 0
	fail := func(err error) (*xmap.SendResult, error) {
		if len(held) > 0 {
			if derr := s.q.drop(cctx, held); derr != nil {
				// Still held: dropped at the next start, never relayed.
				s.log.Error("outbound: dropping queue entries of a failed send", "user", user, "err", derr)
			}
		}
		if stored > 0 {
			s.log.Warn("outbound: send failed after storing local copies; they stay", "user", user, "stored", stored)
		}
		return nil, err
	}

	for _, l := range locals {
		raw := withTrace(user, l, s.cfg.Hostname, now, req.Body)
		// A local recipient's summary is the sender's word, not the server's:
		// written by the sending client, or made here from headers that user
		// wrote (an outer From: is whatever they typed). The recipient's client
		// marks it unverified. Mail to oneself is the owner's own.
		by := shard.SummaryBySender
		if strings.EqualFold(l.mailbox, user) {
			by = shard.SummaryByOwner
		}
		if _, _, err := s.storeMsg(cctx, l.mailbox, l.key, raw, l.summary, by, by, user, l.address, "", nil, now); err != nil {
			return fail(storeError(err, l.address, false))
		}
		stored++
	}
	sentMsg, err := s.storeSent(cctx, user, senderKey, sent, req, now)
	if err != nil {
		return fail(storeError(err, user, true))
	}
	if len(held) > 0 {
		if err := s.q.release(cctx, held); err != nil {
			return fail(fmt.Errorf("outbound: queue: %w", err))
		}
		s.Kick()
	}
	s.log.Info("outbound: sent", "user", user, "local", len(locals), "queued", len(remoteEnc)+len(remotePlain))
	return &xmap.SendResult{Sent: sentMsg, Recipients: statuses}, nil
}

// userKey returns the sending user's key, for the Sent copy.
func (s *Sender) userKey(ctx context.Context, user string, now time.Time) (*cmcrypto.PublicKey, error) {
	armored, err := s.store.PublicKey(ctx, user)
	if errors.Is(err, shard.ErrNotFound) {
		return nil, xmap.Errorf(xmap.CodeDenied, "account no longer exists")
	}
	if err != nil {
		return nil, fmt.Errorf("outbound: public key of %s: %w", user, err)
	}
	key, err := cmcrypto.ParsePublicKey(armored, now)
	if err != nil {
		s.log.Warn("outbound: sender's public key unusable", "user", user, "err", err)
		return nil, xmap.Errorf(xmap.CodeDenied, "your public key cannot be encrypted to, so the Sent copy cannot be stored")
	}
	return key, nil
}

// recipientKey checks that a local mailbox has an active account and
// returns its key.
func (s *Sender) recipientKey(ctx context.Context, mailbox, addr string, now time.Time) (*cmcrypto.PublicKey, error) {
	u, err := s.store.User(ctx, mailbox)
	if errors.Is(err, shard.ErrNotFound) {
		return nil, xmap.Errorf(xmap.CodeInvalidRecipient, "%s: no such local recipient", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("outbound: user %s: %w", mailbox, err)
	}
	if u.State != shard.StateActive {
		// Like LMTP: only an active account receives mail.
		return nil, xmap.Errorf(xmap.CodeInvalidRecipient, "%s: no such local recipient", addr)
	}
	armored, err := s.store.PublicKey(ctx, mailbox)
	if errors.Is(err, shard.ErrNotFound) {
		return nil, xmap.Errorf(xmap.CodeInvalidRecipient, "%s: no such local recipient", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("outbound: public key of %s: %w", mailbox, err)
	}
	key, err := cmcrypto.ParsePublicKey(armored, now)
	if err != nil {
		s.log.Warn("outbound: local recipient's public key unusable", "mailbox", mailbox, "err", err)
		return nil, xmap.Errorf(xmap.CodeInvalidRecipient, "%s: the recipient's key cannot be encrypted to", addr)
	}
	return key, nil
}

// sentFolder returns the user's folder with the sent role.
func (s *Sender) sentFolder(ctx context.Context, user string) (shard.Folder, error) {
	fs, err := s.store.Folders(ctx, user)
	if err != nil {
		return shard.Folder{}, fmt.Errorf("outbound: folders of %s: %w", user, err)
	}
	for _, f := range fs {
		if f.Role == "sent" {
			return f, nil
		}
	}
	return shard.Folder{}, fmt.Errorf("outbound: %s has no sent folder", user)
}

// storeMsg encrypts raw (and, without a client summary, a summary made
// from its headers and the envelope) to key and stores it in mailbox's
// folder ("" is the INBOX). The summary's origin is recorded as clientBy
// for a client's summary and as madeBy for one made here (shard.SummaryBy*).
// It returns the message id and the sealed size.
func (s *Sender) storeMsg(ctx context.Context, mailbox string, key *cmcrypto.PublicKey, raw, summary []byte, clientBy, madeBy string,
	envFrom, envTo, folder string, flags []string, now time.Time) (id int64, size int64, err error) {
	body, err := s.sealer.Encrypt(key, raw)
	if err != nil {
		return 0, 0, fmt.Errorf("encrypt: %w", err)
	}
	if len(body) > xmap.MaxMessageSize {
		// The size rule's safety net: never store what a fetch cannot return.
		return 0, 0, xmap.Errorf(xmap.CodeTooLarge, "the message encrypted for storage is %d bytes, over %d", len(body), xmap.MaxMessageSize)
	}
	summaryBy := clientBy
	if len(summary) == 0 {
		if summary, err = s.serverSummary(key, raw, envFrom, envTo); err != nil {
			return 0, 0, err
		}
		summaryBy = madeBy
	}
	id, _, err = s.store.Deliver(ctx, mailbox, shard.NewMessage{
		Folder:    folder,
		Flags:     flags,
		Received:  now,
		Size:      int64(len(raw)),
		Summary:   summary,
		Body:      body,
		SummaryBy: summaryBy,
	})
	if err != nil {
		return 0, 0, err
	}
	s.stored(mailbox)
	return id, int64(len(body)), nil
}

// storeSent stores the sender's copy of the body in Sent, seen.
func (s *Sender) storeSent(ctx context.Context, user string, key *cmcrypto.PublicKey, sent shard.Folder, req *xmap.Send, now time.Time) (xmap.Message, error) {
	id, size, err := s.storeMsg(ctx, user, key, req.Body, req.SentSummary, shard.SummaryByOwner, shard.SummaryByServer, user, "", sent.Name, []string{string(xmap.FlagSeen)}, now)
	if err != nil {
		return xmap.Message{}, err
	}
	by := xmap.SummaryByOwner
	if len(req.SentSummary) == 0 {
		by = xmap.SummaryByServer
	}
	return xmap.Message{
		SummaryBy: by,
		ID:        strconv.FormatInt(id, 10),
		FolderID:  strconv.FormatInt(sent.ID, 10),
		Flags:     []xmap.Flag{xmap.FlagSeen},
		Size:      size,
		Received:  now,
	}, nil
}

// serverSummary writes the summary the server can know: the message's outer
// headers, completed from the envelope.
func (s *Sender) serverSummary(key *cmcrypto.PublicKey, raw []byte, envFrom, envTo string) ([]byte, error) {
	sm := cmcrypto.ExtractSummary(raw)
	if sm.From == "" {
		sm.From = envFrom
	}
	if len(sm.To) == 0 && len(sm.Cc) == 0 && envTo != "" {
		sm.To = []string{envTo}
	}
	js, err := cmcrypto.MarshalSummary(sm)
	if err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	out, err := s.sealer.Encrypt(key, js)
	clear(js)
	if err != nil {
		return nil, fmt.Errorf("encrypt summary: %w", err)
	}
	return out, nil
}

func (s *Sender) stored(user string) {
	if s.cfg.OnStored != nil {
		s.cfg.OnStored(user)
	}
}

// storeError maps a failure to store a copy for addr to what the client sees.
func storeError(err error, addr string, own bool) error {
	if errors.Is(err, shard.ErrNoSpace) {
		if own {
			return xmap.Errorf(xmap.CodeOverQuota, "your mailbox is full")
		}
		return xmap.Errorf(xmap.CodeOverQuota, "mailbox of %s is full", addr)
	}
	var xe *xmap.Error
	if errors.As(err, &xe) {
		return err
	}
	return fmt.Errorf("outbound: store for %s: %w", addr, err)
}

// withTrace returns the trace fields a local delivery gets, like mail
// arriving over LMTP, followed by body, in the body's own line ending.
func withTrace(from string, l *localRcpt, hostname string, now time.Time, body []byte) []byte {
	eol := "\r\n"
	if i := bytes.IndexByte(body, '\n'); i >= 0 && (i == 0 || body[i-1] != '\r') {
		eol = "\n"
	}
	var b bytes.Buffer
	b.Grow(256 + len(body))
	fmt.Fprintf(&b, "Return-Path: <%s>%s", from, eol)
	fmt.Fprintf(&b, "Delivered-To: %s%s", l.mailbox, eol)
	fmt.Fprintf(&b, "Received: by %s with XMAP%s\tfor <%s>; %s%s", hostname, eol, l.address, now.Format(time.RFC1123Z), eol)
	b.Write(body)
	return b.Bytes()
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
