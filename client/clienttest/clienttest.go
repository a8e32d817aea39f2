// Package clienttest runs a real CryptoMail protocol stack in process for the tests of
// the client and of cmail: an httptest server carrying SeXMAP (sexmap.Server) in front of
// the XMAP dispatcher (xmapserver.Server) and a backend, by default the in-memory
// memback. Only the HTTP listener is fake in the sense of httptest: every byte goes over
// a real loopback socket through the real handshake, framing and XML codec.
//
// Tests that want another backend (the shard storage) set Options.Backend, Accounts,
// Invite and Deliver.
package clienttest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	cmcrypto "cryptomail/crypto"
	"cryptomail/xmap"
	"cryptomail/xmap/sexmap"
	"cryptomail/xmap/xmapserver"
	"cryptomail/xmap/xmapserver/memback"

	"github.com/flynn/noise"
	"golang.org/x/crypto/curve25519"
)

// Options configure a Server. The zero value runs memback.
type Options struct {
	// Backend answers XMAP; nil means a new memback.Backend (see Server.Memback).
	Backend xmapserver.Backend
	// Accounts gives SeXMAP the login keys; nil reads them from the memback backend.
	Accounts sexmap.Accounts
	// Invite issues an invite code for an address; nil uses memback.AddInvite.
	Invite func(ctx context.Context, address string) (string, error)
	// Deliver stores an arriving message (already encrypted body and summary) in an
	// address's INBOX, as LMTP delivery does; nil uses memback.Deliver.
	Deliver func(ctx context.Context, address string, body, summary []byte) (string, error)
	// PublicKey returns the stored OpenPGP public key of an address, for Deliver to
	// encrypt to; nil reads it from memback.
	PublicKey func(ctx context.Context, address string) ([]byte, error)
	// IdleTimeout and MaxLifetime of SeXMAP sessions; zero: sexmap's defaults.
	IdleTimeout, MaxLifetime time.Duration
	// Lockout and ClientIP go to sexmap.Config; zero: sexmap's defaults.
	Lockout  sexmap.LockoutPolicy
	ClientIP func(*http.Request) string
}

// Server is a running test server. Close it when done.
type Server struct {
	URL string
	// Memback is the in-memory backend when Options.Backend was nil.
	Memback *memback.Backend

	opts    Options
	backend xmapserver.Backend
	http    *httptest.Server
	sx      atomic.Pointer[sexmap.Server]
	clock   *Clock
	invites atomic.Int64
}

// Clock is the servers' settable clock: sessions expire when it is advanced. It runs with
// the real clock (plus what Advance added), because the clients it serves make keys with
// the real time: a clock that stood still would find such a key "not valid yet" once a
// second boundary passed.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().UTC().Add(c.offset)
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// New starts a server on 127.0.0.1.
func New(opts Options) (*Server, error) {
	s := &Server{opts: opts, clock: &Clock{}}
	if opts.Backend == nil {
		// Made-up salts answer the cheapest allowed parameters, so tests that look up
		// unknown addresses do not pay for RFC 9106's defaults.
		min := sexmap.MinKDFParams
		s.Memback = memback.New(memback.Options{
			Now:          s.clock.Now,
			LocalDomains: []string{"example.org"},
			DefaultKDF:   xmap.KDF{Alg: xmap.KDFArgon2id, Time: min.Time, Memory: min.MemoryKiB, Threads: min.Threads},
		})
		s.backend = s.Memback
	} else {
		s.backend = opts.Backend
	}
	if opts.Accounts == nil {
		if s.Memback == nil {
			return nil, errors.New("clienttest: Options.Accounts is required with a Backend")
		}
		s.opts.Accounts = membackAccounts{s.Memback}
	}
	if err := s.RotateKey(); err != nil {
		return nil, err
	}
	s.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.sx.Load().ServeHTTP(w, r)
	}))
	s.URL = s.http.URL
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { s.http.Close() }

// Clock returns the servers' clock.
func (s *Server) Clock() *Clock { return s.clock }

