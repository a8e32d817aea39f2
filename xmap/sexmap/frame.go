package sexmap

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math"
	"unicode/utf8"

	"github.com/flynn/noise"
)

// Protocol constants. Changing any of them is a new protocol version.
const (
	// Version names the protocol; it is also the Noise prologue, so both
	// sides fail the handshake unless they speak the same version.
	Version = "SeXMAP/1"

	// ContentType is the media type of every SeXMAP request and successful
	// response body. Requiring it turns away plain XML posts and, because a
	// browser cannot send it cross-origin without a CORS preflight, forged
	// cross-site form posts.
	ContentType = "application/vnd.cryptomail.sexmap"

	// HeaderSession carries the session id (base64url, no padding) on every
	// transport request and on the response that completes a handshake.
	HeaderSession = "Sexmap-Session"
	// HeaderHandshake carries the id of a pending XK handshake between its
	// first and its second round trip.
	HeaderHandshake = "Sexmap-Handshake"

	// PathHandshake receives handshake messages, PathTransport transport
	// frames; PathWellKnown serves the server's public key for pinning.
	PathHandshake = "/sexmap/handshake"
	PathTransport = "/sexmap"
	PathWellKnown = "/.well-known/sexmap"

	// IDSize is the size of session and pending-handshake ids in bytes.
	IDSize = 16

	// CounterSize is the size of the big-endian counter that starts every
	// transport frame; TagSize the size of the ChaCha20-Poly1305 tag.
	CounterSize = 8
	TagSize     = 16

	// MaxCounter is the largest counter a frame may carry. 2^64-1 is
	// reserved by the Noise specification (section 5.1) and never used.
	MaxCounter = noise.MaxNonce

	// MaxAddressBytes bounds the account address carried in XK message 3
	// (RFC 5321 allows 254 octets between the angle brackets).
	MaxAddressBytes = 254

	// DeviceTokenSize is the size of a device token (see LoginPayload).
	DeviceTokenSize = 32
)

// Handshake frame types: the first byte of every handshake body.
const (
	frameNKInit  byte = 0x01 // client → server: NK message 1
	frameNKResp  byte = 0x02 // server → client: NK message 2
	frameXKInit  byte = 0x11 // client → server: XK message 1
	frameXKResp  byte = 0x12 // server → client: XK message 2
	frameXKFinal byte = 0x13 // client → server: XK message 3
	frameXKOK    byte = 0x14 // server → client: login accepted (no Noise message)
)

// dhLen is the X25519 key length; e and s tokens are that long in clear and
// TagSize longer once a key is mixed in.
const dhLen = 32

// Lengths of the fixed-size Noise messages: NK 1 and 2, XK 1 and 2 each
// carry one ephemeral key and an empty encrypted payload (its tag).
const (
	noiseMsgEphemeralLen = dhLen + TagSize
	xkFinalMinLen        = dhLen + TagSize + 1 + TagSize
	xkFinalMaxLen        = dhLen + TagSize + MaxAddressBytes + 1 + DeviceTokenSize + TagSize
	maxHandshakeBody     = 512
)

// cipherSuite is the only suite SeXMAP uses: X25519, ChaCha20-Poly1305 and
// SHA-256, all of which the browser client gets from @noble.
var cipherSuite = noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashSHA256)

// prologue is mixed into both handshakes (Noise section 6).
var prologue = []byte(Version)

var (
	errShortFrame  = errors.New("frame too short")
	errFrameType   = errors.New("unexpected frame type")
	errFrameLength = errors.New("bad frame length")
	errCounter     = errors.New("reserved counter")
)

// parseFrame splits a transport frame into its counter and sealed part. It
// checks only the shape: the caller authenticates the sealed part.
func parseFrame(body []byte) (counter uint64, sealed []byte, err error) {
	if len(body) < CounterSize+TagSize {
		return 0, nil, errShortFrame
	}
	counter = binary.BigEndian.Uint64(body[:CounterSize])
	if counter > MaxCounter {
		return 0, nil, errCounter
	}
	return counter, body[CounterSize:], nil
}

