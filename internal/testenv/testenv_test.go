package testenv_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"cryptomail/internal/testenv"
)

// delivery is one LMTP transaction as the recording server saw it.
type delivery struct {
	from  string
	rcpts []string
	data  []byte
}

// lmtpRecorder is a minimal LMTP server that accepts everything and keeps what it got.
type lmtpRecorder struct {
	mu  sync.Mutex
	got []delivery
}

func (r *lmtpRecorder) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &recSession{rec: r}, nil
}

func (r *lmtpRecorder) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

type recSession struct {
	rec   *lmtpRecorder
	from  string
	rcpts []string
}

var _ smtp.Session = (*recSession)(nil)

func (s *recSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *recSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *recSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.rec.mu.Lock()
	s.rec.got = append(s.rec.got, delivery{from: s.from, rcpts: append([]string(nil), s.rcpts...), data: data})
	s.rec.mu.Unlock()
	return nil
}

func (s *recSession) Reset() {
	s.from = ""
	s.rcpts = nil
}

func (s *recSession) Logout() error { return nil }

func startLMTP(t *testing.T) (*lmtpRecorder, string) {
	t.Helper()
	rec := &lmtpRecorder{}
	srv := smtp.NewServer(rec)
	srv.LMTP = true
	srv.Domain = "lmtp.test"
	// Postfix flags mail with raw UTF-8 headers as SMTPUTF8 and will not deliver it to a server
	// that does not announce the extension.
	srv.EnableSMTPUTF8 = true
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("lmtp close: %v", err)
		}
		// go-smtp's Close only closes listeners Serve has registered; when the test ends before
		// the Serve goroutine got that far, Serve would block in Accept forever.
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("lmtp listener close: %v", err)
		}
		if err := <-done; err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			t.Errorf("lmtp serve: %v", err)
		}
	})
	return rec, ln.Addr().String()
}

