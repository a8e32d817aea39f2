package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	cmcrypto "cryptomail/crypto"
	"cryptomail/xmap"
	"cryptomail/xmap/sexmap"

	"github.com/ProtonMail/go-crypto/openpgp"
	"golang.org/x/text/unicode/norm"
)

// Options configure a Client. Only Server is required.
type Options struct {
	// Server is the base URL of the CryptoMail HTTP listener, e.g. "http://127.0.0.1:8080".
	Server string
	// Home is the directory for the client's state (pins, the current address, sealed
	// keys). Empty keeps everything in memory for the life of the Client.
	Home string
	// HTTPClient carries SeXMAP; nil means http.DefaultClient.
	HTTPClient *http.Client
	// ServerKey, if set, is the server's public key (32 bytes) to trust, checked against
	// any pin already in the home; otherwise the key is pinned on first use.
	ServerKey []byte
	// OnPin is called when a server key is pinned on first use, with the server URL and
	// the key as sexmap.EncodePublicKey writes it, so the user can compare it with the
	// one the administrator published.
	OnPin func(server, key string)
	// KDFParams are the Argon2id parameters for new accounts and passphrase changes.
	// The zero value means sexmap.DefaultKDFParams; only tests should lower them.
	KDFParams sexmap.KDFParams
	// Rand is the source of keys, salts and nonces; nil means crypto/rand.
	Rand io.Reader
	// Now is the clock for key generation, message dates and key validity; nil: time.Now.
	Now func() time.Time
	// SummaryCacheSize bounds how many decrypted summaries a Session keeps in memory for
	// List and Watch (by message id, dropped at Logout); 0 means
	// DefaultSummaryCacheSize, a negative value turns the cache off.
	SummaryCacheSize int
}

// Client talks to one CryptoMail server. It is safe for concurrent use.
type Client struct {
	server string
	hc     *http.Client
	opts   Options
	store  *store
}

func (c *Client) summaryCacheSize() int {
	if c.opts.SummaryCacheSize == 0 {
		return DefaultSummaryCacheSize
	}
	return c.opts.SummaryCacheSize
}

// New checks opts and opens (creating if needed) the home directory.
func New(opts Options) (*Client, error) {
	server, err := normalizeServer(opts.Server)
	if err != nil {
		return nil, err
	}
	if opts.ServerKey != nil && len(opts.ServerKey) != 32 {
		return nil, fmt.Errorf("client: server key must be 32 bytes")
	}
	if opts.KDFParams == (sexmap.KDFParams{}) {
		opts.KDFParams = sexmap.DefaultKDFParams
	}
	if err := opts.KDFParams.Validate(); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	st, err := newStore(opts.Home)
	if err != nil {
		return nil, err
	}
	return &Client{server: server, hc: hc, opts: opts, store: st}, nil
}

// normalizeServer checks a server URL and gives the form pins are filed under.
func normalizeServer(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("client: server %q is not an http:// or https:// URL", clip(s, 100))
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	return strings.TrimRight(u.String(), "/"), nil
}

// Server returns the server URL, normalized.
func (c *Client) Server() string { return c.server }

// ServerKey returns the pinned key of the server, pinning it on first use: fetched from
// the server's well-known path, stored in the home, and reported to Options.OnPin.
func (c *Client) ServerKey(ctx context.Context) ([]byte, error) {
	pinned, err := c.store.pin(c.server)
	if err != nil {
		return nil, err
	}
	if want := c.opts.ServerKey; want != nil {
		if pinned != nil && sexmap.Pin(pinned, want) != nil {
			return nil, c.keyChanged(pinned, want)
		}
		if pinned == nil {
			if pinned, err = c.store.setPin(c.server, want); err != nil {
				return nil, err
			}
		}
		return pinned, nil
	}
	if pinned != nil {
		return pinned, nil
	}
	key, err := sexmap.FetchServerKey(ctx, c.hc, c.server)
	if err != nil {
		return nil, fmt.Errorf("fetching the server key of %s: %w", c.server, err)
	}
	pinned, err = c.store.setPin(c.server, key)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(pinned, key) && c.opts.OnPin != nil {
		c.opts.OnPin(c.server, sexmap.EncodePublicKey(key))
	}
	return pinned, nil
}

