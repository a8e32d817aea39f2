// Package deliver is the one way a message enters a local mailbox: LMTP and
// SMTP, send's local and Sent copies, bounces, and XMAP append all store
// through a Deliverer, which owns every rule of "a message enters a
// mailbox":
//
//   - the account check: only an active account receives (ErrUnknownUser),
//     asked once per intake (Active at LMTP's RCPT, Check before send
//     stores anything; Message.Checked then spares Deliver the lookup);
//   - the key: the recipient's current public key, parsed once and cached
//     (keyed by a hash of its stored bytes, so a key replaced by another
//     process is picked up at once; the store caches the armored key per
//     open shard);
//   - sealing: the body (trace fields followed by the message, never joined
//     in memory, into pooled ciphertext buffers) and, when the caller gives
//     no summary, the server-made summary: the message's outer headers,
//     completed from the envelope;
//   - the size rule: what is stored fits what a fetch returns
//     (xmap.MaxMessageSize), or nothing is stored (ErrTooLarge);
//   - the quota hook (Options.Quota), for deliveries and appends alike,
//     checked inside the commit's own transaction (ErrOverQuota);
//   - the commit: Store.DeliverSealed, which stores only if the message was
//     sealed to the key that is current inside its transaction; a key
//     replaced in between costs one more sealing (at most three tries);
//   - the summary origin: SummaryByServer for a summary made here from mail
//     as it arrived; the caller's word (Message.SummaryBy) otherwise;
//   - the notification (Options.Notify, e.g. waking XMAP waits), called once
//     per stored message, after its commit, never for a failed one.
//
// Invariants. A nil error means the message is durable in the mailbox's
// shard (the store's commit is fsync'd, or part of an fsync'd group
// commit): it is what a 250 or an XMAP ok promises. A non-nil error means
// nothing was stored: no message is ever half-stored, and none is stored
// sealed to a key replaced before its commit. Errors are wrapped with %w
// around one of this package's classes (ErrUnknownUser, ErrTooLarge,
// ErrOverQuota, ErrBusy, ErrNoSpace, ErrKeyUnusable), checked with
// errors.Is; each edge maps them to its own codes in one place (lmtp's
// codes.go through server/delivery.go, XMAP codes in outbound and
// mailback). No error holds message content.
//
// Results are per mailbox: a Deliverer takes one message for one mailbox,
// so one recipient's failure never affects another's.
//
// The package takes the narrow Store it needs, not a concrete store, so
// that a cluster can route the commit to the node owning the mailbox.
package deliver
