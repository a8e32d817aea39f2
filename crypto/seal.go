package crypto

import (
	"bytes"
	cryptorand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// MessageType is the armor block type of an OpenPGP message.
const MessageType = "PGP MESSAGE"

// writeChunk is the size of the writes into go-crypto's encrypting writer.
const writeChunk = 64 << 10

// ErrNotEncrypted is returned by Decrypt for OpenPGP data that is not an
// encrypted message, and by CheckEncrypted, CheckArmoredEncrypted and
// CheckPGPMIME for data that is not one.
var ErrNotEncrypted = errors.New("not an encrypted OpenPGP message")

// Sealer encrypts data for storage. The zero value (and a nil *Sealer) uses
// crypto/rand and time.Now; tests inject a fixed Rand and Now to get
// reproducible output.
type Sealer struct {
	Rand io.Reader
	Now  func() time.Time
}

// config is the go-crypto configuration for every message the server writes.
func (s *Sealer) config() *packet.Config {
	cfg := &packet.Config{
		Rand: cryptorand.Reader,
		Time: time.Now,
		// AES-256 whenever the key lists it (go-crypto still honours the key's
		// preferences; GnuPG keys and GenerateKey keys put AES-256 first).
		DefaultCipher: packet.CipherAES256,
		// Compression costs time for little gain, and compressing before
		// encrypting can leak content through sizes.
		DefaultCompressionAlgo: packet.CompressionNone,
		// AEADConfig stays nil: go-crypto then always writes SEIPDv1 with an
		// MDC, which GnuPG 2.2 reads. With it set, go-crypto would pick SEIPDv2
		// for keys that advertise it, GnuPG 2.3+ keys included, whose features
		// bit GnuPG itself cannot honour.
		AEADConfig: nil,
	}
	if s != nil && s.Rand != nil {
		cfg.Rand = s.Rand
	}
	if s != nil && s.Now != nil {
		cfg.Time = s.Now
	}
	return cfg
}

// Encrypt encrypts plaintext, unchanged, as one binary (not armored), unsigned,
// uncompressed OpenPGP message to key: a PKESK packet and a SEIPDv1 packet
// holding a binary literal data packet.
func (s *Sealer) Encrypt(key *PublicKey, plaintext []byte) ([]byte, error) {
	return s.encrypt(nil, key, plaintext)
}

// EncryptBuffer is Encrypt of the concatenation of parts, which it never
// builds, writing the ciphertext into buf's memory (from buf[0]) when it has
// room, so that a caller can recycle one large buffer for message after
// message. The result then aliases buf.
func (s *Sealer) EncryptBuffer(buf []byte, key *PublicKey, parts ...[]byte) ([]byte, error) {
	return s.encrypt(buf, key, parts...)
}

// encrypt is Encrypt of the concatenation of parts, which it never builds,
// into dst's memory when it is large enough.
func (s *Sealer) encrypt(dst []byte, key *PublicKey, parts ...[]byte) ([]byte, error) {
	if key == nil || key.entity == nil {
		return nil, errors.New("encrypt: no recipient key")
	}
	size := 0
	for _, p := range parts {
		size += len(p)
	}
	out := bytes.NewBuffer(dst[:0])
	// Room for the ciphertext and its framing, so the buffer never re-grows
	// (and never leaves stale ciphertext copies behind) for large messages.
	out.Grow(size + size/256 + 1024)
	w, err := openpgp.Encrypt(out, []*openpgp.Entity{key.entity}, nil, &openpgp.FileHints{IsBinary: true}, s.config())
	if err != nil {
		return nil, fmt.Errorf("encrypt to %s: %w", key.Fingerprint(), err)
	}
	// Feed the writer in chunks: go-crypto's cipher stream allocates, and
	// its partial-length writer buffers, a copy the size of each Write.
	for _, p := range parts {
		for rest := p; len(rest) > 0; {
			n := min(len(rest), writeChunk)
			if _, err := w.Write(rest[:n]); err != nil {
				return nil, fmt.Errorf("encrypt to %s: %w", key.Fingerprint(), err)
			}
			rest = rest[n:]
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encrypt to %s: %w", key.Fingerprint(), err)
	}
	return out.Bytes(), nil
}

// Seal encrypts the raw message bytes, unchanged, as one OpenPGP message to
// key, and the JSON of ExtractSummary(raw) as a second, separate OpenPGP
// message to the same key. The plaintext goes nowhere but into the
// ciphertexts; the summary's JSON bytes are wiped once encrypted.
func (s *Sealer) Seal(key *PublicKey, raw []byte) (body, summary []byte, err error) {
	body, err = s.encrypt(nil, key, raw)
	if err != nil {
		return nil, nil, fmt.Errorf("seal body: %w", err)
	}
	summary, err = s.SealSummary(key, ExtractSummary(raw))
	if err != nil {
		return nil, nil, err
	}
	return body, summary, nil
}

// SealSummary encrypts the JSON of sm (MarshalSummary) to key, and wipes
// the JSON bytes once encrypted.
func (s *Sealer) SealSummary(key *PublicKey, sm Summary) ([]byte, error) {
	js, err := MarshalSummary(sm)
	if err != nil {
		return nil, fmt.Errorf("seal summary: %w", err)
	}
	out, err := s.Encrypt(key, js)
	clear(js)
	if err != nil {
		return nil, fmt.Errorf("seal summary: %w", err)
	}
	return out, nil
}

// MarshalSummary returns the JSON form of sm stored by Seal: compact, no HTML
// escaping (so "Name <addr>" stays readable), no trailing newline.
func MarshalSummary(sm Summary) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(sm); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Armor wraps a binary OpenPGP message in "-----BEGIN PGP MESSAGE-----" armor
// (with the CRC-24 checksum older readers expect), for mbox export.
func Armor(msg []byte) ([]byte, error) {
	if len(msg) == 0 || msg[0]&0x80 == 0 {
		return nil, errors.New("armor: not a binary OpenPGP message")
	}
	var buf bytes.Buffer
	buf.Grow(len(msg)*4/3 + len(msg)/48 + 128)
	w, err := armor.Encode(&buf, MessageType, nil)
	if err != nil {
		return nil, fmt.Errorf("armor: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return nil, fmt.Errorf("armor: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("armor: %w", err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// Decrypt decrypts an OpenPGP message (binary or armored) with the given
// private keys, which must not be passphrase-protected. It reads the whole
// body, so the integrity check (MDC or AEAD tag) is verified before anything
// is returned, and fails if it does not hold. A signature by a key in keys
// that does not verify is an error too; signatures by unknown keys are not
// checked.
func Decrypt(keys openpgp.EntityList, msg []byte) ([]byte, error) {
	in := io.Reader(bytes.NewReader(msg))
	if trimmed := bytes.TrimLeft(msg, " \t\r\n"); len(trimmed) > 0 && trimmed[0]&0x80 == 0 {
		block, err := armor.Decode(bytes.NewReader(trimmed))
		if err != nil {
			return nil, fmt.Errorf("decrypt: malformed armor: %w", err)
		}
		if block.Type != MessageType {
			return nil, fmt.Errorf("decrypt: armor holds a %q block: %w", clip(block.Type, 40), ErrNotEncrypted)
		}
		in = block.Body
	}
	md, err := openpgp.ReadMessage(in, keys, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	if !md.IsEncrypted {
		return nil, fmt.Errorf("decrypt: %w", ErrNotEncrypted)
	}
	out, err := io.ReadAll(md.UnverifiedBody)
	if err != nil {
		clear(out)
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	if md.IsSigned && md.SignedBy != nil && md.SignatureError != nil {
		clear(out)
		return nil, fmt.Errorf("decrypt: bad signature: %w", md.SignatureError)
	}
	return out, nil
}
