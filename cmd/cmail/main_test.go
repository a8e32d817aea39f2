package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"cryptomail/client/clienttest"
	cmcrypto "cryptomail/crypto"
	"cryptomail/internal/testenv"
	"cryptomail/server"
	"cryptomail/xmap/sexmap"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// harness runs cmail against a server: the in-process protocol stack on
// memback (newHarness) or the real cryptomail server (newServerHarness).
type harness struct {
	t   *testing.T
	url string
	// invite issues an invite code; deliver stores an arriving message in an
	// INBOX and returns its id.
	invite  func(ctx context.Context, address string) (string, error)
	deliver func(ctx context.Context, address string, raw []byte) (string, error)
	// srv is the memback stack, nil for the real server.
	srv *clienttest.Server
	// dataDir is the real server's directory, "" for memback.
	dataDir string
	// real is the real server, nil for memback.
	real *server.Server
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	srv, err := clienttest.New(clienttest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return &harness{t: t, url: srv.URL, invite: srv.Invite, deliver: srv.Deliver, srv: srv}
}

// bothServers runs a test against memback and against the real server.
func bothServers(t *testing.T, test func(t *testing.T, h *harness)) {
	t.Run("memback", func(t *testing.T) { test(t, newHarness(t)) })
	t.Run("server", func(t *testing.T) { test(t, newServerHarness(t)) })
}

type result struct {
	code           int
	stdout, stderr string
}

// cmail runs cmail in process against the test server, with small KDF parameters.
func (h *harness) cmail(ctx context.Context, home string, env []string, stdin string, args ...string) result {
	var out, errb testenv.SyncBuffer
	c := newCLI(strings.NewReader(stdin), &out, &errb, env)
	c.kdf = sexmap.MinKDFParams
	code := runContext(ctx, c, append([]string{"-server", h.url, "-home", home}, args...))
	return result{code, out.String(), errb.String()}
}

// ok runs cmail and fails the test unless it exits 0.
func (h *harness) ok(home, pass, stdin string, args ...string) string {
	h.t.Helper()
	r := h.cmail(h.t.Context(), home, []string{envPassphrase + "=" + pass}, stdin, args...)
	if r.code != 0 {
		h.t.Fatalf("cmail %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fail runs cmail, expects exit status code and a one-line error, and returns it.
func (h *harness) fail(code int, home, pass, stdin string, args ...string) string {
	h.t.Helper()
	r := h.cmail(h.t.Context(), home, []string{envPassphrase + "=" + pass}, stdin, args...)
	if r.code != code {
		h.t.Fatalf("cmail %s: exit %d, want %d\n%s%s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	if code == 1 && (strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "cmail ")) {
		h.t.Errorf("cmail %s: error is not one line: %q", strings.Join(args, " "), r.stderr)
	}
	return r.stderr
}

func (h *harness) signup(home, address, pass string) {
	h.t.Helper()
	code, err := h.invite(h.t.Context(), address)
	if err != nil {
		h.t.Fatal(err)
	}
	out := h.ok(home, pass, "", "signup", address, "--invite", code)
	if !strings.Contains(out, "signed up "+address) {
		h.t.Errorf("signup said %q", out)
	}
}

// jsonArray decodes a listing's --json output and checks every element has an id.
func jsonArray(t *testing.T, out string) []map[string]any {
	t.Helper()
	var arr []map[string]any
	if err := json.Unmarshal([]byte(out), &arr); err != nil {
		t.Fatalf("not a JSON array: %v\n%s", err, out)
	}
	for _, o := range arr {
		if id, ok := o["id"].(string); !ok || id == "" {
			t.Errorf("element without an id: %v", o)
		}
	}
	return arr
}

var idRe = regexp.MustCompile(`(?m)^sent (\S+)$`)

func TestTwoUsers(t *testing.T) { bothServers(t, testTwoUsers) }

func testTwoUsers(t *testing.T, h *harness) {
	alice, bob := t.TempDir(), t.TempDir()
	h.signup(alice, "alice@example.org", "alice pass")
	h.signup(bob, "bob@example.org", "bob pass")

	// folders, text and JSON.
	out := h.ok(alice, "alice pass", "", "folders")
	if !strings.Contains(out, "INBOX") || !strings.Contains(out, "Junk") {
		t.Errorf("folders:\n%s", out)
	}
	fs := jsonArray(t, h.ok(alice, "alice pass", "", "folders", "--json"))
	if len(fs) != 5 || fs[0]["name"] != "INBOX" || fs[0]["role"] != "inbox" || fs[0]["total"] != 0.0 {
		t.Errorf("folders --json %v", fs)
	}

	// send with an attachment, body from stdin.
	att := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(att, []byte("attached notes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out = h.ok(alice, "alice pass", "Hello Bob,\nsee the notes.\n", "send", "--to", "bob@example.org", "--subject", "Notes for you", "--attach", att)
	m := idRe.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "bob@example.org: delivered") {
		t.Fatalf("send said %q", out)
	}
	sentID := m[1]

	// bob lists (flags after the argument) and reads.
	list := jsonArray(t, h.ok(bob, "bob pass", "", "list", "INBOX", "--json", "--limit", "10"))
	if len(list) != 1 || list[0]["subject"] != "Notes for you" || list[0]["from"] != "alice@example.org" || list[0]["has_attachments"] != true {
		t.Fatalf("list --json %v", list)
	}
	id := list[0]["id"].(string)
	text := h.ok(bob, "bob pass", "", "list")
	if !strings.Contains(text, id) || !strings.Contains(text, "Notes for you") || !strings.Contains(text, "N ") {
		t.Errorf("list:\n%s", text)
	}
	out = h.ok(bob, "bob pass", "", "read", id)
	for _, want := range []string{"Subject:   Notes for you", "Signature: good, by ", "end-to-end encrypted", "Hello Bob,\nsee the notes.\n", "notes.txt (text/plain"} {
		if !strings.Contains(out, want) {
			t.Errorf("read lacks %q:\n%s", want, out)
		}
	}
	raw := h.ok(bob, "bob pass", "", "read", "--raw", id)
	if !strings.Contains(raw, "Subject: Notes for you") || !strings.Contains(raw, "see the notes.") || !strings.Contains(raw, "filename=notes.txt") {
		t.Errorf("read --raw:\n%s", raw)
	}
	var rj map[string]any
	if err := json.Unmarshal([]byte(h.ok(bob, "bob pass", "", "read", "--json", id)), &rj); err != nil || rj["id"] != id ||
		rj["signature"].(map[string]any)["status"] != "verified" || len(rj["attachments"].([]any)) != 1 {
		t.Errorf("read --json: %v %v", rj, err)
	}
	// Reading marked it seen.
	list = jsonArray(t, h.ok(bob, "bob pass", "", "list", "--json"))
	if flags := list[0]["flags"].([]any); len(flags) != 1 || flags[0] != `\Seen` {
		t.Errorf("flags after read: %v", flags)
	}
	// And back: bob answers, alice reads it, end to end encrypted both ways.
	h.ok(bob, "bob pass", "Thanks, Alice!\n", "send", "--to", "alice@example.org", "--subject", "Re: Notes for you")
	back := jsonArray(t, h.ok(alice, "alice pass", "", "list", "--json"))
	if len(back) != 1 || back[0]["subject"] != "Re: Notes for you" || back[0]["from"] != "bob@example.org" {
		t.Fatalf("alice's INBOX: %v", back)
	}
	if out := h.ok(alice, "alice pass", "", "read", back[0]["id"].(string)); !strings.Contains(out, "Thanks, Alice!") || !strings.Contains(out, "end-to-end encrypted") || !strings.Contains(out, "Signature: good") {
		t.Errorf("alice reads bob's answer:\n%s", out)
	}
	// alice's Sent copy.
	list = jsonArray(t, h.ok(alice, "alice pass", "", "list", "Sent", "--json"))
	if len(list) != 1 || list[0]["id"] != sentID {
		t.Errorf("Sent: %v", list)
	}

	// Organise: flags, folders, mv, cp, rm, expunge.
	h.ok(bob, "bob pass", "", "flag", id, "-seen", "+flagged", "+$todo")
	list = jsonArray(t, h.ok(bob, "bob pass", "", "list", "--json"))
	if got := list[0]["flags"].([]any); len(got) != 2 || got[0] != `\Flagged` || got[1] != "$todo" {
		t.Errorf("flags %v", got)
	}
	h.ok(bob, "bob pass", "", "mkdir", "Projects")
	h.ok(bob, "bob pass", "", "rename", "Projects", "Work")
	h.fail(1, bob, "bob pass", "", "rename", "INBOX", "Other")
	h.ok(bob, "bob pass", "", "mv", id, "Work")
	out = h.ok(bob, "bob pass", "", "cp", id, "INBOX")
	cp := regexp.MustCompile(`as (\S+)`).FindStringSubmatch(out)
	if cp == nil {
		t.Fatalf("cp said %q", out)
	}
	if n := len(jsonArray(t, h.ok(bob, "bob pass", "", "list", "Work", "--json"))); n != 1 {
		t.Errorf("Work has %d", n)
	}
	h.ok(bob, "bob pass", "", "rm", cp[1])
	h.ok(bob, "bob pass", "", "rm", cp[1])
	if out := h.ok(bob, "bob pass", "", "expunge", "Trash"); !strings.Contains(out, "expunged 1") {
		t.Errorf("expunge said %q", out)
	}
	h.ok(bob, "bob pass", "", "rmdir", "Work")
	fs = jsonArray(t, h.ok(bob, "bob pass", "", "folders", "--json"))
	if len(fs) != 5 || fs[3]["name"] != "Trash" || fs[3]["total"] != 1.0 {
		t.Errorf("folders after rmdir: %v", fs)
	}
	if e := h.fail(1, bob, "bob pass", "", "mv", "123456", "INBOX"); !strings.Contains(e, "not-found") {
		t.Errorf("mv of a missing id: %q", e)
	}
	// memback's ids are global, so alice's id is not bob's. Shard ids are
	// per user (the same number may name one of bob's own messages); the
	// storage isolation test in server/internal/mailback covers that case.
	if h.srv != nil {
		if e := h.fail(1, bob, "bob pass", "", "read", sentID); !strings.Contains(e, "not-found") {
			t.Errorf("bob reading alice's message: %q", e)
		}
	}

	// A remote recipient without a key needs consent.
	e := h.fail(1, alice, "alice pass", "hi", "send", "--to", "bob@example.org,carol@remote.example", "--subject", "x")
	if !strings.Contains(e, "carol@remote.example") || !strings.Contains(e, "--allow-plaintext") {
		t.Errorf("send without consent: %q", e)
	}
	out = h.ok(alice, "alice pass", "hi", "send", "--to", "bob@example.org", "--cc", "carol@remote.example", "--subject", "x", "--allow-plaintext")
	if !strings.Contains(out, "carol@remote.example: queued (readable: no key)") {
		t.Errorf("send with consent said %q", out)
	}

	// logout forgets the account; login brings it back.
	h.ok(bob, "", "", "logout")
	if e := h.fail(1, bob, "bob pass", "", "folders"); !strings.Contains(e, "not logged in") {
		t.Errorf("folders after logout: %q", e)
	}
	if e := h.fail(1, bob, "wrong", "", "login", "bob@example.org"); !strings.Contains(e, "login failed") {
		t.Errorf("wrong passphrase: %q", e)
	}
	h.ok(bob, "bob pass", "", "login", "bob@example.org")
	h.ok(bob, "bob pass", "", "folders")
}

func TestPasswd(t *testing.T) { bothServers(t, testPasswd) }

func testPasswd(t *testing.T, h *harness) {
	home := t.TempDir()
	h.signup(home, "alice@example.org", "old pass")
	r := h.cmail(t.Context(), home, []string{envPassphrase + "=old pass", envNewPassphrase + "=new pass"}, "", "passwd")
	if r.code != 0 || !strings.Contains(r.stdout, "passphrase changed") {
		t.Fatalf("passwd: %d %s%s", r.code, r.stdout, r.stderr)
	}
	if e := h.fail(1, home, "old pass", "", "folders"); !strings.Contains(e, "login failed") {
		t.Errorf("old passphrase after passwd: %q", e)
	}
	h.ok(home, "new pass", "", "folders")
	// Another device logs in with the new passphrase and gets the key.
	other := t.TempDir()
	h.ok(other, "new pass", "", "login", "alice@example.org")
	h.ok(other, "new pass", "", "list")
}

func TestPassphraseSources(t *testing.T) {
	h := newHarness(t)
	home := t.TempDir()
	h.signup(home, "alice@example.org", "pass")
	// No variable, stdin not a terminal: the first line of stdin.
	r := h.cmail(t.Context(), home, nil, "pass\n", "folders")
	if r.code != 0 {
		t.Errorf("passphrase from stdin: %d %s", r.code, r.stderr)
	}
	// send reads the message from stdin, so it needs the variable.
	r = h.cmail(t.Context(), home, nil, "pass\nbody\n", "send", "--to", "alice@example.org")
	if r.code != 1 || !strings.Contains(r.stderr, envPassphrase) {
		t.Errorf("send without %s: %d %q", envPassphrase, r.code, r.stderr)
	}
	r = h.cmail(t.Context(), home, nil, "", "folders")
	if r.code != 1 || !strings.Contains(r.stderr, "no passphrase") {
		t.Errorf("no passphrase anywhere: %d %q", r.code, r.stderr)
	}
}

func TestPinChanged(t *testing.T) {
	h := newHarness(t)
	home := t.TempDir()
	r := h.cmail(t.Context(), home, []string{envPassphrase + "=pass"}, "", "signup", "--invite", mustInvite(t, h, "alice@example.org"), "alice@example.org")
	old := sexmap.EncodePublicKey(h.srv.PublicKey())
	if r.code != 0 || !strings.Contains(r.stderr, "pinned the key of "+h.srv.URL+" on first use: "+old) {
		t.Fatalf("first use: %d %q", r.code, r.stderr)
	}
	if err := h.srv.RotateKey(); err != nil {
		t.Fatal(err)
	}
	e := h.fail(1, home, "pass", "", "folders")
	for _, want := range []string{old, sexmap.EncodePublicKey(h.srv.PublicKey()), filepath.Join(home, "known_servers"), "changed"} {
		if !strings.Contains(e, want) {
			t.Errorf("pin error lacks %q: %s", want, e)
		}
	}
}

func mustInvite(t *testing.T, h *harness, address string) string {
	t.Helper()
	code, err := h.srv.Invite(t.Context(), address)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func TestSignupWithKey(t *testing.T) {
	h := newHarness(t)
	key, err := cmcrypto.GenerateKey("Alice", "alice@example.org", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	key.Serialize(&pub)
	if err := h.srv.AddUser("alice@example.org", pub.Bytes()); err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.Deliver(t.Context(), "alice@example.org", []byte("Subject: early bird\r\n\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := key.EncryptPrivateKeys([]byte("key pass"), nil); err != nil {
		t.Fatal(err)
	}
	var armored bytes.Buffer
	w, _ := armor.Encode(&armored, openpgp.PrivateKeyType, nil)
	key.SerializePrivateWithoutSigning(w, nil)
	w.Close()
	file := filepath.Join(t.TempDir(), "secret.asc")
	os.WriteFile(file, armored.Bytes(), 0o600)

	home := t.TempDir()
	code := mustInvite(t, h, "alice@example.org")
	r := h.cmail(t.Context(), home, []string{envPassphrase + "=pass", envKeyPassphrase + "=key pass"}, "", "signup", "--key", file, "--invite", code, "alice@example.org")
	if r.code != 0 {
		t.Fatalf("signup --key: %d %s", r.code, r.stderr)
	}
	if out := h.ok(home, "pass", "", "list"); !strings.Contains(out, "early bird") {
		t.Errorf("mail delivered before activation:\n%s", out)
	}
}

func TestWatch(t *testing.T) { bothServers(t, testWatch) }

func testWatch(t *testing.T, h *harness) {
	home := t.TempDir()
	h.signup(home, "alice@example.org", "pass")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errb testenv.SyncBuffer
	c := newCLI(strings.NewReader(""), &out, &errb, []string{envPassphrase + "=pass"})
	c.kdf = sexmap.MinKDFParams
	done := make(chan int, 1)
	go func() {
		done <- runContext(ctx, c, []string{"-server", h.url, "-home", home, "watch", "--json"})
	}()
	// The watch says when it has read its starting state; mail after that is new.
	waitFor(t, done, func() bool { return strings.Contains(errb.String(), "watching alice@example.org") })
	id, err := h.deliver(t.Context(), "alice@example.org", []byte("Subject: ping\r\n\r\nnew mail\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, done, func() bool { return strings.Contains(out.String(), "\n") })
	var got map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(out.String(), "\n", 2)[0]), &got); err != nil || got["id"] != id || got["subject"] != "ping" {
		t.Errorf("watch printed %q (%v)", out.String(), err)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("watch exit %d: %s", code, errb.String())
	}
}

// waitFor waits until cond holds; it fails only if the command ends first or nothing
// happens for a long time (a hang, not a slow machine).
func waitFor(t *testing.T, done chan int, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		select {
		case code := <-done:
			t.Fatalf("command ended with %d", code)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("gave up waiting")
		}
	}
}

func TestUsage(t *testing.T) {
	h := newHarness(t)
	home := t.TempDir()
	for _, args := range [][]string{
		{},
		{"nosuch"},
		{"-bogus", "folders"},
		{"folders", "extra"},
		{"folders", "--bogus"},
		{"list", "INBOX", "Sent"},
		{"list", "--limit", "x"},
		{"list", "--limit", "0"},
		{"list", "--limit"},
		{"read"},
		{"read", "not an id!"},
		{"read", "1", "--raw", "--json"},
		{"send", "--subject", "no recipient"},
		{"send", "--to", "a@example.org", "positional"},
		{"signup", "alice@example.org"},
		{"signup", "--invite", "x"},
		{"login"},
		{"mkdir"},
		{"rename", "a"},
		{"mv", "1"},
		{"cp", "1"},
		{"flag", "1"},
		{"flag", "+seen"},
		{"flag", "1", "+\\Seen"},
		{"rm"},
		{"expunge"},
		{"watch", "x"},
		{"passwd", "x"},
		{"logout", "x"},
	} {
		r := h.cmail(t.Context(), home, nil, "", args...)
		if r.code != 2 || !strings.Contains(r.stderr, "usage: cmail") {
			t.Errorf("cmail %q: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
	for _, args := range [][]string{{"help"}, {"-h"}, {"list", "-h"}, {"help", "send"}} {
		if r := h.cmail(t.Context(), home, nil, "", args...); r.code != 0 || !strings.Contains(r.stdout, "usage: cmail") {
			t.Errorf("cmail %q: exit %d, stdout %q", args, r.code, r.stdout)
		}
	}
	r := h.cmail(t.Context(), home, nil, "", "help")
	golden := filepath.Join("testdata", "usage.golden")
	if *update {
		os.MkdirAll("testdata", 0o755)
		os.WriteFile(golden, []byte(r.stdout), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil || string(want) != r.stdout {
		t.Errorf("usage differs from %s (go test -update rewrites it):\n%s", golden, r.stdout)
	}
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		pos   string
		limit int
		json  bool
	}{
		{[]string{"INBOX", "--limit", "3"}, "INBOX", 3, false},
		{[]string{"--limit=3", "INBOX", "-json"}, "INBOX", 3, true},
		{[]string{"-limit", "3", "--", "--json"}, "--json", 3, false},
		{[]string{"-"}, "-", 50, false},
	} {
		fs := newFlagSet("t")
		limit := fs.Int("limit", 50, "")
		js := fs.Bool("json", false, "")
		pos, err := parseArgs(fs, tc.args, nil)
		if err != nil || strings.Join(pos, " ") != tc.pos || *limit != tc.limit || *js != tc.json {
			t.Errorf("%q: pos %q limit %d json %v err %v", tc.args, pos, *limit, *js, err)
		}
	}
}
