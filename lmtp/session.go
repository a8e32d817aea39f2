package lmtp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

var (
	_ smtp.Session     = (*session)(nil)
	_ smtp.LMTPSession = (*session)(nil)
)

// session is one connection's transaction state. go-smtp calls Mail, Rcpt,
// Data and Reset from the connection goroutine, but LMTPData from another one
// (and, after an aborted BDAT, Reset while LMTPData still runs): hence mu.
type session struct {
	srv  *Server
	conn *smtp.Conn
	tc   *trackedConn

	mu    sync.Mutex
	inTx  bool
	from  string
	utf8  bool
	rcpts []Recipient // one per accepted RCPT, in order, duplicates included
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.srv.closing.Load() {
		return replyShuttingDown
	}
	if opts != nil && opts.Size > s.srv.cfg.MaxMessageBytes {
		return replyTooLarge
	}
	// Both end up in the Received and Return-Path headers we add: a CR, LF
	// or NUL there would let a client inject header fields.
	if hasControl(from) {
		return replyBadSender
	}
	if hasControl(s.conn.Hostname()) {
		return replyBadHelo
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inTx {
		// go-smtp keeps its recipient list across a second MAIL, so
		// accepting one would let our list and its replies diverge.
		return replyNestedMail
	}
	s.inTx = true
	s.from = from
	s.utf8 = opts != nil && opts.UTF8
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ctx, cancel := context.WithTimeout(s.srv.baseCtx, s.srv.cfg.DeliveryTimeout)
	defer cancel()
	mailbox, err := s.srv.be.Resolve(ctx, to)
	if err == nil && mailbox == "" {
		err = errors.New("backend resolved to an empty mailbox")
	}
	if err != nil {
		return s.srv.fail("rcpt", err, slog.String("rcpt", to), slog.String("remote", s.remote()))
	}
	s.mu.Lock()
	s.rcpts = append(s.rcpts, Recipient{Address: to, Mailbox: mailbox})
	s.mu.Unlock()
	return nil
}

func (s *session) Reset() {
	s.mu.Lock()
	s.inTx, s.from, s.utf8 = false, "", false
	s.rcpts = nil
	s.mu.Unlock()
	// go-smtp resets after the DATA replies are written: from here on a
	// shutdown may end this connection.
	s.tc.setInData(false)
}

func (s *session) Logout() error { return nil }

// Data is the SMTP DATA: one reply for all recipients (see Server.Serve).
func (s *session) Data(r io.Reader) error {
	env, rcpts, msg, err := s.receive(r)
	if err != nil {
		return err
	}
	defer releaseMessage(msg)
	replies := make(map[string]*smtp.SMTPError, len(rcpts))
	var mu sync.Mutex
	s.deliverAll(env, rcpts, msg, func(mailbox string, reply *smtp.SMTPError) {
		mu.Lock()
		replies[mailbox] = reply
		mu.Unlock()
	})
	ordered := make([]*smtp.SMTPError, 0, len(replies))
	for _, r := range uniqueByMailbox(rcpts) {
		ordered = append(ordered, replies[r.Mailbox])
	}
	if len(ordered) == 0 {
		return replyTempFail // go-smtp refuses DATA without recipients
	}
	return combine(ordered)
}

// combine makes one SMTP reply of per-recipient ones (in RCPT order).
func combine(replies []*smtp.SMTPError) *smtp.SMTPError {
	var firstTemp, firstPerm *smtp.SMTPError
	ok := 0
	for _, r := range replies {
		switch {
		case r.Code/100 == 2:
			ok++
		case r.Code/100 == 4 && firstTemp == nil:
			firstTemp = r
		case r.Code/100 == 5 && firstPerm == nil:
			firstPerm = r
		}
	}
	switch {
	case ok == len(replies):
		return replies[0]
	case firstTemp != nil:
		return firstTemp
	case ok == 0:
		return firstPerm
	default:
		// Some delivered, the rest refused for good. Only a retry can
		// bounce exactly the refused ones (Resolve refuses them at RCPT);
		// the delivered ones get a duplicate.
		return replyPartial
	}
}

// LMTPData is the LMTP DATA: each recipient's reply reflects its own
// Deliver. go-smtp expects exactly one SetStatus per accepted RCPT, so a
// mailbox given several times (as is, or as different addresses that
// resolve to it) is delivered once and that result is reported for each.
func (s *session) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	env, rcpts, msg, err := s.receive(r)
	if err != nil {
		return err // go-smtp gives this reply to every recipient
	}
	defer releaseMessage(msg)
	s.deliverAll(env, rcpts, msg, func(mailbox string, reply *smtp.SMTPError) {
		for _, rc := range rcpts {
			if rc.Mailbox == mailbox {
				status.SetStatus(rc.Address, reply)
			}
		}
	})
	// go-smtp gives this to any recipient left without a status. There is
	// none, but if there were, it must not get a 250 for mail not stored.
	return replyTempFail
}

