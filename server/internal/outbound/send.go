package outbound

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"cryptomail/server/internal/deliver"
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
	deliver *deliver.Deliverer
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
	dl := cfg.Deliverer
	if dl == nil {
		dl = deliver.New(store, deliver.Options{Now: cfg.Now, Notify: cfg.OnStored})
	}
	s := &Sender{
		cfg:     cfg,
		store:   store,
		resolve: resolve,
		q:       q,
		deliver: dl,
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
	summary []byte // the client's, or nil
}

// Send implements xmapserver.MessageBackend's Send: it checks everything,
// then queues the remote copies (held), stores the local copies and the
// Sent copy, and releases the queued ones. The envelope sender is always
// user.
func (s *Sender) Send(ctx context.Context, user string, req *xmap.Send) (*xmap.SendResult, error) {
	now := s.cfg.Now()
	// The Sent copy needs the sender's own key.
	if err := s.deliver.Check(ctx, user); err != nil {
		return nil, storeError(err, user, true)
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
				// Refused before anything is stored or queued.
				if err := s.deliver.Check(ctx, mailbox); err != nil {
					return nil, storeError(err, addr, false)
				}
				l = &localRcpt{mailbox: mailbox, address: addr}
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
		// A local recipient's summary is the sender's word, not the server's:
		// written by the sending client, or made here from headers that user
		// wrote (an outer From: is whatever they typed). The recipient's client
		// marks it unverified. Mail to oneself is the owner's own.
		src := deliver.FromUser
		if strings.EqualFold(l.mailbox, user) {
			src = deliver.FromSelf
		}
		trace := deliver.TraceFields(&deliver.Envelope{From: user, Hostname: s.cfg.Hostname, Protocol: "XMAP", Received: now}, l.mailbox, l.address, req.Body)
		if _, err := s.deliver.Deliver(cctx, &deliver.Message{
			Mailbox:  l.mailbox,
			Received: now,
			Trace:    trace,
			Body:     req.Body,
			Summary:  l.summary,
			Source:   src,
			EnvFrom:  user,
			EnvTo:    l.address,
			Checked:  true,
		}); err != nil {
			return fail(storeError(err, l.address, false))
		}
		stored++
	}
	sentMsg, err := s.storeSent(cctx, user, sent, req, now)
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

// storeSent stores the sender's copy of the body in Sent, seen.
func (s *Sender) storeSent(ctx context.Context, user string, sent shard.Folder, req *xmap.Send, now time.Time) (xmap.Message, error) {
	st, err := s.deliver.Deliver(ctx, &deliver.Message{
		Mailbox:  user,
		Folder:   sent.Name,
		Flags:    []string{string(xmap.FlagSeen)},
		Received: now,
		Body:     req.Body,
		Summary:  req.SentSummary,
		Source:   deliver.SentCopy,
		EnvFrom:  user,
		Checked:  true,
	})
	if err != nil {
		return xmap.Message{}, err
	}
	return xmap.Message{
		SummaryBy: xmap.SummaryOrigin(st.SummaryBy),
		ID:        strconv.FormatInt(st.ID, 10),
		FolderID:  strconv.FormatInt(sent.ID, 10),
		Flags:     []xmap.Flag{xmap.FlagSeen},
		Size:      st.Size,
		Received:  now,
	}, nil
}

// storeError maps a failure of the delivery path for addr (own: the
// sending user's own mailbox) to what the client sees: the one place send's
// XMAP codes come from.
func storeError(err error, addr string, own bool) error {
	switch {
	case errors.Is(err, deliver.ErrUnknownUser) && own:
		return xmap.Errorf(xmap.CodeDenied, "account no longer exists")
	case errors.Is(err, deliver.ErrUnknownUser):
		return xmap.Errorf(xmap.CodeInvalidRecipient, "%s: no such local recipient", addr)
	case errors.Is(err, deliver.ErrKeyUnusable) && own:
		return xmap.Errorf(xmap.CodeDenied, "your public key cannot be encrypted to, so the Sent copy cannot be stored")
	case errors.Is(err, deliver.ErrKeyUnusable):
		return xmap.Errorf(xmap.CodeInvalidRecipient, "%s: the recipient's key cannot be encrypted to", addr)
	case errors.Is(err, deliver.ErrTooLarge):
		return xmap.Errorf(xmap.CodeTooLarge, "the message encrypted for storage is over %d bytes", xmap.MaxMessageSize)
	case (errors.Is(err, deliver.ErrNoSpace) || errors.Is(err, deliver.ErrOverQuota)) && own:
		return xmap.Errorf(xmap.CodeOverQuota, "your mailbox is full")
	case errors.Is(err, deliver.ErrNoSpace), errors.Is(err, deliver.ErrOverQuota):
		return xmap.Errorf(xmap.CodeOverQuota, "mailbox of %s is full", addr)
	case errors.Is(err, deliver.ErrBusy):
		return xmap.Errorf(xmap.CodeRateLimited, "storage busy; retry later")
	}
	var xe *xmap.Error
	if errors.As(err, &xe) {
		return err
	}
	return fmt.Errorf("outbound: store for %s: %w", addr, err)
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
