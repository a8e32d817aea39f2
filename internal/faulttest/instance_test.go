package faulttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	cmcrypto "cryptomail/crypto"
	"cryptomail/internal/testenv"
	"cryptomail/server"
	"cryptomail/shard"
)

const (
	domain   = "example.test"
	hostname = "mx.faulttest.test"
)

// options shape one server instance's config.
type options struct {
	homes           []string // absolute; nil: one home inside the instance dir
	smtp, http      bool     // also run these listeners
	readTimeout     string   // lmtp and smtp read_timeout; "" = default
	maxMessageBytes int64    // lmtp and smtp; 0 = default
}

// instance is one cryptomail server process with its own config, data and
// users, restartable on the same ports.
type instance struct {
	t                            testing.TB
	dir, cfgPath, logPath        string
	lmtpAddr, smtpAddr, httpAddr string
	keys                         map[string]openpgp.EntityList // mailbox → private key
	l                            *ledger                       // what tests sent to it, for verify

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

func newInstance(t testing.TB, o options) *instance {
	t.Helper()
	dir := t.TempDir()
	in := &instance{
		t:        t,
		dir:      dir,
		cfgPath:  filepath.Join(dir, "cryptomail.toml"),
		logPath:  filepath.Join(dir, "server.log"),
		lmtpAddr: serverPort(t),
		keys:     map[string]openpgp.EntityList{},
		l:        newLedger(),
	}
	homes := o.homes
	if homes == nil {
		homes = []string{filepath.Join(dir, "home")}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[server]\nhostname = %s\ndomains = [%s]\ndata_dir = %s\n",
		tomlString(hostname), tomlString(domain), tomlString(filepath.Join(dir, "data")))
	quoted := make([]string, len(homes))
	for i, h := range homes {
		quoted[i] = tomlString(h)
	}
	fmt.Fprintf(&b, "[storage]\nhomes = [%s]\n", strings.Join(quoted, ", "))
	limits := func() {
		if o.readTimeout != "" {
			fmt.Fprintf(&b, "read_timeout = %s\n", tomlString(o.readTimeout))
		}
		if o.maxMessageBytes > 0 {
			fmt.Fprintf(&b, "max_message_bytes = %d\n", o.maxMessageBytes)
		}
	}
	fmt.Fprintf(&b, "[lmtp]\nlisten = %s\n", tomlString(in.lmtpAddr))
	limits()
	if o.smtp {
		in.smtpAddr = serverPort(t)
		fmt.Fprintf(&b, "[smtp]\nlisten = %s\n", tomlString(in.smtpAddr))
		limits()
	}
	if o.http {
		in.httpAddr = serverPort(t)
	}
	fmt.Fprintf(&b, "[http]\nlisten = %s\n", tomlString(in.httpAddr))
	b.WriteString("[log]\nlevel = \"warn\"\n")
	if err := os.WriteFile(in.cfgPath, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// Admin commands (addUser) create nothing; init makes the store they
	// open, as an admin would before adding users to a server not yet run.
	if out, err := exec.Command(binary(t), "init", "-config", in.cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("cryptomail init: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if in.running() {
			in.kill()
		}
	})
	return in
}

// tomlString quotes s as a TOML basic string; the tests only pass paths and
// addresses, never control characters.
func tomlString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// addUser makes a key for addr and registers it with `cryptomail user add`,
// as an admin would.
func (in *instance) addUser(addr string) {
	in.t.Helper()
	if err := in.tryAddUser(addr); err != nil {
		in.t.Fatal(err)
	}
}

// tryAddUser is addUser returning the command's failure.
func (in *instance) tryAddUser(addr string) error {
	t := in.t
	t.Helper()
	ent, err := cmcrypto.GenerateKey("Fault Test", addr, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	w, err := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ent.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	kf := filepath.Join(in.dir, "key-"+hex.EncodeToString([]byte(addr))+".asc")
	if err := os.WriteFile(kf, pub.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary(t), "user", "add", "-config", in.cfgPath, "--public-key", kf, addr).CombinedOutput()
	if err != nil {
		return fmt.Errorf("cryptomail user add %s: %w\n%s", addr, err, out)
	}
	in.keys[addr] = openpgp.EntityList{ent}
	return nil
}

// start runs `cryptomail serve`; it does not wait for the listeners.
func (in *instance) start() {
	t := in.t
	t.Helper()
	logf, err := os.OpenFile(in.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child has its own descriptor
	fmt.Fprintf(logf, "=== faulttest: start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(binary(t), "serve", "-config", in.cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	in.mu.Lock()
	in.cmd, in.exited, in.waitErr = cmd, exited, nil
	in.mu.Unlock()
	go func() {
		err := cmd.Wait()
		in.mu.Lock()
		in.waitErr = err
		in.mu.Unlock()
		close(exited)
	}()
}

func (in *instance) running() bool {
	in.mu.Lock()
	exited := in.exited
	in.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// waitReady waits until the LMTP port accepts connections; it fails if the
// process exits first.
func (in *instance) waitReady() {
	in.t.Helper()
	if err := in.ready(replyWait); err != nil {
		in.t.Fatalf("%v\nserver log:\n%s", err, in.logTail(30))
	}
}

func (in *instance) ready(within time.Duration) error {
	in.mu.Lock()
	exited := in.exited
	in.mu.Unlock()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("cryptomail serve exited: %v", in.exitErr())
		default:
		}
		// Every listener, not only LMTP: the server opens them one after
		// another, and a case that dialed HTTP too early saw "connection
		// refused".
		if addr := in.notListening(); addr == "" {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("nothing listening on %s after %v", in.notListening(), within)
}

// notListening returns the first of the instance's listen addresses that
// does not take a connection, or "".
func (in *instance) notListening() string {
	for _, addr := range []string{in.lmtpAddr, in.smtpAddr, in.httpAddr} {
		if addr == "" {
			continue
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return addr
		}
		conn.Close()
	}
	return ""
}

func (in *instance) exitErr() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.waitErr
}

// kill sends SIGKILL to the server process and waits until it is gone.
func (in *instance) kill() {
	in.mu.Lock()
	cmd, exited := in.cmd, in.exited
	in.mu.Unlock()
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// stop sends SIGTERM and expects a clean exit (status 0).
func (in *instance) stop() {
	t := in.t
	t.Helper()
	if !in.running() {
		t.Errorf("cryptomail serve had already exited: %v\nserver log:\n%s", in.exitErr(), in.logTail(30))
		return
	}
	in.mu.Lock()
	cmd, exited := in.cmd, in.exited
	in.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-exited:
	case <-time.After(2 * replyWait):
		in.kill()
		t.Fatalf("serve did not exit after SIGTERM\nserver log:\n%s", in.logTail(30))
	}
	if err := in.exitErr(); err != nil {
		t.Errorf("serve exited with %v after SIGTERM\nserver log:\n%s", err, in.logTail(30))
	}
}

// alive fails the test when the server process has exited.
func (in *instance) alive(t testing.TB) {
	t.Helper()
	if !in.running() {
		t.Fatalf("cryptomail serve is gone: %v\nserver log:\n%s", in.exitErr(), in.logTail(40))
	}
}

func (in *instance) logTail(n int) string {
	data, err := os.ReadFile(in.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

// openStore opens the instance's storage in this process, as the admin
// commands do (beside a running server, or after it stopped).
func (in *instance) openStore() *shard.Store {
	t := in.t
	t.Helper()
	cfg, err := server.LoadConfig(in.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	st, err := server.OpenStore(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// newToken names one message; it is the value of the X-Faulttest header that
// starts every message the tests send.
func newToken() string {
	var b [8]byte
	rand.Read(b[:])
	return "ft" + hex.EncodeToString(b[:])
}

const tokenHeader = "X-Faulttest: "

// tokenOf returns the token of a delivered message (trace headers already
// stripped), or "".
func tokenOf(msg []byte) string {
	rest, ok := bytes.CutPrefix(msg, []byte(tokenHeader))
	if !ok {
		return ""
	}
	if i := bytes.IndexAny(rest, "\r\n"); i >= 0 {
		return string(rest[:i])
	}
	return ""
}

// outcome is what a test may expect to find stored for a (message, mailbox).
type outcome int

const (
	// mustStore: the server said 250: exactly one copy, byte for byte.
	mustStore outcome = iota + 1
	// mayStore: no reply arrived, or a refusal came after the whole message
	// was sent: at most one copy.
	mayStore
	// mustNotStore: the server never had the whole message.
	mustNotStore
)

func (o outcome) String() string {
	return [...]string{"?", "acknowledged", "unknown", "never complete"}[o]
}

type slot struct{ token, mailbox string }

// ledger records what was sent and what each recipient was told.
type ledger struct {
	mu   sync.Mutex
	msgs map[string][]byte // token → message as sent (before dot-stuffing)
	want map[slot]outcome
	keep map[string]bool // tokens whose stored plaintext verify returns
}

func newLedger() *ledger {
	return &ledger{msgs: map[string][]byte{}, want: map[slot]outcome{}, keep: map[string]bool{}}
}

// keepPlain asks verify to return tok's stored plaintext, trace headers
// included.
func (l *ledger) keepPlain(tok string) {
	l.mu.Lock()
	l.keep[tok] = true
	l.mu.Unlock()
}

func (l *ledger) record(token string, msg []byte, mailbox string, o outcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs[token] = msg
	l.want[slot{token, mailbox}] = o
}

// verification is what verify found.
type verification struct {
	stored      int // messages in all shards
	acked       int // (message, mailbox) pairs acknowledged
	unknown     int // pairs with no verdict (or a refusal after DATA)
	unknownKept int // ... of which stored
	count       map[slot]int
	plain       map[slot][]byte // for the tokens asked with keepPlain
}

// verify checks storage after the server stopped: the metabase and every
// user's shard pass SQLite's integrity check; every stored message decrypts
// with the user's key, body and summary, to the bytes sent to that user; no
// message is stored twice; every acknowledged one is there.
func (in *instance) verify(t testing.TB, l *ledger) verification {
	t.Helper()
	ctx := context.Background()
	st := in.openStore()
	defer st.Close()
	if err := st.CheckMeta(ctx); err != nil {
		t.Errorf("metabase: %v", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	v := verification{plain: map[slot][]byte{}}
	count := map[slot]int{}
	users := make([]string, 0, len(in.keys))
	for u := range in.keys {
		users = append(users, u)
	}
	slices.Sort(users)
	for _, user := range users {
		if err := st.Check(ctx, user); err != nil {
			t.Errorf("shard of %s: %v", user, err)
		}
		keys := in.keys[user]
		err := st.Messages(ctx, user, func(m shard.Message) error {
			v.stored++
			plain, err := cmcrypto.Decrypt(keys, m.Body)
			if err != nil {
				t.Errorf("%s: message %d: body: %v", user, m.ID, err)
				return nil
			}
			sum, err := cmcrypto.Decrypt(keys, m.Summary)
			if err != nil {
				t.Errorf("%s: message %d: summary: %v", user, m.ID, err)
			} else if !json.Valid(sum) {
				t.Errorf("%s: message %d: summary is not JSON", user, m.ID)
			}
			got := testenv.StripTrace(t, plain, user)
			tok := tokenOf(got)
			s := slot{tok, user}
			if l.keep[tok] {
				v.plain[s] = plain
			}
			sent, known := l.msgs[tok]
			switch {
			case tok == "" || !known:
				t.Errorf("%s: message %d was never sent by this test: %.80q", user, m.ID, got)
			case l.want[s] == 0:
				t.Errorf("%s: message %s stored for a mailbox it was not sent to", user, tok)
			case !bytes.Equal(got, sent):
				t.Errorf("%s: message %s differs from what was sent (%d bytes stored, %d sent)", user, tok, len(got), len(sent))
			}
			if m.Size != int64(len(plain)) {
				t.Errorf("%s: message %d: size %d, decrypted %d bytes", user, m.ID, m.Size, len(plain))
			}
			count[s]++
			return nil
		})
		if err != nil {
			t.Errorf("messages of %s: %v", user, err)
		}
	}
	v.count = count
	for s, n := range count {
		if n > 1 {
			t.Errorf("%s: message %s stored %d times", s.mailbox, s.token, n)
		}
	}
	for s, o := range l.want {
		n := count[s]
		switch o {
		case mustStore:
			v.acked++
			if n == 0 {
				t.Errorf("%s: acknowledged message %s is missing", s.mailbox, s.token)
			}
		case mayStore:
			v.unknown++
			if n > 0 {
				v.unknownKept++
			}
		case mustNotStore:
			if n > 0 {
				t.Errorf("%s: message %s was stored though the server never had all of it", s.mailbox, s.token)
			}
		}
	}
	return v
}
