package sexmap

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/flynn/noise"
)

// MaxResponseBytes bounds a response body a client accepts.
const MaxResponseBytes = 256 << 20

// ClientSession is an established SeXMAP session on the client side. Its
// methods are safe for concurrent use.
type ClientSession struct {
	hc      *http.Client
	url     string
	id      [IDSize]byte
	idText  string
	address string
	send    noise.Cipher // client → server
	recv    noise.Cipher // server → client
	next    atomic.Uint64
}

// ID returns the session id as sent in the Sexmap-Session header.
func (c *ClientSession) ID() string { return c.idText }

// Address returns the address the session logged in as ("" for NK).
func (c *ClientSession) Address() string { return c.address }

// DialNK opens an anonymous session (Noise NK, one round trip) with the
// server at baseURL (for example "http://127.0.0.1:8080"), whose static
// public key the client has pinned as serverPub. If the server cannot read
// the first message and its well-known key differs from serverPub, the error
// wraps ErrServerKeyChanged.
func DialNK(ctx context.Context, httpClient *http.Client, baseURL string, serverPub []byte) (*ClientSession, error) {
	return dial(ctx, httpClient, baseURL, serverPub, nil, "", rand.Reader)
}

// DialXK logs in (Noise XK, two round trips) as address with the private
// login key from DeriveKeys. A wrong key and an unknown address both give an
// error matching ErrLoginFailed.
func DialXK(ctx context.Context, httpClient *http.Client, baseURL string, serverPub []byte, loginPriv [32]byte, address string) (*ClientSession, error) {
	if address == "" || len(address) > MaxAddressBytes {
		return nil, fmt.Errorf("sexmap: address must be 1 to %d bytes", MaxAddressBytes)
	}
	return dial(ctx, httpClient, baseURL, serverPub, &loginPriv, address, rand.Reader)
}

// DialXKDevice is DialXK for a client that holds a device token, issued to it
// after an earlier login (the XMAP request device-token). The token travels
// inside XK message 3, after the address; with it, a correct login passes a
// lock-out of the address that others' failed logins caused (never an IP
// lock-out). A nil token is DialXK; a token the server does not know
// changes nothing.
func DialXKDevice(ctx context.Context, httpClient *http.Client, baseURL string, serverPub []byte, loginPriv [32]byte, address string, deviceToken []byte) (*ClientSession, error) {
	if address == "" || len(address) > MaxAddressBytes {
		return nil, fmt.Errorf("sexmap: address must be 1 to %d bytes", MaxAddressBytes)
	}
	if deviceToken != nil && len(deviceToken) != DeviceTokenSize {
		return nil, fmt.Errorf("sexmap: device token must be %d bytes", DeviceTokenSize)
	}
	return dialToken(ctx, httpClient, baseURL, serverPub, &loginPriv, address, deviceToken, rand.Reader)
}

// dial runs either handshake; loginPriv == nil means NK. rng supplies the
// ephemeral key, which only test vectors fix.
func dial(ctx context.Context, hc *http.Client, baseURL string, serverPub []byte, loginPriv *[32]byte, address string, rng io.Reader) (*ClientSession, error) {
	return dialToken(ctx, hc, baseURL, serverPub, loginPriv, address, nil, rng)
}