// receive reads the whole message into memory and builds the envelope.
func (s *session) receive(r io.Reader) (*Envelope, []Recipient, []byte, error) {
	s.tc.setInData(true)
	s.mu.Lock()
	from, utf8 := s.from, s.utf8
	rcpts := append([]Recipient(nil), s.rcpts...)
	s.mu.Unlock()

	id := newID()
	msg, err := s.readMessage(r)
	if err == nil && s.tc != nil && s.tc.readFailed.Load() {
		// The client's connection broke while it sent the message (see
		// trackedConn.readFailed): what we have may be a truncated chunk.
		err = fmt.Errorf("%w: %w", errReceive, io.ErrUnexpectedEOF)
	}
	if err != nil {
		if msg != nil {
			releaseMessage(msg)
		}
		return nil, nil, nil, s.srv.fail("data", err, slog.String("id", id), slog.String("remote", s.remote()))
	}
	_, isTLS := s.conn.TLSConnectionState()
	env := &Envelope{
		ID:         id,
		From:       from,
		Protocol:   protocol(s.srv.lmtp, utf8, isTLS),
		Helo:       s.conn.Hostname(),
		RemoteAddr: s.remote(),
		TLS:        isTLS,
		Received:   time.Now(),
		Hostname:   s.srv.cfg.Hostname,
	}
	return env, rcpts, msg, nil
}

// readChunk is the size of the pooled buffers a message is read into
// before it is copied, once, into a buffer of its size (messageBuffer).
const readChunk = 64 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, readChunk); return &b }}

// Messages from pooledMin to pooledMax bytes go into pooled buffers with a
// power-of-two capacity: for a large message, a fresh allocation costs more
// (the kernel faulting in and zeroing its pages) than copying the message.
// Every pooled buffer is all zeros: releaseMessage wipes what it held.
const (
	pooledMaxLog = 23
	pooledMin    = readChunk
	pooledMax    = 1 << pooledMaxLog
)

// msgPools[k] holds *[]byte of capacity 1<<k.
var msgPools [pooledMaxLog + 1]sync.Pool

// messageBuffer returns a buffer of length n for a message.
func messageBuffer(n int) []byte {
	if n < pooledMin || n > pooledMax {
		return make([]byte, n)
	}
	k := bits.Len(uint(n - 1)) // 1<<k >= n
	if b, ok := msgPools[k].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<k)
}

// releaseMessage wipes msg, once every Deliver of it has returned, and
// recycles its buffer when it came from messageBuffer's pools.
func releaseMessage(msg []byte) {
	clear(msg)
	c := cap(msg)
	if c < pooledMin || c > pooledMax || c&(c-1) != 0 {
		return
	}
	msgPools[bits.Len(uint(c))-1].Put(&msg)
}

