// Package crypto holds everything OpenPGP the server does at delivery time:
// it validates a user's public key, encrypts ("seals") each incoming message to
// it, and extracts the small summary clients list mail from. Import it under a
// name (for example cmcrypto "cryptomail/crypto") so it does not shadow the
// standard library's crypto package.
//
// The server never holds a private key of a user and never signs anything: all
// decryption happens in the clients, which is why the stored format below is a
// contract with them.
//
// # Keys
//
// A user key is a version 4 OpenPGP key in the form GnuPG 2.2 reads: an Ed25519
// (EdDSA legacy) primary key for certification and signing and a Curve25519
// ECDH ("cv25519") encryption subkey. ParsePublicKey accepts any v4 key that
// ProtonMail/go-crypto can encrypt to (RSA of at least 2048 bits included) and
// refuses private keys, revoked, expired and sign-only keys with errors that can
// be shown to an administrator and checked with errors.Is.
//
// # Stored messages
//
// For every delivered message the server stores two independent OpenPGP
// messages, both binary (not ASCII-armored), both encrypted to the same user
// key, neither signed and neither compressed:
//
//   - body: the raw RFC 5322 message exactly as received from the MTA (line
//     endings, NUL bytes and 8-bit data untouched), as one binary literal data
//     packet ('b' format, empty file name, zero date);
//   - summary: the UTF-8 JSON encoding of Summary (see below), also as one binary
//     literal data packet.
//
// Each is a v3 PKESK packet followed by a version 1 SEIPD packet (AES-256 when
// the key lists it, as keys from GnuPG and GenerateKey do; integrity protected
// with an MDC). AEAD (SEIPDv2) is deliberately not used, because GnuPG 2.2
// cannot read it; every stored message can therefore be decrypted with
// "gpg --decrypt". Armor turns a stored message into the
// "-----BEGIN PGP MESSAGE-----" form for mbox export.
//
// # Summary JSON
//
// The summary is a JSON object with these members (all strings valid UTF-8,
// control characters and runs of white space collapsed to one space):
//
//	from             string   the From addresses, "Name <addr>" or "addr", joined with ", "
//	to               []string the To addresses (omitted when none; at most MaxSummaryAddresses)
//	cc               []string the Cc addresses (omitted when none; at most MaxSummaryAddresses)
//	subject          string   the Subject, RFC 2047 decoded
//	date             string   the Date header as RFC 3339 with its original offset (omitted when absent or unreadable)
//	message_id       string   the Message-ID without angle brackets (omitted when absent)
//	snippet          string   at most SnippetRunes runes from the first text/plain part (else the first text/html part, tags stripped)
//	has_attachments  bool     whether any part looks like an attachment
//
// Clients must ignore members they do not know; new members may be added.
package crypto
