package client

import (
	"errors"
	"fmt"
	"strings"

	"cryptomail/xmap/sexmap"
)

// Errors of the client. Server-side failures of single requests are *xmap.Error values
// (test them with errors.Is against the xmap sentinels); transport refusals are
// *sexmap.StatusError values matching the sexmap sentinels.
var (
	// ErrUnseal: a sealed private key did not open with the key derived from the
	// passphrase (it is stale, damaged, or not this account's).
	ErrUnseal = errors.New("client: the sealed private key does not open with this passphrase")
	// ErrSessionClosed: the session was logged out.
	ErrSessionClosed = errors.New("client: session logged out")
	// ErrBadResponse: the server's XMAP response does not answer the request sent.
	ErrBadResponse = errors.New("client: malformed response from server")
	// ErrTooLarge: a message or document over the protocol's limits; nothing was sent.
	ErrTooLarge = errors.New("client: too large")
	// ErrBadKey: a private key file that cannot be used (see the wrapped detail).
	ErrBadKey = errors.New("client: unusable private key")
)

// KeyChangedError reports that the server presents a static key other than the pinned
// one. It is either a re-installed server or an attack; the client stops and never re-pins
// by itself. It matches sexmap.ErrServerKeyChanged.
type KeyChangedError struct {
	Server    string // the server URL
	Pinned    string // the pinned key, base64url (sexmap.EncodePublicKey)
	Presented string // the key the server now presents; empty if it could not be fetched
	PinFile   string // the file holding the pin; empty for an in-memory pin
}

func (e *KeyChangedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the key of server %s changed: pinned %s", e.Server, e.Pinned)
	if e.Presented != "" {
		fmt.Fprintf(&b, ", server now presents %s", e.Presented)
	}
	b.WriteString("; if the server was re-installed and you checked the new key with its administrator, ")
	if e.PinFile != "" {
		fmt.Fprintf(&b, "delete the line for %s from %s and connect again", e.Server, e.PinFile)
	} else {
		b.WriteString("pin the new key")
	}
	return b.String()
}

// Unwrap makes errors.Is(err, sexmap.ErrServerKeyChanged) hold.
func (e *KeyChangedError) Unwrap() error { return sexmap.ErrServerKeyChanged }

// MissingKeysError reports recipients the message could not be encrypted to (no key
// known) and for whom readable delivery was not allowed. Nothing was sent.
type MissingKeysError struct {
	Addresses []string
}

func (e *MissingKeysError) Error() string {
	return fmt.Sprintf("no encryption key known for %s; sending would let their provider read the message: allow plaintext for them explicitly to send anyway",
		strings.Join(e.Addresses, ", "))
}
