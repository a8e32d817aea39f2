package outbound

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// outcome is what one attempt did for one recipient.
type outcome int

const (
	undecided outcome = iota // not reached: the attempt broke off before
	delivered                // the relay took it
	temporary                // try again later
	permanent                // bounce
)

type rcptResult struct {
	kind  outcome
	code  string // RFC 3463 status for a bounce
	reply string // the relay's reply, cleaned; "" if it gave none
	// reason says in fixed words (fit for the queue and a bounce, never
	// an internal error text) what went wrong when there is no reply.
	reason string
}

// relayResult is the outcome of one attempt at relaying a queued message.
type relayResult struct {
	rcpts []rcptResult
	// connErr is set when the attempt broke off before deciding every
	// recipient: the reason given to those.
	connErr string
}

// relayError is a failure before any recipient was decided: public is fit
// for the queue and the bounce, err is for the log only.
type relayError struct {
	public string
	err    error
}

func (e *relayError) Error() string { return e.public + ": " + e.err.Error() }
func (e *relayError) Unwrap() error { return e.err }

// relay makes one attempt at handing body to the smarthost for to.
func (s *Sender) relay(ctx context.Context, from string, to []string, body []byte) relayResult {
	res := relayResult{rcpts: make([]rcptResult, len(to))}
	finish := func(public string) relayResult {
		for i := range res.rcpts {
			if res.rcpts[i].kind == undecided {
				res.rcpts[i] = rcptResult{kind: temporary, reason: public}
				res.connErr = public
			}
		}
		return res
	}
	if s.cfg.Smarthost == "" {
		return finish("no mail relay is configured on this server")
	}
	c, err := s.connect(ctx)
	if err != nil {
		s.log.Warn("outbound: relay attempt failed", "relay", s.cfg.Smarthost, "err", err)
		var re *relayError
		if errors.As(err, &re) {
			return finish(re.public)
		}
		return finish("could not connect to the mail relay")
	}
	defer c.Close()
	// Shutdown must not wait for a slow relay: closing the connection makes
	// the command in progress fail at once.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	const broken = "the connection to the mail relay failed"
	// Addresses beyond ASCII need SMTPUTF8 (RFC 6531); without it they
	// cannot be relayed at all.
	noUTF8 := rcptResult{kind: permanent, code: "5.6.7",
		reason: "the mail relay does not support internationalized addresses (SMTPUTF8)"}
	utf8OK, _ := c.Extension("SMTPUTF8")
	opts := &smtp.MailOptions{Size: int64(len(body)), UTF8: utf8OK && !isASCII(from)}
	if !isASCII(from) && !utf8OK {
		for i := range res.rcpts {
			res.rcpts[i] = noUTF8
		}
		c.Quit()
		return res
	}
	left := 0
	for i, addr := range to {
		switch {
		case isASCII(addr):
			left++
		case utf8OK:
			opts.UTF8 = true
			left++
		default:
			res.rcpts[i] = noUTF8
		}
	}
	if left == 0 {
		c.Quit()
		return res
	}
	if err := c.Mail(from, opts); err != nil {
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			s.log.Warn("outbound: relay connection failed", "relay", s.cfg.Smarthost, "err", err)
			return finish(broken)
		}
		r := classify(se)
		for i := range res.rcpts {
			if res.rcpts[i].kind == undecided {
				res.rcpts[i] = r
			}
		}
		c.Quit()
		return res
	}
	var accepted []int
	for i, addr := range to {
		if res.rcpts[i].kind != undecided {
			continue
		}
		err := c.Rcpt(addr, nil)
		if err == nil {
			accepted = append(accepted, i)
			continue
		}
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			s.log.Warn("outbound: relay connection failed", "relay", s.cfg.Smarthost, "err", err)
			return finish(broken)
		}
		res.rcpts[i] = classify(se)
	}
	if len(accepted) == 0 {
		c.Quit()
		return res
	}
	setAll := func(r rcptResult) {
		for _, i := range accepted {
			res.rcpts[i] = r
		}
	}
	dataErr := func(err error) relayResult {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			setAll(classify(se))
			return res
		}
		s.log.Warn("outbound: relay connection failed", "relay", s.cfg.Smarthost, "err", err)
		return finish(broken)
	}
	w, err := c.Data()
	if err != nil {
		return dataErr(err)
	}
	if _, err := w.Write(body); err != nil {
		return dataErr(err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return dataErr(err)
	}
	setAll(rcptResult{kind: delivered, reply: cleanReply("250 " + resp.StatusText)})
	c.Quit()
	return res
}

// classify maps a relay reply to an outcome: 5xx bounces, anything else
// is tried again.
func classify(se *smtp.SMTPError) rcptResult {
	r := rcptResult{kind: temporary, reply: replyText(se)}
	if se.Code >= 500 && se.Code < 600 {
		r.kind = permanent
		r.code = "5.0.0"
		if e := se.EnhancedCode; e[0] == 5 && e[1] >= 0 && e[2] >= 0 && e[1] < 1000 && e[2] < 1000 {
			r.code = fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
		}
	}
	return r
}

// replyText renders a reply as the relay sent it: code, enhanced code, text.
func replyText(se *smtp.SMTPError) string {
	e := se.EnhancedCode
	if e == smtp.EnhancedCodeNotSet || e == smtp.NoEnhancedCode {
		return cleanReply(fmt.Sprintf("%03d %s", se.Code, se.Message))
	}
	return cleanReply(fmt.Sprintf("%03d %d.%d.%d %s", se.Code, e[0], e[1], e[2], se.Message))
}

