package sexmap

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/flynn/noise"
	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/hkdf"

	"cryptomail/internal/atomicfile"
)

// Errors about keys.
var (
	// ErrServerKeyChanged means the server presented a static key other than
	// the one the client pinned. Clients must stop and tell the user; it is
	// either a re-installed server or an attack.
	ErrServerKeyChanged = errors.New("sexmap: the server's key is not the pinned key")
	// ErrBadPublicKey is returned for a public key of the wrong encoding or size.
	ErrBadPublicKey = errors.New("sexmap: malformed public key")
	// ErrKeyFilePermissions is returned for a server key file that group or
	// others may read.
	ErrKeyFilePermissions = errors.New("sexmap: server key file is readable by group or others")
)

const keyFileComment = "# SeXMAP/1 server static X25519 private key (base64url). Keep it secret: mode 0600."

// fakeSaltSecretLabel is the HKDF info that derives the fake-salt secret
// from the server's static private key.
const fakeSaltSecretLabel = "SeXMAP/1 fake salt secret"

// LoadOrCreateServerKey returns the server's static X25519 key pair stored at
// path, creating the file (mode 0600, and its directory with mode 0700 if
// missing) with a fresh key when there is none. A key file that group or
// others can read is refused with ErrKeyFilePermissions rather than used.
func LoadOrCreateServerKey(path string) (noise.DHKey, error) {
	key, err := LoadServerKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := createServerKey(path, rand.Reader); err != nil && !errors.Is(err, fs.ErrExist) {
		return noise.DHKey{}, err
	}
	// Whether we or a concurrent start created it, the file on disk wins.
	return LoadServerKey(path)
}

// LoadServerKey is LoadOrCreateServerKey for an existing key: it never
// creates a file, and a missing one is an error wrapping fs.ErrNotExist.
func LoadServerKey(path string) (noise.DHKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return noise.DHKey{}, fmt.Errorf("sexmap: server key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return noise.DHKey{}, fmt.Errorf("sexmap: server key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return noise.DHKey{}, fmt.Errorf("sexmap: server key %s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return noise.DHKey{}, fmt.Errorf("%w: %s has mode %04o; run chmod 600 on it", ErrKeyFilePermissions, path, st.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return noise.DHKey{}, fmt.Errorf("sexmap: server key: %w", err)
	}
	priv, err := parseKeyFile(data)
	if err != nil {
		// The error never quotes the file's content: it is a secret.
		return noise.DHKey{}, fmt.Errorf("sexmap: server key %s: %w", path, err)
	}
	pub, err := curve25519.X25519(priv, curve25519.Basepoint)
	if err != nil {
		return noise.DHKey{}, fmt.Errorf("sexmap: server key %s: %w", path, err)
	}
	return noise.DHKey{Private: priv, Public: pub}, nil
}

func parseKeyFile(data []byte) ([]byte, error) {
	var found []byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if found != nil {
			return nil, errors.New("more than one key line")
		}
		k, err := base64.RawURLEncoding.Strict().DecodeString(line)
		if err != nil || len(k) != dhLen {
			return nil, errors.New("the key line is not 32 bytes in base64url")
		}
		found = k
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if found == nil {
		return nil, errors.New("no key line")
	}
	return found, nil
}

// createServerKey writes a new key with atomicfile.Create, so a reader never
// sees a half-written key and two servers starting together cannot each
// believe their own key is the stored one. The directory entry is fsynced: a
// lost key would change the server's identity and trip every client's pin.
func createServerKey(path string, rng io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("sexmap: server key directory: %w", err)
	}
	priv := make([]byte, dhLen)
	if _, err := io.ReadFull(rng, priv); err != nil {
		return fmt.Errorf("sexmap: server key: %w", err)
	}
	content := []byte(keyFileComment + "\n" + base64.RawURLEncoding.EncodeToString(priv) + "\n")
	clear(priv)
	err := atomicfile.Create(path, content, 0o600)
	clear(content)
	if err != nil {
		return fmt.Errorf("sexmap: server key: %w", err)
	}
	return nil
}

// EncodePublicKey renders a 32-byte public key as base64url without padding
// (43 characters): the form printed for administrators, served at
// PathWellKnown and pinned by clients.
func EncodePublicKey(pub []byte) string { return base64.RawURLEncoding.EncodeToString(pub) }

// DecodePublicKey parses EncodePublicKey's output (surrounding white space
// ignored).
func DecodePublicKey(s string) ([]byte, error) {
	k, err := base64.RawURLEncoding.Strict().DecodeString(strings.TrimSpace(s))
	if err != nil || len(k) != dhLen {
		return nil, ErrBadPublicKey
	}
	return k, nil
}

// Pin compares the server key a client pinned with the one presented now and
// returns ErrServerKeyChanged unless they are the same 32 bytes.
func Pin(pinned, presented []byte) error {
	if len(pinned) != dhLen || subtle.ConstantTimeCompare(pinned, presented) != 1 {
		return ErrServerKeyChanged
	}
	return nil
}

// ServerSecret derives the secret behind FakeSalt from the server's static
// private key: HKDF-SHA256(IKM = private key, salt = empty, info = "SeXMAP/1
// fake salt secret", L = 32). Deriving it rather than storing a second file
// keeps fake salts stable for as long as the server keeps its identity.
func ServerSecret(staticPrivate []byte) []byte {
	out := make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, staticPrivate, nil, []byte(fakeSaltSecretLabel)), out); err != nil {
		panic("sexmap: HKDF cannot fail for 32 bytes: " + err.Error())
	}
	return out
}

// FakeSalt is the salt the salt lookup answers for an address that has no
// account: HMAC-SHA256(serverSecret, "fake-salt" || address), first
// SaltSize bytes. It is stable, so asking twice does not reveal that the
// address is unknown. Pass the address in the same canonical form the account
// lookup uses, so that spellings of one address get one salt.
func FakeSalt(serverSecret []byte, address string) []byte {
	m := hmac.New(sha256.New, serverSecret)
	m.Write([]byte("fake-salt"))
	m.Write([]byte(address))
	return m.Sum(nil)[:SaltSize]
}