// ResetPin forgets the pinned key of the server, so the next connection pins the key it
// presents. Call it only after checking the new key with the server's administrator.
func (c *Client) ResetPin() error { return c.store.resetPin(c.server) }

func (c *Client) keyChanged(pinned, presented []byte) error {
	e := &KeyChangedError{Server: c.server, Pinned: sexmap.EncodePublicKey(pinned)}
	if presented != nil {
		e.Presented = sexmap.EncodePublicKey(presented)
	}
	if c.store.dir != "" {
		e.PinFile = c.store.path(PinFile)
	}
	return e
}

// explain turns a dial error caused by a changed server key into a *KeyChangedError that
// names both keys.
func (c *Client) explain(ctx context.Context, pinned []byte, err error) error {
	if !errors.Is(err, sexmap.ErrServerKeyChanged) {
		return err
	}
	presented, ferr := sexmap.FetchServerKey(ctx, c.hc, c.server)
	if ferr != nil {
		presented = nil
	}
	return c.keyChanged(pinned, presented)
}

func (c *Client) dialNK(ctx context.Context) (*sexmap.ClientSession, error) {
	pub, err := c.ServerKey(ctx)
	if err != nil {
		return nil, err
	}
	cs, err := retryBusy(ctx, func() (*sexmap.ClientSession, error) {
		return sexmap.DialNK(ctx, c.hc, c.server, pub)
	})
	if err != nil {
		return nil, c.explain(ctx, pub, err)
	}
	return cs, nil
}

func (c *Client) dialXK(ctx context.Context, loginPriv [32]byte, address string) (*sexmap.ClientSession, error) {
	pub, err := c.ServerKey(ctx)
	if err != nil {
		return nil, err
	}
	// A device token from an earlier login, if this client has one: a correct login then
	// passes a lock-out of the address caused by others (docs/CLIENT.md). A state file
	// that cannot be read only costs that.
	token, _ := c.store.deviceToken(c.server, address)
	cs, err := retryBusy(ctx, func() (*sexmap.ClientSession, error) {
		return sexmap.DialXKDevice(ctx, c.hc, c.server, pub, loginPriv, address, token)
	})
	if err != nil {
		return nil, c.explain(ctx, pub, err)
	}
	return cs, nil
}

// Busy-server retries of a handshake: SEXMAP.md asks clients to wait Retry-After on 503 and
// on 429 rate-limited (too many handshakes from this IP).
// Waits longer than maxBusyWait are left to the caller.
const (
	busyRetries = 3
	maxBusyWait = 5 * time.Second
)

