package crypto

import (
	"bytes"
	stdcrypto "crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Errors returned by ParsePublicKey. The returned errors wrap one (sometimes
// two) of these and add a precise reason; their texts never contain key
// material and can be shown to an administrator.
var (
	ErrNoKey           = errors.New("no OpenPGP public key found")
	ErrMultipleKeys    = errors.New("more than one OpenPGP key given; give exactly one")
	ErrPrivateKey      = errors.New("this is a private (secret) key; give the public key only")
	ErrRevoked         = errors.New("key is revoked")
	ErrExpired         = errors.New("key has expired")
	ErrNoEncryptionKey = errors.New("key has no usable encryption subkey")
	ErrUnsupportedKey  = errors.New("key is not supported")
)

// MaxKeySize bounds the input of ParsePublicKey. Real keys are a few kB; a key
// full of third-party signatures (keyserver flooding) is refused rather than
// parsed.
const MaxKeySize = 1 << 20

// minKeyBits is the smallest RSA or ElGamal encryption key accepted.
const minKeyBits = 2048

// OpenPGP packet tags that matter for telling keys apart before parsing them
// (RFC 9580, section 5).
const (
	tagSecretKey    = 5
	tagPublicKey    = 6
	tagSecretSubkey = 7
)

// keyError carries a precise text and the sentinel errors it matches.
type keyError struct {
	text string
	is   []error
}

func (e *keyError) Error() string   { return e.text }
func (e *keyError) Unwrap() []error { return e.is }

// keyErr builds an error whose text is "<first sentinel>: <detail>".
func keyErr(detail string, kinds ...error) error {
	text := kinds[0].Error()
	if detail != "" {
		text += ": " + detail
	}
	return &keyError{text: text, is: kinds}
}

// PublicKey is a validated recipient key. It never holds private key material.
type PublicKey struct {
	entity *openpgp.Entity
	emails []string
}

// ParsePublicKey parses an ASCII-armored or binary OpenPGP public key that
// contains exactly one primary key, and checks that it can be encrypted to at
// now. Errors wrap ErrNoKey, ErrMultipleKeys, ErrPrivateKey, ErrRevoked,
// ErrExpired, ErrNoEncryptionKey or ErrUnsupportedKey.
func ParsePublicKey(data []byte, now time.Time) (*PublicKey, error) {
	if len(data) > MaxKeySize {
		return nil, keyErr(fmt.Sprintf("key data is larger than %d bytes", MaxKeySize), ErrUnsupportedKey)
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, keyErr("no key data given", ErrNoKey)
	}

	bin := trimmed
	// Every OpenPGP packet header has its top bit set; armor is ASCII text.
	if trimmed[0]&0x80 == 0 {
		var err error
		if bin, err = dearmorKey(trimmed); err != nil {
			return nil, err
		}
	}

	primaries, err := scanKeyPackets(bin)
	if err != nil {
		return nil, err
	}
	switch {
	case primaries == 0:
		return nil, keyErr("the data holds no primary key", ErrNoKey)
	case primaries > 1:
		return nil, keyErr(fmt.Sprintf("the data holds %d primary keys", primaries), ErrMultipleKeys)
	}

	el, err := openpgp.ReadKeyRing(bytes.NewReader(bin))
	if err != nil {
		return nil, keyErr(libraryReason(err), ErrNoKey)
	}
	switch len(el) {
	case 0:
		return nil, keyErr("the key could not be read", ErrNoKey)
	case 1:
	default:
		return nil, keyErr(fmt.Sprintf("the data holds %d keys", len(el)), ErrMultipleKeys)
	}
	return validate(el[0], now)
}

// NewPublicKey turns an entity (for example one made by GenerateKey) into a
// validated PublicKey. Only the public part is kept: the entity is serialized
// and parsed again, so no private key material can ride along.
func NewPublicKey(e *openpgp.Entity, now time.Time) (*PublicKey, error) {
	if e == nil || e.PrimaryKey == nil {
		return nil, keyErr("no key given", ErrNoKey)
	}
	var buf bytes.Buffer
	if err := e.Serialize(&buf); err != nil {
		return nil, keyErr(libraryReason(err), ErrNoKey)
	}
	return ParsePublicKey(buf.Bytes(), now)
}

// dearmorKey finds the single public key block in armored text and returns its
// binary content.
func dearmorKey(text []byte) ([]byte, error) {
	var public, other int
	var firstOther string
	for line := range bytes.Lines(text) {
		line = bytes.TrimSpace(line)
		if !bytes.HasPrefix(line, []byte("-----BEGIN ")) || !bytes.HasSuffix(line, []byte("-----")) || len(line) < 16 {
			continue
		}
		switch typ := string(line[len("-----BEGIN ") : len(line)-len("-----")]); typ {
		case openpgp.PublicKeyType:
			public++
		case openpgp.PrivateKeyType:
			// Refuse before decoding anything: a secret key must not be kept.
			return nil, keyErr("an armored private key block was given", ErrPrivateKey)
		default:
			if other == 0 {
				firstOther = typ
			}
			other++
		}
	}
	switch {
	case public > 1:
		return nil, keyErr(fmt.Sprintf("the data holds %d public key blocks", public), ErrMultipleKeys)
	case public == 0 && other > 0:
		return nil, keyErr(fmt.Sprintf("the armor holds a %q block, not a public key block", clip(firstOther, 40)), ErrNoKey)
	case public == 0:
		return nil, keyErr("no armored public key block and no binary key found", ErrNoKey)
	}

	// Decode from the public key block itself so that a block of another kind
	// (a signature, say) in front of it is not mistaken for the key.
	idx := bytes.Index(text, []byte("-----BEGIN "+openpgp.PublicKeyType+"-----"))
	if idx < 0 {
		return nil, keyErr("malformed armor header line", ErrNoKey)
	}
	block, err := armor.Decode(bytes.NewReader(text[idx:]))
	if err != nil || block.Type != openpgp.PublicKeyType {
		return nil, keyErr("malformed armor", ErrNoKey)
	}
	bin, err := io.ReadAll(io.LimitReader(block.Body, MaxKeySize+1))
	if err != nil {
		return nil, keyErr("malformed armor (bad base64 or checksum)", ErrNoKey)
	}
	if len(bin) == 0 {
		return nil, keyErr("the public key block is empty", ErrNoKey)
	}
	return bin, nil
}

// scanKeyPackets walks the packet framing (without parsing key material) to
// count primary keys and to spot secret key packets.
func scanKeyPackets(bin []byte) (primaries int, err error) {
	r := packet.NewOpaqueReader(bytes.NewReader(bin))
	for {
		p, err := r.Next()
		if err == io.EOF {
			return primaries, nil
		}
		if err != nil {
			return 0, keyErr("malformed OpenPGP packet data", ErrNoKey)
		}
		switch p.Tag {
		case tagSecretKey, tagSecretSubkey:
			return 0, keyErr("the data holds secret key material", ErrPrivateKey)
		case tagPublicKey:
			primaries++
		}
	}
}

// validate checks that e can be encrypted to at now.
func validate(e *openpgp.Entity, now time.Time) (*PublicKey, error) {
	if e.PrivateKey != nil {
		return nil, keyErr("the data holds secret key material", ErrPrivateKey)
	}
	for _, sk := range e.Subkeys {
		if sk.PrivateKey != nil {
			return nil, keyErr("the data holds secret key material", ErrPrivateKey)
		}
	}
	if v := e.PrimaryKey.Version; v != 4 {
		return nil, keyErr(fmt.Sprintf("version %d keys are not supported; use a version 4 key (GnuPG 2.2 format)", v), ErrUnsupportedKey)
	}
	if e.Revoked(now) {
		return nil, keyErr("the primary key has been revoked", ErrRevoked)
	}
	sig, ident := e.PrimarySelfSignature()
	if sig == nil {
		return nil, keyErr("the key has no valid self-signed user ID", ErrNoKey)
	}
	if ident != nil && ident.Revoked(now) {
		return nil, keyErr("all user IDs of the key are revoked", ErrRevoked)
	}
	if created := e.PrimaryKey.CreationTime; created.Unix() > now.Unix() {
		return nil, keyErr(fmt.Sprintf("the key is not valid yet: it was created at %s, after the current time", stamp(created)), ErrExpired)
	}
	if e.PrimaryKey.KeyExpired(sig, now) {
		return nil, keyErr("the primary key expired at "+stamp(expiry(e.PrimaryKey, sig)), ErrExpired)
	}
	if sig.SigExpired(now) {
		return nil, keyErr("the self-signature of the primary user ID is expired or not valid yet", ErrExpired)
	}

	enc, ok := e.EncryptionKey(now)
	if !ok {
		return nil, noEncryptionKeyError(e, now)
	}
	switch enc.PublicKey.PubKeyAlgo {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSAEncryptOnly, packet.PubKeyAlgoElGamal:
		bits, err := enc.PublicKey.BitLength()
		if err != nil || int(bits) < minKeyBits {
			return nil, keyErr(fmt.Sprintf("the encryption key has %d bits; at least %d are required", bits, minKeyBits), ErrUnsupportedKey)
		}
	}

	return &PublicKey{entity: e, emails: identityEmails(e, now)}, nil
}

// noEncryptionKeyError explains why EncryptionKey found nothing.
func noEncryptionKeyError(e *openpgp.Entity, now time.Time) error {
	var expired, revoked int
	var lastExpiry time.Time
	for _, sk := range e.Subkeys {
		if sk.Sig == nil || !sk.Sig.FlagsValid || !(sk.Sig.FlagEncryptCommunications || sk.Sig.FlagEncryptStorage) ||
			!sk.PublicKey.PubKeyAlgo.CanEncrypt() {
			continue
		}
		switch {
		case sk.Revoked(now):
			revoked++
		case sk.PublicKey.KeyExpired(sk.Sig, now) || sk.Sig.SigExpired(now):
			expired++
			if t := expiry(sk.PublicKey, sk.Sig); t.After(lastExpiry) {
				lastExpiry = t
			}
		}
	}
	switch {
	case expired > 0 && !lastExpiry.IsZero():
		return keyErr("the encryption subkey expired at "+stamp(lastExpiry), ErrNoEncryptionKey, ErrExpired)
	case expired > 0:
		return keyErr("the encryption subkey is not valid at the current time", ErrNoEncryptionKey, ErrExpired)
	case revoked > 0:
		return keyErr("the encryption subkey has been revoked", ErrNoEncryptionKey, ErrRevoked)
	default:
		return keyErr("the key can only sign (it has no encryption subkey)", ErrNoEncryptionKey)
	}
}

// expiry returns when pk expires according to sig, or zero if it does not.
func expiry(pk *packet.PublicKey, sig *packet.Signature) time.Time {
	if sig.KeyLifetimeSecs == nil || *sig.KeyLifetimeSecs == 0 {
		return time.Time{}
	}
	return pk.CreationTime.Add(time.Duration(*sig.KeyLifetimeSecs) * time.Second)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// libraryReason turns a go-crypto error into a short reason. Those errors
// describe structure (packet kinds, algorithm numbers), never key material.
func libraryReason(err error) string {
	s := strings.TrimPrefix(err.Error(), "openpgp: ")
	return clip(strings.ToValidUTF8(s, "?"), 200)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}

// identityEmails lists the lower-cased addresses of e's valid user IDs.
func identityEmails(e *openpgp.Entity, now time.Time) []string {
	var out []string
	for _, ident := range e.Identities {
		if ident.SelfSignature == nil || ident.Revoked(now) || ident.UserId == nil {
			continue
		}
		addr := ident.UserId.Email
		if addr == "" {
			// A bare "user@example.org" user ID parses as a name.
			if a, err := mail.ParseAddress(ident.UserId.Id); err == nil {
				addr = a.Address
			}
		}
		if addr = strings.ToLower(strings.TrimSpace(addr)); addr != "" && strings.Contains(addr, "@") {
			out = append(out, addr)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Fingerprint returns the primary key fingerprint as upper-case hex.
func (k *PublicKey) Fingerprint() string {
	return strings.ToUpper(hex.EncodeToString(k.entity.PrimaryKey.Fingerprint))
}

// Emails returns the addresses of the key's valid user IDs, lower-cased,
// sorted and without duplicates.
func (k *PublicKey) Emails() []string { return slices.Clone(k.emails) }

// Armored returns the public key as an armored "PGP PUBLIC KEY BLOCK".
func (k *PublicKey) Armored() ([]byte, error) {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, fmt.Errorf("armor public key: %w", err)
	}
	if err := k.entity.Serialize(w); err != nil {
		return nil, fmt.Errorf("serialize public key: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("armor public key: %w", err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// Entity returns the underlying go-crypto entity (public parts only). Callers
// must not modify it.
func (k *PublicKey) Entity() *openpgp.Entity { return k.entity }

// GenerateKey makes a version 4 key pair in the form GnuPG 2.2 reads: an
// Ed25519 primary key (certify, sign) and a Curve25519 ECDH encryption subkey,
// with the user ID "name <email>", no expiry, and preferences AES-256 then
// AES-128, SHA-512 then SHA-256, no compression, SEIPDv1 (MDC) only. rand nil
// means crypto/rand; a zero now means time.Now. The returned entity holds the
// (unprotected) private keys.
func GenerateKey(name, email string, rand io.Reader, now time.Time) (*openpgp.Entity, error) {
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Name != "" || addr.Address != email {
		return nil, fmt.Errorf("generate key: %q is not a plain email address", clip(email, 100))
	}
	if now.IsZero() {
		now = time.Now()
	}
	now = now.Truncate(time.Second)
	cfg := &packet.Config{
		Rand:                   rand,
		Time:                   func() time.Time { return now },
		Algorithm:              packet.PubKeyAlgoEdDSA,
		Curve:                  packet.Curve25519,
		DefaultHash:            stdcrypto.SHA512,
		DefaultCipher:          packet.CipherAES256,
		DefaultCompressionAlgo: packet.CompressionNone,
		// AEADConfig stays nil: advertising SEIPDv2 would make other
		// implementations send AEAD messages GnuPG 2.2 cannot read.
	}
	e, err := openpgp.NewEntity(name, "", email, cfg)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return e, nil
}
