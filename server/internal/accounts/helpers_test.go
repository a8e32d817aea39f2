package accounts_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flynn/noise"

	cmcrypto "cryptomail/crypto"
	"cryptomail/internal/testenv"
	"cryptomail/server/internal/accounts"
	"cryptomail/shard"
	"cryptomail/xmap"
	"cryptomail/xmap/sexmap"
	"cryptomail/xmap/xmapserver"
	"cryptomail/xmap/xmapserver/memback"
)

// testKDF is the cheapest derivation the server accepts, so the tests stay
// fast while running the real Argon2id.
var testKDF = sexmap.MinKDFParams

// composed is the test's whole xmapserver.Backend: the account methods from
// accounts.Backend, everything else from memback one level deeper, so the
// shallower accounts methods win.
type composed struct {
	*accounts.Backend
	mail
}

type mail struct{ *memback.Backend }

var _ xmapserver.Backend = composed{}

// clock is the Backend's clock; tests move it to expire invites.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

// canonical stands in for server.Config.ServedAddress: lower case, and only
// example.org is served.
func canonical(a string) (string, error) {
	a = strings.ToLower(strings.TrimSpace(a))
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || a[at+1:] != "example.org" {
		return "", errors.New("domain not served")
	}
	return a, nil
}

// env is a real SeXMAP server in front of xmapserver with the composed
// backend, on a shard store in a temporary directory.
type env struct {
	store   *shard.Store
	opts    shard.Options // the store's, for otherProcess
	acc     *accounts.Backend
	sx      *sexmap.Server
	key     noise.DHKey
	url     string
	ts      *httptest.Server
	clock   *clock
	logs    *testenv.SyncBuffer
	secrets []string // strings no log line may contain
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	logs := &testenv.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := shard.Options{
		DataDir: filepath.Join(dir, "data"),
		Homes:   []string{filepath.Join(dir, "home1"), filepath.Join(dir, "home2")},
		Logger:  logger,
	}
	st, err := shard.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, err := sexmap.LoadOrCreateServerKey(accounts.ServerKeyPath(filepath.Join(dir, "data")))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{store: st, opts: opts, key: key, clock: &clock{}, logs: logs}
	e.acc, err = accounts.New(accounts.Config{
		Store:            st,
		CanonicalAddress: canonical,
		FakeSalt:         accounts.FakeSaltFunc(key.Private),
		Now:              e.clock.Now,
		Logger:           logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	xs := &xmapserver.Server{Backend: composed{e.acc, mail{memback.New(memback.Options{})}}, Logger: logger}
	var sx *sexmap.Server
	handler := sexmap.HandlerFunc(func(ctx context.Context, s *sexmap.Session, req []byte) []byte {
		if s.Fresh {
			ctx = xmapserver.WithLoginProof(ctx) // as server/xmap.go does
		}
		resp, loggedOut := xs.Serve(ctx, s.Address, s.Anonymous, req)
		if loggedOut {
			sx.EndSession(s.ID)
		}
		return resp
	})
	sx, err = sexmap.NewServer(sexmap.Config{
		StaticKey:        key,
		Accounts:         e.acc,
		CanonicalAddress: canonical,
		// Many failed logins on purpose; back-off is sexmap's own business.
		Lockout: sexmap.LockoutPolicy{BackoffAfter: 1000, LockAfter: 1000},
		Logger:  logger,
	}, handler)
	if err != nil {
		t.Fatal(err)
	}
	e.sx = sx
	e.ts = httptest.NewServer(sx)
	t.Cleanup(e.ts.Close)
	e.url = e.ts.URL
	t.Cleanup(func() {
		out := e.logs.String()
		for _, s := range e.secrets {
			if strings.Contains(out, s) {
				t.Errorf("a secret appears in the server log")
			}
		}
	})
	return e
}

// otherProcess opens the server's files a second time, as the admin CLI
// (`cryptomail user del`) does while the server runs.
func (e *env) otherProcess(t *testing.T) *shard.Store {
	t.Helper()
	st, err := shard.Open(context.Background(), e.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// secret registers strings that must never be logged.
func (e *env) secret(ss ...string) { e.secrets = append(e.secrets, ss...) }

// invite makes an invite for address valid for d.
func (e *env) invite(t *testing.T, address string, d time.Duration) string {
	t.Helper()
	code, err := accounts.CreateInvite(context.Background(), e.store, rand.Reader, address, time.Now().Add(d))
	if err != nil {
		t.Fatalf("CreateInvite(%s): %v", address, err)
	}
	e.secret(code, strings.ReplaceAll(code, "-", ""))
	return code
}

func (e *env) nk(t *testing.T) *sexmap.ClientSession {
	t.Helper()
	c, err := sexmap.DialNK(context.Background(), e.ts.Client(), e.url, e.key.Public)
	if err != nil {
		t.Fatalf("DialNK: %v", err)
	}
	return c
}

func (e *env) xk(address string, loginPriv [32]byte) (*sexmap.ClientSession, error) {
	return sexmap.DialXK(context.Background(), e.ts.Client(), e.url, e.key.Public, loginPriv, address)
}

// call runs one request in a session and returns its response.
func call(t *testing.T, c *sexmap.ClientSession, cmd xmap.Command) xmap.Response {
	t.Helper()
	var doc bytes.Buffer
	if err := xmap.EncodeRequest(&doc, &xmap.Batch{Requests: []xmap.Request{{ID: "r1", Command: cmd}}}); err != nil {
		t.Fatal(err)
	}
	out, err := c.RoundTrip(context.Background(), doc.Bytes())
	if err != nil {
		t.Fatalf("%s: RoundTrip: %v", cmd.Name(), err)
	}
	resp, err := xmap.DecodeResponse(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("%s: DecodeResponse: %v\n%s", cmd.Name(), err, out)
	}
	if resp.Error != nil || len(resp.Responses) != 1 {
		t.Fatalf("%s: unexpected response\n%s", cmd.Name(), out)
	}
	return resp.Responses[0]
}

// ended checks that a session is gone: its request is refused with
// 401 unknown-session and never reaches XMAP.
func ended(t *testing.T, c *sexmap.ClientSession, cmd xmap.Command) {
	t.Helper()
	var doc bytes.Buffer
	if err := xmap.EncodeRequest(&doc, &xmap.Batch{Requests: []xmap.Request{{ID: "r1", Command: cmd}}}); err != nil {
		t.Fatal(err)
	}
	if out, err := c.RoundTrip(context.Background(), doc.Bytes()); !errors.Is(err, sexmap.ErrUnknownSession) {
		t.Errorf("%s on an ended session: %v, want unknown-session\n%s", cmd.Name(), err, out)
	}
}

// code is a response's error code, "" for success.
func code(r xmap.Response) xmap.ErrorCode {
	if r.Err != nil {
		return r.Err.Code
	}
	return ""
}

// user is a client-side identity: an OpenPGP key pair and a passphrase.
type user struct {
	address    string
	passphrase string
	publicKey  []byte // binary transferable public key
	fpr        string
	salt       []byte
	loginPriv  [32]byte
	sealedKey  []byte
}

func newUser(t *testing.T, e *env, address, passphrase string) *user {
	t.Helper()
	ent, err := cmcrypto.GenerateKey("Test", address, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pk, err := cmcrypto.NewPublicKey(ent, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var bin bytes.Buffer
	if err := pk.Entity().Serialize(&bin); err != nil {
		t.Fatal(err)
	}
	u := &user{address: address, publicKey: bin.Bytes(), fpr: pk.Fingerprint()}
	u.setPassphrase(t, e, passphrase)
	return u
}

// setPassphrase derives fresh login material as a client does: new salt,
// Argon2id, HKDF. The sealed key stands for the client's sealed private key,
// which is opaque to the server.
func (u *user) setPassphrase(t *testing.T, e *env, passphrase string) {
	t.Helper()
	salt, err := sexmap.NewSalt(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, seal, err := sexmap.DeriveKeys([]byte(passphrase), salt, testKDF)
	if err != nil {
		t.Fatal(err)
	}
	u.passphrase, u.salt, u.loginPriv = passphrase, salt, priv
	u.sealedKey = append([]byte("sealed private key of "+u.address+" "), seal[:8]...)
	e.secret(passphrase, fmt.Sprintf("%x", priv[:]), fmt.Sprintf("%x", seal[:]))
}

func (u *user) kdf() xmap.KDF {
	return xmap.KDF{Alg: xmap.KDFArgon2id, Salt: u.salt, Time: testKDF.Time, Memory: testKDF.MemoryKiB, Threads: testKDF.Threads}
}

func (u *user) signup(invite string) *xmap.Signup {
	return &xmap.Signup{
		Invite:    invite,
		Address:   u.address,
		PublicKey: u.publicKey,
		LoginKey:  sexmap.LoginPublicKey(u.loginPriv),
		KDF:       u.kdf(),
		SealedKey: u.sealedKey,
	}
}

// login derives the login key from a passphrase the way a client does (salt
// lookup, then Argon2id) and dials XK.
func (e *env) login(t *testing.T, address, passphrase string) (*sexmap.ClientSession, error) {
	t.Helper()
	r := call(t, e.nk(t), &xmap.SaltLookup{Address: address})
	if r.Err != nil {
		t.Fatalf("salt-lookup: %v", r.Err)
	}
	k := r.Result.(*xmap.SaltLookupResult).KDF
	priv, _, err := sexmap.DeriveKeys([]byte(passphrase), k.Salt, sexmap.KDFParams{Time: k.Time, MemoryKiB: k.Memory, Threads: k.Threads})
	if err != nil {
		t.Fatalf("DeriveKeys: %v", err)
	}
	return e.xk(address, priv)
}
