package deliver

import (
	"container/list"
	"crypto/sha256"
	"sync"
	"time"

	cmcrypto "cryptomail/crypto"
)

// keyCache keeps parsed public keys keyed by the hash of their stored bytes,
// so a key replaced by the admin CLI (another process) is picked up at once.
// It holds the max most recently used keys: parsing one verifies its
// self-signatures, a fraction of a millisecond that a delivery to an active
// recipient should not pay again.
type keyCache struct {
	max int
	mu  sync.Mutex
	m   map[[32]byte]*list.Element // of *keyEntry
	lru *list.List                 // front: most recently used
}

type keyEntry struct {
	hash [32]byte
	key  *cmcrypto.PublicKey
}

func (c *keyCache) get(armored []byte, now time.Time) (*cmcrypto.PublicKey, error) {
	h := sha256.Sum256(armored)
	c.mu.Lock()
	if el, ok := c.m[h]; ok {
		c.lru.MoveToFront(el)
		c.mu.Unlock()
		// Validity at this moment (expiry) is checked again by Seal.
		return el.Value.(*keyEntry).key, nil
	}
	c.mu.Unlock()
	k, err := cmcrypto.ParsePublicKey(armored, now)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[[32]byte]*list.Element)
		c.lru = list.New()
	}
	if el, ok := c.m[h]; ok {
		// Parsed concurrently by another delivery: keep one.
		c.lru.MoveToFront(el)
		return el.Value.(*keyEntry).key, nil
	}
	c.m[h] = c.lru.PushFront(&keyEntry{hash: h, key: k})
	for c.lru.Len() > max(c.max, 1) {
		delete(c.m, c.lru.Remove(c.lru.Back()).(*keyEntry).hash)
	}
	return k, nil
}

// len reports how many keys are cached.
func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