// RotateKey replaces the server's static key (a re-installed server): every session
// ends, and clients that pinned the old key must refuse the new one.
func (s *Server) RotateKey() error {
	priv := make([]byte, 32)
	if _, err := io.ReadFull(rand.Reader, priv); err != nil {
		return err
	}
	pub, err := curve25519.X25519(priv, curve25519.Basepoint)
	if err != nil {
		return err
	}
	xs := &xmapserver.Server{Backend: s.backend, Logger: slog.New(slog.DiscardHandler)}
	var sx *sexmap.Server
	sx, err = sexmap.NewServer(sexmap.Config{
		StaticKey:   noise.DHKey{Private: priv, Public: pub},
		Accounts:    s.opts.Accounts,
		IdleTimeout: s.opts.IdleTimeout,
		MaxLifetime: s.opts.MaxLifetime,
		Lockout:     s.opts.Lockout,
		ClientIP:    s.opts.ClientIP,
		Now:         s.clock.Now,
		Logger:      slog.New(slog.DiscardHandler),
	}, sexmap.HandlerFunc(func(ctx context.Context, sess *sexmap.Session, req []byte) []byte {
		if sess.Fresh {
			// The first request of a login made just now: proof of the login key.
			ctx = xmapserver.WithLoginProof(ctx)
		}
		resp, loggedOut := xs.Serve(ctx, sess.Address, sess.Anonymous, req)
		if loggedOut {
			sx.EndSession(sess.ID)
		}
		return resp
	}))
	if err != nil {
		return err
	}
	s.sx.Store(sx)
	return nil
}

// PublicKey returns the server's current static public key.
func (s *Server) PublicKey() []byte { return s.sx.Load().PublicKey() }

// EndSession ends a SeXMAP session at once, as an expiry would.
func (s *Server) EndSession(id string) { s.sx.Load().EndSession(id) }

// Invite returns a fresh invite code for address, valid for a day.
func (s *Server) Invite(ctx context.Context, address string) (string, error) {
	if s.opts.Invite != nil {
		return s.opts.Invite(ctx, address)
	}
	code := fmt.Sprintf("INVITE-%d-%s", s.invites.Add(1), randomHex(6))
	s.Memback.AddInvite(code, address, s.clock.Now().Add(24*time.Hour))
	return code, nil
}

// AddUser pre-creates an account with a public key, as `cryptomail user add
// --public-key` does; it can receive mail and be activated by a signup with the key.
func (s *Server) AddUser(address string, publicKey []byte) error {
	if s.Memback == nil {
		return errors.New("clienttest: AddUser needs the memback backend")
	}
	return s.Memback.AddUser(address, publicKey)
}

// Deliver encrypts a raw RFC 5322 message to the recipient's stored key and stores it in
// the INBOX, exactly as the LMTP delivery path does (crypto.Sealer.Seal), and returns the
// message id.
func (s *Server) Deliver(ctx context.Context, address string, raw []byte) (string, error) {
	var pub []byte
	var err error
	switch {
	case s.opts.PublicKey != nil:
		pub, err = s.opts.PublicKey(ctx, address)
	case s.Memback != nil:
		cred, ok := s.Memback.Credentials(address)
		if !ok {
			return "", fmt.Errorf("clienttest: no account %s", address)
		}
		pub = cred.PublicKey
	default:
		return "", errors.New("clienttest: Deliver needs Options.PublicKey with a Backend")
	}
	if err != nil {
		return "", err
	}
	key, err := cmcrypto.ParsePublicKey(pub, s.clock.Now())
	if err != nil {
		return "", err
	}
	body, summary, err := (&cmcrypto.Sealer{}).Seal(key, raw)
	if err != nil {
		return "", err
	}
	if s.opts.Deliver != nil {
		return s.opts.Deliver(ctx, address, body, summary)
	}
	return s.Memback.Deliver(ctx, address, body, summary, time.Time{})
}

type membackAccounts struct{ b *memback.Backend }

func (a membackAccounts) LoginKey(_ context.Context, address string) ([]byte, error) {
	c, ok := a.b.Credentials(address)
	if !ok || !c.Active || len(c.LoginKey) == 0 {
		return nil, sexmap.ErrUnknownAccount
	}
	return c.LoginKey, nil
}

func (a membackAccounts) Generation(_ context.Context, address string) ([]byte, error) {
	g, ok := a.b.Generation(address)
	if !ok {
		return nil, sexmap.ErrUnknownAccount
	}
	return g, nil
}

func (a membackAccounts) DeviceTokenValid(_ context.Context, address string, token []byte) (bool, error) {
	return a.b.DeviceTokenValid(address, token), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		panic("clienttest: no randomness: " + err.Error())
	}
	return fmt.Sprintf("%x", b)
}