// parseHandshake checks a handshake body's type byte and the length of the
// Noise message that follows, and returns that message.
func parseHandshake(body []byte) (typ byte, msg []byte, err error) {
	if len(body) < 1 {
		return 0, nil, errShortFrame
	}
	typ, msg = body[0], body[1:]
	switch typ {
	case frameNKInit, frameNKResp, frameXKInit, frameXKResp:
		if len(msg) != noiseMsgEphemeralLen {
			return 0, nil, errFrameLength
		}
	case frameXKFinal:
		if len(msg) < xkFinalMinLen || len(msg) > xkFinalMaxLen {
			return 0, nil, errFrameLength
		}
	case frameXKOK:
		if len(msg) != 0 {
			return 0, nil, errFrameLength
		}
	default:
		return 0, nil, errFrameType
	}
	return typ, msg, nil
}

// requestAD and responseAD are the associated data of transport frames. The
// session id ties a frame to its session, the counter is repeated so that it
// is authenticated even by implementations that take the nonce from
// elsewhere, and the "resp" suffix keeps the two directions apart even if a
// key were ever shared.
func requestAD(sid []byte, counter uint64) []byte {
	ad := make([]byte, 0, IDSize+CounterSize)
	ad = append(ad, sid...)
	return binary.BigEndian.AppendUint64(ad, counter)
}

func responseAD(sid []byte, counter uint64) []byte {
	ad := make([]byte, 0, IDSize+CounterSize+4)
	ad = append(ad, sid...)
	ad = binary.BigEndian.AppendUint64(ad, counter)
	return append(ad, "resp"...)
}

// sealFrame returns counter || Encrypt(k, n = counter, ad, plaintext), the
// Noise cipher with an explicit nonce.
func sealFrame(c noise.Cipher, counter uint64, ad, plaintext []byte) []byte {
	out := make([]byte, CounterSize, CounterSize+len(plaintext)+TagSize)
	binary.BigEndian.PutUint64(out, counter)
	return c.Encrypt(out, counter, ad, plaintext)
}

// encodeID and decodeID convert session and handshake ids to and from the
// header form.
func encodeID(id []byte) string { return base64.RawURLEncoding.EncodeToString(id) }

func decodeID(s string) ([IDSize]byte, bool) {
	var id [IDSize]byte
	if len(s) != base64.RawURLEncoding.EncodedLen(IDSize) {
		return id, false
	}
	n, err := base64.RawURLEncoding.Strict().Decode(id[:], []byte(s))
	return id, err == nil && n == IDSize
}

// Compile-time check that the reserved counter is what the spec says.
var _ = [1]struct{}{}[uint64(math.MaxUint64)-1-MaxCounter]

// deviceTokenSep separates the address from a device token in the payload
// of XK message 3. No address holds it (addresses have no control
// characters), so a payload without it is an address alone, as before.
const deviceTokenSep = 0x00

// loginPayload is the payload of XK message 3: the address, then, if the
// client has one, 0x00 and its 32-byte device token.
func loginPayload(address string, deviceToken []byte) []byte {
	p := []byte(address)
	if deviceToken != nil {
		p = append(p, deviceTokenSep)
		p = append(p, deviceToken...)
	}
	return p
}

var errPayload = errors.New("malformed login payload")

// parseLoginPayload splits the payload of XK message 3. The address is
// returned as sent (the caller checks and canonicalizes it); token is nil
// when none was sent.
func parseLoginPayload(p []byte) (address string, token []byte, err error) {
	addr := p
	if i := bytes.IndexByte(p, deviceTokenSep); i >= 0 {
		addr, token = p[:i], p[i+1:]
		if len(token) != DeviceTokenSize {
			return "", nil, errPayload
		}
	}
	if len(addr) == 0 || len(addr) > MaxAddressBytes || !utf8.Valid(addr) {
		return "", nil, errPayload
	}
	return string(addr), token, nil
}
