// Package lmtp accepts mail over LMTP (RFC 2033) from an MTA, and over SMTP
// (RFC 5321) as the MX of the served domains, and hands every message, one
// recipient at a time, to a Backend that makes it durable.
//
// The wire protocol is github.com/emersion/go-smtp. What a Backend receives
// is the message exactly as the client sent it, with only the transparency
// procedure of RFC 5321 section 4.5.2 undone (that is go-smtp's dataReader):
//
//   - line endings are passed through unchanged: CRLF stays CRLF, and a bare
//     LF or CR is not rewritten;
//   - one leading "." is removed from every line that starts with one (a line
//     starts after CRLF only), and the terminating ".\r\n" is not included;
//   - nothing else is touched: no header is added (Envelope carries what a
//     Received: line needs), 8-bit, UTF-8 and malformed MIME arrive as is.
//
// With BDAT (CHUNKING, which go-smtp always advertises) the chunks are passed
// through byte for byte with no dot handling at all.
//
// Reply codes are decided in one place (codes.go); the text of an internal
// error is logged, never sent to the client.
package lmtp

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// Backend is what the listeners deliver into. The server package implements it
// by encrypting and storing; this package knows nothing of either.
type Backend interface {
	// Resolve is called at RCPT time with the address as the client gave it
	// (already without <>). It returns the canonical mailbox (for example
	// "alice+news@Example.org" → "alice@example.org") or an error wrapping one
	// of ErrBadAddress (501 5.1.3), ErrDomainNotServed (LMTP: 550 5.1.2; SMTP:
	// 550 5.7.1 relaying denied), ErrUnknownUser (550 5.1.1), ErrBusy
	// (451 4.3.2); anything else gives 451 4.3.0.
	Resolve(ctx context.Context, rcpt string) (mailbox string, err error)

	// Deliver makes msg durable for one recipient and returns nil only then.
	// Errors: ErrBusy (451 4.3.2), ErrNoSpace (452 4.3.1), ErrMailboxFull
	// (452 4.2.2, over the recipient's quota), ErrUnknownUser
	// (550 5.1.1, the user was deleted meanwhile), ErrTooLarge (552 5.3.4,
	// the message as stored would be over what the mailbox can hold);
	// anything else gives 451 4.3.0.
	//
	// Deliver is called concurrently for the recipients of one message: env
	// and msg are shared between those calls and must not be modified. msg
	// must not be kept after Deliver returns: once every recipient's Deliver
	// has returned, its buffer is wiped and reused for a later message.
	Deliver(ctx context.Context, env *Envelope, rcpt Recipient, msg []byte) error
}

// Recipient is one accepted RCPT.
type Recipient struct {
	Address string // as the client gave it, without <>
	Mailbox string // canonical, from Backend.Resolve
}

// Envelope describes one mail transaction. It is shared by all the Deliver
// calls of that transaction.
type Envelope struct {
	ID         string // per transaction, also in the success reply and the logs
	From       string // MAIL FROM, "" for the null sender (bounces)
	Protocol   string // Received "with" value: LMTP, ESMTP, ESMTPS, UTF8LMTP, UTF8SMTP, UTF8SMTPS (RFC 3848, RFC 6531)
	Helo       string // the LHLO/EHLO/HELO argument
	RemoteAddr string
	TLS        bool
	Received   time.Time // when the end of the message was read
	Hostname   string    // ours, from Config.Hostname
}

// Errors a Backend wraps (with %w) to choose the reply; see Backend.
var (
	ErrBadAddress      = errors.New("lmtp: bad address")
	ErrDomainNotServed = errors.New("lmtp: domain not served")
	ErrUnknownUser     = errors.New("lmtp: unknown user")
	ErrBusy            = errors.New("lmtp: temporarily busy")
	ErrNoSpace         = errors.New("lmtp: no space left")
	ErrMailboxFull     = errors.New("lmtp: mailbox full")
	ErrTooLarge        = errors.New("lmtp: message too large")
)

