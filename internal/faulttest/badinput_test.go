package faulttest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cryptomail/server"
	"cryptomail/xmap/sexmap"
)

const (
	alice   = "alice@" + domain
	bob     = "bob@" + domain
	jorg    = "jörg@" + domain // a UTF-8 mailbox
	sender  = "sender@elsewhere.test"
	badMax  = 4 << 20 // max_message_bytes of the instance under test
	slowIdl = "1s"    // read_timeout of the instance that tests timeouts
)

// badEnv is what the bad-input cases run against: one server with default
// timeouts (LMTP, SMTP and HTTP) and one with a one-second read_timeout for
// the slow-client cases, which run in the background from the start.
type badEnv struct {
	main, slow *instance
	sexmap     bool // the HTTP listener serves SeXMAP

	mu   sync.Mutex
	bg   map[string]chan observed
	toks map[string]string // the message a background case left unfinished
}

// observed is what a background case saw.
type observed struct {
	lines  []string // replies before the close
	closed bool     // the server closed the connection
	err    error
}

func (e *badEnv) background(name string, f func() observed) {
	ch := make(chan observed, 1)
	e.mu.Lock()
	e.bg[name] = ch
	e.mu.Unlock()
	go func() { ch <- f() }()
}

func (e *badEnv) await(name string) observed {
	e.mu.Lock()
	ch := e.bg[name]
	e.mu.Unlock()
	return <-ch
}

// caseCtx is one case's test and report row.
type caseCtx struct {
	*testing.T
	e   *badEnv
	row *badRow
}

// expect checks a reply line against the right answers (prefixes). An
// answer matching known, a wrong answer already reported, is recorded in the
// report as wrong instead of failing the test; anything else fails.
func (c *caseCtx) expect(what, got, known, why string, wants ...string) {
	c.Helper()
	for _, w := range wants {
		if strings.HasPrefix(got, w) {
			return
		}
	}
	want := "`" + strings.Join(wants, "` or `") + "`"
	if known != "" && strings.HasPrefix(got, known) {
		c.row.deviations = append(c.row.deviations, fmt.Sprintf("%s answered `%s`, should be %s: %s", what, normalize(got), want, why))
		c.Logf("known wrong answer: %s: got %q, want %s", what, got, want)
		return
	}
	c.Errorf("%s: got %q, want %s", what, got, want)
}

func (c *caseCtx) dial(in *instance, lmtp bool) *wire {
	c.Helper()
	addr := in.lmtpAddr
	if !lmtp {
		addr = in.smtpAddr
	}
	w, err := dialWire(addr)
	if err != nil {
		c.Fatal(err)
	}
	c.Cleanup(func() { w.Close() })
	return w
}

func (c *caseCtx) session(in *instance, lmtp bool) *wire {
	c.Helper()
	w := c.dial(in, lmtp)
	if err := w.greet(lmtp); err != nil {
		c.Fatal(err)
	}
	return w
}

func (c *caseCtx) write(w *wire, s string) {
	c.Helper()
	if err := w.write(s); err != nil {
		c.Fatal(err)
	}
}

func (c *caseCtx) reply(w *wire) reply {
	c.Helper()
	r, err := w.readReply()
	if err != nil {
		c.Fatalf("reading a reply: %v (got %q)", err, r)
	}
	return r
}

// send delivers msg in one transaction on a new session, records what each
// recipient was told and notes the recipients for the report.
func (c *caseCtx) send(in *instance, lmtp bool, params string, rcpts []string, tok string, msg []byte) *txResult {
	c.Helper()
	return c.sendOn(c.session(in, lmtp), in, lmtp, sender, params, rcpts, tok, msg)
}

