package sexmap

import (
	"bytes"
	"container/list"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/flynn/noise"
	"golang.org/x/crypto/curve25519"
)

// ErrUnknownAccount is what Accounts.LoginKey returns for an address that has
// no account. The server treats it exactly like a wrong key.
var ErrUnknownAccount = errors.New("sexmap: unknown account")

// Accounts gives the server the public login key of an account, its
// generation and its device tokens. The address is in the form
// Config.CanonicalAddress returns.
type Accounts interface {
	// LoginKey returns the 32-byte X25519 public login key of address, or an
	// error wrapping ErrUnknownAccount. Any other error is an internal one
	// (HTTP 500) and does not count as a failed login.
	LoginKey(ctx context.Context, address string) (pub []byte, err error)
	// Generation returns an opaque value naming the account's current
	// generation: it must differ once the account has been deleted,
	// re-created, disabled or given a new login key, and be read from where
	// another process's change (the admin CLI) is seen at once. A session
	// is bound to the generation it logged in to and ends on the first
	// request that finds another one. An account that is gone or unusable
	// is an error wrapping ErrUnknownAccount. It is called on every request
	// of a logged-in session, so it must be cheap.
	Generation(ctx context.Context, address string) ([]byte, error)
	// DeviceTokenValid reports whether token is a device token the server
	// issued to a client of address's current generation (see
	// docs/SEXMAP.md, "Device tokens"). The comparison must be constant-time.
	DeviceTokenValid(ctx context.Context, address string, token []byte) (bool, error)
}

// ProofWindow is how long after its XK handshake a session's first request
// counts as made with proof of the login key (Session.Fresh).
const ProofWindow = time.Minute

// Handler serves the requests of established sessions.
type Handler interface {
	// ServeSeXMAP is called with the decrypted body of an authentic, fresh
	// request; its result is sealed and sent back. It may run concurrently
	// for one session. s must not be retained after the call.
	ServeSeXMAP(ctx context.Context, s *Session, request []byte) (response []byte)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, s *Session, request []byte) []byte

// ServeSeXMAP calls f.
func (f HandlerFunc) ServeSeXMAP(ctx context.Context, s *Session, request []byte) []byte {
	return f(ctx, s, request)
}

// Session describes an established session to the Handler.
type Session struct {
	ID        string    // as in the Sexmap-Session header; pass it to EndSession
	Address   string    // canonical account address; "" when Anonymous
	Anonymous bool      // an NK session: no account behind it
	Created   time.Time // when the handshake completed
	// Fresh: this request is the first the session carries, and its XK
	// handshake completed less than ProofWindow ago. Only a client holding
	// the account's current login key can make such a request, so requests
	// that need proof of the login key (change-passphrase) demand it.
	Fresh bool
}

// Config configures a Server. Zero fields take the defaults shown.
type Config struct {
	// StaticKey is the server's static X25519 key pair (LoadOrCreateServerKey).
	StaticKey noise.DHKey
	// Accounts authenticates XK logins.
	Accounts Accounts

	IdleTimeout time.Duration // a session unused this long ends; default 30m
	MaxLifetime time.Duration // a session ends this long after its handshake; default 12h
	// MaxSessions bounds live logged-in (XK) sessions; when a new one would
	// exceed it, the logged-in session idle for longest is ended. Default
	// 100000.
	MaxSessions int
	// MaxAnonSessions bounds live anonymous (NK) sessions, a pool of their
	// own: a new one ends the anonymous session idle for longest, never a
	// logged-in one. Default 10000.
	MaxAnonSessions int
	// HandshakeTimeout bounds the time between XK messages 1 and 3; default 30s.
	HandshakeTimeout time.Duration
	// MaxPendingHandshakes bounds XK handshakes waiting for message 3; when
	// full, message 1 is refused with 503. Default 10000.
	MaxPendingHandshakes int
	// MaxPendingPerIP bounds the pending XK handshakes of one client IP (an
	// IPv6 client by its /64); more get 429 rate-limited. Default 16.
	MaxPendingPerIP int
	// MaxPendingPerNet bounds the pending XK handshakes of one network, an
	// IPv4 /24 or an IPv6 /48, so that whoever holds many addresses of one
	// network (a /48 is 65 536 /64s) cannot fill the table alone; more get
	// 429 rate-limited. Default 256.
	MaxPendingPerNet int
	// HandshakeLimit is the rate of handshakes (NK and XK message 1) per
	// client IP; more get 429 rate-limited. Default 120 at once, then 2 a
	// second.
	HandshakeLimit RateLimit
	// MaxTrackedIPs bounds the per-IP handshake table; the least recently
	// seen IP is dropped first. Default 100000.
	MaxTrackedIPs int
	// MaxBodyBytes bounds a transport request body (counter, request and
	// tag) of a logged-in session; default 32 MiB. Larger bodies get 413.
	MaxBodyBytes int64
	// MaxAnonBodyBytes bounds the transport request body of an anonymous
	// session; default DefaultMaxAnonBodyBytes.
	MaxAnonBodyBytes int64
	// BodyTimeout bounds reading one request body of a logged-in session;
	// default 5m. Handshake and anonymous bodies, which are small, get
	// min(BodyTimeout, 10s). It needs a server whose ResponseWriter supports
	// read deadlines (net/http's does); elsewhere it is not applied.
	BodyTimeout time.Duration
	// RefusalLogInterval: refusals caused by limits (busy, rate-limited) are
	// logged at most once per interval and kind, with a count; default 1m.
	RefusalLogInterval time.Duration

	// Lockout rules failed logins.
	Lockout LockoutPolicy

	// CanonicalAddress maps the address a client sent in XK message 3 to the
	// account key used for Accounts, lock-out and Session.Address; an error
	// is a failed login. Default: lower-case it and check it has the form
	// local@domain with no space or control character. The server wiring
	// passes the metabase's own canonical form here.
	CanonicalAddress func(string) (string, error)
	// ClientIP names the client for lock-out; default DefaultClientIP.
	ClientIP func(*http.Request) string

	Now    func() time.Time // default time.Now
	Rand   io.Reader        // ephemeral keys and ids; default crypto/rand.Reader
	Logger *slog.Logger     // default: discard
}

