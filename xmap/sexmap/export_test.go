package sexmap

import (
	"context"
	"io"
	"net/http"
)

// Hooks for the black-box tests in package sexmap_test.

// SetNextCounter makes c's next request use counter n.
func SetNextCounter(c *ClientSession, n uint64) { c.next.Store(n) }

// DialWithRand is DialNK (loginPriv == nil) or DialXK with a chosen source
// for the ephemeral key.
func DialWithRand(ctx context.Context, hc *http.Client, baseURL string, serverPub []byte, loginPriv *[32]byte, address string, rng io.Reader) (*ClientSession, error) {
	return dial(ctx, hc, baseURL, serverPub, loginPriv, address, rng)
}
