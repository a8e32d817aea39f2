package outbound_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	cmcrypto "cryptomail/crypto"
	"cryptomail/internal/testenv"
	"cryptomail/server/internal/outbound"
	"cryptomail/shard"
	"cryptomail/xmap"
)

const domain = "example.org"

// clock is a settable Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a store with users alice, bob (and any added), a clock, and the
// addresses OnStored was called with.
type env struct {
	t     *testing.T
	ctx   context.Context
	store *shard.Store
	clock *clock
	keys  map[string]*openpgp.Entity
	dir   string

	mu       sync.Mutex
	notified []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := shard.Open(ctx, shard.Options{DataDir: dir, Homes: []string{filepath.Join(dir, "home")}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e := &env{t: t, ctx: ctx, store: store, dir: dir, keys: map[string]*openpgp.Entity{},
		clock: &clock{t: time.Now().Truncate(time.Second)}}
	e.addUser("alice@" + domain)
	e.addUser("bob@" + domain)
	return e
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (e *env) addUser(addr string) {
	e.t.Helper()
	ent, err := cmcrypto.GenerateKey(strings.Split(addr, "@")[0], addr, nil, e.clock.Now().Add(-time.Hour))
	if err != nil {
		e.t.Fatal(err)
	}
	pk, err := cmcrypto.NewPublicKey(ent, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	armored, err := pk.Armored()
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.CreateUser(e.ctx, addr, armored); err != nil {
		e.t.Fatal(err)
	}
	e.keys[addr] = ent
}

// resolve serves domain: canonical lower-case mailbox without +tag.
func resolve(addr string) (string, bool, error) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return "", false, errors.New("no @")
	}
	local, dom := strings.ToLower(addr[:at]), strings.ToLower(addr[at+1:])
	if dom != domain {
		return addr, false, nil
	}
	if i := strings.IndexByte(local, '+'); i >= 0 {
		local = local[:i]
	}
	return local + "@" + dom, true, nil
}

func (e *env) config(relay string) outbound.Config {
	return outbound.Config{
		Smarthost: relay,
		StartTLS:  outbound.StartTLSOff,
		Hostname:  "mx.example.org",
		MinRetry:  time.Minute,
		MaxRetry:  time.Hour,
		Timeout:   10 * time.Second,
		Now:       e.clock.Now,
		Logger:    quietLogger(),
		OnStored: func(user string) {
			e.mu.Lock()
			e.notified = append(e.notified, user)
			e.mu.Unlock()
		},
	}
}

func (e *env) queuePath() string { return filepath.Join(e.dir, "outbound.db") }

func (e *env) sender(cfg outbound.Config) *outbound.Sender {
	e.t.Helper()
	s, err := outbound.New(e.ctx, e.queuePath(), e.store, resolve, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

func (e *env) notifiedUsers() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.notified)
}

// messages returns the user's messages in folder.
func (e *env) messages(user, folder string) []shard.Message {
	e.t.Helper()
	var ms []shard.Message
	err := e.store.Messages(e.ctx, user, func(m shard.Message) error {
		if m.Folder == folder {
			ms = append(ms, m)
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return ms
}

// decrypt opens a stored blob with the user's private key.
func (e *env) decrypt(user string, blob []byte) []byte {
	e.t.Helper()
	out, err := cmcrypto.Decrypt(openpgp.EntityList{e.keys[user]}, blob)
	if err != nil {
		e.t.Fatalf("decrypt as %s: %v", user, err)
	}
	return out
}

func (e *env) entries(s *outbound.Sender) []outbound.Entry {
	e.t.Helper()
	es, err := s.Entries(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return es
}

// pgpMIME builds an RFC 3156 message whose inner part (holding secret) is
// encrypted to the given users, with the outer headers in clear.
func (e *env) pgpMIME(from, to, subject, secret string, users ...string) []byte {
	e.t.Helper()
	var ents []*openpgp.Entity
	for _, u := range users {
		ents = append(ents, e.keys[u])
	}
	var ct bytes.Buffer
	aw, err := armor.Encode(&ct, "PGP MESSAGE", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	w, err := openpgp.Encrypt(aw, ents, nil, nil, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	fmt.Fprintf(w, "Content-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n", secret)
	if err := w.Close(); err != nil {
		e.t.Fatal(err)
	}
	if err := aw.Close(); err != nil {
		e.t.Fatal(err)
	}
	msg := "From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\n" +
		"Date: Sat, 01 Mar 2025 09:29:40 +0000\r\nMessage-ID: <7d1e@example.org>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n" +
		"--b1\r\nContent-Type: application/octet-stream\r\n\r\n" + strings.ReplaceAll(ct.String(), "\n", "\r\n") + "\r\n--b1--\r\n"
	return []byte(msg)
}

// fakePGPMIME is labelled PGP/MIME but its "encrypted" part is readable
// text: what the security review relayed as encrypted (issue 9, item 6).
func fakePGPMIME(from, to, text string) []byte {
	return []byte("From: " + from + "\r\nTo: " + to + "\r\nSubject: ...\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n" +
		"--b1\r\nContent-Type: application/octet-stream\r\n\r\n" + text + "\r\n--b1--\r\n")
}

func plainMsg(from, to, subject, text string) []byte {
	return []byte("From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\n" +
		"Date: Sat, 01 Mar 2025 09:29:40 +0000\r\nMessage-ID: <p1@example.org>\r\n\r\n" + text + "\r\n")
}

func xmapCode(err error) xmap.ErrorCode {
	var xe *xmap.Error
	if errors.As(err, &xe) {
		return xe.Code
	}
	return ""
}

// relayServer is a go-smtp server on 127.0.0.1 standing in for the
// smarthost. Its behaviour is set by fields (under mu); it records what it
// got.
type relayServer struct {
	Addr string

	mu        sync.Mutex
	rcptReply map[string]*smtp.SMTPError // by address: RCPT fails with this
	mailReply *smtp.SMTPError            // MAIL fails with this
	dataReply *smtp.SMTPError            // the end of DATA fails with this
	user      string                     // if set, MAIL needs AUTH as user/pass
	pass      string

	got          []gotMsg
	authAttempts int
}

type gotMsg struct {
	From   string
	To     []string
	Data   []byte
	Helo   string
	TLS    bool
	Authed string // the user it authenticated as, or ""
}

type relayOptions struct {
	tls          bool // offer STARTTLS with a self-signed certificate
	insecureAuth bool // offer AUTH without TLS
	user, pass   string
}

// startRelay starts the server and returns it with a client TLS config
// trusting its certificate.
func startRelay(t *testing.T, o relayOptions) (*relayServer, *tls.Config) {
	t.Helper()
	r := &relayServer{rcptReply: map[string]*smtp.SMTPError{}, user: o.user, pass: o.pass}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &relaySession{r: r, c: c}, nil
	}))
	srv.Domain = "relay.test"
	srv.AllowInsecureAuth = o.insecureAuth
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	var clientTLS *tls.Config
	if o.tls {
		cert, pool := testenv.SelfSigned(t)
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		clientTLS = &tls.Config{RootCAs: pool}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.Addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return r, clientTLS
}

func (r *relayServer) setRcptReply(addr string, reply *smtp.SMTPError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if reply == nil {
		delete(r.rcptReply, addr)
	} else {
		r.rcptReply[addr] = reply
	}
}

func (r *relayServer) received() []gotMsg {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func (r *relayServer) auths() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.authAttempts
}

type relaySession struct {
	r      *relayServer
	c      *smtp.Conn
	authed string
	from   string
	to     []string
}

var _ smtp.AuthSession = (*relaySession)(nil)

func (s *relaySession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *relaySession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		s.r.mu.Lock()
		defer s.r.mu.Unlock()
		s.r.authAttempts++
		if s.r.user != "" && user == s.r.user && pass == s.r.pass {
			s.authed = user
			return nil
		}
		return smtp.ErrAuthFailed
	}), nil
}

func (s *relaySession) Mail(from string, _ *smtp.MailOptions) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if s.r.user != "" && s.authed == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	if s.r.mailReply != nil {
		return s.r.mailReply
	}
	s.from = from
	return nil
}

func (s *relaySession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if reply := s.r.rcptReply[to]; reply != nil {
		return reply
	}
	s.to = append(s.to, to)
	return nil
}

func (s *relaySession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := s.c.TLSConnectionState()
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if s.r.dataReply != nil {
		return s.r.dataReply
	}
	s.r.got = append(s.r.got, gotMsg{From: s.from, To: slices.Clone(s.to), Data: b, Helo: s.c.Hostname(), TLS: isTLS, Authed: s.authed})
	return nil
}

func (s *relaySession) Reset()        { s.from, s.to = "", nil }
func (s *relaySession) Logout() error { return nil }

// waitFor polls cond until it holds or a generous deadline passes; only a
// hang fails it, never slowness.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
