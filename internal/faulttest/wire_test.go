package faulttest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// replyWait bounds every wait for the server. It is generous on purpose: a
// loaded 2-core CI machine must never turn a slow answer into a failure.
const replyWait = 60 * time.Second

// wire is a raw LMTP/SMTP client: it writes exactly the bytes a case wants
// (pipelined, malformed, truncated) and reads replies line by line.
type wire struct {
	conn net.Conn
	br   *bufio.Reader
	wait time.Duration
}

func dialWire(addr string) (*wire, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	if c.LocalAddr().String() == c.RemoteAddr().String() {
		// TCP simultaneous open with itself: nothing listens there.
		c.Close()
		return nil, fmt.Errorf("dial %s: connected to itself (no listener)", addr)
	}
	return &wire{conn: c, br: bufio.NewReaderSize(c, 64<<10), wait: replyWait}, nil
}

func (w *wire) Close() error { return w.conn.Close() }

func (w *wire) write(s string) error {
	w.conn.SetWriteDeadline(time.Now().Add(w.wait))
	_, err := io.WriteString(w.conn, s)
	return err
}

// reply is one server reply: its lines without CRLF, the last one being
// "NNN text".
type reply []string

func (r reply) code() int {
	if len(r) == 0 || len(r[len(r)-1]) < 3 {
		return 0
	}
	n, _ := strconv.Atoi(r[len(r)-1][:3])
	return n
}

// String is the last line, which carries the code and (for LMTP DATA) the
// recipient; a multi-line reply says how many lines it had.
func (r reply) String() string {
	if len(r) == 0 {
		return "(no reply)"
	}
	if len(r) == 1 {
		return r[0]
	}
	return fmt.Sprintf("%s (%d lines)", r[len(r)-1], len(r))
}

// last is the last line, the one with the code and the final text.
func (r reply) last() string {
	if len(r) == 0 {
		return "(no reply)"
	}
	return r[len(r)-1]
}

// has reports whether the reply starts with prefix, e.g. "452 4.3.1".
func (r reply) has(prefix string) bool {
	return len(r) > 0 && strings.HasPrefix(r[len(r)-1], prefix)
}

// readReply reads one (possibly multi-line) reply.
func (w *wire) readReply() (reply, error) {
	w.conn.SetReadDeadline(time.Now().Add(w.wait))
	var r reply
	for {
		line, err := w.br.ReadString('\n')
		if err != nil {
			if line != "" {
				r = append(r, line)
			}
			return r, err
		}
		line = strings.TrimRight(line, "\r\n")
		r = append(r, line)
		if len(line) < 4 || line[3] != '-' {
			return r, nil
		}
	}
}

func (w *wire) readReplies(n int) ([]reply, error) {
	out := make([]reply, 0, n)
	for range n {
		r, err := w.readReply()
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

// drain reads until the server closes the connection (or wait passes) and
// returns what it said meanwhile; closed reports an EOF or a reset.
func (w *wire) drain(wait time.Duration) (lines []string, closed bool) {
	w.conn.SetReadDeadline(time.Now().Add(wait))
	for {
		line, err := w.br.ReadString('\n')
		if line != "" {
			lines = append(lines, strings.TrimRight(line, "\r\n"))
		}
		if err != nil {
			var ne net.Error
			return lines, !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

// greet reads the greeting and says LHLO (lmtp) or EHLO.
func (w *wire) greet(lmtp bool) error {
	if r, err := w.readReply(); err != nil || r.code() != 220 {
		return fmt.Errorf("greeting %v: %v", r, err)
	}
	verb := "EHLO"
	if lmtp {
		verb = "LHLO"
	}
	if err := w.write(verb + " client.faulttest.test\r\n"); err != nil {
		return err
	}
	if r, err := w.readReply(); err != nil || r.code() != 250 {
		return fmt.Errorf("%s: %v %v", verb, r, err)
	}
	return nil
}

// txResult is what one transaction got back.
type txResult struct {
	mail  reply
	rcpts []reply // one per RCPT, in order
	data  reply   // the reply to DATA (354 or a refusal)
	final []reply // LMTP: one per accepted RCPT; SMTP: one
}

// accepted returns the RCPT addresses that got a 2xx, in order.
func (tr *txResult) accepted(rcpts []string) []string {
	var out []string
	for i, r := range tr.rcpts {
		if r.code()/100 == 2 {
			out = append(out, rcpts[i])
		}
	}
	return out
}

// transact runs one pipelined transaction: MAIL (with mailParams, e.g.
// " SMTPUTF8"), the RCPTs and DATA in one write, then the message. msg must
// end where go-smtp sees a line start (after CRLF); it is dot-stuffed here.
// It returns whatever arrived before an error.
func (w *wire) transact(lmtp bool, from, mailParams string, rcpts []string, msg []byte) (*txResult, error) {
	stuffed, err := dotStuff(msg)
	if err != nil {
		return nil, err
	}
	var cmds strings.Builder
	fmt.Fprintf(&cmds, "MAIL FROM:<%s>%s\r\n", from, mailParams)
	for _, r := range rcpts {
		fmt.Fprintf(&cmds, "RCPT TO:<%s>\r\n", r)
	}
	cmds.WriteString("DATA\r\n")
	tr := &txResult{}
	if err := w.write(cmds.String()); err != nil {
		return tr, err
	}
	if tr.mail, err = w.readReply(); err != nil {
		return tr, err
	}
	for range rcpts {
		r, err := w.readReply()
		if err != nil {
			return tr, err
		}
		tr.rcpts = append(tr.rcpts, r)
	}
	if tr.data, err = w.readReply(); err != nil {
		return tr, err
	}
	if tr.data.code() != 354 {
		return tr, nil
	}
	if err := w.write(string(stuffed) + ".\r\n"); err != nil {
		return tr, err
	}
	n := 1
	if lmtp {
		n = len(tr.accepted(rcpts))
	}
	tr.final, err = w.readReplies(n)
	return tr, err
}

// dotStuff applies RFC 5321's transparency to msg the way go-smtp's DATA
// reader undoes it: a line starts only after CRLF (a bare LF does not start
// one, and "\r\r\n" does not either: a known go-smtp quirk). The result must
// end at a line start, so that ".\r\n" terminates it.
func dotStuff(msg []byte) ([]byte, error) {
	const (
		begin = iota
		cr
		data
	)
	var out bytes.Buffer
	out.Grow(len(msg) + len(msg)/64 + 8)
	state := begin
	for _, c := range msg {
		switch state {
		case begin:
			if c == '.' {
				out.WriteByte('.')
			}
			state = data
			if c == '\r' {
				state = cr
			}
		case cr:
			state = data
			if c == '\n' {
				state = begin
			}
		case data:
			if c == '\r' {
				state = cr
			}
		}
		out.WriteByte(c)
	}
	if state != begin {
		return nil, errors.New("faulttest: message does not end with a line that go-smtp would see end")
	}
	return out.Bytes(), nil
}
