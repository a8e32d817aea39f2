package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cryptomail/client"
	"cryptomail/internal/testenv"
	"cryptomail/xmap"
)

// TestBrowser runs the real server (the cryptomail binary with a config of its own) and
// drives the web client in Debian's Chromium through Playwright (web/test/e2e): two users
// sign up with invites in two browser contexts, exchange mail with an attachment, read mail
// that arrived over LMTP, move and delete it, see new mail arrive live, and an HTML mail
// with a script and a remote image runs nothing and loads nothing. Every request the pages
// make is logged, and none may go to another origin. Afterwards the Go client reads what
// the browser sent, so the two clients are checked against each other.
//
// Screenshots of the main screens are written to web/screenshots (git-ignored).
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	dir := nodeDir(t)
	chromium := testenv.RequireTool(t, "chromium")
	root := repoRoot(t)
	bin := buildServer(t, root)

	work := t.TempDir()
	lmtpAddr := testenv.FreePort(t)
	httpAddr := testenv.FreePort(t)
	cfg := filepath.Join(work, "cryptomail.toml")
	conf := fmt.Sprintf(`[server]
hostname = "mail.example.test"
domains = ["example.test"]
data_dir = "data"
[storage]
homes = ["data/homes"]
[lmtp]
listen = %q
[http]
listen = %q
[log]
level = "info"
`, lmtpAddr, httpAddr)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// The invites are made before the first serve: init creates the store.
	if out, err := exec.Command(bin, "init", "-config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("cryptomail init: %v\n%s", err, out)
	}
	users := []map[string]string{
		{"address": "alice@example.test", "name": "Alice Example", "passphrase": "correct horse battery staple"},
		{"address": "bob@example.test", "name": "Bob Example", "passphrase": "tr0ub4dor and three more words"},
		// Mallory signs up from Node (the web client's library) to forge mail as Alice.
		{"address": "mallory@example.test", "name": "Mallory", "passphrase": "mallory writes anything"},
	}
	for _, u := range users {
		u["invite"] = invite(t, bin, cfg, u["address"])
	}

	logs, stop := serve(t, bin, cfg)
	base := "http://" + httpAddr
	waitHealthy(t, base, logs)

	// A second server listens on every address without TLS (issue 9, item 7): it must refuse
	// to serve the web client. The browser reaches it on loopback all the same.
	exposedPort := testenv.FreePort(t)[len("127.0.0.1:"):]
	exposedCfg := filepath.Join(work, "exposed.toml")
	exposedConf := fmt.Sprintf("[server]\ndomains = [\"example.test\"]\ndata_dir = \"exposed\"\n[storage]\nhomes = [\"exposed/homes\"]\n"+
		"[lmtp]\nlisten = %q\n[http]\nlisten = %q\n", testenv.FreePort(t), "0.0.0.0:"+exposedPort)
	if err := os.WriteFile(exposedCfg, []byte(exposedConf), 0o600); err != nil {
		t.Fatal(err)
	}
	exposedLogs, stopExposed := serve(t, bin, exposedCfg)
	exposedBase := "http://127.0.0.1:" + exposedPort
	waitHealthy(t, exposedBase, exposedLogs)

	shots := filepath.Join(root, "web", "screenshots")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	attachment := bytes.Repeat([]byte("CryptoMail attachment \x00\x01\x02\xff\n"), 700)
	attPath := filepath.Join(work, "report.bin")
	if err := os.WriteFile(attPath, attachment, 0o600); err != nil {
		t.Fatal(err)
	}
	usersJSON, _ := json.Marshal(users)
	result := filepath.Join(work, "result.json")
	env := []string{
		"CM_URL=" + base,
		"CM_LMTP=" + lmtpAddr,
		"CM_USERS=" + string(usersJSON),
		"CM_CHROMIUM=" + chromium,
		"CM_SCREENSHOTS=" + shots,
		"CM_ATTACHMENT=" + attPath,
		"CM_RESULT=" + result,
		"CM_EXPOSED_URL=" + exposedBase,
	}
	files, _ := filepath.Glob(filepath.Join(dir, "test", "e2e", "*.test.mjs"))
	if len(files) == 0 {
		t.Fatal("no browser tests in web/test/e2e")
	}
	args := []string{"--test", "--test-reporter=tap", "--test-concurrency=1"}
	for _, f := range files {
		rel, _ := filepath.Rel(dir, f)
		args = append(args, rel)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if testing.Verbose() || err != nil {
		t.Logf("browser tests:\n%s", out.String())
	}
	if err != nil {
		t.Fatalf("browser tests failed: %v\nserver log:\n%s", err, logs.String())
	}
	stopExposed()
	if !strings.Contains(exposedLogs.String(), "allow_insecure_web") {
		t.Errorf("the server listening off loopback without TLS did not warn at start:\n%s", exposedLogs.String())
	}
	if !strings.Contains(out.String(), "\n# fail 0\n") {
		t.Fatalf("browser tests did not report success")
	}

	// What the browser left behind, read with the Go client: the mail Alice sent Bob from the
	// browser opens in Go, end-to-end encrypted and signed by her key, with the attachment.
	var res struct {
		BobPassphrase string `json:"bobPassphrase"`
		Subject       string `json:"subject"`
	}
	data, err := os.ReadFile(result)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Options{Server: base})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Login(ctx, "bob@example.test", []byte(res.BobPassphrase))
	if err != nil {
		t.Fatalf("the Go client logs in with the passphrase set in the browser: %v", err)
	}
	defer s.Logout(ctx)
	found := false
	for _, folder := range []string{"INBOX", "Junk", "Trash"} {
		page, err := s.List(ctx, xmap.FolderRef{Name: folder}, client.ListOptions{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range page.Messages {
			if l.Summary == nil || l.Summary.Subject != res.Subject {
				continue
			}
			found = true
			m, err := s.Read(ctx, l.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !m.Encrypted || m.Signature.Status != client.SignatureVerified || !m.StorageEncrypted {
				t.Errorf("browser-sent message in Go: encrypted %v, signature %+v, storage %v", m.Encrypted, m.Signature, m.StorageEncrypted)
			}
			from, err := mail.ParseAddress(m.From)
			if m.Subject != res.Subject || err != nil || from.Name != "Alice Example" || from.Address != "alice@example.test" {
				t.Errorf("headers: %q from %q", m.Subject, m.From)
			}
			if len(m.Attachments) != 1 || !bytes.Equal(m.Attachments[0].Data, attachment) || m.Attachments[0].Filename != "report.bin" {
				t.Errorf("attachment lost or changed: %d attachments", len(m.Attachments))
			}
		}
	}
	if !found {
		t.Errorf("the Go client does not find %q in Bob's mailbox", res.Subject)
	}
	stop()
	for _, u := range users {
		if strings.Contains(logs.String(), u["passphrase"]) || strings.Contains(logs.String(), u["invite"]) {
			t.Errorf("the server log holds a secret of %s", u["address"])
		}
	}
}

// serve starts `cryptomail serve -config cfg` and returns its output and a stop function
// (SIGTERM, then kill after 30 s), also run at cleanup.
func serve(t *testing.T, bin, cfg string) (*testenv.SyncBuffer, func()) {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	srv := exec.Command(bin, "serve", "-config", cfg)
	srv.Stdout = logs
	srv.Stderr = logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		srv.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			srv.Process.Kill()
			<-exited
		}
	}
	t.Cleanup(stop)
	return logs, stop
}

func buildServer(t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cryptomail")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/cryptomail")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// invite creates an invite with the admin command; its code is the last line it prints.
func invite(t *testing.T, bin, cfg, address string) string {
	t.Helper()
	out, err := exec.Command(bin, "user", "invite", "-config", cfg, address).Output()
	if err != nil {
		t.Fatalf("user invite %s: %v", address, err)
	}
	lines := strings.Fields(strings.TrimSpace(string(out)))
	return lines[len(lines)-1]
}

func waitHealthy(t *testing.T, base string, logs *testenv.SyncBuffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the server did not come up:\n%s", logs.String())
}
