package sexmap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/flynn/noise"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/hkdf"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json from the implementation")

const vectorsPath = "testdata/vectors.json"

// The JSON layout is part of docs/SEXMAP.md ("Test vectors"); keep the two
// in step. All byte strings are lower-case hex unless the name says
// otherwise.
type vectorFile struct {
	Comment     []string         `json:"comment"`
	Version     string           `json:"version"`
	ContentType string           `json:"content_type"`
	KDF         []kdfVector      `json:"kdf"`
	KDFRefused  []kdfParamsJSON  `json:"kdf_refused"`
	FakeSalt    []fakeSaltVector `json:"fake_salt"`
	Sessions    []sessionVector  `json:"sessions"`
}

type kdfParamsJSON struct {
	Time      uint32 `json:"t"`
	MemoryKiB uint32 `json:"m_kib"`
	Threads   uint8  `json:"p"`
}

type kdfVector struct {
	Comment       string        `json:"comment,omitempty"`
	Passphrase    string        `json:"passphrase"`
	PassphraseHex string        `json:"passphrase_utf8"`
	Salt          string        `json:"salt"`
	Params        kdfParamsJSON `json:"params"`
	BelowFloor    bool          `json:"below_floor"`
	Argon2id      string        `json:"argon2id"`
	LoginPrivate  string        `json:"login_private"`
	LoginPublic   string        `json:"login_public"`
	SealKey       string        `json:"seal_key"`
}

type fakeSaltVector struct {
	ServerStaticPrivate string `json:"server_static_private"`
	ServerSecret        string `json:"server_secret"`
	Address             string `json:"address"`
	FakeSalt            string `json:"fake_salt"`
}

