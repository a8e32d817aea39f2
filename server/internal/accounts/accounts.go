// Package accounts is the account half of the XMAP backend on the shard
// store: salt lookup, signup with an invite, passphrase change, the user's
// own account, logout and public-key lookup (xmapserver.AccountBackend), and
// the login keys SeXMAP checks XK logins against (sexmap.Accounts).
//
// The store holds only public or client-sealed material: the X25519 public
// login key, the Argon2id salt and parameters, the sealed private OpenPGP key
// and the public key. Invite codes are kept as SHA-256 hashes.
package accounts

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"golang.org/x/crypto/curve25519"

	cmcrypto "cryptomail/crypto"
	"cryptomail/shard"
	"cryptomail/xmap"
	"cryptomail/xmap/sexmap"
	"cryptomail/xmap/xmapserver"
)

// ServerKeyFile is the name of the server's SeXMAP static key file in the
// data directory.
const ServerKeyFile = "sexmap.key"

// ServerKeyPath is where the server's SeXMAP static key lives:
// <dataDir>/sexmap.key. The server and `cryptomail server-key` both use it.
func ServerKeyPath(dataDir string) string { return filepath.Join(dataDir, ServerKeyFile) }

// FakeSaltFunc returns the fake-salt function of the server whose static
// private key is given: the same salts sexmap.Server.FakeSalt answers, usable
// before the sexmap.Server exists (it needs this Backend first).
func FakeSaltFunc(staticPrivate []byte) func(address string) []byte {
	secret := sexmap.ServerSecret(staticPrivate)
	return func(address string) []byte { return sexmap.FakeSalt(secret, address) }
}

// Store is what the account requests need of the storage; shard.Store
// implements it. The directory part (User, Generation's account id, device
// tokens, Signup's invite and entry) is the metabase's, the rest the user's
// shard's.
type Store interface {
	User(ctx context.Context, address string) (shard.User, error)
	PublicKey(ctx context.Context, address string) ([]byte, error)
	LoginMaterial(ctx context.Context, address string) (shard.Login, error)
	ChangeLoginMaterial(ctx context.Context, address string, l shard.Login) error
	// Generation: the account id followed by the login key; ErrNotFound
	// once the account is deleted, disabled or not signed up.
	Generation(ctx context.Context, address string) ([]byte, error)
	// Signup consumes an invite and creates or activates the account, all
	// or nothing (shard.Store.Signup).
	Signup(ctx context.Context, req shard.SignupRequest) (created bool, err error)
	AddDeviceToken(ctx context.Context, address string, hash []byte, max int, now time.Time) error
	HasDeviceToken(ctx context.Context, address string, hash []byte) (bool, error)
	ClearDeviceTokens(ctx context.Context, address string) error
}

var _ Store = (*shard.Store)(nil)

// Config configures a Backend.
type Config struct {
	// Store holds the accounts.
	Store Store
	// CanonicalAddress turns an address as given into the metabase key, and
	// refuses addresses outside the served domains (server.Config's
	// ServedAddress). SeXMAP's Config.CanonicalAddress must be the same
	// function, so that session addresses are the keys used here.
	CanonicalAddress func(string) (string, error)
	// FakeSalt answers the salt lookup of an address without an account
	// (FakeSaltFunc, or the sexmap.Server's FakeSalt method).
	FakeSalt func(address string) []byte
	// AllowSaltLookup, when set, is asked before each salt lookup (a batch
	// may hold several); false refuses it with XMAP rate-limited, to retry
	// after the duration. The server keys it by client IP
	// (sexmap.ClientIP).
	AllowSaltLookup func(ctx context.Context) (bool, time.Duration)
	// Now is the clock for invite expiry and key validity; nil: time.Now.
	Now func() time.Time
	// Logger gets signups (addresses only); nil: slog.Default().
	Logger *slog.Logger
}