// NetworkHandshakeFactor is how many clients' worth of handshakes (rate and
// burst of Config.HandshakeLimit) one network, an IPv4 /24 or an IPv6 /48,
// may make together.
const NetworkHandshakeFactor = 8

// DefaultMaxAnonBodyBytes is the default Config.MaxAnonBodyBytes: room for
// the largest sign-up XMAP allows (a 64 KiB public key and a 64 KiB sealed
// key, base64 in XML: 175,519 bytes with the longest address and invite),
// with some margin. A sign-up with a freshly generated key is about 2 KiB, a
// salt lookup a few hundred bytes.
const DefaultMaxAnonBodyBytes = 192 << 10

// Server is the SeXMAP endpoint. It is an http.Handler for PathHandshake,
// PathTransport and PathWellKnown.
type Server struct {
	cfg        Config
	handler    Handler
	rng        io.Reader
	log        *slog.Logger
	fakeSecret []byte
	pubText    []byte // the well-known body

	mu           sync.Mutex
	sessions     map[[IDSize]byte]*session
	idle         list.List // of logged-in *session, least recently used first
	pending      map[[IDSize]byte]*pending
	pendingOrder list.List // of *pending, oldest first
	// Pending handshakes per client IP and per network; only keys with
	// some, so both are bounded by MaxPendingHandshakes.
	pendingByIP  map[string]int
	pendingByNet map[string]int
	byAddress    *failureTable
	byIP         *failureTable

	anonIdle   list.List // of anonymous *session, least recently used first
	handshakes *RateTable
	// netHandshakes limits the handshakes of a whole network (an IPv4 /24,
	// an IPv6 /48) to NetworkHandshakeFactor times one client's: a /48 is
	// 65,536 /64 "clients", each with a full bucket of its own.
	netHandshakes *RateTable
	refusals      *RefusalLog
}

type session struct {
	id       [IDSize]byte
	info     Session
	recv     noise.Cipher // client → server
	send     noise.Cipher // server → client
	window   replayWindow
	lastUsed time.Time
	elem     *list.Element
	gone     bool
	gen      []byte // the account generation logged in to; nil when anonymous
	used     bool   // a request has been accepted
}

type pending struct {
	id      [IDSize]byte
	hs      *noise.HandshakeState
	ip      string
	network string // networkKey(ip)
	created time.Time
	elem    *list.Element
}

// lockedReader serializes reads, because Config.Rand need not be safe for
// concurrent use (a deterministic test reader is not).
type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}

