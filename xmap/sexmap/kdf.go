package sexmap

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/hkdf"
)

// HKDF info labels of the two keys derived from a passphrase. Distinct labels
// make the login key and the sealing key independent: the server learns the
// public login key and can learn nothing about the sealing key from it.
const (
	LoginKeyLabel = "SeXMAP/1 login key"
	SealKeyLabel  = "CryptoMail/1 private key seal"
)

// SaltSize is the size of a per-user Argon2id salt (RFC 9106 recommends 128
// bits). Real and fake salts have this size.
const SaltSize = 16

// maxSaltSize bounds a salt a server may hand to a client.
const maxSaltSize = 64

// KDFParams are the Argon2id cost parameters stored with each user, so that
// they can be raised later without locking anyone out.
type KDFParams struct {
	Time      uint32 // passes over memory (t)
	MemoryKiB uint32 // memory in KiB (m)
	Threads   uint8  // lanes (p)
}

// Bounds enforced by KDFParams.Validate. They are constants, so the exported
// copies below cannot be changed to lower the floor.
const (
	minTime, minMemoryKiB, minThreads = 2, 19 * 1024, 1
	maxTime, maxMemoryKiB, maxThreads = 16, 2 * 1024 * 1024, 16
)

var (
	// DefaultKDFParams is RFC 9106's second recommended option (section 4):
	// t=3, m=64 MiB, p=4.
	DefaultKDFParams = KDFParams{Time: 3, MemoryKiB: 64 * 1024, Threads: 4}
	// MinKDFParams is the floor below which DeriveKeys refuses to work
	// (OWASP's Argon2id minimum: t=2, m=19 MiB, p=1), so a hostile or
	// misconfigured server cannot talk a client into a cheap derivation.
	MinKDFParams = KDFParams{Time: minTime, MemoryKiB: minMemoryKiB, Threads: minThreads}
	// MaxKDFParams is the ceiling, so a hostile server cannot make a client
	// exhaust its memory (RFC 9106's first option, 2 GiB, is still allowed).
	MaxKDFParams = KDFParams{Time: maxTime, MemoryKiB: maxMemoryKiB, Threads: maxThreads}
)

// Errors of DeriveKeys.
var (
	ErrKDFParams       = errors.New("sexmap: KDF parameters out of range")
	ErrBadSalt         = errors.New("sexmap: salt must be 16 to 64 bytes")
	ErrEmptyPassphrase = errors.New("sexmap: empty passphrase")
)

// Validate reports whether p lies within [MinKDFParams, MaxKDFParams], field
// by field.
func (p KDFParams) Validate() error {
	if p.Time < minTime || p.Time > maxTime ||
		p.MemoryKiB < minMemoryKiB || p.MemoryKiB > maxMemoryKiB ||
		p.Threads < minThreads || p.Threads > maxThreads {
		return fmt.Errorf("%w: t=%d m=%dKiB p=%d (allowed t %d..%d, m %d..%d KiB, p %d..%d)", ErrKDFParams,
			p.Time, p.MemoryKiB, p.Threads, minTime, maxTime, minMemoryKiB, maxMemoryKiB, minThreads, maxThreads)
	}
	return nil
}

// DeriveKeys turns a passphrase into the X25519 private login key and the
// key that seals the user's private OpenPGP key:
//
//	ikm       = Argon2id(passphrase, salt, t, m, p, 32 bytes)
//	loginPriv = HKDF-SHA256(ikm, salt = empty, info = LoginKeyLabel, 32)
//	sealKey   = HKDF-SHA256(ikm, salt = empty, info = SealKeyLabel, 32)
//
// loginPriv is used as an X25519 scalar as it is (X25519 clamps it). Clients
// normalize the passphrase to Unicode NFC before calling, so that every client
// derives the same keys from what the user typed.
func DeriveKeys(passphrase []byte, salt []byte, p KDFParams) (loginPriv [32]byte, sealKey [32]byte, err error) {
	if err := p.Validate(); err != nil {
		return loginPriv, sealKey, err
	}
	return deriveKeys(passphrase, salt, p)
}

// deriveKeys is DeriveKeys without the parameter bounds; test vectors use it
// to show the derivation at a cost a test suite can afford many times.
func deriveKeys(passphrase, salt []byte, p KDFParams) (loginPriv, sealKey [32]byte, err error) {
	if len(passphrase) == 0 {
		return loginPriv, sealKey, ErrEmptyPassphrase
	}
	if len(salt) < SaltSize || len(salt) > maxSaltSize {
		return loginPriv, sealKey, ErrBadSalt
	}
	ikm := argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, 32)
	defer clear(ikm)
	if _, err := io.ReadFull(hkdf.New(sha256.New, ikm, nil, []byte(LoginKeyLabel)), loginPriv[:]); err != nil {
		return loginPriv, sealKey, fmt.Errorf("sexmap: hkdf: %w", err)
	}
	if _, err := io.ReadFull(hkdf.New(sha256.New, ikm, nil, []byte(SealKeyLabel)), sealKey[:]); err != nil {
		return loginPriv, sealKey, fmt.Errorf("sexmap: hkdf: %w", err)
	}
	return loginPriv, sealKey, nil
}

// LoginPublicKey is the X25519 public key of a login private key: what the
// server stores and compares with the static key of an XK handshake.
func LoginPublicKey(priv [32]byte) []byte {
	pub, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		// Unreachable: a clamped scalar times the base point is never the
		// all-zero point, which is X25519's only error.
		panic("sexmap: X25519 base point multiplication failed")
	}
	return pub
}

// NewSalt returns a fresh random per-user salt of SaltSize bytes.
func NewSalt(rng io.Reader) ([]byte, error) {
	salt := make([]byte, SaltSize)
	if _, err := io.ReadFull(rng, salt); err != nil {
		return nil, fmt.Errorf("sexmap: salt: %w", err)
	}
	return salt, nil
}
