package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	cmcrypto "cryptomail/crypto"
	"cryptomail/server/internal/accounts"
	"cryptomail/xmap"
	"cryptomail/xmap/sexmap"
	"cryptomail/xmap/xmapserver/xmaptest"
)

// recorder is a proxy between client and server that keeps every transport
// request it forwarded, so a test can replay or tamper with them.
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	header http.Header
	body   []byte
}

func (rc *recorder) last() recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.reqs[len(rc.reqs)-1]
}

func startRecordingProxy(t *testing.T, target string) (*recorder, string) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rc := &recorder{}
	rp := httputil.NewSingleHostReverseProxy(u)
	ps := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == sexmap.PathTransport {
			body, _ := io.ReadAll(r.Body)
			rc.mu.Lock()
			rc.reqs = append(rc.reqs, recorded{r.Header.Clone(), body})
			rc.mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(ps.Close)
	return rc, ps.URL
}

// xmapCall runs one request over a SeXMAP session and returns its result.
func xmapCall(t *testing.T, s *sexmap.ClientSession, cmd xmap.Command) xmap.Result {
	t.Helper()
	var doc bytes.Buffer
	if err := xmap.EncodeRequest(&doc, &xmap.Batch{Requests: []xmap.Request{{ID: "r", Command: cmd}}}); err != nil {
		t.Fatal(err)
	}
	raw, err := s.RoundTrip(context.Background(), doc.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := xmap.DecodeResponse(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Error != nil {
		t.Fatalf("%s: document error %v", cmd.Name(), resp.Error)
	}
	if r := resp.Responses[0]; r.Err != nil {
		t.Fatalf("%s: %v", cmd.Name(), r.Err)
	}
	return resp.Responses[0].Result
}

// signup makes an account through the real server: invite from the admin
// path, then salt-free sign-up over an anonymous session, then a login.
func signup(t *testing.T, ts *testServer, base, addr, passphrase string) *sexmap.ClientSession {
	t.Helper()
	ctx := context.Background()
	code, err := accounts.CreateInvite(ctx, ts.Store(), rand.Reader, addr, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sexmap.FetchServerKey(ctx, http.DefaultClient, base)
	if err != nil {
		t.Fatal(err)
	}
	ent, err := cmcrypto.GenerateKey("Test", addr, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var pk bytes.Buffer
	ent.Serialize(&pk)
	salt, _ := sexmap.NewSalt(rand.Reader)
	params := sexmap.MinKDFParams
	login, _, err := sexmap.DeriveKeys([]byte(passphrase), salt, params)
	if err != nil {
		t.Fatal(err)
	}
	anon, err := sexmap.DialNK(ctx, http.DefaultClient, base, pub)
	if err != nil {
		t.Fatal(err)
	}
	xmapCall(t, anon, &xmap.Signup{
		Invite: code, Address: addr, PublicKey: pk.Bytes(), LoginKey: sexmap.LoginPublicKey(login),
		KDF:       xmap.KDF{Alg: xmap.KDFArgon2id, Salt: salt, Time: params.Time, Memory: params.MemoryKiB, Threads: params.Threads},
		SealedKey: []byte("sealed private key: opaque to the server"),
	})
	sess, err := sexmap.DialXK(ctx, http.DefaultClient, base, pub, login, addr)
	if err != nil {
		t.Fatal(err)
	}
	return sess
}

// Replayed and tampered frames, captured by a proxy, are refused with 4xx
// and change nothing; a plain XML POST is refused too.
func TestSeXMAPReplayAndTamper(t *testing.T) {
	ts := startServer(t)
	rc, base := startRecordingProxy(t, "http://"+ts.Addr("http"))
	sess := signup(t, ts, base, "alice@example.test", "correct horse battery staple")

	count := func() int {
		res := xmapCall(t, sess, &xmap.ListMessages{Folder: xmap.FolderRef{Name: "Drafts"}})
		return res.(*xmap.ListMessagesResult).Total
	}
	xmapCall(t, sess, &xmap.Append{Folder: xmap.FolderRef{Name: "Drafts"}, Body: xmaptest.Sealed("ciphertext body"), Summary: xmaptest.Sealed("ciphertext summary")})
	appendReq := rc.last()
	if n := count(); n != 1 {
		t.Fatalf("Drafts has %d messages, want 1", n)
	}

	send := func(h http.Header, body []byte) int {
		t.Helper()
		req, _ := http.NewRequest("POST", base+sexmap.PathTransport, bytes.NewReader(body))
		req.Header = h.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := send(appendReq.header, appendReq.body); got != http.StatusConflict {
		t.Errorf("replayed append: HTTP %d, want 409", got)
	}
	for _, i := range []int{3, 8, len(appendReq.body) / 2, len(appendReq.body) - 1} {
		tampered := bytes.Clone(appendReq.body)
		tampered[i] ^= 0x40
		if got := send(appendReq.header, tampered); got/100 != 4 {
			t.Errorf("tampered byte %d: HTTP %d, want 4xx", i, got)
		}
	}
	if got := send(appendReq.header, appendReq.body[:5]); got != http.StatusBadRequest {
		t.Errorf("truncated frame: HTTP %d, want 400", got)
	}
	plain := http.Header{"Content-Type": {"application/xml"}}
	if got := send(plain, []byte(`<xmap xmlns="urn:cryptomail:xmap:1" version="1"><list-folders id="a"/></xmap>`)); got/100 != 4 {
		t.Errorf("plain XML POST: HTTP %d, want 4xx", got)
	}
	if n := count(); n != 1 {
		t.Errorf("after replay and tampering Drafts has %d messages, want 1", n)
	}
	// The session still works after the attacks.
	if _, ok := xmapCall(t, sess, &xmap.ListFolders{}).(*xmap.ListFoldersResult); !ok {
		t.Error("list-folders after the attacks failed")
	}
}

// The passphrase and the sealed key never reach the disk or the logs in a
// readable form; the server keeps only the public login key.
func TestSignupLeavesNoSecrets(t *testing.T) {
	ts := startServer(t)
	base := "http://" + ts.Addr("http")
	const pass = "PASSPHRASEMARKER-4b1d"
	sess := signup(t, ts, base, "bob@example.test", pass)
	xmapCall(t, sess, &xmap.ListFolders{})
	ts.Shutdown(context.Background())
	filepath.Walk(ts.dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(pass)) {
				t.Errorf("passphrase found in %s", p)
			}
		}
		return nil
	})
	if bytes.Contains([]byte(ts.logs.String()), []byte(pass)) {
		t.Error("passphrase found in the logs")
	}
	if fi, err := os.Stat(accounts.ServerKeyPath(ts.cfg.Server.DataDir)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("server key file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
}