// NewServer checks cfg, fills in defaults and returns a Server that passes
// established sessions' requests to h.
func NewServer(cfg Config, h Handler) (*Server, error) {
	if h == nil {
		return nil, errors.New("sexmap: nil Handler")
	}
	if cfg.Accounts == nil {
		return nil, errors.New("sexmap: Config.Accounts is nil")
	}
	if len(cfg.StaticKey.Private) != dhLen || len(cfg.StaticKey.Public) != dhLen {
		return nil, errors.New("sexmap: Config.StaticKey must be a 32-byte X25519 key pair")
	}
	pub, err := curve25519.X25519(cfg.StaticKey.Private, curve25519.Basepoint)
	if err != nil || subtle.ConstantTimeCompare(pub, cfg.StaticKey.Public) != 1 {
		return nil, errors.New("sexmap: Config.StaticKey's public half does not match its private half")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Minute
	}
	if cfg.MaxLifetime <= 0 {
		cfg.MaxLifetime = 12 * time.Hour
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 100000
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 30 * time.Second
	}
	if cfg.MaxPendingHandshakes <= 0 {
		cfg.MaxPendingHandshakes = 10000
	}
	if cfg.MaxAnonSessions <= 0 {
		cfg.MaxAnonSessions = 10000
	}
	if cfg.MaxPendingPerIP <= 0 {
		cfg.MaxPendingPerIP = 16
	}
	if cfg.MaxPendingPerNet <= 0 {
		cfg.MaxPendingPerNet = 256
	}
	if cfg.HandshakeLimit.Burst <= 0 {
		cfg.HandshakeLimit.Burst = 120
	}
	if cfg.HandshakeLimit.Rate <= 0 {
		cfg.HandshakeLimit.Rate = 2
	}
	if cfg.MaxTrackedIPs <= 0 {
		cfg.MaxTrackedIPs = 100000
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 32 << 20
	}
	if cfg.MaxAnonBodyBytes <= 0 {
		cfg.MaxAnonBodyBytes = DefaultMaxAnonBodyBytes
	}
	if cfg.MaxBodyBytes < CounterSize+TagSize || cfg.MaxAnonBodyBytes < CounterSize+TagSize {
		return nil, fmt.Errorf("sexmap: Config.MaxBodyBytes %d or MaxAnonBodyBytes %d cannot hold a frame", cfg.MaxBodyBytes, cfg.MaxAnonBodyBytes)
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = 5 * time.Minute
	}
	if cfg.RefusalLogInterval <= 0 {
		cfg.RefusalLogInterval = time.Minute
	}
	if err := cfg.Lockout.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.CanonicalAddress == nil {
		cfg.CanonicalAddress = defaultCanonicalAddress
	}
	if cfg.ClientIP == nil {
		cfg.ClientIP = DefaultClientIP
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:        cfg,
		handler:    h,
		rng:        &lockedReader{r: cfg.Rand},
		log:        cfg.Logger,
		fakeSecret: ServerSecret(cfg.StaticKey.Private),
		pubText:    []byte(EncodePublicKey(cfg.StaticKey.Public) + "\n"),
		sessions:   make(map[[IDSize]byte]*session),
		pending:    make(map[[IDSize]byte]*pending),
		byAddress:  newFailureTable(),
		byIP:       newFailureTable(),

		pendingByIP:  make(map[string]int),
		pendingByNet: make(map[string]int),
		handshakes:   NewRateTable(cfg.HandshakeLimit, cfg.MaxTrackedIPs, cfg.Now),
		netHandshakes: NewRateTable(RateLimit{Rate: cfg.HandshakeLimit.Rate * NetworkHandshakeFactor,
			Burst: cfg.HandshakeLimit.Burst * NetworkHandshakeFactor}, cfg.MaxTrackedIPs, cfg.Now),
		refusals: NewRefusalLog(cfg.Logger, cfg.RefusalLogInterval),
	}
	return s, nil
}

// PublicKey returns the server's static public key.
func (s *Server) PublicKey() []byte { return bytes.Clone(s.cfg.StaticKey.Public) }

// FakeSalt returns FakeSalt(ServerSecret(static private key), address): the
// salt to answer for an address without an account.
func (s *Server) FakeSalt(address string) []byte { return FakeSalt(s.fakeSecret, address) }

// Register mounts the server's three paths on mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.Handle(PathHandshake, s)
	mux.Handle(PathTransport, s)
	mux.Handle(PathWellKnown, s)
}

// ServeHTTP serves PathHandshake, PathTransport and PathWellKnown; any other
// path gets 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case PathHandshake:
		s.serveHandshake(w, r)
	case PathTransport:
		s.serveTransport(w, r)
	case PathWellKnown:
		s.serveWellKnown(w, r)
	default:
		reject(w, rejNotFound, 0)
	}
}

func (s *Server) serveWellKnown(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		reject(w, rejMethod, 0)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(s.pubText)
}

