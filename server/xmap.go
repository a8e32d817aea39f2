package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"cryptomail/server/internal/accounts"
	"cryptomail/server/internal/deliver"
	"cryptomail/server/internal/mailback"
	"cryptomail/server/internal/outbound"
	"cryptomail/shard"
	"cryptomail/xmap/sexmap"
	"cryptomail/xmap/xmapserver"
)

// xmapBackend is the storage-backed XMAP backend: accounts, mail and
// sending are separate packages, each implementing its own part.
type xmapBackend struct {
	*accounts.Backend
	*mailback.Mailboxes
	*outbound.Sender
}

var _ xmapserver.Backend = (*xmapBackend)(nil)

// mailAccess is everything behind the /sexmap endpoint.
type mailAccess struct {
	sexmap *sexmap.Server
	mail   *mailback.Mailboxes
	// deliver is the one delivery path: LMTP and SMTP, send, bounces and
	// append all store through it.
	deliver *deliver.Deliverer
	sender  *outbound.Sender
	stop    context.CancelFunc
	done    chan struct{}
}

// OutboundPath is the outbound queue's file in data_dir.
func OutboundPath(dataDir string) string { return filepath.Join(dataDir, "outbound.db") }

func newMailAccess(ctx context.Context, cfg *Config, st *shard.Store, logger *slog.Logger) (*mailAccess, error) {
	key, err := sexmap.LoadOrCreateServerKey(accounts.ServerKeyPath(cfg.Server.DataDir))
	if err != nil {
		return nil, fmt.Errorf("server key: %w", err)
	}
	h := cfg.HTTP
	clientIP := sexmap.ClientIPFunc(h.Trusted())
	salts := sexmap.NewRateTable(sexmap.RateLimit{Rate: float64(h.SaltLookupsPerMinute) / 60, Burst: h.SaltLookupsPerMinute}, 100000, nil)
	acc, err := accounts.New(accounts.Config{
		Store:            st,
		CanonicalAddress: cfg.ServedAddress,
		FakeSalt:         accounts.FakeSaltFunc(key.Private),
		AllowSaltLookup: func(ctx context.Context) (bool, time.Duration) {
			return salts.Allow(sexmap.ClientIP(ctx))
		},
		Logger: logger.With("part", "accounts"),
	})
	if err != nil {
		return nil, err
	}
	notifier := new(mailback.Notifier)
	dl := deliver.New(st, deliver.Options{Notify: notifier.Notify})
	mail := mailback.New(st, mailback.Options{Notifier: notifier, Deliverer: dl, Logger: logger.With("part", "xmap")})
	relayTLS, err := relayTLSConfig(cfg.Relay)
	if err != nil {
		return nil, err
	}
	sender, err := outbound.New(ctx, OutboundPath(cfg.Server.DataDir), st, cfg.resolveRecipient, outbound.Config{
		Smarthost:         cfg.Relay.Smarthost,
		StartTLS:          cfg.Relay.StartTLS,
		TLSConfig:         relayTLS,
		Username:          cfg.Relay.Username,
		Password:          cfg.Relay.Password,
		AllowInsecureAuth: cfg.Relay.AllowInsecureAuth,
		Hostname:          cfg.Server.Hostname,
		QueueLifetime:     cfg.Relay.QueueLifetime.Duration,
		MinRetry:          cfg.Relay.MinRetry.Duration,
		MaxRetry:          cfg.Relay.MaxRetry.Duration,
		Concurrency:       cfg.Relay.Concurrency,
		Timeout:           cfg.Relay.Timeout.Duration,
		Deliverer:         dl,
		Logger:            logger.With("part", "outbound"),

		MaxRecipientsPerHour: cfg.Relay.MaxRecipientsPerHour,
	})
	if err != nil {
		return nil, fmt.Errorf("outbound queue: %w", err)
	}
	xs := &xmapserver.Server{Backend: &xmapBackend{acc, mail, sender}, Logger: logger.With("part", "xmap")}
	ma := &mailAccess{mail: mail, deliver: dl, sender: sender}
	ma.sexmap, err = sexmap.NewServer(sexmap.Config{
		StaticKey:        key,
		Accounts:         acc,
		CanonicalAddress: cfg.ServedAddress,
		ClientIP:         clientIP,
		MaxAnonSessions:  h.MaxAnonymousSessions,
		HandshakeLimit:   sexmap.RateLimit{Rate: float64(h.HandshakesPerMinute) / 60, Burst: h.HandshakeBurst},
		BodyTimeout:      h.BodyTimeout.Duration,
		Logger:           logger.With("part", "sexmap"),
	}, sexmap.HandlerFunc(func(ctx context.Context, s *sexmap.Session, req []byte) []byte {
		if s.Fresh {
			// The first request of a login made just now: proof of the login key.
			ctx = xmapserver.WithLoginProof(ctx)
		}
		resp, loggedOut := xs.Serve(ctx, s.Address, s.Anonymous, req)
		if loggedOut {
			ma.sexmap.EndSession(s.ID)
		}
		return resp
	}))
	if err != nil {
		sender.Close()
		return nil, err
	}
	return ma, nil
}

// start runs the outbound queue worker until shutdown.
func (ma *mailAccess) start() {
	ctx, cancel := context.WithCancel(context.Background())
	ma.stop, ma.done = cancel, make(chan struct{})
	go func() {
		defer close(ma.done)
		ma.sender.Run(ctx)
	}()
}

// close stops the worker (relay attempts in flight end) and the queue.
func (ma *mailAccess) close() error {
	if ma.stop != nil {
		ma.stop()
		<-ma.done
	}
	return ma.sender.Close()
}

// resolveRecipient tells the sender whether a recipient is local.
func (c *Config) resolveRecipient(addr string) (string, bool, error) {
	m, err := c.ServedAddress(addr)
	switch {
	case errors.Is(err, ErrDomainNotServed):
		return addr, false, nil
	case err != nil:
		return "", false, err
	}
	return m, true, nil
}

func relayTLSConfig(r RelayConfig) (*tls.Config, error) {
	if r.CAFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(r.CAFile)
	if err != nil {
		return nil, fmt.Errorf("relay.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("relay.ca_file %s: no PEM certificate found", r.CAFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
