package client

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"golang.org/x/crypto/chacha20poly1305"
)

// The sealed-key format (docs/CLIENT.md):
//
//	sealed = 0x01 || nonce (24 random bytes) || XChaCha20-Poly1305(seal_key, nonce, ad, secret key)
//	ad     = "CryptoMail/1 sealed private key" || address with A-Z lowered
//
// The plaintext is the binary OpenPGP transferable secret key without S2K protection:
// the AEAD is its protection, and a second passphrase layer would only add a second
// secret to forget.
const (
	// SealedKeyVersion is the first byte of a sealed key.
	SealedKeyVersion = 0x01
	// SealedKeyLabel starts the associated data of a sealed key.
	SealedKeyLabel = "CryptoMail/1 sealed private key"
)

const sealedOverhead = 1 + chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead

func sealAD(address string) []byte {
	return append([]byte(SealedKeyLabel), asciiLower(address)...)
}

// SealPrivateKey seals a binary OpenPGP secret key for address under sealKey (from
// sexmap.DeriveKeys), with a fresh nonce from rng.
func SealPrivateKey(sealKey [32]byte, address string, secretKey []byte, rng io.Reader) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(sealKey[:])
	if err != nil {
		return nil, fmt.Errorf("seal private key: %w", err)
	}
	out := make([]byte, 1+chacha20poly1305.NonceSizeX, sealedOverhead+len(secretKey))
	out[0] = SealedKeyVersion
	if _, err := io.ReadFull(rng, out[1:]); err != nil {
		return nil, fmt.Errorf("seal private key: nonce: %w", err)
	}
	return aead.Seal(out, out[1:], secretKey, sealAD(address)), nil
}

// OpenSealedKey opens a sealed key made by SealPrivateKey; any mismatch of key, address
// or content gives ErrUnseal.
func OpenSealedKey(sealKey [32]byte, address string, sealed []byte) ([]byte, error) {
	if len(sealed) < sealedOverhead || sealed[0] != SealedKeyVersion {
		return nil, fmt.Errorf("%w: not a version %d sealed key", ErrUnseal, SealedKeyVersion)
	}
	aead, err := chacha20poly1305.NewX(sealKey[:])
	if err != nil {
		return nil, fmt.Errorf("open sealed key: %w", err)
	}
	nonce := sealed[1 : 1+chacha20poly1305.NonceSizeX]
	plain, err := aead.Open(nil, nonce, sealed[1+chacha20poly1305.NonceSizeX:], sealAD(address))
	if err != nil {
		return nil, ErrUnseal
	}
	return plain, nil
}

// marshalSecretKey serializes a private key without S2K protection and without
// re-signing, so the key's self-signatures (and so its fingerprint and what others
// verified) stay exactly as they are.
func marshalSecretKey(e *openpgp.Entity) ([]byte, error) {
	var buf bytes.Buffer
	if err := e.SerializePrivateWithoutSigning(&buf, nil); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	return buf.Bytes(), nil
}

// parseSecretKey reads an unsealed key: exactly one unprotected private key that can
// sign and decrypt.
func parseSecretKey(bin []byte) (*openpgp.Entity, error) {
	el, err := openpgp.ReadKeyRing(bytes.NewReader(bin))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	if len(el) != 1 {
		return nil, fmt.Errorf("%w: want one key, found %d", ErrBadKey, len(el))
	}
	if err := checkPrivate(el[0]); err != nil {
		return nil, err
	}
	return el[0], nil
}

func checkPrivate(e *openpgp.Entity) error {
	if e.PrivateKey == nil {
		return fmt.Errorf("%w: it holds no private key (a public key was given?)", ErrBadKey)
	}
	if e.PrivateKey.Encrypted {
		return fmt.Errorf("%w: the private key is still passphrase-protected", ErrBadKey)
	}
	for _, sk := range e.Subkeys {
		if sk.PrivateKey != nil && sk.PrivateKey.Encrypted {
			return fmt.Errorf("%w: a private subkey is still passphrase-protected", ErrBadKey)
		}
	}
	return nil
}

// ReadPrivateKey reads a private key file as `gpg --export-secret-keys [--armor]` writes
// it: one key, binary or ASCII-armored. If it is passphrase-protected, passphrase is
// called (once; nil means none is available) and the key is unlocked with the answer.
// The returned key is unprotected and lives in memory only.
func ReadPrivateKey(data []byte, passphrase func() ([]byte, error)) (*openpgp.Entity, error) {
	var el openpgp.EntityList
	var err error
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0]&0x80 == 0 {
		var block *armor.Block
		block, err = armor.Decode(bytes.NewReader(t))
		if err != nil {
			return nil, fmt.Errorf("%w: malformed armor: %w", ErrBadKey, err)
		}
		if block.Type != openpgp.PrivateKeyType {
			return nil, fmt.Errorf("%w: the file holds a %q block, not a private key", ErrBadKey, clip(block.Type, 40))
		}
		el, err = openpgp.ReadKeyRing(block.Body)
	} else {
		el, err = openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	if len(el) != 1 {
		return nil, fmt.Errorf("%w: want one key in the file, found %d", ErrBadKey, len(el))
	}
	e := el[0]
	if e.PrivateKey == nil {
		return nil, fmt.Errorf("%w: the file holds no private key", ErrBadKey)
	}
	if protected(e) {
		if passphrase == nil {
			return nil, fmt.Errorf("%w: the key is passphrase-protected and no passphrase was given", ErrBadKey)
		}
		pw, err := passphrase()
		if err != nil {
			return nil, err
		}
		err = e.DecryptPrivateKeys(pw)
		clear(pw)
		if err != nil {
			return nil, fmt.Errorf("%w: wrong passphrase for the key file", ErrBadKey)
		}
	}
	if err := checkPrivate(e); err != nil {
		return nil, err
	}
	return e, nil
}

func protected(e *openpgp.Entity) bool {
	if e.PrivateKey.Encrypted {
		return true
	}
	for _, sk := range e.Subkeys {
		if sk.PrivateKey != nil && sk.PrivateKey.Encrypted {
			return true
		}
	}
	return false
}

// publicKeyBytes is the binary transferable public key of e, as signup uploads it.
func publicKeyBytes(e *openpgp.Entity) ([]byte, error) {
	var buf bytes.Buffer
	if err := e.Serialize(&buf); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	return buf.Bytes(), nil
}

func fingerprint(e *openpgp.Entity) string {
	return strings.ToUpper(fmt.Sprintf("%x", e.PrimaryKey.Fingerprint))
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

var errNoPassphrase = errors.New("client: empty passphrase")