func retryBusy(ctx context.Context, dial func() (*sexmap.ClientSession, error)) (*sexmap.ClientSession, error) {
	for attempt := 0; ; attempt++ {
		cs, err := dial()
		var se *sexmap.StatusError
		waitable := errors.Is(err, sexmap.ErrBusy) || errors.Is(err, sexmap.ErrRateLimited)
		if attempt == busyRetries || !waitable || !errors.As(err, &se) || se.RetryAfter > maxBusyWait {
			return cs, err
		}
		wait := max(se.RetryAfter, 100*time.Millisecond)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// anonymous runs one request in a fresh anonymous (NK) session.
func (c *Client) anonymous(ctx context.Context, cmd xmap.Command) (xmap.Result, error) {
	cs, err := c.dialNK(ctx)
	if err != nil {
		return nil, err
	}
	rs, err := exchange(ctx, cs.RoundTrip, []xmap.Command{cmd})
	if err != nil {
		return nil, err
	}
	if rs[0].Err != nil {
		return nil, rs[0].Err
	}
	return rs[0].Result, nil
}

// LookupSalt returns the KDF parameters of an address (a made-up salt for an address
// without an account), refusing parameters outside the floor and ceiling of SEXMAP.md.
func (c *Client) LookupSalt(ctx context.Context, address string) (xmap.KDF, error) {
	if !xmap.ValidAddress(address) {
		return xmap.KDF{}, fmt.Errorf("client: %q is not a valid address", clip(address, 100))
	}
	res, err := c.anonymous(ctx, &xmap.SaltLookup{Address: address})
	if err != nil {
		return xmap.KDF{}, fmt.Errorf("salt lookup: %w", err)
	}
	r, ok := res.(*xmap.SaltLookupResult)
	if !ok {
		return xmap.KDF{}, fmt.Errorf("salt lookup: %w", ErrBadResponse)
	}
	if err := kdfParams(r.KDF).Validate(); err != nil {
		return xmap.KDF{}, fmt.Errorf("salt lookup: the server asks for %w", err)
	}
	return r.KDF, nil
}

func kdfParams(k xmap.KDF) sexmap.KDFParams {
	return sexmap.KDFParams{Time: k.Time, MemoryKiB: k.Memory, Threads: k.Threads}
}

// deriveKeys normalizes the passphrase to NFC (SEXMAP.md) and derives the login and
// sealing keys.
func deriveKeys(passphrase, salt []byte, p sexmap.KDFParams) (loginPriv, sealKey [32]byte, err error) {
	if len(passphrase) == 0 {
		return loginPriv, sealKey, errNoPassphrase
	}
	pw := norm.NFC.Bytes(passphrase)
	loginPriv, sealKey, err = sexmap.DeriveKeys(pw, salt, p)
	if &pw[0] != &passphrase[0] {
		clear(pw)
	}
	return loginPriv, sealKey, err
}

// newLogin derives fresh login material for a new passphrase: a new salt, the client's
// KDF parameters, the public login key and the sealed private key.
func (c *Client) newLogin(address string, passphrase []byte, e *openpgp.Entity) (loginPriv [32]byte, kdf xmap.KDF, sealed []byte, err error) {
	salt, err := sexmap.NewSalt(c.opts.Rand)
	if err != nil {
		return loginPriv, kdf, nil, err
	}
	p := c.opts.KDFParams
	loginPriv, sealKey, err := deriveKeys(passphrase, salt, p)
	if err != nil {
		return loginPriv, kdf, nil, err
	}
	defer clear(sealKey[:])
	secret, err := marshalSecretKey(e)
	if err != nil {
		return loginPriv, kdf, nil, err
	}
	defer clear(secret)
	sealed, err = SealPrivateKey(sealKey, address, secret, c.opts.Rand)
	if err != nil {
		return loginPriv, kdf, nil, err
	}
	kdf = xmap.KDF{Alg: xmap.KDFArgon2id, Salt: salt, Time: p.Time, Memory: p.MemoryKiB, Threads: p.Threads}
	return loginPriv, kdf, sealed, nil
}

// SignupParams describe a sign-up.
type SignupParams struct {
	Invite     string // the invite code from the administrator
	Address    string
	Passphrase []byte // the new account's passphrase
	// Name is the user ID name of a generated key (may be empty).
	Name string
	// PrivateKey activates an account an administrator created with a public key: the
	// matching private key, binary or armored, as gpg --export-secret-keys writes it.
	// Nil generates a new Ed25519 + X25519 key pair.
	PrivateKey []byte
	// KeyPassphrase is asked for when PrivateKey is passphrase-protected.
	KeyPassphrase func() ([]byte, error)
}

// Signup creates (or activates) an account and returns its key's fingerprint. The key
// pair is made (or read) here; the server receives the public key, the public login key,
// the salt and KDF parameters, and the private key sealed under the passphrase, which it
// hands back (get-account) only to a session that logged in with that passphrase. The
// address becomes the current one.
func (c *Client) Signup(ctx context.Context, p SignupParams) (string, error) {
	if !xmap.ValidAddress(p.Address) {
		return "", fmt.Errorf("client: %q is not a valid address", clip(p.Address, 100))
	}
	if len(p.Passphrase) == 0 {
		return "", errNoPassphrase
	}
	var e *openpgp.Entity
	var err error
	if p.PrivateKey != nil {
		e, err = ReadPrivateKey(p.PrivateKey, p.KeyPassphrase)
	} else {
		e, err = cmcrypto.GenerateKey(p.Name, p.Address, c.opts.Rand, c.opts.Now())
	}
	if err != nil {
		return "", err
	}
	pub, err := publicKeyBytes(e)
	if err != nil {
		return "", err
	}
	// The same checks the server makes on keys it encrypts to: a key nobody can encrypt
	// to would make an account that cannot receive mail.
	if _, err := cmcrypto.ParsePublicKey(pub, c.opts.Now()); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	loginPriv, kdf, sealed, err := c.newLogin(p.Address, p.Passphrase, e)
	if err != nil {
		return "", err
	}
	_, err = c.anonymous(ctx, &xmap.Signup{
		Invite:    p.Invite,
		Address:   p.Address,
		PublicKey: pub,
		LoginKey:  sexmap.LoginPublicKey(loginPriv),
		KDF:       kdf,
		SealedKey: sealed,
	})
	clear(loginPriv[:])
	if err != nil {
		return "", fmt.Errorf("signup: %w", err)
	}
	if err := c.store.setCurrent(c.server, p.Address); err != nil {
		return "", err
	}
	return fingerprint(e), nil
}

// CurrentAddress returns the address last logged in to this server from this home, or "".
func (c *Client) CurrentAddress() (string, error) { return c.store.current(c.server) }

// SetCurrentAddress records the current address ("" forgets it, as cmail logout does).
func (c *Client) SetCurrentAddress(address string) error {
	return c.store.setCurrent(c.server, address)
}

// Login derives the keys from the passphrase (with the account's salt and parameters),
// logs in with Noise XK, fetches the account (get-account) and unseals the private key.
// A wrong passphrase gives an error matching sexmap.ErrLoginFailed.
func (c *Client) Login(ctx context.Context, address string, passphrase []byte) (*Session, error) {
	kdf, err := c.LookupSalt(ctx, address)
	if err != nil {
		return nil, err
	}
	loginPriv, sealKey, err := deriveKeys(passphrase, kdf.Salt, kdfParams(kdf))
	if err != nil {
		return nil, err
	}
	defer clear(sealKey[:])
	cs, err := c.dialXK(ctx, loginPriv, address)
	if err != nil {
		clear(loginPriv[:])
		return nil, fmt.Errorf("login: %w", err)
	}
	s := &Session{c: c, address: address, cs: cs, loginPriv: loginPriv, keys: map[string]*cmcrypto.PublicKey{},
		summaries: newSummaryCache(c.summaryCacheSize())}
	acct, err := one[*xmap.GetAccountResult](ctx, s, &xmap.GetAccount{})
	if err == nil {
		s.entity, err = unsealAccount(sealKey, address, &acct.Account, c.opts.Now())
	}
	if err != nil {
		_ = s.Logout(ctx)
		return nil, fmt.Errorf("login: %w", err)
	}
	s.keepDeviceToken(ctx)
	return s, nil
}

// unsealAccount opens the account's sealed key and checks it is the private half of the
// account's public key. The sealed key's associated data holds the address it was sealed
// for: the server's form of it, or the one the user typed (they may differ in a +tag).
func unsealAccount(sealKey [32]byte, typed string, a *xmap.Account, now time.Time) (*openpgp.Entity, error) {
	var secret []byte
	var err error
	for _, addr := range []string{a.Address, typed} {
		if secret, err = OpenSealedKey(sealKey, addr, a.SealedKey); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	e, err := parseSecretKey(secret)
	clear(secret)
	if err != nil {
		return nil, err
	}
	pub, err := cmcrypto.ParsePublicKey(a.PublicKey, now)
	if err != nil && !errors.Is(err, cmcrypto.ErrExpired) {
		return nil, fmt.Errorf("the account's public key: %w", err)
	}
	if pub != nil && pub.Fingerprint() != fingerprint(e) {
		return nil, fmt.Errorf("%w: the sealed key is not the private half of the account's public key", ErrBadKey)
	}
	return e, nil
}