// connect dials the smarthost and runs the greeting, STARTTLS and AUTH as
// configured. Its errors are *relayError.
func (s *Sender) connect(ctx context.Context) (*smtp.Client, error) {
	dial := func() (net.Conn, error) {
		d := net.Dialer{Timeout: dialTimeout}
		conn, err := d.DialContext(ctx, "tcp", s.cfg.Smarthost)
		if err != nil {
			return nil, &relayError{"could not connect to the mail relay", err}
		}
		return conn, nil
	}
	var c *smtp.Client
	var err error
	switch s.cfg.StartTLS {
	case StartTLSOff:
		c, err = s.plain(ctx, dial)
	case StartTLSRequired:
		c, err = s.startTLS(ctx, dial)
	case StartTLSOpportunistic:
		c, err = s.startTLS(ctx, dial)
		if err != nil {
			// Opportunistic TLS: a relay without STARTTLS, or a failed
			// handshake, means going on in clear on a new connection.
			s.log.Info("outbound: STARTTLS with the relay failed; going on without TLS", "relay", s.cfg.Smarthost, "err", err)
			c, err = s.plain(ctx, dial)
		}
	}
	if err != nil {
		return nil, err
	}
	if err := s.auth(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (s *Sender) newClient(conn net.Conn) *smtp.Client {
	c := smtp.NewClient(conn)
	s.setTimeouts(c)
	return c
}

func (s *Sender) setTimeouts(c *smtp.Client) {
	c.CommandTimeout = s.cfg.Timeout
	c.SubmissionTimeout = 2 * s.cfg.Timeout
}

// watch closes conn when ctx ends, until the returned func is called.
func watch(ctx context.Context, conn net.Conn) func() bool {
	return context.AfterFunc(ctx, func() { conn.Close() })
}

func (s *Sender) plain(ctx context.Context, dial func() (net.Conn, error)) (*smtp.Client, error) {
	conn, err := dial()
	if err != nil {
		return nil, err
	}
	defer watch(ctx, conn)()
	c := s.newClient(conn)
	if err := c.Hello(s.cfg.Hostname); err != nil {
		c.Close()
		return nil, greetingError(err)
	}
	return c, nil
}

func (s *Sender) startTLS(ctx context.Context, dial func() (net.Conn, error)) (*smtp.Client, error) {
	conn, err := dial()
	if err != nil {
		return nil, err
	}
	defer watch(ctx, conn)()
	// go-smtp has no STARTTLS on a client that said hello itself, so the
	// EHLO before STARTTLS names "localhost" (and runs with go-smtp's
	// default timeouts); the one after names us.
	c, err := smtp.NewClientStartTLS(conn, s.cfg.TLSConfig)
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return nil, greetingError(err)
		}
		return nil, &relayError{"could not start TLS with the mail relay", err}
	}
	s.setTimeouts(c)
	// The handshake runs with this first command over TLS.
	if err := c.Hello(s.cfg.Hostname); err != nil {
		c.Close()
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return nil, greetingError(err)
		}
		return nil, &relayError{"could not start TLS with the mail relay", err}
	}
	if _, ok := c.TLSConnectionState(); !ok {
		c.Close()
		return nil, &relayError{"could not start TLS with the mail relay", errors.New("no TLS after STARTTLS")}
	}
	return c, nil
}

func greetingError(err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return &relayError{"the mail relay refused the connection: " + replyText(se), err}
	}
	return &relayError{"the connection to the mail relay failed", err}
}

// auth runs AUTH PLAIN when credentials are configured, never over a
// connection without TLS unless that is explicitly allowed.
func (s *Sender) auth(c *smtp.Client) error {
	if s.cfg.Username == "" {
		return nil
	}
	if _, tlsOn := c.TLSConnectionState(); !tlsOn && !s.cfg.AllowInsecureAuth {
		return &relayError{"refusing to send the relay credentials over a connection without TLS",
			errors.New("AUTH needs TLS (set allow_insecure_auth to permit it)")}
	}
	if !c.SupportsAuth(sasl.Plain) {
		return &relayError{"the mail relay does not offer AUTH PLAIN", errors.New("no AUTH PLAIN in EHLO")}
	}
	if err := c.Auth(sasl.NewPlainClient("", s.cfg.Username, s.cfg.Password)); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			// A rejected login is a configuration problem: retry (and log),
			// do not bounce mail for it.
			return &relayError{"authentication with the mail relay failed: " + replyText(se), errors.New("AUTH rejected")}
		}
		return &relayError{"the connection to the mail relay failed", err}
	}
	return nil
}

// logOutcome logs one attempt without message content.
func (s *Sender) logOutcome(id int64, from string, to []string, res relayResult) {
	for i, r := range res.rcpts {
		level, status := slog.LevelInfo, "sent"
		switch r.kind {
		case temporary:
			level, status = slog.LevelWarn, "deferred"
		case permanent:
			level, status = slog.LevelWarn, "bounced"
		}
		s.log.Log(context.Background(), level, "outbound: relay", "queue_id", id, "from", from, "to", to[i], "status", status, "reply", r.reply, "reason", r.reason)
	}
}
