// Package client is the Go client of CryptoMail: it talks XMAP (docs/XMAP.md) over SeXMAP
// (docs/SEXMAP.md) and does every piece of message cryptography itself, so the server only
// ever sees ciphertext. cmd/cmail is built on it; so are the end-to-end tests.
//
// A Client is bound to one server URL and one home directory. It pins the server's static
// key on first use (known_servers in the home) and refuses a changed key with a
// *KeyChangedError naming both keys. Client.Signup creates or activates an account;
// Client.Login returns a logged-in *Session.
//
// A Session holds, in memory only, the private login key derived from the passphrase and
// the user's private OpenPGP key, which the server hands back sealed (get-account) and the
// client unseals with the passphrase-derived sealing key (docs/CLIENT.md gives the
// sealed-key format). When the server forgets the session (idle or absolute expiry, a
// restart) the Session logs in again with the kept login key and resends the request, so
// callers never see the expiry. Session.Do sends several requests in one document; the
// typed methods (ListFolders, Move, ...) send one each; the mail methods (List, Read,
// SendMail, Watch) decrypt summaries and bodies and compose, sign and encrypt outgoing
// mail as PGP/MIME (RFC 3156).
//
// On disk the home holds only the pinned server keys and the address last logged in: never
// a passphrase, a derived key, a private key (sealed or not) or a session key. Files are
// 0600 in a 0700 directory.
package client
