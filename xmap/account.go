package xmap

// Account requests. Salt lookup and signup are the only requests of an anonymous session
// (Noise NK); the others need a logged-in one (Noise XK). docs/SEXMAP.md says how the
// passphrase becomes the login key and the key that seals the private OpenPGP key.

// KDFArgon2id is the only password hashing algorithm of version 1.
const KDFArgon2id = "argon2id"

// KDF is how a client turns the passphrase into keys: the algorithm, the per-user salt and
// the Argon2id cost parameters (RFC 9106). Stored with the user so they can be raised.
type KDF struct {
	Alg     string // KDFArgon2id
	Salt    []byte // MinSaltSize to MaxSaltSize bytes
	Time    uint32 // passes, MinKDFTime to MaxKDFTime
	Memory  uint32 // KiB, MinKDFMemory to MaxKDFMemory
	Threads uint8  // lanes, MinKDFThreads to MaxKDFThreads
}

func (k *KDF) encode(e *enc) {
	e.start("kdf")
	e.attr("alg", k.Alg)
	e.attr("salt", b64(k.Salt))
	e.attrNum("time", int64(k.Time))
	e.attrNum("memory", int64(k.Memory))
	e.attrNum("threads", int64(k.Threads))
	e.end("kdf")
}

func (k *KDF) decode(e *elem) {
	e.noKids()
	if alg := e.str("alg", true); alg != KDFArgon2id {
		if !e.failed() {
			e.fail(CodeBadRequest, "attribute \"alg\": only %s is supported", KDFArgon2id)
		}
	} else {
		k.Alg = alg
	}
	k.Salt = e.b64Attr("salt", MinSaltSize, MaxSaltSize)
	k.Time = uint32(e.num("time", true, MinKDFTime, MaxKDFTime))
	k.Memory = uint32(e.num("memory", true, MinKDFMemory, MaxKDFMemory))
	k.Threads = uint8(e.num("threads", true, MinKDFThreads, MaxKDFThreads))
}

// decodeKDFChild decodes the single <kdf> child, for elements with other children too.
func decodeKDF(c *elem, seen *bool, k *KDF) {
	if c.once(seen) {
		k.decode(c)
	}
}

// SaltLookup asks for the KDF parameters of an address, before login. An unknown address
// gets a stable made-up salt, so the answer does not tell who has an account.
type SaltLookup struct {
	Address string
}

func (*SaltLookup) Name() string { return "salt-lookup" }

func (c *SaltLookup) decode(e *elem) {
	e.noKids()
	c.Address = e.address("address")
}

func (c *SaltLookup) encode(e *enc) { e.attr("address", c.Address) }

// SaltLookupResult answers SaltLookup.
type SaltLookupResult struct {
	KDF KDF
}

func (*SaltLookupResult) Name() string    { return "salt-lookup" }
func (r *SaltLookupResult) encode(e *enc) { r.KDF.encode(e) }

func (r *SaltLookupResult) decode(e *elem) {
	var seen bool
	e.each(func(c *elem) {
		if c.n.name != "kdf" {
			c.unknownChild()
			return
		}
		decodeKDF(c, &seen, &r.KDF)
	})
	if !seen && !e.failed() {
		e.fail(CodeBadRequest, "missing <kdf>")
	}
}

// Signup creates (or activates) an account with an invite code. The client made the key
// pair and derived the login key; the server gets only public keys, the KDF parameters and
// the private key sealed under a passphrase-derived key it never sees.
type Signup struct {
	Invite    string
	Address   string
	PublicKey []byte // OpenPGP transferable public key, binary
	LoginKey  []byte // X25519 public login key, LoginKeySize bytes
	KDF       KDF
	SealedKey []byte // the private OpenPGP key, sealed; opaque to the server
}

func (*Signup) Name() string { return "signup" }