// sendOn is send on an open session, from any reverse-path.
func (c *caseCtx) sendOn(w *wire, in *instance, lmtp bool, from, params string, rcpts []string, tok string, msg []byte) *txResult {
	c.Helper()
	tr, err := w.transact(lmtp, from, params, rcpts, msg)
	c.note(in, recordTx(in.l, tok, msg, rcpts, tr, lmtp))
	if err != nil {
		c.Fatalf("transaction: %v (got %+v)", err, tr)
	}
	return tr
}

// note adds the users' slots to the report row.
func (c *caseCtx) note(in *instance, slots []slot) {
	for _, s := range slots {
		if _, user := in.keys[s.mailbox]; user {
			c.row.stored = append(c.row.stored, s)
		}
	}
}

// never records that tok must not be stored for mailbox: the server refused
// or never had the whole message.
func (c *caseCtx) never(in *instance, tok string, msg []byte, mailbox string) {
	in.l.record(tok, msg, mailbox, mustNotStore)
	c.note(in, []slot{{tok, mailbox}})
}

// recordTx records each recipient's verdict: acknowledged, unknown (the
// message went out but no 250 came back), or never stored (refused at RCPT,
// or the message was never sent). Addresses resolving to one mailbox share
// one delivery, so the strongest verdict counts.
func recordTx(l *ledger, tok string, msg []byte, rcpts []string, tr *txResult, lmtp bool) []slot {
	best := map[string]outcome{}
	var order []string
	sentData := tr != nil && tr.data.code() == 354
	j := 0
	for i, r := range rcpts {
		mb, err := server.CanonicalAddress(r)
		if err != nil {
			mb = r
		}
		o := mustNotStore
		if sentData && i < len(tr.rcpts) && tr.rcpts[i].code()/100 == 2 {
			o = mayStore
			k := j
			if !lmtp {
				k = 0
			}
			if k < len(tr.final) && tr.final[k].code() == 250 {
				o = mustStore
			}
			j++
		}
		if _, seen := best[mb]; !seen {
			order = append(order, mb)
			best[mb] = o
		}
		best[mb] = min(best[mb], o) // mustStore < mayStore < mustNotStore
	}
	slots := make([]slot, 0, len(order))
	for _, mb := range order {
		l.record(tok, msg, mb, best[mb])
		slots = append(slots, slot{tok, mb})
	}
	return slots
}

// txText is a transaction's answer for the report: every reply that is not
// the plain success of its step, then the final replies.
func txText(tr *txResult) string {
	var parts []string
	if tr.mail.code() != 250 {
		parts = append(parts, "MAIL: "+summarize([]reply{tr.mail}))
	}
	for _, r := range tr.rcpts {
		if r.code() != 250 {
			parts = append(parts, "RCPT: "+summarize(tr.rcpts))
			break
		}
	}
	if tr.data.code() != 354 {
		parts = append(parts, "DATA: "+summarize([]reply{tr.data}))
	}
	if len(tr.final) > 0 {
		parts = append(parts, summarize(tr.final))
	}
	return strings.Join(parts, "; ")
}

// msgOf builds a message with the token header first, lines joined by eol.
func msgOf(tok, eol string, lines ...string) []byte {
	return []byte(tokenHeader + tok + eol + strings.Join(lines, eol) + "\r\n")
}