// Backend implements the account requests of xmapserver.AccountBackend and
// sexmap.Accounts on a Store. It is safe for concurrent use.
type Backend struct {
	store    Store
	canon    func(string) (string, error)
	fakeSalt func(string) []byte
	allow    func(context.Context) (bool, time.Duration)
	// decoy is an address whose salt lookup found an account: an unknown
	// address's lookup reads that account's shard too (and throws the
	// answer away), so both take the same storage path (issue 9).
	decoy atomic.Pointer[string]
	now   func() time.Time
	log   *slog.Logger
}

var (
	_ xmapserver.AccountBackend = (*Backend)(nil)
	_ sexmap.Accounts           = (*Backend)(nil)
)

// New checks cfg and returns a Backend.
func New(cfg Config) (*Backend, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("accounts: Config.Store is nil")
	case cfg.CanonicalAddress == nil:
		return nil, errors.New("accounts: Config.CanonicalAddress is nil")
	case cfg.FakeSalt == nil:
		return nil, errors.New("accounts: Config.FakeSalt is nil")
	}
	b := &Backend{store: cfg.Store, canon: cfg.CanonicalAddress, fakeSalt: cfg.FakeSalt, allow: cfg.AllowSaltLookup, now: cfg.Now, log: cfg.Logger}
	if b.now == nil {
		b.now = time.Now
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	return b, nil
}

// LoginKey implements sexmap.Accounts: the public login key of an account
// that has signed up, or sexmap.ErrUnknownAccount.
func (b *Backend) LoginKey(ctx context.Context, address string) ([]byte, error) {
	addr, err := b.canon(address)
	if err != nil {
		return nil, sexmap.ErrUnknownAccount
	}
	l, err := b.store.LoginMaterial(ctx, addr)
	if errors.Is(err, shard.ErrNotFound) {
		return nil, sexmap.ErrUnknownAccount
	}
	if err != nil {
		return nil, fmt.Errorf("accounts: login key: %w", err)
	}
	return l.Key, nil
}

// Generation implements sexmap.Accounts: the account's metabase account id and its
// current login key (shard.Store.Generation), read from the files on every call so that
// a change by another process (cryptomail user del, a passphrase change) is seen at once.
func (b *Backend) Generation(ctx context.Context, address string) ([]byte, error) {
	addr, err := b.canon(address)
	if err != nil {
		return nil, sexmap.ErrUnknownAccount
	}
	g, err := b.store.Generation(ctx, addr)
	if errors.Is(err, shard.ErrNotFound) {
		return nil, sexmap.ErrUnknownAccount
	}
	if err != nil {
		return nil, fmt.Errorf("accounts: generation: %w", err)
	}
	return g, nil
}

// MaxDeviceTokens is how many device tokens an account keeps; issuing one more forgets
// the oldest (that client then passes the address lock-out no longer, nothing else).
const MaxDeviceTokens = 10

// DeviceTokenValid implements sexmap.Accounts: whether the SHA-256 of token is one of the
// account's stored device token hashes (compared in constant time).
func (b *Backend) DeviceTokenValid(ctx context.Context, address string, token []byte) (bool, error) {
	addr, err := b.canon(address)
	if err != nil || len(token) != xmap.DeviceTokenSize {
		return false, nil
	}
	h := sha256.Sum256(token)
	ok, err := b.store.HasDeviceToken(ctx, addr, h[:])
	if err != nil {
		return false, fmt.Errorf("accounts: device token: %w", err)
	}
	return ok, nil
}