// readMessage reads all of r, bounded by MaxMessageBytes. go-smtp's reader
// stops at MaxMessageBytes+1 (see newServer) with smtp.ErrDataTooLarge; the
// length check here makes the limit exact, also for BDAT.
//
// The message goes into pooled chunks and then into one buffer of its size
// (pooled too when large; see messageBuffer): growing a single buffer
// instead (bytes.Buffer) allocates, zeroes and copies about four times the
// size of a large message. The declared SIZE is not needed for that, so it
// is not trusted for anything. The chunks are wiped before they go back to
// the pool, and the message by releaseMessage, so no plaintext outlives the
// message in them.
func (s *session) readMessage(r io.Reader) ([]byte, error) {
	max := s.srv.cfg.MaxMessageBytes
	var (
		chunks  []*[]byte
		last    int   // bytes used in the last chunk
		total   int64 // bytes read, including any beyond max
		drained bool  // the last chunk was reused past max
		rerr    error
	)
	defer func() {
		for i, c := range chunks {
			if i < len(chunks)-1 || drained {
				clear(*c)
			} else {
				clear((*c)[:last])
			}
			chunkPool.Put(c)
		}
	}()
	for rerr == nil {
		switch {
		case len(chunks) == 0 || (last == readChunk && total <= max):
			chunks = append(chunks, chunkPool.Get().(*[]byte))
			last = 0
		case last == readChunk:
			// Over the limit: keep draining into the last chunk, so the
			// reply still comes after the whole message, without holding
			// more than max of it.
			last, drained = 0, true
		}
		var n int
		n, rerr = r.Read((*chunks[len(chunks)-1])[last:])
		last += n
		total += int64(n)
	}
	if rerr != io.EOF {
		return nil, fmt.Errorf("%w: %w", errReceive, rerr)
	}
	if total > max {
		return nil, smtp.ErrDataTooLarge
	}
	msg := messageBuffer(int(total))
	off := 0
	for i, c := range chunks {
		n := readChunk
		if i == len(chunks)-1 {
			n = last
		}
		off += copy(msg[off:], (*c)[:n])
	}
	return msg, nil
}

// deliverAll calls Deliver once per distinct mailbox, at most Parallel at a
// time, and reports each result through done as soon as it is known.
func (s *session) deliverAll(env *Envelope, rcpts []Recipient, msg []byte, done func(mailbox string, reply *smtp.SMTPError)) {
	ok := &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK id=" + env.ID}
	uniq := uniqueByMailbox(rcpts)
	if len(uniq) == 1 {
		done(uniq[0].Mailbox, s.deliverOne(env, uniq[0], msg, ok))
		return
	}
	sem := make(chan struct{}, s.srv.cfg.Parallel)
	var wg sync.WaitGroup
	for _, rc := range uniq {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			done(rc.Mailbox, s.deliverOne(env, rc, msg, ok))
		})
	}
	wg.Wait()
}

func (s *session) deliverOne(env *Envelope, rc Recipient, msg []byte, ok *smtp.SMTPError) (reply *smtp.SMTPError) {
	attrs := []slog.Attr{slog.String("id", env.ID), slog.String("rcpt", rc.Mailbox), slog.String("remote", env.RemoteAddr)}
	defer func() {
		// A panicking backend must not take the process down with it; the
		// recipient gets a temporary failure.
		if p := recover(); p != nil {
			reply = s.srv.fail("deliver", fmt.Errorf("panic in Deliver: %v\n%s", p, debug.Stack()), attrs...)
		}
	}()
	ctx, cancel := context.WithTimeout(s.srv.baseCtx, s.srv.cfg.DeliveryTimeout)
	defer cancel()
	start := time.Now()
	if err := s.srv.be.Deliver(ctx, env, rc, msg); err != nil {
		return s.srv.fail("deliver", err, attrs...)
	}
	s.srv.log.LogAttrs(ctx, slog.LevelInfo, "delivered", append(attrs,
		slog.Int("size", len(msg)), slog.Duration("took", time.Since(start)))...)
	return ok
}

// uniqueByMailbox keeps the first Recipient of each mailbox, in order.
func uniqueByMailbox(rcpts []Recipient) []Recipient {
	seen := make(map[string]bool, len(rcpts))
	out := make([]Recipient, 0, len(rcpts))
	for _, rc := range rcpts {
		if !seen[rc.Mailbox] {
			seen[rc.Mailbox] = true
			out = append(out, rc)
		}
	}
	return out
}

// protocol is the Received "with" value (RFC 3848; RFC 6531 section 3.7.3).
func protocol(lmtpMode, utf8, isTLS bool) string {
	p := "SMTP"
	if lmtpMode {
		p = "LMTP"
	}
	if isTLS {
		p += "S"
	}
	if utf8 {
		return "UTF8" + p
	}
	if !lmtpMode {
		p = "E" + p
	}
	return p
}

func (s *session) remote() string {
	if a := s.conn.Conn().RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// newID names a transaction in replies and logs; it is not a secret.
func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// hasControl reports ASCII control characters (and DEL), which have no place
// in an envelope address or a HELO name.
func hasControl(v string) bool {
	return strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
