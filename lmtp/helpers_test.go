package lmtp_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"cryptomail/lmtp"
)

const domain = "example.org"

// delivery is one successful Deliver as the fake backend saw it.
type delivery struct {
	Env  lmtp.Envelope
	Rcpt lmtp.Recipient
	Msg  []byte
}

// fakeBackend serves domain; its behaviour is set by fields before the server
// starts, and it records what it got.
type fakeBackend struct {
	Users      map[string]bool  // local parts that exist
	ResolveErr map[string]error // by address as given: Resolve fails with this
	DeliverErr map[string]error // by mailbox: Deliver fails with this
	Panic      map[string]bool  // by mailbox: Deliver panics
	Started    chan string      // if set, Deliver sends the mailbox here first
	Block      chan struct{}    // if set, Deliver waits for it to close, or for ctx
	Cancelled  chan error       // if set, receives ctx.Err() when Deliver gave up on ctx

	mu        sync.Mutex
	calls     []string // mailboxes Deliver was called for
	delivered []delivery
}

func newBackend() *fakeBackend {
	return &fakeBackend{Users: map[string]bool{"alice": true, "bob": true, "carol": true, "jörg": true}}
}

func (b *fakeBackend) Resolve(ctx context.Context, rcpt string) (string, error) {
	if err := b.ResolveErr[rcpt]; err != nil {
		return "", err
	}
	at := strings.LastIndexByte(rcpt, '@')
	if at <= 0 {
		return "", fmt.Errorf("%w: no domain in %q", lmtp.ErrBadAddress, rcpt)
	}
	local, dom := strings.ToLower(rcpt[:at]), strings.ToLower(rcpt[at+1:])
	if strings.Contains(local, "..") || strings.HasPrefix(local, ".") {
		return "", fmt.Errorf("%w: %q", lmtp.ErrBadAddress, rcpt)
	}
	if dom != domain {
		return "", fmt.Errorf("%w: %q", lmtp.ErrDomainNotServed, dom)
	}
	if i := strings.IndexByte(local, '+'); i >= 0 {
		local = local[:i]
	}
	if !b.Users[local] {
		return "", fmt.Errorf("%w: %q", lmtp.ErrUnknownUser, local)
	}
	return local + "@" + domain, nil
}

func (b *fakeBackend) Deliver(ctx context.Context, env *lmtp.Envelope, rcpt lmtp.Recipient, msg []byte) error {
	b.mu.Lock()
	b.calls = append(b.calls, rcpt.Mailbox)
	b.mu.Unlock()
	if b.Started != nil {
		b.Started <- rcpt.Mailbox
	}
	if b.Block != nil {
		select {
		case <-b.Block:
		case <-ctx.Done():
			if b.Cancelled != nil {
				b.Cancelled <- ctx.Err()
			}
			return ctx.Err()
		}
	}
	if b.Panic[rcpt.Mailbox] {
		panic("backend exploded")
	}
	if err := b.DeliverErr[rcpt.Mailbox]; err != nil {
		return err
	}
	b.mu.Lock()
	b.delivered = append(b.delivered, delivery{Env: *env, Rcpt: rcpt, Msg: bytes.Clone(msg)})
	b.mu.Unlock()
	return nil
}

func (b *fakeBackend) Calls() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.calls...)
}

func (b *fakeBackend) Delivered() []delivery {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]delivery(nil), b.delivered...)
}

// mode selects the listener under test.
type mode int

const (
	modeLMTP mode = iota
	modeSMTP
)

func (m mode) String() string {
	if m == modeLMTP {
		return "LMTP"
	}
	return "SMTP"
}

func (m mode) hello() string {
	if m == modeLMTP {
		return "LHLO"
	}
	return "EHLO"
}

type testServer struct {
	*lmtp.Server
	Addr    string
	Serve   chan error // receives Serve's result
	be      *fakeBackend
	logBuf  *lockedBuffer
	mode    mode
	stopped bool
}

// start runs a server on 127.0.0.1:0; it is shut down when the test ends.
func start(t testing.TB, m mode, cfg lmtp.Config, be *fakeBackend) *testServer {
	t.Helper()
	if cfg.Hostname == "" {
		cfg.Hostname = "mx.example.test"
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = 1 << 20
	}
	logBuf := &lockedBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var srv *lmtp.Server
	if m == modeLMTP {
		srv = lmtp.NewLMTP(be, cfg)
	} else {
		srv = lmtp.NewSMTP(be, cfg)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: srv, Addr: l.Addr().String(), Serve: make(chan error, 1), be: be, logBuf: logBuf, mode: m}
	go func() { ts.Serve <- srv.Serve(l) }()
	t.Cleanup(func() {
		if be.Block != nil {
			select {
			case <-be.Block:
			default:
				close(be.Block)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, lmtp.ErrServerClosed) {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return ts
}

// lockedBuffer collects log output written from server goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// rawConn is a hand-driven client that keeps everything the server sent, to
// check what did (and did not) go on the wire.
type rawConn struct {
	t    testing.TB
	c    net.Conn
	r    *bufio.Reader
	wire lockedBuffer
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	// Only a guard against a hung test, not a timing assertion.
	c.SetDeadline(time.Now().Add(20 * time.Second))
	rc := &rawConn{t: t, c: c}
	rc.r = bufio.NewReader(io.TeeReader(c, &rc.wire))
	t.Cleanup(func() { c.Close() })
	return rc
}

func (rc *rawConn) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

// reply reads one (possibly multi-line) reply; it returns its lines.
func (rc *rawConn) reply() ([]string, error) {
	var lines []string
	for {
		line, err := rc.r.ReadString('\n')
		if err != nil {
			return lines, err
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return lines, nil
		}
	}
}

// expect reads one reply and checks that its last line starts with prefix.
func (rc *rawConn) expect(prefix string) string {
	rc.t.Helper()
	lines, err := rc.reply()
	if err != nil {
		rc.t.Fatalf("reading reply (want %q): %v; got %q", prefix, err, lines)
	}
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, prefix) {
		rc.t.Fatalf("reply = %q, want prefix %q", last, prefix)
	}
	return last
}

// expectEOF reads until the server closes the connection and returns what came.
func (rc *rawConn) expectEOF() string {
	rc.t.Helper()
	rest, err := io.ReadAll(rc.r)
	if err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		rc.t.Fatalf("waiting for the server to close: %v (after %q)", err, rest)
	}
	return string(rest)
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

// greet reads the greeting and says hello.
func (rc *rawConn) greet(m mode) {
	rc.t.Helper()
	rc.expect("220 ")
	rc.send(m.hello() + " client.test\r\n")
	rc.expect("250 ")
}