// probe checks that the server still delivers, and still answers HTTP. The
// whole session goes out in one write, so that no stall of this process can
// trip the slow instance's one-second timeout.
func (e *badEnv) probe(t *testing.T, in *instance) {
	t.Helper()
	in.alive(t)
	tok := newToken()
	msg := msgOf(tok, "\r\n", "Subject: probe", "", "still there?")
	w, err := dialWire(in.lmtpAddr)
	if err != nil {
		t.Fatalf("after this case the server takes no connection: %v", err)
	}
	defer w.Close()
	stuffed, err := dotStuff(msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.write("LHLO probe.test\r\nMAIL FROM:<probe@elsewhere.test>\r\nRCPT TO:<" + alice + ">\r\nDATA\r\n" + string(stuffed) + ".\r\nQUIT\r\n"); err != nil {
		t.Fatalf("after this case: %v", err)
	}
	rs, err := w.readReplies(7)
	var tr *txResult
	if len(rs) >= 6 {
		tr = &txResult{mail: rs[2], rcpts: rs[3:4], data: rs[4], final: rs[5:6]}
	}
	recordTx(in.l, tok, msg, []string{alice}, tr, true)
	if err != nil || tr.final[0].code() != 250 {
		t.Fatalf("after this case a normal delivery fails: %q, %v\nserver log:\n%s", rs, err, in.logTail(20))
	}
	if in.httpAddr != "" {
		if st, _, err := httpExchange(in.httpAddr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", nil, false); err != nil || st != 200 {
			t.Fatalf("after this case GET /healthz gives %d, %v", st, err)
		}
	}
}

// httpExchange sends head (request line and headers through the blank line)
// and body on a new connection, half-closing after it when asked, and reads
// one response: its status and the first line of its body.
func httpExchange(addr, head string, body io.Reader, halfClose bool) (int, string, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(replyWait))
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Write errors are expected: the server may answer and close
		// before reading everything.
		if _, err := io.WriteString(conn, head); err != nil {
			return
		}
		if body != nil {
			io.Copy(conn, body)
		}
		if halfClose {
			conn.(*net.TCPConn).CloseWrite()
		}
	}()
	defer func() { conn.Close(); <-done }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	first, _, _ := strings.Cut(string(b), "\n")
	return resp.StatusCode, first, nil
}

// zeros is an endless source of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// badCase is one row of the report.
type badCase struct {
	name, sent string
	run        func(c *caseCtx) string
}

// TestBadInput sends malformed, oversized, truncated, slow and hostile input
// over LMTP, SMTP and HTTP to the real server. Each case must get the right
// answer; after each, the server must still deliver a normal message; at the
// end every message the server acknowledged is stored exactly once and
// nothing it refused is. The answers go to a Markdown report (logged,
// written under t.TempDir(), and to -report FILE when given).
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := &badEnv{bg: map[string]chan observed{}, toks: map[string]string{}}
	e.main = newInstance(t, options{smtp: true, http: true, maxMessageBytes: badMax})
	for _, u := range []string{alice, bob, jorg} {
		e.main.addUser(u)
	}
	e.slow = newInstance(t, options{smtp: true, readTimeout: slowIdl})
	e.slow.addUser(alice)
	e.main.start()
	e.slow.start()
	e.main.waitReady()
	e.slow.waitReady()
	if st, _, err := httpExchange(e.main.httpAddr, "GET "+sexmap.PathWellKnown+" HTTP/1.1\r\nHost: x\r\n\r\n", nil, false); err == nil && st == 200 {
		e.sexmap = true
	}
	startSlowCases(e)

	var rows []*badRow
	for _, bc := range badCases() {
		row := &badRow{name: bc.name, sent: bc.sent, answer: "(failed, see the test log)"}
		rows = append(rows, row)
		t.Run(bc.name, func(t *testing.T) {
			c := &caseCtx{T: t, e: e, row: row}
			row.answer = bc.run(c)
			e.probe(t, e.main)
			e.probe(t, e.slow)
		})
	}

	e.main.stop()
	e.slow.stop()
	all := verification{count: map[slot]int{}, plain: map[slot][]byte{}}
	for _, in := range []*instance{e.main, e.slow} {
		v := in.verify(t, in.l)
		for s, n := range v.count {
			all.count[s] += n
		}
		for s, p := range v.plain {
			all.plain[s] = p
		}
	}
	for _, r := range rows {
		for _, post := range r.post {
			if d := post(all); d != "" {
				t.Logf("known wrong behaviour: %s: %s", r.name, d)
				r.deviations = append(r.deviations, d)
			}
		}
	}
	report := renderReport(derefRows(rows), all.count)
	t.Log("bad-input report:\n" + report)
	out := filepath.Join(t.TempDir(), "badinput.md")
	if err := os.WriteFile(out, []byte(report), 0o600); err != nil {
		t.Error(err)
	}
	if *reportFile != "" {
		if err := os.WriteFile(*reportFile, []byte(report), 0o644); err != nil {
			t.Errorf("-report: %v", err)
		}
	}
}