// IssueDeviceToken implements xmapserver.AccountBackend: current when it is still a
// valid token of the account, else 32 new random bytes, of which only the SHA-256 is
// stored, for the account's current generation.
func (b *Backend) IssueDeviceToken(ctx context.Context, user string, current []byte) ([]byte, error) {
	addr, err := b.sessionUser(ctx, user)
	if err != nil {
		return nil, err
	}
	if current != nil {
		ok, err := b.DeviceTokenValid(ctx, addr, current)
		if err != nil {
			return nil, err
		}
		if ok {
			return bytes.Clone(current), nil
		}
	}
	token := make([]byte, xmap.DeviceTokenSize)
	if _, err := rand.Read(token); err != nil {
		return nil, fmt.Errorf("accounts: device token: %w", err)
	}
	h := sha256.Sum256(token)
	err = b.store.AddDeviceToken(ctx, addr, h[:], MaxDeviceTokens, b.now())
	if errors.Is(err, shard.ErrNotFound) {
		return nil, xmap.Errorf(xmap.CodeDenied, "no such account")
	}
	if err != nil {
		return nil, fmt.Errorf("accounts: device token: %w", err)
	}
	return token, nil
}

// LookupSalt implements xmapserver.AccountBackend. An address without an
// account, or whose account has not signed up, gets the stable fake salt and
// the default parameters: the answer does not tell who has an account.
func (b *Backend) LookupSalt(ctx context.Context, req *xmap.SaltLookup) (xmap.KDF, error) {
	if b.allow != nil {
		if ok, wait := b.allow(ctx); !ok {
			return xmap.KDF{}, xmap.Errorf(xmap.CodeRateLimited, "too many salt lookups from this address; retry in %ds", int((wait+time.Second-1)/time.Second))
		}
	}
	addr, err := b.canon(req.Address)
	if err != nil {
		// Not an address of ours: no account, but still a stable answer.
		addr = strings.ToLower(req.Address)
	} else {
		l, err := b.store.LoginMaterial(ctx, addr)
		if err == nil {
			b.fakeSalt(addr) // the unknown path's derivation, for equal work
			b.decoy.Store(&addr)
			return xmap.KDF{Alg: xmap.KDFArgon2id, Salt: l.Salt, Time: l.KDFTime, Memory: l.KDFMemory, Threads: l.KDFThreads}, nil
		}
		if !errors.Is(err, shard.ErrNotFound) {
			return xmap.KDF{}, fmt.Errorf("accounts: salt lookup: %w", err)
		}
	}
	b.decoyRead(ctx)
	p := sexmap.DefaultKDFParams
	return xmap.KDF{Alg: xmap.KDFArgon2id, Salt: b.fakeSalt(addr), Time: p.Time, Memory: p.MemoryKiB, Threads: p.Threads}, nil
}

// decoyRead gives an unknown address's salt lookup the work an account's
// does after its metabase row is found: a read from a (pooled) shard. The
// metabase miss already stands for the account's metabase hit, so the read
// goes to a shard the pool normally holds open, and its result is dropped.
// Timing only: nothing of it reaches the answer or the log.
func (b *Backend) decoyRead(ctx context.Context) {
	d := b.decoy.Load()
	if d == nil {
		return
	}
	if _, err := b.store.PublicKey(ctx, *d); err != nil {
		b.decoy.CompareAndSwap(d, nil) // deleted or broken: pick another later
	}
}

