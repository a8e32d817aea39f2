package xmap

import "strings"

// PublicKeys looks up the OpenPGP public keys of local addresses, so a client can encrypt
// to them. Addresses without a local account, and every remote address, are not found:
// the server does not look keys up elsewhere.
type PublicKeys struct {
	Addresses []string
}

func (*PublicKeys) Name() string { return "public-keys" }

func (c *PublicKeys) decode(e *elem) {
	seen := map[string]bool{}
	e.each(func(k *elem) {
		if k.n.name != "address" {
			k.unknownChild()
			return
		}
		a := k.shortText("address", ValidAddress)
		if k.failed() {
			return
		}
		if seen[strings.ToLower(a)] {
			k.fail(CodeBadRequest, "address given twice")
			return
		}
		if len(c.Addresses) == MaxIDs {
			e.fail(CodeLimitExceeded, "more than %d addresses", MaxIDs)
			return
		}
		seen[strings.ToLower(a)] = true
		c.Addresses = append(c.Addresses, a)
	})
	if len(c.Addresses) == 0 && !e.failed() {
		e.fail(CodeBadRequest, "no <address> given")
	}
}

func (c *PublicKeys) encode(e *enc) {
	for _, a := range c.Addresses {
		e.textElem("address", a)
	}
}

// A PublicKey is a local address's OpenPGP transferable public key (binary).
type PublicKey struct {
	Address string
	Key     []byte
}

// PublicKeysResult answers PublicKeys: a key per address found, the rest not found.
type PublicKeysResult struct {
	Keys     []PublicKey
	NotFound []string
}

func (*PublicKeysResult) Name() string { return "public-keys" }

func (r *PublicKeysResult) encode(e *enc) {
	for _, k := range r.Keys {
		e.start("key")
		e.attr("address", k.Address)
		e.blobText(k.Key)
		e.end("key")
	}
	e.ids("not-found", r.NotFound)
}

func (r *PublicKeysResult) decode(e *elem) {
	e.each(func(c *elem) {
		switch c.n.name {
		case "key":
			r.Keys = append(r.Keys, PublicKey{Address: c.address("address"), Key: c.blob(MaxKeySize)})
		case "not-found":
			r.NotFound = append(r.NotFound, c.shortText("address", ValidAddress))
		default:
			c.unknownChild()
		}
	})
}