// dialToken is dial with a device token for XK message 3 (nil: none).
func dialToken(ctx context.Context, hc *http.Client, baseURL string, serverPub []byte, loginPriv *[32]byte, address string, deviceToken []byte, rng io.Reader) (*ClientSession, error) {
	if len(serverPub) != dhLen {
		return nil, ErrBadPublicKey
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	base := strings.TrimRight(baseURL, "/")
	cfg := noise.Config{
		CipherSuite: cipherSuite,
		Random:      rng,
		Pattern:     noise.HandshakeNK,
		Initiator:   true,
		Prologue:    prologue,
		PeerStatic:  serverPub,
	}
	first, second := frameNKInit, frameNKResp
	if loginPriv != nil {
		cfg.Pattern = noise.HandshakeXK
		cfg.StaticKeypair = noise.DHKey{Private: loginPriv[:], Public: LoginPublicKey(*loginPriv)}
		first, second = frameXKInit, frameXKResp
	}
	hs, err := noise.NewHandshakeState(cfg)
	if err != nil {
		return nil, fmt.Errorf("sexmap: handshake: %w", err)
	}
	msg1, _, _, err := hs.WriteMessage([]byte{first}, nil)
	if err != nil {
		return nil, fmt.Errorf("sexmap: handshake: %w", err)
	}
	hdr, body, err := post(ctx, hc, base+PathHandshake, nil, msg1)
	if err != nil {
		if se, ok := errors.AsType[*StatusError](err); ok && se.Code == rejBadHandshake.code {
			return nil, explainBadHandshake(ctx, hc, base, serverPub, err)
		}
		return nil, err
	}
	typ, msg2, err := parseHandshake(body)
	if err != nil || typ != second {
		return nil, fmt.Errorf("%w: handshake message 2", ErrBadResponse)
	}
	payload, c1, c2, err := hs.ReadMessage(nil, msg2)
	if err != nil || len(payload) != 0 {
		return nil, fmt.Errorf("%w: handshake message 2 does not authenticate", ErrBadResponse)
	}
	if loginPriv != nil {
		hid := hdr.Get(HeaderHandshake)
		if _, ok := decodeID(hid); !ok {
			return nil, fmt.Errorf("%w: missing %s header", ErrBadResponse, HeaderHandshake)
		}
		msg3, k1, k2, err := hs.WriteMessage([]byte{frameXKFinal}, loginPayload(address, deviceToken))
		if err != nil {
			return nil, fmt.Errorf("sexmap: handshake: %w", err)
		}
		c1, c2 = k1, k2
		hdr, body, err = post(ctx, hc, base+PathHandshake, http.Header{HeaderHandshake: {hid}}, msg3)
		if err != nil {
			return nil, err
		}
		if typ, _, err := parseHandshake(body); err != nil || typ != frameXKOK {
			return nil, fmt.Errorf("%w: login answer", ErrBadResponse)
		}
	}
	if c1 == nil || c2 == nil {
		return nil, fmt.Errorf("%w: handshake did not complete", ErrBadResponse)
	}
	sidText := hdr.Get(HeaderSession)
	sid, ok := decodeID(sidText)
	if !ok {
		return nil, fmt.Errorf("%w: missing %s header", ErrBadResponse, HeaderSession)
	}
	return &ClientSession{
		hc:      hc,
		url:     base + PathTransport,
		id:      sid,
		idText:  sidText,
		address: address,
		send:    c1.Cipher(),
		recv:    c2.Cipher(),
	}, nil
}

// explainBadHandshake turns the server's failure to read message 1 into
// ErrServerKeyChanged when its well-known key is not the pinned one: the
// likeliest reason, and the one the user must hear about.
func explainBadHandshake(ctx context.Context, hc *http.Client, base string, pinned []byte, orig error) error {
	current, err := FetchServerKey(ctx, hc, base)
	if err == nil && Pin(pinned, current) != nil {
		return fmt.Errorf("%w (server now presents %s)", ErrServerKeyChanged, EncodePublicKey(current))
	}
	return orig
}

// FetchServerKey reads the server's static public key from PathWellKnown,
// for pinning on first use. The answer is only as trustworthy as the channel
// it came over (TLS, or the user's own check of the fingerprint).
func FetchServerKey(ctx context.Context, httpClient *http.Client, baseURL string) ([]byte, error) {
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(baseURL, "/")+PathWellKnown, nil)
	if err != nil {
		return nil, fmt.Errorf("sexmap: server key: %w", err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sexmap: server key: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil {
		return nil, fmt.Errorf("sexmap: server key: %w", err)
	}
	return DecodePublicKey(string(body))
}

// presizeLimit bounds the buffer a response's Content-Length alone makes post allocate.
const presizeLimit = 1 << 20

// post sends one SeXMAP body and returns a 200 answer's headers and body, or
// a *StatusError.
func post(ctx context.Context, hc *http.Client, url string, extra http.Header, body []byte) (http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("sexmap: %w", err)
	}
	for k, v := range extra {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", ContentType)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("sexmap: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, statusError(resp)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != ContentType {
		return nil, nil, fmt.Errorf("%w: content type %q", ErrBadResponse, resp.Header.Get("Content-Type"))
	}
	// Servers send the length (writeOK), so a usual body is read into one buffer of its
	// size; only what arrives is trusted beyond presizeLimit.
	var buf bytes.Buffer
	if resp.ContentLength > 0 {
		buf.Grow(int(min(resp.ContentLength, presizeLimit)) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, MaxResponseBytes+1)); err != nil {
		return nil, nil, fmt.Errorf("sexmap: reading response: %w", err)
	}
	data := buf.Bytes()
	if len(data) > MaxResponseBytes {
		return nil, nil, fmt.Errorf("%w: larger than %d bytes", ErrBadResponse, MaxResponseBytes)
	}
	return resp.Header, data, nil
}

func statusError(resp *http.Response) error {
	code, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	e := &StatusError{StatusCode: resp.StatusCode, Code: strings.TrimSpace(string(code))}
	if secs, err := strconv.ParseInt(resp.Header.Get("Retry-After"), 10, 32); err == nil && secs > 0 {
		e.RetryAfter = time.Duration(secs) * time.Second
	}
	return e
}

// takeCounter returns the next unused counter; counters are never reused,
// even when a request fails, because the server may have seen it.
func (c *ClientSession) takeCounter() (uint64, error) {
	for {
		n := c.next.Load()
		if n > MaxCounter {
			return 0, ErrCounterExhausted
		}
		if c.next.CompareAndSwap(n, n+1) {
			return n, nil
		}
	}
}

// tooOldRetries bounds how often RoundTrip re-sends a request the server
// refused as too old.
const tooOldRetries = 3

// RoundTrip seals request, posts it and returns the opened response. It may
// be called concurrently. A refusal is a *StatusError; after one matching
// ErrUnknownSession the caller dials a new session.
//
// A request refused as too old (409 too-old: more than ReplayWindow later
// requests overtook it) never reached the server's handler, so RoundTrip
// sends it again under a new counter, a few times at most.
func (c *ClientSession) RoundTrip(ctx context.Context, request []byte) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		resp, err := c.roundTrip(ctx, request)
		if se, ok := errors.AsType[*StatusError](err); ok && se.Code == rejTooOld.code && attempt < tooOldRetries {
			continue
		}
		return resp, err
	}
}

func (c *ClientSession) roundTrip(ctx context.Context, request []byte) ([]byte, error) {
	counter, err := c.takeCounter()
	if err != nil {
		return nil, err
	}
	frame := sealFrame(c.send, counter, requestAD(c.id[:], counter), request)
	_, body, err := post(ctx, c.hc, c.url, http.Header{HeaderSession: {c.idText}}, frame)
	if err != nil {
		return nil, err
	}
	got, sealed, err := parseFrame(body)
	if err != nil || got != counter {
		return nil, fmt.Errorf("%w: response frame does not match the request", ErrBadResponse)
	}
	plaintext, err := c.recv.Decrypt(sealed[:0], counter, responseAD(c.id[:], counter), sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: response does not authenticate", ErrBadResponse)
	}
	return plaintext, nil
}