// readBody applies the checks every POST shares: method, media type and
// size, in that order. The body is read within a deadline, and the buffer
// grows only as bytes actually arrive: a declared Content-Length is a
// promise of the client, not a reason to allocate.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *rejection) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return nil, &rejMethod
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != ContentType {
		return nil, &rejMediaType
	}
	if r.ContentLength > limit {
		return nil, &rejTooLarge
	}
	timeout := s.cfg.BodyTimeout
	if limit <= s.cfg.MaxAnonBodyBytes {
		timeout = min(timeout, smallBodyTimeout)
	}
	// Not every ResponseWriter supports deadlines (httptest's recorder does
	// not); net/http's server does.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(timeout))
	var buf bytes.Buffer
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	// The body is in: lift the deadline, or net/http's background read would
	// hit it and cancel the request's context while the handler runs.
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, &rejTooLarge
		}
		return nil, &rejBadFrame
	}
	return buf.Bytes(), nil
}

// smallBodyTimeout bounds reading a handshake or anonymous body (at most
// MaxAnonBodyBytes), unless Config.BodyTimeout is shorter.
const smallBodyTimeout = 10 * time.Second

func writeOK(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", "no-store")
	// The length up front: a body over net/http's small buffer would otherwise go out
	// chunked.
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

func (s *Server) serveHandshake(w http.ResponseWriter, r *http.Request) {
	body, rej := s.readBody(w, r, maxHandshakeBody)
	if rej != nil {
		s.refuse(w, r, *rej, 0)
		return
	}
	typ, msg, err := parseHandshake(body)
	if err != nil {
		s.refuse(w, r, rejBadFrame, 0)
		return
	}
	switch typ {
	case frameNKInit:
		s.handshakeNK(w, r, msg)
	case frameXKInit:
		s.handshakeXKInit(w, r, msg)
	case frameXKFinal:
		s.handshakeXKFinal(w, r, msg)
	default: // a server-to-client type sent to the server
		s.refuse(w, r, rejBadFrame, 0)
	}
}

// refuse writes a rejection and logs it at debug level (no body, no ids).
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, rej rejection, retryAfter time.Duration) {
	s.log.Debug("sexmap: request refused", "path", r.URL.Path, "status", rej.status, "code", rej.code, "ip", s.cfg.ClientIP(r))
	reject(w, rej, retryAfter)
}

func (s *Server) newHandshake(p noise.HandshakePattern) (*noise.HandshakeState, error) {
	return noise.NewHandshakeState(noise.Config{
		CipherSuite:   cipherSuite,
		Random:        s.rng,
		Pattern:       p,
		Initiator:     false,
		Prologue:      prologue,
		StaticKeypair: s.cfg.StaticKey,
	})
}

// allowHandshake takes one handshake from the client IP's bucket, or refuses
// the request with 429 rate-limited.
func (s *Server) allowHandshake(w http.ResponseWriter, r *http.Request, ip string) bool {
	ok, wait := s.handshakes.Allow(ip)
	if ok {
		ok, wait = s.netHandshakes.Allow(networkKey(ip))
	}
	if !ok {
		s.refusals.Note("sexmap: handshakes rate-limited", s.cfg.Now(), "ip", ip)
		s.refuse(w, r, rejRateLimited, wait)
	}
	return ok
}

func (s *Server) handshakeNK(w http.ResponseWriter, r *http.Request, msg []byte) {
	if !s.allowHandshake(w, r, s.cfg.ClientIP(r)) {
		return
	}
	hs, err := s.newHandshake(noise.HandshakeNK)
	if err != nil {
		s.internal(w, r, "handshake state", err)
		return
	}
	if payload, _, _, err := hs.ReadMessage(nil, msg); err != nil || len(payload) != 0 {
		s.refuse(w, r, rejBadHandshake, 0)
		return
	}
	out, c1, c2, err := hs.WriteMessage([]byte{frameNKResp}, nil)
	if err != nil || c1 == nil || c2 == nil {
		s.internal(w, r, "NK message 2", err)
		return
	}
	sess, err := s.newSession(c1.Cipher(), c2.Cipher(), "", nil)
	if err != nil {
		s.internal(w, r, "new session", err)
		return
	}
	w.Header().Set(HeaderSession, sess.info.ID)
	writeOK(w, out)
}

