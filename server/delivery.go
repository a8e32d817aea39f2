package server

import (
	"context"
	"errors"
	"fmt"

	"cryptomail/lmtp"
	"cryptomail/server/internal/deliver"
	"cryptomail/shard"
)

// delivery is the LMTP/SMTP edge of the one delivery path: it resolves
// recipients through the served domains and the delivery path's account
// check, adds the trace fields, hands each recipient's copy to the
// Deliverer and maps its errors onto the listener's classes (lmtp's
// codes.go gives them their replies). It implements lmtp.Backend.
type delivery struct {
	cfg *Config
	d   *deliver.Deliverer
}

var _ lmtp.Backend = (*delivery)(nil)

func newDelivery(cfg *Config, d *deliver.Deliverer) *delivery {
	return &delivery{cfg: cfg, d: d}
}

func (d *delivery) Resolve(ctx context.Context, rcpt string) (string, error) {
	mailbox, err := d.cfg.ServedAddress(rcpt)
	switch {
	case errors.Is(err, ErrDomainNotServed):
		return "", fmt.Errorf("%w: %w", lmtp.ErrDomainNotServed, err)
	case err != nil:
		return "", fmt.Errorf("%w: %w", lmtp.ErrBadAddress, err)
	}
	if err := d.d.Active(ctx, mailbox); err != nil {
		return "", lmtpError(err)
	}
	return mailbox, nil
}

func (d *delivery) Deliver(ctx context.Context, env *lmtp.Envelope, rcpt lmtp.Recipient, msg []byte) error {
	trace := deliver.TraceFields(&deliver.Envelope{
		From:       env.From,
		Helo:       env.Helo,
		RemoteAddr: env.RemoteAddr,
		Hostname:   env.Hostname,
		Protocol:   env.Protocol,
		Received:   env.Received,
	}, rcpt.Mailbox, rcpt.Address, msg)
	defer clear(trace)
	// msg is shared by the recipients' deliveries and is not copied.
	_, err := d.d.Deliver(ctx, &deliver.Message{
		Mailbox:  rcpt.Mailbox,
		Received: env.Received,
		Trace:    trace,
		Body:     msg,
		Checked:  true, // by Resolve, at RCPT
	})
	return lmtpError(err)
}

// lmtpError maps the delivery path's classes onto the listener's, in one
// place; anything else is a temporary failure (451) with the reason logged.
func lmtpError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, deliver.ErrUnknownUser):
		return fmt.Errorf("%w: %w", lmtp.ErrUnknownUser, err)
	case errors.Is(err, deliver.ErrTooLarge):
		return fmt.Errorf("%w: %w", lmtp.ErrTooLarge, err)
	case errors.Is(err, deliver.ErrBusy):
		return fmt.Errorf("%w: %w", lmtp.ErrBusy, err)
	case errors.Is(err, deliver.ErrNoSpace):
		return fmt.Errorf("%w: %w", lmtp.ErrNoSpace, err)
	case errors.Is(err, deliver.ErrOverQuota):
		return fmt.Errorf("%w: %w", lmtp.ErrMailboxFull, err)
	}
	return err
}

// The shard store is the delivery path's store on one machine.
var _ deliver.Store = (*shard.Store)(nil)