func (c *Signup) decode(e *elem) {
	c.Invite = e.str("invite", true)
	if !e.failed() && !validInvite(c.Invite) {
		e.fail(CodeBadRequest, "attribute \"invite\": invalid invite code")
	}
	c.Address = e.address("address")
	var hasPub bool
	decodeKeys(e, &c.LoginKey, &c.KDF, &c.SealedKey, func(k *elem) bool {
		if k.n.name != "public-key" {
			return false
		}
		if k.once(&hasPub) {
			c.PublicKey = k.blob(MaxKeySize)
		}
		return true
	})
	if !hasPub && !e.failed() {
		e.fail(CodeBadRequest, "missing <public-key>")
	}
}

func (c *Signup) encode(e *enc) {
	e.attr("invite", c.Invite)
	e.attr("address", c.Address)
	e.blob("public-key", c.PublicKey)
	encodeKeys(e, c.LoginKey, &c.KDF, c.SealedKey)
}

// decodeKeys reads the <login-key>, <kdf> and <sealed-key> children signup and
// change-passphrase share; other children go to more, which reports whether it knew them.
func decodeKeys(e *elem, login *[]byte, kdf *KDF, sealed *[]byte, more func(*elem) bool) {
	var hasLogin, hasKDF, hasSealed bool
	e.each(func(k *elem) {
		switch k.n.name {
		case "login-key":
			if k.once(&hasLogin) {
				*login = k.blob(LoginKeySize)
				if !k.failed() && len(*login) != LoginKeySize {
					k.fail(CodeBadRequest, "want %d bytes", LoginKeySize)
				}
			}
		case "kdf":
			decodeKDF(k, &hasKDF, kdf)
		case "sealed-key":
			if k.once(&hasSealed) {
				*sealed = k.blob(MaxKeySize)
			}
		default:
			if more == nil || !more(k) {
				k.unknownChild()
			}
		}
	})
	switch {
	case e.failed():
	case !hasLogin:
		e.fail(CodeBadRequest, "missing <login-key>")
	case !hasKDF:
		e.fail(CodeBadRequest, "missing <kdf>")
	case !hasSealed:
		e.fail(CodeBadRequest, "missing <sealed-key>")
	}
}

func encodeKeys(e *enc, login []byte, kdf *KDF, sealed []byte) {
	e.blob("login-key", login)
	kdf.encode(e)
	e.blob("sealed-key", sealed)
}

// SignupResult answers Signup. The client then logs in with the new login key.
type SignupResult struct{}

func (*SignupResult) Name() string   { return "signup" }
func (*SignupResult) encode(*enc)    {}
func (*SignupResult) decode(e *elem) { e.noKids() }

// ChangePassphrase replaces the login key, the KDF parameters and the sealed private key in
// one transaction. Sessions already open stay open.
type ChangePassphrase struct {
	LoginKey  []byte
	KDF       KDF
	SealedKey []byte
}

func (*ChangePassphrase) Name() string { return "change-passphrase" }

func (c *ChangePassphrase) decode(e *elem) {
	decodeKeys(e, &c.LoginKey, &c.KDF, &c.SealedKey, nil)
}

func (c *ChangePassphrase) encode(e *enc) { encodeKeys(e, c.LoginKey, &c.KDF, c.SealedKey) }

// ChangePassphraseResult answers ChangePassphrase.
type ChangePassphraseResult struct{}

func (*ChangePassphraseResult) Name() string   { return "change-passphrase" }
func (*ChangePassphraseResult) encode(*enc)    {}
func (*ChangePassphraseResult) decode(e *elem) { e.noKids() }

// GetAccount asks for the session user's own account: the public key, the KDF parameters
// and the sealed private key, so a client logging in on a new device can unseal its private
// key. Logged-in sessions only; it names no user, so it can only reach the session's own.
type GetAccount struct{}

func (*GetAccount) Name() string   { return "get-account" }
func (*GetAccount) decode(e *elem) { e.noKids() }
func (*GetAccount) encode(*enc)    {}

// Account is what a logged-in user gets back of its own account. The login key is left
// out: the client has just derived it from the passphrase.
type Account struct {
	Address   string
	PublicKey []byte // OpenPGP transferable public key, binary
	KDF       KDF
	SealedKey []byte // the private OpenPGP key as the client sealed it
}