func (s *Server) handshakeXKInit(w http.ResponseWriter, r *http.Request, msg []byte) {
	now := s.cfg.Now()
	ip := s.cfg.ClientIP(r)
	s.mu.Lock()
	wait := s.byIP.wait(ip, now, &s.cfg.Lockout)
	s.mu.Unlock()
	if wait > 0 {
		s.refuse(w, r, rejLocked, wait)
		return
	}
	if !s.allowHandshake(w, r, ip) {
		return
	}
	if s.pendingFull(ip, now) { // checked again by addPending; this spares the Diffie-Hellman
		s.refusePendingPerIP(w, r, ip, now)
		return
	}
	hs, err := s.newHandshake(noise.HandshakeXK)
	if err != nil {
		s.internal(w, r, "handshake state", err)
		return
	}
	if payload, _, _, err := hs.ReadMessage(nil, msg); err != nil || len(payload) != 0 {
		s.refuse(w, r, rejBadHandshake, 0)
		return
	}
	out, _, _, err := hs.WriteMessage([]byte{frameXKResp}, nil)
	if err != nil {
		s.internal(w, r, "XK message 2", err)
		return
	}
	id, err := s.addPending(hs, ip, now)
	if errors.Is(err, errPendingPerIP) {
		s.refusePendingPerIP(w, r, ip, now)
		return
	}
	if errors.Is(err, errBusy) {
		s.refusals.Note("sexmap: too many pending handshakes", now, "max", s.cfg.MaxPendingHandshakes)
		s.refuse(w, r, rejBusy, time.Second)
		return
	}
	if err != nil {
		s.internal(w, r, "pending handshake", err)
		return
	}
	w.Header().Set(HeaderHandshake, encodeID(id[:]))
	writeOK(w, out)
}

// dummyLoginKey stands in for the stored key of an unknown account so that
// the comparison runs either way. No client static key equals it: the
// all-zero point makes the "se" Diffie-Hellman fail before we get here.
var dummyLoginKey = make([]byte, dhLen)

func (s *Server) handshakeXKFinal(w http.ResponseWriter, r *http.Request, msg []byte) {
	id, ok := decodeID(r.Header.Get(HeaderHandshake))
	if !ok {
		s.refuse(w, r, rejBadHeader, 0)
		return
	}
	now := s.cfg.Now()
	hs := s.takePending(id, now)
	if hs == nil {
		s.refuse(w, r, rejUnknownHS, 0)
		return
	}
	ip := s.cfg.ClientIP(r)
	s.mu.Lock()
	wait := s.byIP.wait(ip, now, &s.cfg.Lockout)
	s.mu.Unlock()
	if wait > 0 {
		s.refuse(w, r, rejLocked, wait)
		return
	}
	payload, c1, c2, err := hs.ReadMessage(nil, msg)
	if err != nil || c1 == nil || c2 == nil {
		s.refuse(w, r, rejBadHandshake, 0)
		return
	}
	sent, token, err := parseLoginPayload(payload)
	var address string
	if err == nil {
		address, err = s.cfg.CanonicalAddress(sent)
	}
	if err != nil {
		s.loginFailed(w, r, "", "", ip, now)
		return
	}
	lockKey, err := s.lockKey(r.Context(), address, token)
	if err != nil {
		s.internal(w, r, "device token lookup", err)
		return
	}
	s.mu.Lock()
	wait = s.byAddress.wait(lockKey, now, &s.cfg.Lockout)
	s.mu.Unlock()
	if wait > 0 {
		s.refuse(w, r, rejLocked, wait)
		return
	}
	known := 1
	stored, err := s.cfg.Accounts.LoginKey(r.Context(), address)
	switch {
	case errors.Is(err, ErrUnknownAccount):
		stored, known = dummyLoginKey, 0
	case err != nil:
		s.internal(w, r, "login key lookup", err)
		return
	}
	// Unknown and wrong take the same path: one constant-time comparison,
	// one failure count, one identical response.
	if subtle.ConstantTimeCompare(stored, hs.PeerStatic())&known != 1 {
		s.loginFailed(w, r, address, lockKey, ip, now)
		return
	}
	gen, err := s.loginGeneration(r.Context(), address, hs.PeerStatic())
	if errors.Is(err, errKeyChanged) {
		s.loginFailed(w, r, address, lockKey, ip, now)
		return
	}
	if err != nil {
		s.internal(w, r, "account generation", err)
		return
	}
	s.mu.Lock()
	s.byAddress.reset(address)
	s.byAddress.reset(lockKey)
	s.mu.Unlock()
	sess, err := s.newSession(c1.Cipher(), c2.Cipher(), address, gen)
	if err != nil {
		s.internal(w, r, "new session", err)
		return
	}
	s.log.Info("sexmap: login", "address", address, "ip", ip, "device", lockKey != address)
	w.Header().Set(HeaderSession, sess.info.ID)
	writeOK(w, []byte{frameXKOK})
}