// processesWithEnv lists processes whose environment holds exactly the entry kv. Postfix passes
// MAIL_CONFIG to every process of an instance, so this finds them independently of how
// StartPostfix tracks them.
func processesWithEnv(t *testing.T, kv string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("list processes: %v", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for entry := range bytes.SplitSeq(env, []byte{0}) {
			if string(entry) == kv {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func TestPostfixDeliversOverLMTP(t *testing.T) {
	rec, lmtpAddr := startLMTP(t)

	// Registered before StartPostfix, so it runs after the instance's own cleanup has stopped it.
	var configDir string
	t.Cleanup(func() {
		if configDir == "" {
			return
		}
		if pids := processesWithEnv(t, "MAIL_CONFIG="+configDir); len(pids) > 0 {
			t.Errorf("postfix processes %v outlived the test", pids)
		}
	})

	start := time.Now()
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{Domains: []string{"example.test"}, LMTPAddr: lmtpAddr})
	configDir = pf.ConfigDir()
	t.Logf("postfix started in %v, smtpd on %s", time.Since(start), pf.SMTPAddr())

	if pids := processesWithEnv(t, "MAIL_CONFIG="+configDir); len(pids) == 0 {
		t.Fatalf("no process of the instance found running")
	}

	type message struct {
		name   string
		smtp   bool // submit over SMTP to SMTPAddr instead of sendmail
		from   string
		to     []string
		header string // besides From, To and X-Test-Case
		body   string // with LF line endings; arrives with CRLF
	}
	cases := []message{
		{
			name: "utf8-and-dots",
			from: "alice@sender.test",
			to:   []string{"u1@example.test", "u2@example.test"},
			header: "Subject: Grüße, dots\n" +
				"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n",
			body: "Grüße aus Köln ☃ — 8-bit\n.leading dot\n.\n..two dots\n. dot space\nlast line\n",
		},
		{
			name:   "from-lines",
			from:   "bob@sender.test",
			to:     []string{"u1@example.test"},
			header: "Subject: From lines\n",
			body:   "From the start of a line\nFrom me\n>From already quoted\n\nFrom after a blank line\n",
		},
		{
			name:   "null-sender",
			from:   "",
			to:     []string{"u2@example.test"},
			header: "Subject: bounce-like\n",
			body:   "a message with the null sender\n",
		},
		{
			name: "over-smtp",
			smtp: true,
			from: "carol@sender.test",
			to:   []string{"u3@example.test", "u1@example.test"},
			header: "Subject: over SMTP\n" +
				"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n",
			body: "Über SMTP, 8-bit\n.dot first\n.\nFrom here\n",
		},
	}

	for _, m := range cases {
		raw := fmt.Sprintf("From: <%s>\nTo: %s\nX-Test-Case: %s\n%s\n%s", m.from, strings.Join(m.to, ", "), m.name, m.header, m.body)
		if !m.smtp {
			pf.Sendmail(t, m.from, m.to, []byte(raw))
			continue
		}
		if err := sendSMTP(pf.SMTPAddr(), m.from, m.to, crlf(raw)); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
	}

	// No relaying: smtpd refuses a domain it does not serve, at RCPT time.
	err := sendSMTP(pf.SMTPAddr(), "mallory@sender.test", []string{"victim@elsewhere.test"}, "Subject: relay\r\n\r\nno\r\n")
	var serr *smtp.SMTPError
	if !errors.As(err, &serr) || serr.Code != 554 || serr.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Errorf("relay attempt: got %v, want 554 5.7.1", err)
	}

	pf.WaitQueueEmpty(t, 20*time.Second)
	t.Logf("all delivered %v after start", time.Since(start))

	got := rec.deliveries()
	want := 0
	for _, m := range cases {
		want += len(m.to)
		t.Run(m.name, func(t *testing.T) {
			for _, rcpt := range m.to {
				var found []delivery
				for _, d := range got {
					if containsString(d.rcpts, rcpt) && bytes.Contains(d.data, []byte("\r\nX-Test-Case: "+m.name+"\r\n")) {
						found = append(found, d)
					}
				}
				if len(found) != 1 {
					t.Fatalf("%s: %d deliveries, want 1\nmaillog:\n%s", rcpt, len(found), pf.LogTail(30))
				}
				d := found[0]
				if d.from != m.from {
					t.Errorf("%s: MAIL FROM %q, want %q", rcpt, d.from, m.from)
				}
				header, body, ok := bytes.Cut(d.data, []byte("\r\n\r\n"))
				if !ok {
					t.Fatalf("%s: no header/body separator in %q", rcpt, d.data)
				}
				if wantBody := crlf(m.body); string(body) != wantBody {
					t.Errorf("%s: body\n%q\nwant\n%q", rcpt, body, wantBody)
				}
				for _, h := range strings.Split(strings.TrimSuffix(crlf(m.header), "\r\n"), "\r\n") {
					if !bytes.Contains(header, []byte("\r\n"+h+"\r\n")) {
						t.Errorf("%s: header %q lost; header:\n%s", rcpt, h, header)
					}
				}
				// Postfix's own trace header proves the message went through it.
				if !bytes.HasPrefix(header, []byte("Received: ")) && !bytes.Contains(header, []byte("\r\nReceived: ")) {
					t.Errorf("%s: no Received header; header:\n%s", rcpt, header)
				}
			}
		})
	}
	total := 0
	for _, d := range got {
		total += len(d.rcpts)
	}
	if total != want {
		t.Errorf("LMTP server got %d recipient deliveries, want %d", total, want)
	}
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// sendSMTP submits one message with go-smtp's client, declaring 8BITMIME.
func sendSMTP(addr, from string, to []string, msg string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return err
	}
	if err := c.Mail(from, &smtp.MailOptions{Body: smtp.Body8BitMIME}); err != nil {
		return err
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// fakeTB records Skipf and Fatalf instead of stopping the goroutine, to observe RequireTool.
type fakeTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped = true
	f.msg = fmt.Sprintf(format, args...)
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = fmt.Sprintf(format, args...)
}

func TestRequireTool(t *testing.T) {
	tests := []struct {
		name        string
		tool        string
		require     string
		wantPath    bool
		wantSkipped bool
		wantFailed  bool
	}{
		{name: "present", tool: "sh", wantPath: true},
		{name: "present required", tool: "sh", require: "1", wantPath: true},
		{name: "missing skips", tool: "cryptomail-no-such-tool", wantSkipped: true},
		{name: "missing required fails", tool: "cryptomail-no-such-tool", require: "1", wantFailed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(testenv.RequireToolsEnv, tc.require)
			f := &fakeTB{TB: t}
			path := testenv.RequireTool(f, tc.tool)
			if (path != "") != tc.wantPath || f.skipped != tc.wantSkipped || f.failed != tc.wantFailed {
				t.Fatalf("path=%q skipped=%v failed=%v msg=%q; want path=%v skipped=%v failed=%v",
					path, f.skipped, f.failed, f.msg, tc.wantPath, tc.wantSkipped, tc.wantFailed)
			}
			if tc.wantPath && !filepath.IsAbs(path) {
				t.Errorf("path %q is not absolute", path)
			}
			if (tc.wantSkipped || tc.wantFailed) && !strings.Contains(f.msg, tc.tool) {
				t.Errorf("message %q does not name the tool", f.msg)
			}
		})
	}
}

func TestFreePort(t *testing.T) {
	addr := testenv.FreePort(t)
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("FreePort() = %q, %v", addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 {
		t.Fatalf("FreePort() port %q", port)
	}
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatalf("cannot bind the free port: %v", err)
	}
	ln.Close()
}