// ErrServerClosed is returned by Serve after Shutdown was called, and by a
// second Shutdown.
var ErrServerClosed = errors.New("lmtp: server closed")

// Config configures a Server. A zero value means the documented default.
type Config struct {
	// Hostname is our name, in the greeting and in Envelope.Hostname.
	// Default: os.Hostname, else "localhost".
	Hostname string

	// MaxMessageBytes is the largest message accepted, counted after dot
	// unstuffing; larger gets 552 5.3.4 for every recipient. Default 32 MiB.
	// The SIZE advertised in the LHLO/EHLO reply is one more than this (see
	// NewLMTP for why); a MAIL SIZE= above this is refused with 552 5.3.4.
	MaxMessageBytes int64

	// MaxRecipients is the number of RCPTs accepted per transaction; excess
	// RCPTs get 452 4.5.3 (the client sends them in a further transaction).
	// Default 1000.
	MaxRecipients int

	// ReadTimeout is how long the server waits for a command line, and for
	// each further piece of a message during DATA (an idle timeout, not a
	// limit on the whole transfer). A silent client gets 421 4.4.2 and is
	// disconnected. Default 5 minutes (RFC 5321 section 4.5.3.2.7).
	ReadTimeout time.Duration
	// WriteTimeout bounds each reply write. Default 5 minutes.
	WriteTimeout time.Duration

	// MaxConnections limits concurrent connections; 0 means unlimited. An
	// excess connection gets 421 4.7.0 and is closed.
	MaxConnections int

	// TLSConfig enables STARTTLS on the SMTP listener. It is ignored for
	// LMTP, which is meant for a local MTA.
	TLSConfig *tls.Config

	// Logger receives connection and delivery events and internal errors,
	// never message content. Default slog.Default().
	Logger *slog.Logger

	// Parallel is how many recipients of one message are delivered
	// concurrently. Default 4.
	Parallel int

	// DeliveryTimeout bounds each Backend call (one Resolve, one Deliver).
	// Default 2 minutes, well under the MTA's own wait for the DATA replies
	// (Postfix: lmtp_data_done_timeout, 600s).
	DeliveryTimeout time.Duration
}

const (
	defaultMaxMessageBytes = 32 << 20
	defaultMaxRecipients   = 1000
	defaultTimeout         = 5 * time.Minute
	defaultParallel        = 4
	defaultDeliveryTimeout = 2 * time.Minute
	maxLineLength          = 2000 // go-smtp's default: twice RFC 5321's 1000
)

func (c Config) withDefaults() Config {
	if c.Hostname == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			c.Hostname = h
		} else {
			c.Hostname = "localhost"
		}
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = defaultMaxMessageBytes
	}
	if c.MaxRecipients <= 0 {
		c.MaxRecipients = defaultMaxRecipients
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = defaultTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = defaultTimeout
	}
	if c.MaxConnections < 0 {
		c.MaxConnections = 0
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Parallel <= 0 {
		c.Parallel = defaultParallel
	}
	if c.DeliveryTimeout <= 0 {
		c.DeliveryTimeout = defaultDeliveryTimeout
	}
	return c
}

// Server is one LMTP or SMTP listener set. Serve may be called for several
// listeners; Shutdown stops them all.
type Server struct {
	be    Backend
	cfg   Config
	lmtp  bool
	log   *slog.Logger
	inner *smtp.Server

	// baseCtx parents every Backend call; it is cancelled when Shutdown gives
	// up waiting (or has finished).
	baseCtx context.Context
	cancel  context.CancelFunc

	closing atomic.Bool
	mu      sync.Mutex
	conns   map[*trackedConn]struct{}
}

// NewLMTP returns an LMTP server (RFC 2033): one reply per recipient after
// DATA, each reflecting that recipient's own Deliver.
func NewLMTP(b Backend, cfg Config) *Server {
	cfg.TLSConfig = nil
	return newServer(b, cfg, true)
}

// NewSMTP returns an SMTP server acting as the MX of the domains Backend
// serves: it never relays (550 5.7.1), offers no AUTH, and offers STARTTLS
// when cfg.TLSConfig is set. DATA gets a single reply; see Server.Serve.
func NewSMTP(b Backend, cfg Config) *Server {
	return newServer(b, cfg, false)
}

