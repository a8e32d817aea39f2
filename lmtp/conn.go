package lmtp

import (
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// listener enforces MaxConnections and registers every connection so that
// Shutdown can reach it.
type listener struct {
	net.Listener
	srv *Server
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.srv.closing.Load() {
			// Shutdown already closed the listeners go-smtp knew of; this
			// one was handed to Serve too late. Stop it the same way.
			c.Close()
			l.Listener.Close()
			return nil, net.ErrClosed
		}
		if tc := l.srv.track(c); tc != nil {
			return tc, nil
		}
		l.srv.reject(c)
	}
}

// track registers c, or returns nil when MaxConnections are already open.
func (s *Server) track(c net.Conn) *trackedConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.MaxConnections > 0 && len(s.conns) >= s.cfg.MaxConnections {
		return nil
	}
	tc := &trackedConn{Conn: c, srv: s}
	s.conns[tc] = struct{}{}
	return tc
}

func (s *Server) untrack(tc *trackedConn) {
	s.mu.Lock()
	delete(s.conns, tc)
	s.mu.Unlock()
}

// reject turns away a connection over MaxConnections. The client has not
// spoken yet (it waits for the greeting), so closing right after the reply
// does not reset the connection under it.
func (s *Server) reject(c net.Conn) {
	s.log.Warn("too many connections", slog.String("remote", c.RemoteAddr().String()), slog.Int("max", s.cfg.MaxConnections))
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write([]byte("421 4.7.0 " + s.cfg.Hostname + " Too many connections, try again later\r\n"))
	c.Close()
}

// trackedConn wraps each accepted connection (beneath TLS after STARTTLS). It
// lets Shutdown end every connection that is not inside DATA: once the server
// is closing, any read outside DATA fails at once with a timeout, on which
// go-smtp replies "421 4.4.2" and closes.
type trackedConn struct {
	net.Conn
	srv *Server

	mu        sync.Mutex
	inData    bool
	closeOnce sync.Once
	// readFailed records that a read from the client failed (EOF, reset,
	// timeout). go-smtp copies a BDAT chunk with io.Copy from a LimitReader,
	// which takes an early EOF for the end of the chunk: without this, a
	// client that disconnects mid-chunk would have a truncated message
	// stored. A message is only delivered if its connection never failed.
	readFailed atomic.Bool

	// Bytes read from the socket but not yet by go-smtp, in a pooled
	// buffer. Only Read touches them, and go-smtp never reads from two
	// goroutines at once.
	ahead     []byte
	aheadBuf  *[]byte
	aheadUsed int // bytes of *aheadBuf filled by the socket read
}

// past is a read deadline that has already expired.
var past = time.Unix(1, 0)

// trackedOf finds our wrapper beneath what go-smtp holds.
func trackedOf(c net.Conn) *trackedConn {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	tc, _ := c.(*trackedConn)
	return tc
}

func (c *trackedConn) idleAndClosing() bool {
	return c.srv.closing.Load() && !c.inData
}

// readAhead is the size of the socket reads beneath go-smtp's 4 KiB bufio
// reader: a large message then costs one read system call (and one deadline
// update) per 64 KiB instead of per 4 KiB.
const readAhead = 64 << 10

var readAheadPool = sync.Pool{New: func() any { b := make([]byte, readAhead); return &b }}

func (c *trackedConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	switch {
	case c.inData:
		// go-smtp sets the deadline only before each command line, which
		// would bound the whole message transfer. Renewing it before every
		// socket read makes ReadTimeout an idle timeout there too. (go-smtp's
		// dataReader blocks until its buffer is full, so this cannot be
		// done per message Read.)
		if len(c.ahead) == 0 {
			c.Conn.SetReadDeadline(time.Now().Add(c.srv.cfg.ReadTimeout))
		}
	case c.srv.closing.Load():
		c.mu.Unlock()
		return 0, os.ErrDeadlineExceeded
	}
	c.mu.Unlock()
	if len(b) == 0 {
		return 0, nil
	}
	if len(c.ahead) > 0 {
		return c.fromAhead(b), nil
	}
	if len(b) >= readAhead {
		// A large read (a BDAT chunk, TLS) gains nothing from a copy.
		return c.readSocket(b)
	}
	buf := readAheadPool.Get().(*[]byte)
	n, err := c.readSocket(*buf)
	if n == 0 {
		readAheadPool.Put(buf)
		return 0, err
	}
	// A socket read that returns data and an error at once is rare; the
	// error comes back again on the next read once the data is consumed.
	c.aheadBuf, c.ahead, c.aheadUsed = buf, (*buf)[:n], n
	return c.fromAhead(b), nil
}

func (c *trackedConn) readSocket(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.readFailed.Store(true)
	}
	return n, err
}

// fromAhead copies read-ahead bytes into b. The buffer goes back to the
// pool, wiped (it may hold message text), as soon as it is drained, so an
// idle connection holds none.
func (c *trackedConn) fromAhead(b []byte) int {
	n := copy(b, c.ahead)
	c.ahead = c.ahead[n:]
	if len(c.ahead) == 0 {
		clear((*c.aheadBuf)[:c.aheadUsed])
		readAheadPool.Put(c.aheadBuf)
		c.aheadBuf, c.ahead, c.aheadUsed = nil, nil, 0
	}
	return n
}

// SetReadDeadline is called by go-smtp before every command line; once the
// server is closing it cannot push the deadline out again, except inside DATA.
func (c *trackedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idleAndClosing() {
		t = past
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *trackedConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

// kick wakes a read blocked outside DATA so that go-smtp ends the connection.
func (c *trackedConn) kick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.inData {
		c.Conn.SetReadDeadline(past)
	}
}

// setInData marks the span from the start of the message transfer until the
// replies have been written (go-smtp calls Session.Reset after them).
func (c *trackedConn) setInData(v bool) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.inData = v
	c.mu.Unlock()
}

func (c *trackedConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		c.srv.untrack(c)
		err = c.Conn.Close()
	})
	return err
}