// loginGeneration returns the generation a login with the proven key peer
// is bound to. It runs only after the key matched (so unknown and wrong
// logins cost what they always did): the generation, then the key again, so
// that a passphrase changed meanwhile cannot leave a session of the old key
// bound to the new generation. A key that no longer matches is a failed login.
func (s *Server) loginGeneration(ctx context.Context, address string, peer []byte) ([]byte, error) {
	gen, err := s.cfg.Accounts.Generation(ctx, address)
	var again []byte
	if err == nil {
		again, err = s.cfg.Accounts.LoginKey(ctx, address)
	}
	switch {
	case errors.Is(err, ErrUnknownAccount):
		return nil, errKeyChanged
	case err != nil:
		return nil, err
	case subtle.ConstantTimeCompare(again, peer) != 1:
		return nil, errKeyChanged
	}
	return gen, nil
}

// errKeyChanged: the account or its login key changed while a login was
// being checked; the login fails.
var errKeyChanged = errors.New("account changed during the login")

// lockKey names the address lock-out record a login attempt is checked
// against: the address itself, or, for a client presenting a valid device
// token, a record of that token alone, so that a stranger's failures on the
// address do not lock out a client that has logged in before (the IP
// lock-out still applies to everyone). A token that is not valid changes
// nothing.
func (s *Server) lockKey(ctx context.Context, address string, token []byte) (string, error) {
	if token == nil {
		return address, nil
	}
	ok, err := s.cfg.Accounts.DeviceTokenValid(ctx, address, token)
	if errors.Is(err, ErrUnknownAccount) || err == nil && !ok {
		return address, nil
	}
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(token)
	return address + "\x00device " + hex.EncodeToString(sum[:16]), nil
}

// loginFailed counts a failed login against the IP, the address and, when
// the client presented a valid device token, that token's own record
// (lockKey ≠ address): a stolen token buys no more guesses than the address
// lock-out allows.
func (s *Server) loginFailed(w http.ResponseWriter, r *http.Request, address, lockKey, ip string, now time.Time) {
	s.mu.Lock()
	ipFailures := s.byIP.fail(ip, now, &s.cfg.Lockout)
	addrFailures := 0
	if address != "" {
		addrFailures = s.byAddress.fail(address, now, &s.cfg.Lockout)
	}
	deviceFailures := 0
	if lockKey != "" && lockKey != address {
		deviceFailures = s.byAddress.fail(lockKey, now, &s.cfg.Lockout)
	}
	s.mu.Unlock()
	s.log.Warn("sexmap: login failed", "address", address, "ip", ip,
		"address_failures", addrFailures, "ip_failures", ipFailures, "device_failures", deviceFailures)
	reject(w, rejLoginFailed, 0)
}

func (s *Server) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.log.Error("sexmap: internal error", "path", r.URL.Path, "what", what, "err", err)
	reject(w, rejInternal, 0)
}

func (s *Server) serveTransport(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		s.refuse(w, r, rejMethod, 0)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != ContentType {
		s.refuse(w, r, rejMediaType, 0)
		return
	}
	id, ok := decodeID(r.Header.Get(HeaderSession))
	if !ok {
		s.refuse(w, r, rejBadHeader, 0)
		return
	}
	// The session is looked up before the body is read, so a stranger
	// cannot make the server read (and hold) a large body.
	sess := s.lookup(id, s.cfg.Now())
	if sess == nil {
		s.refuse(w, r, rejUnknownSession, 0)
		return
	}
	limit := s.cfg.MaxBodyBytes
	if sess.info.Anonymous {
		limit = s.cfg.MaxAnonBodyBytes
	}
	body, rej := s.readBody(w, r, limit)
	if rej != nil {
		s.refuse(w, r, *rej, 0)
		return
	}
	counter, sealed, err := parseFrame(body)
	if err != nil {
		s.refuse(w, r, rejBadFrame, 0)
		return
	}
	// A cheap look at the window first (as WireGuard does) spares the AEAD
	// for frames that cannot be accepted anyway; only accept() records.
	s.mu.Lock()
	v := sess.window.check(counter)
	s.mu.Unlock()
	if v != counterOK {
		s.refuse(w, r, windowRejection(v), 0)
		return
	}
	plaintext, err := sess.recv.Decrypt(sealed[:0], counter, requestAD(id[:], counter), sealed)
	if err != nil {
		s.refuse(w, r, rejAuthFailed, 0)
		return
	}
	info, rej := s.accept(sess, counter)
	if rej == nil {
		rej = s.checkGeneration(r, sess)
	}
	if rej != nil {
		s.refuse(w, r, *rej, 0)
		return
	}
	ctx := context.WithValue(r.Context(), clientIPKey{}, s.cfg.ClientIP(r))
	response := s.handler.ServeSeXMAP(ctx, &info, plaintext)
	writeOK(w, sealFrame(sess.send, counter, responseAD(id[:], counter), response))
}

