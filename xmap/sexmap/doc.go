// Package sexmap implements SeXMAP, the encrypted session layer that carries
// XMAP requests over HTTP. The full specification, with test vectors for other
// implementations, is docs/SEXMAP.md; this comment is only a map of the code.
//
// A session starts with a Noise handshake (github.com/flynn/noise) against the
// server's static X25519 key, which clients pin on first use:
//
//   - Noise_NK_25519_ChaChaPoly_SHA256 for anonymous sessions (salt lookup,
//     sign-up): one HTTP round trip;
//   - Noise_XK_25519_ChaChaPoly_SHA256 for logins: two round trips, the third
//     handshake message carries the client's static key, derived from the
//     passphrase by DeriveKeys, and the account address. The server compares
//     that key with the public login key its Accounts store holds.
//
// After the handshake every request is one POST whose body is an 8-byte
// counter followed by the request sealed with the client-to-server key and
// that counter as the Noise nonce; the response is sealed with the other key
// and the same counter. A per-session sliding replay window (RFC 6479, as in
// WireGuard) accepts each counter at most once, so requests may run in
// parallel.
//
// A logged-in session is bound to its account's generation (Accounts.Generation),
// checked before every request: deleting, disabling or re-creating the account, or
// a new login key, ends it. Session.Fresh marks the first request of a login just
// made (proof of the login key, for change-passphrase). XK message 3 may carry a
// device token after the address; a valid one lets a correct login pass the
// lock-out of its address (not of its IP).
//
// Server side: NewServer, Server.ServeHTTP (or Server.Register), EndSession.
// Client side: DialNK, DialXK, ClientSession.RoundTrip, FetchServerKey, Pin.
// Keys: LoadOrCreateServerKey, LoadServerKey, DeriveKeys, LoginPublicKey, FakeSalt.
package sexmap