func newServer(b Backend, cfg Config, lmtpMode bool) *Server {
	cfg = cfg.withDefaults()
	s := &Server{
		be:    b,
		cfg:   cfg,
		lmtp:  lmtpMode,
		log:   cfg.Logger,
		conns: make(map[*trackedConn]struct{}),
	}
	s.baseCtx, s.cancel = context.WithCancel(context.Background())

	in := smtp.NewServer(smtp.BackendFunc(s.newSession))
	in.LMTP = lmtpMode
	in.Domain = cfg.Hostname
	in.MaxRecipients = cfg.MaxRecipients
	// go-smtp's dataReader checks its limit before it has seen the
	// terminating dot, so with a limit of N a message of exactly N bytes is
	// refused. One byte of slack plus our own check in readMessage makes N
	// the exact limit; the price is that SIZE advertises N+1.
	in.MaxMessageBytes = cfg.MaxMessageBytes + 1
	in.MaxLineLength = maxLineLength
	in.ReadTimeout = cfg.ReadTimeout
	in.WriteTimeout = cfg.WriteTimeout
	in.TLSConfig = cfg.TLSConfig
	in.EnableSMTPUTF8 = true
	in.ErrorLog = errorLog{cfg.Logger}
	s.inner = in
	return s
}

// Serve accepts connections on l until Shutdown and then returns
// ErrServerClosed at once (like net/http); wait for Shutdown to return to
// know that the deliveries in flight have finished. l is closed by Shutdown.
//
// For SMTP, a DATA with several recipients gets one reply: 250 only if every
// Deliver succeeded; 550 (the first recipient's code) if every one failed
// permanently; otherwise a 4xx so that the client retries the whole message.
// A retry means duplicates for the recipients that did get it: we prefer
// duplicates to loss, and a recipient that failed permanently is then refused
// at RCPT (and bounced by the client) on the retry.
func (s *Server) Serve(l net.Listener) error {
	if s.closing.Load() {
		l.Close()
		return ErrServerClosed
	}
	err := s.inner.Serve(&listener{Listener: l, srv: s})
	if s.closing.Load() {
		return ErrServerClosed
	}
	return err
}

// Shutdown stops accepting connections, lets every DATA in flight finish
// (its deliveries and replies), closes every other connection (idle ones get
// 421 4.4.2; a new MAIL gets 421 4.3.2) and returns once all connections are
// gone. If ctx ends first, the contexts of the Backend calls in flight are
// cancelled, the remaining connections are closed (their clients saw no 250
// and will retry), and ctx.Err() is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.closing.Store(true)
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.kick()
	}

	// go-smtp's Shutdown closes the listeners and waits for every
	// connection goroutine; ours above made the idle ones end.
	err := s.inner.Shutdown(ctx)
	if ctxErr := ctx.Err(); ctxErr != nil {
		s.cancel()
		// go-smtp's Close is a no-op once Shutdown ran, so close the
		// connections ourselves.
		s.mu.Lock()
		conns = conns[:0]
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		return ctxErr
	}
	s.cancel()
	if errors.Is(err, smtp.ErrServerClosed) {
		return ErrServerClosed
	}
	return err
}

// newSession is go-smtp's Backend: one session per connection (and a fresh
// one after STARTTLS).
func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	if s.closing.Load() {
		return nil, replyShuttingDown
	}
	return &session{srv: s, conn: c, tc: trackedOf(c.Conn())}, nil
}

// errorLog adapts slog to go-smtp's Logger, which reports connection-level
// failures and recovered panics (never message content).
type errorLog struct{ l *slog.Logger }

func (e errorLog) Printf(format string, v ...any) {
	e.l.Warn("smtp: "+sprintf(format, v...), slog.String("source", "go-smtp"))
}

func (e errorLog) Println(v ...any) {
	e.l.Warn("smtp: "+sprintln(v...), slog.String("source", "go-smtp"))
}
