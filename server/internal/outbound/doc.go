// Package outbound sends mail for logged-in users: the XMAP send request
// (Sender.Send, the Send method of xmapserver.MessageBackend) and the
// outbound queue that relays remote mail through the configured smarthost
// (Sender.Run).
//
// # Send
//
// The client composed, signed and encrypted the message itself; the
// request carries it as a PGP/MIME body and, for remote recipients the
// user agreed to send readable mail to, a plaintext body. The envelope
// sender is always the session's user.
//
// Send first checks everything and changes nothing on failure: every
// address resolves; every local one has an active account with a usable
// key (else invalid-recipient) and was encrypted to (else
// plaintext-refused); every remote one was encrypted to or carries
// allow-plaintext (else plaintext-refused) and a relay is configured (else
// denied); the body's readable From: (and Sender:) is the user's own
// address, else denied; the body is PGP/MIME around a real OpenPGP
// encrypted message (crypto.CheckPGPMIME), no part of a plaintext body
// is labelled encrypted without being one (crypto.CheckLabelledParts), and every client summary is an OpenPGP encrypted
// message (crypto.CheckEncrypted), else bad-request; the body fits the
// stored-size limit; the user has a Sent folder; the user's send allowance
// (Config.MaxRecipientsPerHour) covers every recipient, else rate-limited
// (checks.go). Then it commits in this order:
//
//  1. The remote copies go into the queue as held rows, which the worker
//     leaves alone (one durable transaction).
//  2. Each local recipient's copy (the body with Return-Path, Delivered-To
//     and Received fields before it) is encrypted to that recipient's key
//     and stored in their INBOX, with the client's summary for them or one
//     the server writes from the outer headers and the envelope.
//  3. The body is encrypted to the sender's key and stored in Sent, \Seen.
//  4. The held rows are released and the worker is kicked.
//
// Steps 2 and 3, like bounces, go through the one delivery path
// (server/deliver): its account, key, size and quota rules and its
// notification are LMTP's, and storeError maps its errors to XMAP codes.
//
// If a store fails at step 2 or 3 (a full disk, a broken shard), the send
// reports the error and the held rows are deleted, so no remote recipient
// gets a message the user was told was not sent. Local copies already
// stored stay: the shard has no way to take a delivered message back, and
// a message appearing and vanishing in someone's INBOX is worse than the
// duplicate a retried send can give. That is the only way a send is not
// all or nothing, and it needs a storage failure after every check passed.
// A crash between steps 1 and 4 leaves held rows, deleted by New at the
// next start for the same reason. Once stores begin, the client going
// away does not stop them.
//
// # Queue and relay
//
// The queue is one SQLite file (WAL, synchronous=FULL, secure_delete, mode
// 0600). A row holds the envelope sender, the recipients with their state,
// the message exactly as it goes on the wire, the attempt count, the next
// attempt, the creation time and the last error. Rows are deleted, body
// and all, once every recipient is sent or bounced.
//
// Run relays due rows through the smarthost with go-smtp: STARTTLS as
// configured (required, opportunistic, off), AUTH PLAIN when credentials
// are set and never over a connection without TLS unless allowed, our
// hostname in EHLO, and a result per recipient. A 2xx takes a recipient
// off the queue; a 5xx bounces it at once; a 4xx, a failed connection, a
// failed TLS or AUTH step is retried after MinRetry, then four times
// longer each time up to MaxRetry. A recipient still failing after the
// queue lifetime bounces (status 4.4.7).
//
// # Bounces
//
// A bounce is an RFC 3464 multipart/report: a human-readable part, the
// machine-readable delivery status (with the relay's reply as
// Diagnostic-Code) and the undelivered message's header section (never
// its body; for PGP/MIME the outer headers only). It is encrypted to the
// sender's key like arriving mail, stored in the sender's INBOX through
// the delivery path, and its Notify (OnStored) is called. Results are saved before the bounce is stored, so a
// crash in between can give a duplicate bounce but never relays twice.
package outbound