// Signup implements xmapserver.AccountBackend: it validates what the client
// sends, then consumes the invite and creates or activates the account in
// the store.
func (b *Backend) Signup(ctx context.Context, req *xmap.Signup) error {
	login, err := loginMaterial(req.LoginKey, req.KDF, req.SealedKey)
	if err != nil {
		return err
	}
	now := b.now()
	key, err := cmcrypto.ParsePublicKey(req.PublicKey, now)
	if err != nil {
		// The key errors name structure and times, never key material.
		return xmap.Errorf(xmap.CodeBadRequest, "public key refused: %v", err)
	}
	armored, err := key.Armored()
	if err != nil {
		return fmt.Errorf("accounts: signup: %w", err)
	}
	// An address outside the served domains, or a malformed code, cannot
	// have an invite: the same answer as a wrong code.
	addr, err := b.canon(req.Address)
	if err != nil {
		return xmap.ErrInvalidInvite
	}
	hash, ok := InviteHash(req.Invite)
	if !ok {
		return xmap.ErrInvalidInvite
	}
	fpr := key.Entity().PrimaryKey.Fingerprint
	// Clients show a signature as the signing key's address (the owner the
	// server gives for it): a key that does not name the address would let
	// an account claim another person's key and present their signatures as
	// its own. An account an administrator made with this very key (user add
	// --public-key, which only warns) is activated whatever its user ids say.
	if !b.keyNames(key, addr) && !b.keyOnFile(ctx, addr, fpr) {
		return xmap.Errorf(xmap.CodeBadRequest, "public key refused: no user id names %s", addr)
	}
	created, err := b.store.Signup(ctx, shard.SignupRequest{
		Address:   addr,
		CodeHash:  hash,
		PublicKey: armored,
		SameKey: func(stored []byte) bool {
			f, err := primaryFingerprint(stored)
			return err == nil && bytes.Equal(f, fpr)
		},
		Login: login,
		Now:   now,
	})
	switch {
	case errors.Is(err, shard.ErrInvalidInvite):
		return xmap.Errorf(xmap.CodeInvalidInvite, "invalid invite code")
	case errors.Is(err, shard.ErrInviteExpired):
		return xmap.Errorf(xmap.CodeExpired, "invite code expired")
	case errors.Is(err, shard.ErrExists):
		return xmap.Errorf(xmap.CodeConflict, "address already has an account")
	case errors.Is(err, shard.ErrKeyMismatch):
		return xmap.Errorf(xmap.CodeConflict, "public key differs from the one the account was created with")
	case err != nil:
		return fmt.Errorf("accounts: signup: %w", err)
	}
	if created {
		b.log.Info("accounts: signed up", "address", addr)
	} else {
		b.log.Info("accounts: activated", "address", addr)
	}
	return nil
}

// keyNames reports whether one of key's user ids names addr (in the
// canonical form the metabase uses).
func (b *Backend) keyNames(key *cmcrypto.PublicKey, addr string) bool {
	for _, e := range key.Emails() {
		if c, err := b.canon(e); err == nil && c == addr {
			return true
		}
	}
	return false
}

// keyOnFile reports whether addr's account already holds the key with
// fingerprint fpr.
func (b *Backend) keyOnFile(ctx context.Context, addr string, fpr []byte) bool {
	stored, err := b.store.PublicKey(ctx, addr)
	if err != nil {
		return false
	}
	f, err := primaryFingerprint(stored)
	return err == nil && bytes.Equal(f, fpr)
}

// ChangePassphrase implements xmapserver.AccountBackend: login key, KDF
// parameters and sealed key are replaced in one transaction. The XMAP server
// runs it only as the first request of a login made for it (proof of the
// current login key); the new key ends every session of the account.
func (b *Backend) ChangePassphrase(ctx context.Context, user string, req *xmap.ChangePassphrase) error {
	login, err := loginMaterial(req.LoginKey, req.KDF, req.SealedKey)
	if err != nil {
		return err
	}
	addr, err := b.sessionUser(ctx, user)
	if err != nil {
		return err
	}
	err = b.store.ChangeLoginMaterial(ctx, addr, login)
	if errors.Is(err, shard.ErrNotFound) {
		return xmap.Errorf(xmap.CodeDenied, "no such account")
	}
	if err != nil {
		return fmt.Errorf("accounts: change passphrase: %w", err)
	}
	// The new login key already ends every session (Generation); the device tokens go
	// too, so a client that logged in with the old passphrase passes no lock-out now.
	if err := b.store.ClearDeviceTokens(ctx, addr); err != nil {
		b.log.Error("accounts: change passphrase: device tokens not cleared", "address", addr, "err", err)
	}
	b.log.Info("accounts: passphrase changed", "address", addr)
	return nil
}