func (a *Account) encode(e *enc) {
	e.start("account")
	e.attr("address", a.Address)
	e.blob("public-key", a.PublicKey)
	a.KDF.encode(e)
	e.blob("sealed-key", a.SealedKey)
	e.end("account")
}

func (a *Account) decode(e *elem) {
	a.Address = e.address("address")
	var hasPub, hasKDF, hasSealed bool
	e.each(func(k *elem) {
		switch k.n.name {
		case "public-key":
			if k.once(&hasPub) {
				a.PublicKey = k.blob(MaxKeySize)
			}
		case "kdf":
			decodeKDF(k, &hasKDF, &a.KDF)
		case "sealed-key":
			if k.once(&hasSealed) {
				a.SealedKey = k.blob(MaxKeySize)
			}
		default:
			k.unknownChild()
		}
	})
	switch {
	case e.failed():
	case !hasPub:
		e.fail(CodeBadRequest, "missing <public-key>")
	case !hasKDF:
		e.fail(CodeBadRequest, "missing <kdf>")
	case !hasSealed:
		e.fail(CodeBadRequest, "missing <sealed-key>")
	}
}

// GetAccountResult answers GetAccount.
type GetAccountResult struct {
	Account Account
}

func (*GetAccountResult) Name() string    { return "get-account" }
func (r *GetAccountResult) encode(e *enc) { r.Account.encode(e) }

func (r *GetAccountResult) decode(e *elem) {
	var seen bool
	e.each(func(c *elem) {
		if c.n.name != "account" {
			c.unknownChild()
			return
		}
		if c.once(&seen) {
			r.Account.decode(c)
		}
	})
	if !seen && !e.failed() {
		e.fail(CodeBadRequest, "missing <account>")
	}
}

// Logout ends the session once the response is sent; later requests of the same batch are
// refused with denied.
type Logout struct{}

func (*Logout) Name() string   { return "logout" }
func (*Logout) decode(e *elem) { e.noKids() }
func (*Logout) encode(*enc)    {}

// LogoutResult answers Logout.
type LogoutResult struct{}

func (*LogoutResult) Name() string   { return "logout" }
func (*LogoutResult) encode(*enc)    {}
func (*LogoutResult) decode(e *elem) { e.noKids() }

// DeviceTokenSize is the size of a device token.
const DeviceTokenSize = 32

// DeviceToken asks the server for a device token: a random value the client keeps and
// presents inside later XK logins (docs/SEXMAP.md, "Device tokens"), so that a correct login
// from this client passes a lock-out of its address caused by others' failed attempts. The
// server keeps only its hash, for the account's current generation, and a bounded number
// per account (the oldest goes first). Logged-in sessions only.
//
// Current is the token the client holds, if any: when it is still valid the server answers
// it back and stores nothing; otherwise (a passphrase change forgot it, or it was never
// valid) it issues a new one. So a client may send this after every login.
type DeviceToken struct {
	Current []byte // DeviceTokenSize bytes, or nil
}

func (*DeviceToken) Name() string { return "device-token" }

func (c *DeviceToken) decode(e *elem) {
	e.noKids()
	if _, ok := e.attr("current"); ok {
		c.Current = e.b64Attr("current", DeviceTokenSize, DeviceTokenSize)
	}
}

func (c *DeviceToken) encode(e *enc) {
	if c.Current != nil {
		e.attr("current", b64(c.Current))
	}
}

// DeviceTokenResult answers DeviceToken: the token, DeviceTokenSize bytes.
type DeviceTokenResult struct {
	Token []byte
}

func (*DeviceTokenResult) Name() string    { return "device-token" }
func (r *DeviceTokenResult) encode(e *enc) { e.attr("token", b64(r.Token)) }

func (r *DeviceTokenResult) decode(e *elem) {
	e.noKids()
	r.Token = e.b64Attr("token", DeviceTokenSize, DeviceTokenSize)
}
