package outbound

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"cryptomail/server/internal/deliver"
)

// maxIdle bounds how long Run sleeps without looking at the queue, so a
// wall-clock jump or a row added by another process is noticed.
const maxIdle = time.Minute

// Kick makes Run look at the queue now. It never blocks.
func (s *Sender) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run relays queued messages whose time has come, up to Config.Concurrency
// at once, until ctx is done; then it waits for the attempts in progress
// (their connections are closed at once) and returns. Run it once.
func (s *Sender) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, s.cfg.Concurrency)
	for ctx.Err() == nil {
		ids, err := s.claimDue(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Error("outbound: reading the queue", "err", err)
		}
		for i, id := range ids {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				s.unclaim(ids[i:]...)
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.process(ctx, id)
				s.unclaim(id)
				<-sem
				s.Kick() // a slot is free: look again
			}()
		}
		wait := maxIdle
		if next, ok := s.nextDue(ctx); ok {
			wait = min(max(next.Sub(s.cfg.Now()), 0), maxIdle)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-s.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// Flush makes one attempt at every message due now, Config.Concurrency at
// a time, and returns when they are done: for tools and tests. It may run
// beside Run; a message is never attempted twice at once.
func (s *Sender) Flush(ctx context.Context) error {
	ids, err := s.claimDue(ctx)
	if err != nil {
		return fmt.Errorf("outbound: flush: %w", err)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, s.cfg.Concurrency)
	for _, id := range ids {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.process(ctx, id)
			s.unclaim(id)
			<-sem
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// claimDue marks the due rows no attempt is working on as busy and
// returns them.
func (s *Sender) claimDue(ctx context.Context) ([]int64, error) {
	now := s.cfg.Now()
	s.mu.Lock()
	skipped := len(s.busy) + len(s.penalty)
	s.mu.Unlock()
	ids, err := s.q.due(ctx, now, s.cfg.Concurrency+skipped)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int64
	for _, id := range ids {
		if s.busy[id] {
			continue
		}
		if t, ok := s.penalty[id]; ok {
			if now.Before(t) {
				continue
			}
			delete(s.penalty, id)
		}
		s.busy[id] = true
		out = append(out, id)
	}
	return out, nil
}

func (s *Sender) unclaim(ids ...int64) {
	s.mu.Lock()
	for _, id := range ids {
		delete(s.busy, id)
	}
	s.mu.Unlock()
}

// nextDue is when Run should look again.
func (s *Sender) nextDue(ctx context.Context) (time.Time, bool) {
	s.mu.Lock()
	skip := make(map[int64]bool, len(s.busy)+len(s.penalty))
	var next time.Time
	for id := range s.busy {
		skip[id] = true
	}
	for id, t := range s.penalty {
		skip[id] = true
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	s.mu.Unlock()
	t, ok, err := s.q.nextDue(ctx, skip)
	if err != nil {
		return s.cfg.Now().Add(s.cfg.MinRetry), true
	}
	if !ok || (!next.IsZero() && next.Before(t)) {
		return next, !next.IsZero()
	}
	return t, true
}

// process makes one attempt at a row. A failure here (not at the relay:
// the queue file, the sender's shard) is logged and the row rests for
// MinRetry, so a broken disk does not make Run spin.
func (s *Sender) process(ctx context.Context, id int64) {
	err := s.attempt(ctx, id)
	if err == nil || ctx.Err() != nil {
		return
	}
	s.log.Error("outbound: queue entry", "queue_id", id, "err", err)
	s.mu.Lock()
	s.penalty[id] = s.cfg.Now().Add(s.cfg.MinRetry)
	s.mu.Unlock()
}

// attempt relays a row's pending recipients, records the outcome, and
// bounces the recipients that failed for good. The outcome is saved before
// the bounce is stored: a crash in between bounces again at the next start
// (a duplicate notice) but never relays again.
func (s *Sender) attempt(ctx context.Context, id int64) error {
	e, err := s.q.load(ctx, id, true)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	var pending []int
	for i, r := range e.rcpts {
		if r.status == statusPending {
			pending = append(pending, i)
		}
	}
	// Saving must not be cut off by shutdown: the relay may have taken the
	// message already.
	sctx := context.WithoutCancel(ctx)
	if len(pending) > 0 {
		to := make([]string, len(pending))
		for j, i := range pending {
			to[j] = e.rcpts[i].address
		}
		res := s.relay(ctx, e.sender, to, e.body)
		s.logOutcome(id, e.sender, to, res)
		now := s.cfg.Now()
		expired := !now.Before(e.created.Add(s.cfg.QueueLifetime))
		e.attempts++
		e.lastError = res.connErr
		e.next = now.Add(s.cfg.backoff(e.attempts))
		for j, i := range pending {
			r, got := &e.rcpts[i], res.rcpts[j]
			if got.reply != "" {
				r.reply = got.reply
			}
			r.reason = got.reason
			switch got.kind {
			case delivered:
				r.status = statusSent
			case permanent:
				r.status, r.dsnCode = statusFailed, got.code
			default:
				if expired {
					r.status, r.dsnCode = statusFailed, "4.4.7"
				}
			}
		}
	}
	if !hasStatus(e, statusFailed) {
		_, err := s.q.save(sctx, e)
		return err
	}
	// The bounce is retried (with back-off) if it cannot be stored now.
	if len(pending) == 0 {
		e.attempts++
		e.next = s.cfg.Now().Add(s.cfg.backoff(e.attempts))
	}
	if _, err := s.q.save(sctx, e); err != nil {
		return err
	}
	if err := s.bounce(sctx, e); err != nil {
		return fmt.Errorf("bounce to %s: %w", e.sender, err)
	}
	for i := range e.rcpts {
		if e.rcpts[i].status == statusFailed {
			e.rcpts[i].status = statusBounced
		}
	}
	_, err = s.q.save(sctx, e)
	return err
}

func hasStatus(e *entry, status string) bool {
	for _, r := range e.rcpts {
		if r.status == status {
			return true
		}
	}
	return false
}

// bounce stores a delivery status notification for e's failed recipients in
// the sender's INBOX, encrypted to the sender's key.
func (s *Sender) bounce(ctx context.Context, e *entry) error {
	now := s.cfg.Now()
	in := dsnInput{
		Hostname:  s.cfg.Hostname,
		Sender:    e.sender,
		Arrival:   e.created,
		Date:      now,
		MessageID: randomToken() + "@" + s.cfg.Hostname,
		Boundary:  randomToken(),
		Lifetime:  s.cfg.QueueLifetime,
		Headers:   e.body,
	}
	for _, r := range e.rcpts {
		if r.status != statusFailed {
			continue
		}
		in.Recipients = append(in.Recipients, dsnRecipient{
			Address:     r.address,
			Status:      r.dsnCode,
			Reply:       r.reply,
			Reason:      r.reason,
			LastAttempt: now,
		})
	}
	var raw bytes.Buffer
	if err := writeDSN(&raw, in); err != nil {
		return fmt.Errorf("write bounce: %w", err)
	}
	_, err := s.deliver.Deliver(ctx, &deliver.Message{
		Mailbox:  e.sender,
		Received: now,
		Body:     raw.Bytes(),
		Source:   deliver.FromOutside,
	})
	switch {
	case errors.Is(err, deliver.ErrUnknownUser):
		s.log.Warn("outbound: sender has no active account any more; bounce dropped", "queue_id", e.id, "sender", e.sender)
		return nil
	case errors.Is(err, deliver.ErrKeyUnusable):
		// Retrying cannot help until the key is replaced; give it the
		// queue lifetime once more, then drop the notice rather than
		// keep the message (and its body) for ever.
		if now.After(e.created.Add(2 * s.cfg.QueueLifetime)) {
			s.log.Error("outbound: sender's key unusable; bounce dropped", "queue_id", e.id, "sender", e.sender, "err", err)
			return nil
		}
		return err
	case err != nil:
		return err
	}
	s.log.Info("outbound: bounce stored", "queue_id", e.id, "sender", e.sender, "recipients", len(in.Recipients))
	return nil
}

func randomToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Entry describes one queued message, for tools and tests. It never holds
// the message.
type Entry struct {
	ID          int64
	Sender      string
	Created     time.Time
	NextAttempt time.Time
	Attempts    int
	Held        bool   // its send is still storing local copies
	LastError   string // why the last attempt broke off, in fixed words; "" if it did not
	Recipients  []EntryRecipient
}

// EntryRecipient is one recipient of a queued message.
type EntryRecipient struct {
	Address string
	Status  string // "pending", "sent", "failed" (bounce not stored yet) or "bounced"
	Reply   string // the relay's last reply for this recipient
}

// Entries lists the queue, oldest first.
func (s *Sender) Entries(ctx context.Context) ([]Entry, error) {
	es, err := s.q.all(ctx)
	if err != nil {
		return nil, fmt.Errorf("outbound: entries: %w", err)
	}
	out := make([]Entry, 0, len(es))
	for _, e := range es {
		x := Entry{ID: e.id, Sender: e.sender, Created: e.created, NextAttempt: e.next,
			Attempts: e.attempts, Held: e.held, LastError: e.lastError}
		for _, r := range e.rcpts {
			x.Recipients = append(x.Recipients, EntryRecipient{Address: r.address, Status: r.status, Reply: r.reply})
		}
		out = append(out, x)
	}
	return out, nil
}