// Account implements xmapserver.AccountBackend: the session user's own
// public key (binary), KDF parameters and sealed key, so a client on a new
// device can unseal its private key. user is the session's address; no other
// account is reachable.
func (b *Backend) Account(ctx context.Context, user string) (xmap.Account, error) {
	addr, err := b.sessionUser(ctx, user)
	if err != nil {
		return xmap.Account{}, err
	}
	l, err := b.store.LoginMaterial(ctx, addr)
	if errors.Is(err, shard.ErrNotFound) {
		return xmap.Account{}, xmap.Errorf(xmap.CodeDenied, "no such account")
	}
	if err != nil {
		return xmap.Account{}, fmt.Errorf("accounts: account: %w", err)
	}
	stored, err := b.store.PublicKey(ctx, addr)
	if err != nil {
		// An active account always has a key: a missing one is a broken shard.
		return xmap.Account{}, fmt.Errorf("accounts: account: %w", err)
	}
	bin, err := binaryKey(stored)
	if err != nil {
		return xmap.Account{}, fmt.Errorf("accounts: account: stored public key: %w", err)
	}
	return xmap.Account{
		Address:   addr,
		PublicKey: bin,
		KDF:       xmap.KDF{Alg: xmap.KDFArgon2id, Salt: l.Salt, Time: l.KDFTime, Memory: l.KDFMemory, Threads: l.KDFThreads},
		SealedKey: l.SealedKey,
	}, nil
}

// Logout implements xmapserver.AccountBackend. Sessions belong to SeXMAP, so
// there is nothing to end here; the session's account must still exist.
func (b *Backend) Logout(ctx context.Context, user string) error {
	_, err := b.sessionUser(ctx, user)
	return err
}

// PublicKeys implements xmapserver.AccountBackend: the binary public keys of
// the addresses that are active local users (signed up or created by an
// administrator); everything else is not found.
func (b *Backend) PublicKeys(ctx context.Context, user string, req *xmap.PublicKeys) ([]xmap.PublicKey, error) {
	if _, err := b.sessionUser(ctx, user); err != nil {
		return nil, err
	}
	var keys []xmap.PublicKey
	for _, asked := range req.Addresses {
		addr, err := b.canon(asked)
		if err != nil {
			continue
		}
		u, err := b.store.User(ctx, addr)
		if errors.Is(err, shard.ErrNotFound) || err == nil && u.State != shard.StateActive {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("accounts: public keys: %w", err)
		}
		stored, err := b.store.PublicKey(ctx, addr)
		if errors.Is(err, shard.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("accounts: public keys: %w", err)
		}
		bin, err := binaryKey(stored)
		if err != nil {
			// One broken stored key must not fail the lookup of the others.
			b.log.Error("accounts: stored public key unreadable", "address", addr, "err", err)
			continue
		}
		// The address as asked: the server matches results to the request.
		keys = append(keys, xmap.PublicKey{Address: asked, Key: bin})
	}
	return keys, nil
}

// sessionUser returns the canonical address of a logged-in session's user,
// or denied when that account no longer exists or is not active.
func (b *Backend) sessionUser(ctx context.Context, user string) (string, error) {
	addr, err := b.canon(user)
	if err != nil {
		return "", xmap.Errorf(xmap.CodeDenied, "no such account")
	}
	u, err := b.store.User(ctx, addr)
	if errors.Is(err, shard.ErrNotFound) || err == nil && u.State != shard.StateActive {
		return "", xmap.Errorf(xmap.CodeDenied, "no such account")
	}
	if err != nil {
		return "", fmt.Errorf("accounts: %w", err)
	}
	return addr, nil
}