type httpMessage struct {
	From    string            `json:"from"` // "client" or "server"
	Method  string            `json:"method,omitempty"`
	Path    string            `json:"path,omitempty"`
	Status  int               `json:"status,omitempty"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

type frameVector struct {
	Counter      uint64 `json:"counter"`
	Request      string `json:"request"`
	RequestAD    string `json:"request_ad"`
	RequestBody  string `json:"request_body"`
	Response     string `json:"response"`
	ResponseAD   string `json:"response_ad"`
	ResponseBody string `json:"response_body"`
}

type sessionVector struct {
	Pattern                string        `json:"pattern"`
	ProtocolName           string        `json:"protocol_name"`
	Prologue               string        `json:"prologue"`
	ServerStaticPrivate    string        `json:"server_static_private"`
	ServerStaticPublic     string        `json:"server_static_public"`
	ServerStaticBase64URL  string        `json:"server_static_public_base64url"`
	ClientStaticPrivate    string        `json:"client_static_private,omitempty"`
	ClientStaticPublic     string        `json:"client_static_public,omitempty"`
	Address                string        `json:"address,omitempty"`
	DeviceToken            string        `json:"device_token,omitempty"` // XK with a device token only
	ClientEphemeralPrivate string        `json:"client_ephemeral_private"`
	ServerEphemeralPrivate string        `json:"server_ephemeral_private"`
	HandshakeID            string        `json:"handshake_id,omitempty"`
	SessionID              string        `json:"session_id"`
	SessionIDHeader        string        `json:"session_id_header"`
	Messages               []httpMessage `json:"messages"`
	HandshakeHash          string        `json:"handshake_hash"`
	ClientToServerKey      string        `json:"client_to_server_key"`
	ServerToClientKey      string        `json:"server_to_client_key"`
	Frames                 []frameVector `json:"frames"`
}

// seed derives a fixed test input from a label, so the file shows where
// every input came from.
func seed(label string) []byte {
	h := sha256.Sum256([]byte("SeXMAP/1 test vector " + label))
	return h[:]
}

// fixedReader hands out exactly the bytes it was given and fails after, so
// a change in how many random bytes the code draws, or in their order,
// breaks the test instead of silently changing the vectors.
type fixedReader struct {
	mu   sync.Mutex
	data []byte
}

func (r *fixedReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.data) == 0 {
		return 0, errors.New("fixed reader exhausted")
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func (r *fixedReader) left() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.data)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func x(b []byte) string { return hex.EncodeToString(b) }

func TestVectors(t *testing.T) {
	got := buildVectors(t)
	data, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, '\n')
	if *update {
		if err := os.WriteFile(vectorsPath, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatalf("%v (run go test -run TestVectors -update)", err)
	}
	if !bytes.Equal(data, want) {
		t.Fatalf("the implementation no longer reproduces %s; if the protocol changed on purpose, bump Version and run with -update", vectorsPath)
	}
	// The file must also parse back into the same vectors (no stray fields).
	var back vectorFile
	dec := json.NewDecoder(bytes.NewReader(want))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&back); err != nil {
		t.Fatal(err)
	}
	if len(back.Sessions) != 3 || len(back.KDF) != 3 {
		t.Fatalf("vectors file holds %d sessions, %d KDF examples", len(back.Sessions), len(back.KDF))
	}
}

func buildVectors(t *testing.T) vectorFile {
	v := vectorFile{
		Comment: []string{
			"SeXMAP/1 test vectors; the layout and how to use them are in docs/SEXMAP.md, section Test vectors.",
			"Byte strings are lower-case hex unless a name ends in _base64url or _header. Generated by go test -run TestVectors -update in xmap/sexmap.",
		},
		Version:     Version,
		ContentType: ContentType,
	}
	kdfInputs := []struct {
		comment, pass, saltLabel string
		p                        KDFParams
		below                    bool
	}{
		{"MinKDFParams", "correct horse battery staple", "salt 1", MinKDFParams, false},
		{"two lanes; the passphrase is NFC-normalized UTF-8", "pässwörd ☃ 密码", "salt 2", KDFParams{Time: 2, MemoryKiB: 19 * 1024, Threads: 2}, false},
		{"below the floor: DeriveKeys must refuse these parameters; shown so a KDF can be checked quickly", "tiny", "salt 3", KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}, true},
	}
	var aliceLogin [32]byte
	for i, in := range kdfInputs {
		salt := seed(in.saltLabel)[:SaltSize]
		var login, seal [32]byte
		var err error
		if in.below {
			if _, _, err := DeriveKeys([]byte(in.pass), salt, in.p); !errors.Is(err, ErrKDFParams) {
				t.Fatalf("DeriveKeys accepted %+v", in.p)
			}
			login, seal, err = deriveKeys([]byte(in.pass), salt, in.p)
		} else {
			login, seal, err = DeriveKeys([]byte(in.pass), salt, in.p)
		}
		if err != nil {
			t.Fatal(err)
		}
		// Cross-check the published intermediate against the outputs.
		ikm := argon2.IDKey([]byte(in.pass), salt, in.p.Time, in.p.MemoryKiB, in.p.Threads, 32)
		for label, key := range map[string][32]byte{LoginKeyLabel: login, SealKeyLabel: seal} {
			var k [32]byte
			io.ReadFull(hkdf.New(sha256.New, ikm, nil, []byte(label)), k[:])
			if k != key {
				t.Fatalf("HKDF %q does not match DeriveKeys", label)
			}
		}
		if i == 0 {
			aliceLogin = login
		}
		v.KDF = append(v.KDF, kdfVector{
			Comment: in.comment, Passphrase: in.pass, PassphraseHex: x([]byte(in.pass)), Salt: x(salt),
			Params:     kdfParamsJSON{in.p.Time, in.p.MemoryKiB, in.p.Threads},
			BelowFloor: in.below, Argon2id: x(ikm),
			LoginPrivate: x(login[:]), LoginPublic: x(LoginPublicKey(login)), SealKey: x(seal[:]),
		})
	}
	for _, p := range []KDFParams{
		{Time: 1, MemoryKiB: 19 * 1024, Threads: 1},
		{Time: 2, MemoryKiB: 19*1024 - 1, Threads: 1},
		{Time: 2, MemoryKiB: 19 * 1024, Threads: 0},
		{Time: 17, MemoryKiB: 19 * 1024, Threads: 1},
		{Time: 2, MemoryKiB: 2*1024*1024 + 1, Threads: 1},
		{Time: 2, MemoryKiB: 19 * 1024, Threads: 17},
	} {
		if p.Validate() == nil {
			t.Fatalf("%+v validates", p)
		}
		v.KDFRefused = append(v.KDFRefused, kdfParamsJSON{p.Time, p.MemoryKiB, p.Threads})
	}

	serverPriv := seed("server static")
	secret := ServerSecret(serverPriv)
	for _, addr := range []string{"nobody@example.org", "ghost@example.net"} {
		v.FakeSalt = append(v.FakeSalt, fakeSaltVector{x(serverPriv), x(secret), addr, x(FakeSalt(secret, addr))})
	}

	v.Sessions = []sessionVector{
		sessionVectors(t, "NK", "NK", serverPriv, nil, "", nil, []string{
			`<?xml version="1.0" encoding="UTF-8"?><xmap xmlns="urn:cryptomail:xmap:1"><salt address="alice@example.org"/></xmap>`,
			`<?xml version="1.0" encoding="UTF-8"?><xmap xmlns="urn:cryptomail:xmap:1"><salt address="nobody@example.org"/></xmap>`,
		}),
		sessionVectors(t, "XK", "XK", serverPriv, &aliceLogin, "alice@example.org", nil, []string{
			`<?xml version="1.0" encoding="UTF-8"?><xmap xmlns="urn:cryptomail:xmap:1"><folders/></xmap>`,
			`<?xml version="1.0" encoding="UTF-8"?><xmap xmlns="urn:cryptomail:xmap:1"><logout/></xmap>`,
		}),
		// A login with a device token after the address (SEXMAP.md, "Device tokens").
		sessionVectors(t, "XK", "XK device token", serverPriv, &aliceLogin, "alice@example.org", seed("device token"), []string{
			`<?xml version="1.0" encoding="UTF-8"?><xmap xmlns="urn:cryptomail:xmap:1"><folders/></xmap>`,
		}),
	}
	return v
}

// vectorResponse is the vector server's fixed answer to a request.
func vectorResponse(req []byte) []byte {
	sum := sha256.Sum256(req)
	return fmt.Appendf(nil, `<?xml version="1.0" encoding="UTF-8"?><xmap xmlns="urn:cryptomail:xmap:1"><ok request-sha256="%x"/></xmap>`, sum[:8])
}

type vectorAccounts map[string][]byte

func (a vectorAccounts) LoginKey(_ context.Context, address string) ([]byte, error) {
	if k, ok := a[address]; ok {
		return k, nil
	}
	return nil, ErrUnknownAccount
}

func (a vectorAccounts) Generation(ctx context.Context, address string) ([]byte, error) {
	return a.LoginKey(ctx, address)
}

func (a vectorAccounts) DeviceTokenValid(_ context.Context, _ string, token []byte) (bool, error) {
	return bytes.Equal(token, seed("device token")), nil
}

// recorder keeps every HTTP exchange of the vector run, in order.
type recorder struct{ messages []httpMessage }

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	r.messages = append(r.messages,
		httpMessage{From: "client", Method: req.Method, Path: req.URL.Path, Headers: sexmapHeaders(req.Header), Body: x(body)},
		httpMessage{From: "server", Status: resp.StatusCode, Headers: sexmapHeaders(resp.Header), Body: x(respBody)})
	return resp, nil
}

func sexmapHeaders(h http.Header) map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Content-Type", HeaderHandshake, HeaderSession} {
		if v := h.Get(k); v != "" {
			m[k] = v
		}
	}
	return m
}

// sessionVectors runs one handshake and two requests through the real client
// and server over HTTP with fixed randomness, then recomputes everything with
// the noise library directly and checks both agree.
func sessionVectors(t *testing.T, pattern, label string, serverPriv []byte, clientPriv *[32]byte, address string, token []byte, requests []string) sessionVector {
	serverPub, _ := curve25519.X25519(serverPriv, curve25519.Basepoint)
	static := noise.DHKey{Private: serverPriv, Public: serverPub}
	clientE := seed(label + " client ephemeral")
	serverE := seed(label + " server ephemeral")
	sid := seed(label + " session id")[:IDSize]
	var hid []byte
	serverRand := cat(serverE, sid)
	if pattern == "XK" {
		hid = seed(label + " handshake id")[:IDSize]
		serverRand = cat(serverE, hid, sid)
	}
	sr, cr := &fixedReader{data: serverRand}, &fixedReader{data: clientE}

	accounts := vectorAccounts{}
	if clientPriv != nil {
		accounts[address] = LoginPublicKey(*clientPriv)
	}
	fixed := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	srv, err := NewServer(Config{StaticKey: static, Accounts: accounts, Rand: sr, Now: func() time.Time { return fixed }},
		HandlerFunc(func(_ context.Context, _ *Session, req []byte) []byte { return vectorResponse(req) }))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	rec := &recorder{}
	c, err := dialToken(t.Context(), &http.Client{Transport: rec}, ts.URL, serverPub, clientPriv, address, token, cr)
	if err != nil {
		t.Fatal(err)
	}
	if sr.left() != 0 || cr.left() != 0 {
		t.Fatalf("%s: %d/%d fixed random bytes unused", pattern, sr.left(), cr.left())
	}
	for _, req := range requests {
		resp, err := c.RoundTrip(t.Context(), []byte(req))
		if err != nil || !bytes.Equal(resp, vectorResponse([]byte(req))) {
			t.Fatalf("%s: RoundTrip = %q, %v", pattern, resp, err)
		}
	}

	// Recompute with flynn/noise alone.
	hsPattern := noise.HandshakeNK
	var clientStatic noise.DHKey
	if clientPriv != nil {
		hsPattern = noise.HandshakeXK
		clientStatic = noise.DHKey{Private: clientPriv[:], Public: LoginPublicKey(*clientPriv)}
	}
	ini, err := noise.NewHandshakeState(noise.Config{CipherSuite: cipherSuite, Random: bytes.NewReader(clientE), Pattern: hsPattern,
		Initiator: true, Prologue: []byte(Version), PeerStatic: serverPub, StaticKeypair: clientStatic})
	if err != nil {
		t.Fatal(err)
	}
	res, err := noise.NewHandshakeState(noise.Config{CipherSuite: cipherSuite, Random: bytes.NewReader(serverE), Pattern: hsPattern,
		Prologue: []byte(Version), StaticKeypair: static})
	if err != nil {
		t.Fatal(err)
	}
	var noiseMsgs [][]byte
	var ics, rcs [2]*noise.CipherState
	writer, reader := ini, res
	payloads := [][]byte{nil, nil, loginPayload(address, token)}
	for i := range len(hsPattern.Messages) {
		msg, a, b, err := writer.WriteMessage(nil, payloads[i])
		if err != nil {
			t.Fatal(err)
		}
		p, c1, c2, err := reader.ReadMessage(nil, msg)
		if err != nil || !bytes.Equal(p, payloads[i]) {
			t.Fatalf("message %d: %v", i+1, err)
		}
		noiseMsgs = append(noiseMsgs, msg)
		if writer == ini {
			ics, rcs = [2]*noise.CipherState{a, b}, [2]*noise.CipherState{c1, c2}
		} else {
			ics, rcs = [2]*noise.CipherState{c1, c2}, [2]*noise.CipherState{a, b}
		}
		writer, reader = reader, writer
	}
	if !bytes.Equal(ini.ChannelBinding(), res.ChannelBinding()) {
		t.Fatal("handshake hashes differ")
	}
	c2sKey, s2cKey := ics[0].UnsafeKey(), ics[1].UnsafeKey()
	if c2sKey != rcs[0].UnsafeKey() || s2cKey != rcs[1].UnsafeKey() {
		t.Fatal("split keys differ")
	}

	// The wire must carry exactly these Noise messages behind their type bytes.
	types := []byte{frameNKInit, frameNKResp}
	if pattern == "XK" {
		types = []byte{frameXKInit, frameXKResp, frameXKFinal}
	}
	for i, msg := range noiseMsgs {
		if want := x(cat([]byte{types[i]}, msg)); rec.messages[i].Body != want {
			t.Fatalf("%s message %d on the wire %s, recomputed %s", pattern, i+1, rec.messages[i].Body, want)
		}
	}
	nHandshake := len(noiseMsgs)
	if pattern == "XK" {
		nHandshake = 4 // two round trips
		if rec.messages[3].Body != x([]byte{frameXKOK}) {
			t.Fatalf("XK final answer %s", rec.messages[3].Body)
		}
	}
	if got := rec.messages[nHandshake-1].Headers[HeaderSession]; got != encodeID(sid) {
		t.Fatalf("session header %q", got)
	}

	c2s, s2c := cipherSuite.Cipher(c2sKey), cipherSuite.Cipher(s2cKey)
	var frames []frameVector
	for i, req := range requests {
		counter := uint64(i)
		reqAD, respAD := requestAD(sid, counter), responseAD(sid, counter)
		resp := vectorResponse([]byte(req))
		reqBody := sealFrame(c2s, counter, reqAD, []byte(req))
		respBody := sealFrame(s2c, counter, respAD, resp)
		wire := rec.messages[nHandshake+2*i : nHandshake+2*i+2]
		if wire[0].Body != x(reqBody) || wire[1].Body != x(respBody) {
			t.Fatalf("%s frame %d differs from the recomputation", pattern, i)
		}
		frames = append(frames, frameVector{counter, req, x(reqAD), x(reqBody), string(resp), x(respAD), x(respBody)})
	}

	sv := sessionVector{
		Pattern:                pattern,
		ProtocolName:           "Noise_" + pattern + "_25519_ChaChaPoly_SHA256",
		Prologue:               x([]byte(Version)),
		ServerStaticPrivate:    x(serverPriv),
		ServerStaticPublic:     x(serverPub),
		ServerStaticBase64URL:  EncodePublicKey(serverPub),
		Address:                address,
		DeviceToken:            hexOrEmpty(token),
		ClientEphemeralPrivate: x(clientE),
		ServerEphemeralPrivate: x(serverE),
		SessionID:              x(sid),
		SessionIDHeader:        encodeID(sid),
		Messages:               rec.messages,
		HandshakeHash:          x(ini.ChannelBinding()),
		ClientToServerKey:      x(c2sKey[:]),
		ServerToClientKey:      x(s2cKey[:]),
		Frames:                 frames,
	}
	if clientPriv != nil {
		sv.ClientStaticPrivate = x(clientPriv[:])
		sv.ClientStaticPublic = x(LoginPublicKey(*clientPriv))
		sv.HandshakeID = encodeID(hid)
	}
	return sv
}

func hexOrEmpty(b []byte) string {
	if b == nil {
		return ""
	}
	return x(b)
}