func windowRejection(v windowVerdict) rejection {
	if v == counterReplayed {
		return rejReplayed
	}
	return rejTooOld
}

// accept records an authentic frame's counter and refreshes the session's
// idle time; it fails if the counter was taken meanwhile by a parallel
// request or the session ended while the frame was being decrypted.
func (s *Server) accept(sess *session, counter uint64) (Session, *rejection) {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess.gone {
		return Session{}, &rejUnknownSession
	}
	if s.expired(sess, now) {
		s.removeSession(sess, "expired")
		return Session{}, &rejUnknownSession
	}
	if v := sess.window.accept(counter); v != counterOK {
		rej := windowRejection(v)
		return Session{}, &rej
	}
	sess.lastUsed = now
	s.pool(sess.info.Anonymous).MoveToBack(sess.elem)
	info := sess.info
	info.Fresh = !sess.used && !info.Anonymous && now.Sub(info.Created) < ProofWindow
	sess.used = true
	return info, nil
}

// checkGeneration ends a logged-in session whose account is no longer the
// generation it logged in to (deleted, re-created, disabled, new login key),
// whichever process changed it: it asks Accounts on every request.
func (s *Server) checkGeneration(r *http.Request, sess *session) *rejection {
	if sess.gen == nil {
		return nil
	}
	gen, err := s.cfg.Accounts.Generation(r.Context(), sess.info.Address)
	if err != nil && !errors.Is(err, ErrUnknownAccount) {
		s.log.Error("sexmap: internal error", "path", r.URL.Path, "what", "account generation", "err", err)
		return &rejInternal
	}
	if err == nil && subtle.ConstantTimeCompare(gen, sess.gen) == 1 {
		return nil
	}
	s.mu.Lock()
	if !sess.gone {
		s.removeSession(sess, "account changed")
	}
	s.mu.Unlock()
	return &rejUnknownSession
}

func (s *Server) refusePendingPerIP(w http.ResponseWriter, r *http.Request, ip string, now time.Time) {
	s.refusals.Note("sexmap: too many pending handshakes from one IP or network", now, "ip", ip,
		"max_per_ip", s.cfg.MaxPendingPerIP, "max_per_network", s.cfg.MaxPendingPerNet)
	s.refuse(w, r, rejRateLimited, s.cfg.HandshakeTimeout)
}

// pendingFull reports whether ip, or its network, has all the pending
// handshakes it may have.
func (s *Server) pendingFull(ip string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expirePending(now)
	return s.pendingByIP[ip] >= s.cfg.MaxPendingPerIP || s.pendingByNet[networkKey(ip)] >= s.cfg.MaxPendingPerNet
}

var (
	errBusy         = errors.New("too many pending handshakes")
	errPendingPerIP = errors.New("too many pending handshakes from one client")
)

func (s *Server) addPending(hs *noise.HandshakeState, ip string, now time.Time) ([IDSize]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expirePending(now)
	network := networkKey(ip)
	if s.pendingByIP[ip] >= s.cfg.MaxPendingPerIP || s.pendingByNet[network] >= s.cfg.MaxPendingPerNet {
		return [IDSize]byte{}, errPendingPerIP
	}
	if len(s.pending) >= s.cfg.MaxPendingHandshakes {
		return [IDSize]byte{}, errBusy
	}
	id, err := s.newID(func(id [IDSize]byte) bool { return s.pending[id] != nil })
	if err != nil {
		return id, err
	}
	p := &pending{id: id, hs: hs, ip: ip, network: network, created: now}
	p.elem = s.pendingOrder.PushBack(p)
	s.pending[id] = p
	s.pendingByIP[ip]++
	s.pendingByNet[network]++
	return id, nil
}

// expirePending drops the pending handshakes older than HandshakeTimeout.
// Callers hold s.mu.
func (s *Server) expirePending(now time.Time) {
	for e := s.pendingOrder.Front(); e != nil; e = s.pendingOrder.Front() {
		p := e.Value.(*pending)
		if now.Sub(p.created) < s.cfg.HandshakeTimeout {
			break
		}
		s.removePending(p)
	}
}