// loginMaterial checks what signup and change-passphrase send: a usable
// X25519 login key, Argon2id parameters within sexmap's floor and ceiling,
// a salt of the allowed size and a sealed key.
func loginMaterial(loginKey []byte, kdf xmap.KDF, sealed []byte) (shard.Login, error) {
	if len(loginKey) != xmap.LoginKeySize {
		return shard.Login{}, xmap.Errorf(xmap.CodeBadRequest, "login key must be %d bytes", xmap.LoginKeySize)
	}
	// A low-order point would make every handshake's DH all zeros, so no
	// login could ever succeed: refuse it now rather than lock the user out.
	if _, err := curve25519.X25519(probeScalar[:], loginKey); err != nil {
		return shard.Login{}, xmap.Errorf(xmap.CodeBadRequest, "login key is not a usable X25519 public key")
	}
	if kdf.Alg != xmap.KDFArgon2id {
		return shard.Login{}, xmap.Errorf(xmap.CodeBadRequest, "kdf: only %s is supported", xmap.KDFArgon2id)
	}
	p := sexmap.KDFParams{Time: kdf.Time, MemoryKiB: kdf.Memory, Threads: kdf.Threads}
	if err := p.Validate(); err != nil {
		return shard.Login{}, xmap.Errorf(xmap.CodeBadRequest, "kdf parameters out of range (time %d..%d, memory %d..%d KiB, threads %d..%d)",
			sexmap.MinKDFParams.Time, sexmap.MaxKDFParams.Time, sexmap.MinKDFParams.MemoryKiB, sexmap.MaxKDFParams.MemoryKiB,
			sexmap.MinKDFParams.Threads, sexmap.MaxKDFParams.Threads)
	}
	if len(kdf.Salt) < xmap.MinSaltSize || len(kdf.Salt) > xmap.MaxSaltSize {
		return shard.Login{}, xmap.Errorf(xmap.CodeBadRequest, "salt must be %d to %d bytes", xmap.MinSaltSize, xmap.MaxSaltSize)
	}
	if len(sealed) == 0 {
		return shard.Login{}, xmap.Errorf(xmap.CodeBadRequest, "sealed key is empty")
	}
	if len(sealed) > xmap.MaxKeySize {
		return shard.Login{}, xmap.Errorf(xmap.CodeTooLarge, "sealed key over %d bytes", xmap.MaxKeySize)
	}
	return shard.Login{
		Key:        bytes.Clone(loginKey),
		Salt:       bytes.Clone(kdf.Salt),
		KDFTime:    kdf.Time,
		KDFMemory:  kdf.Memory,
		KDFThreads: kdf.Threads,
		SealedKey:  bytes.Clone(sealed),
	}, nil
}

// probeScalar is any scalar: X25519 clamps it to a multiple of the cofactor,
// so the product is zero exactly for low-order points.
var probeScalar = [32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
	17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}

// binaryKey returns a stored public key (armored, as `user add` and Signup
// store it, or binary) as the binary transferable key XMAP carries.
func binaryKey(stored []byte) ([]byte, error) {
	bin := bytes.TrimLeft(stored, " \t\r\n")
	// Every OpenPGP packet header has its top bit set; armor is text.
	if len(bin) == 0 || bin[0]&0x80 == 0 {
		block, err := armor.Decode(bytes.NewReader(bin))
		if err != nil {
			return nil, fmt.Errorf("dearmor: %w", err)
		}
		if block.Type != openpgp.PublicKeyType {
			return nil, fmt.Errorf("armor block is %q, not a public key", block.Type)
		}
		if bin, err = io.ReadAll(io.LimitReader(block.Body, xmap.MaxKeySize+1)); err != nil {
			return nil, fmt.Errorf("dearmor: %w", err)
		}
	}
	if len(bin) == 0 || len(bin) > xmap.MaxKeySize {
		return nil, fmt.Errorf("public key of %d bytes", len(bin))
	}
	return bin, nil
}

// primaryFingerprint reads a stored key without judging its validity (a key
// that expired since `user add` is still the key whose private half opens
// the mail delivered to it) and returns its primary key's fingerprint.
func primaryFingerprint(stored []byte) ([]byte, error) {
	bin, err := binaryKey(stored)
	if err != nil {
		return nil, err
	}
	el, err := openpgp.ReadKeyRing(bytes.NewReader(bin))
	if err != nil {
		return nil, err
	}
	if len(el) != 1 || el[0].PrimaryKey == nil {
		return nil, fmt.Errorf("stored key holds %d keys", len(el))
	}
	return el[0].PrimaryKey.Fingerprint, nil
}