func derefRows(rows []*badRow) []badRow {
	out := make([]badRow, len(rows))
	for i, r := range rows {
		out[i] = *r
	}
	return out
}

// startSlowCases starts the cases that wait for a server timeout, so that
// they run while the others do. Each writes everything it sends in one write
// right after connecting: a client stalled by a loaded machine must not hit
// the one-second timeout earlier than the case intends.
func startSlowCases(e *badEnv) {
	silent := func(lmtp bool, payload string, setup ...int) func() observed {
		return func() observed {
			addr := e.slow.lmtpAddr
			if !lmtp {
				addr = e.slow.smtpAddr
			}
			w, err := dialWire(addr)
			if err != nil {
				return observed{err: err}
			}
			defer w.Close()
			if err := w.write(payload); err != nil {
				return observed{err: err}
			}
			// The replies to the setup, then what the silence brings.
			for i, code := range setup {
				if r, err := w.readReply(); err != nil || r.code() != code {
					return observed{err: fmt.Errorf("setup reply %d: %q (%v), want %d", i+1, r, err, code)}
				}
			}
			lines, closed := w.drain(replyWait)
			return observed{lines: lines, closed: closed}
		}
	}
	e.background("lmtp silent", silent(true, "", 220))
	e.background("lmtp half line", silent(true, "LHLO slow.test\r\nMAIL FROM:<slow@elsewhere", 220, 250))
	for _, p := range []struct {
		name string
		lmtp bool
	}{{"lmtp silent data", true}, {"smtp silent data", false}} {
		tok := newToken()
		e.slow.l.record(tok, nil, alice, mustNotStore)
		e.mu.Lock()
		e.toks[p.name] = tok
		e.mu.Unlock()
		hello := "EHLO"
		if p.lmtp {
			hello = "LHLO"
		}
		e.background(p.name, silent(p.lmtp, hello+" slow.test\r\nMAIL FROM:<slow@elsewhere.test>\r\nRCPT TO:<"+alice+">\r\nDATA\r\n"+
			tokenHeader+tok+"\r\nSubject: never finished\r\n\r\nhalf a mess", 220, 250, 250, 250, 354))
	}
	e.background("http slow header", func() observed {
		conn, err := net.DialTimeout("tcp", e.main.httpAddr, 10*time.Second)
		if err != nil {
			return observed{err: err}
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
			return observed{err: err}
		}
		w := &wire{conn: conn, br: bufio.NewReader(conn)}
		lines, closed := w.drain(replyWait)
		return observed{lines: lines, closed: closed}
	})
}

func (e *badEnv) tokOf(name string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.toks[name]
}

// slowCase reports a background case: the first reply must be one of wants
// (or the known wrong one) and the server must have closed the connection.
func slowCase(name, known, why string, wants ...string) func(c *caseCtx) string {
	return func(c *caseCtx) string {
		o := c.e.await(name)
		if o.err != nil {
			c.Fatalf("before going silent: %v", o.err)
		}
		if tok := c.e.tokOf(name); tok != "" {
			c.note(c.e.slow, []slot{{tok, alice}})
		}
		first := "(nothing)"
		if len(o.lines) > 0 {
			first = o.lines[0]
		}
		c.expect("the server", first, known, why, wants...)
		if !o.closed {
			c.Errorf("the server did not close the connection within %v", replyWait)
		}
		return closedText(o.lines, o.closed)
	}
}

func closedText(ls []string, closed bool) string {
	s := lines(ls)
	if s == "" {
		s = "no reply"
	}
	if closed {
		return s + ", then the server closes the connection"
	}
	return s + ", connection left open"
}