// takePending removes and returns a live pending handshake: each gets one
// chance at message 3.
func (s *Server) takePending(id [IDSize]byte, now time.Time) *noise.HandshakeState {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending[id]
	if p == nil {
		return nil
	}
	s.removePending(p)
	if now.Sub(p.created) >= s.cfg.HandshakeTimeout {
		return nil
	}
	return p.hs
}

func (s *Server) removePending(p *pending) {
	s.pendingOrder.Remove(p.elem)
	delete(s.pending, p.id)
	if s.pendingByIP[p.ip]--; s.pendingByIP[p.ip] <= 0 {
		delete(s.pendingByIP, p.ip)
	}
	if s.pendingByNet[p.network]--; s.pendingByNet[p.network] <= 0 {
		delete(s.pendingByNet, p.network)
	}
}

// newID draws random ids until one is not taken (a collision of 128-bit
// random ids is not expected; the loop only makes it harmless).
func (s *Server) newID(taken func([IDSize]byte) bool) ([IDSize]byte, error) {
	for {
		var id [IDSize]byte
		if _, err := io.ReadFull(s.rng, id[:]); err != nil {
			return id, err
		}
		if !taken(id) {
			return id, nil
		}
	}
}

func (s *Server) newSession(recv, send noise.Cipher, address string, gen []byte) (*session, error) {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.makeRoom(address == "", now)
	id, err := s.newID(func(id [IDSize]byte) bool { return s.sessions[id] != nil })
	if err != nil {
		return nil, err
	}
	sess := &session{
		id:       id,
		info:     Session{ID: encodeID(id[:]), Address: address, Anonymous: address == "", Created: now},
		recv:     recv,
		send:     send,
		lastUsed: now,
		gen:      gen,
	}
	sess.elem = s.pool(sess.info.Anonymous).PushBack(sess)
	s.sessions[id] = sess
	return sess, nil
}

// pool is the idle list of the logged-in or of the anonymous sessions.
func (s *Server) pool(anonymous bool) *list.List {
	if anonymous {
		return &s.anonIdle
	}
	return &s.idle
}

// makeRoom ends expired sessions, then as many of the idlest sessions of the
// same pool as needed for one more. The pools are separate, so anonymous
// sessions, which anyone can open, never end a logged-in one. Callers hold
// s.mu.
func (s *Server) makeRoom(anonymous bool, now time.Time) {
	pool, max := s.pool(anonymous), s.cfg.MaxSessions
	if anonymous {
		max = s.cfg.MaxAnonSessions
	}
	// Idle-expired sessions gather at the front of their idle list.
	for e := pool.Front(); e != nil; e = pool.Front() {
		if old := e.Value.(*session); s.expired(old, now) {
			s.removeSession(old, "expired")
			continue
		}
		break
	}
	for pool.Len() >= max {
		s.removeSession(pool.Front().Value.(*session), "evicted")
	}
}

func (s *Server) expired(sess *session, now time.Time) bool {
	return !now.Before(sess.lastUsed.Add(s.cfg.IdleTimeout)) || !now.Before(sess.info.Created.Add(s.cfg.MaxLifetime))
}

func (s *Server) lookup(id [IDSize]byte, now time.Time) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[id]
	if sess == nil {
		return nil
	}
	if s.expired(sess, now) {
		s.removeSession(sess, "expired")
		return nil
	}
	return sess
}

func (s *Server) removeSession(sess *session, why string) {
	s.pool(sess.info.Anonymous).Remove(sess.elem)
	delete(s.sessions, sess.id)
	sess.gone = true
	s.log.Debug("sexmap: session ended", "why", why, "anonymous", sess.info.Anonymous, "address", sess.info.Address)
}

// EndSession ends the session with the given id (Session.ID) at once, as
// LOGOUT does; a request already past authentication still gets its answer.
// Unknown ids are ignored.
func (s *Server) EndSession(id string) {
	raw, ok := decodeID(id)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess := s.sessions[raw]; sess != nil {
		s.removeSession(sess, "ended")
	}
}

// defaultCanonicalAddress lower-cases an address and checks its rough shape.
func defaultCanonicalAddress(a string) (string, error) {
	a = strings.ToLower(a)
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 || len(a) > MaxAddressBytes {
		return "", errors.New("not an address")
	}
	for _, r := range a {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError {
			return "", errors.New("not an address")
		}
	}
	return a, nil
}
