package xmap

// Protocol limits. The decoders enforce the document-shape limits as they read; the server
// enforces the rest. Sizes are in bytes of decoded data unless said otherwise. docs/XMAP.md
// lists them with the error code each one gives.
const (
	// MaxDocumentSize bounds a request document; large because append and send carry whole
	// messages, base64 encoded (4/3 of MaxMessageSize, plus room for the rest).
	MaxDocumentSize = 32 << 20
	// ResponseBudget is where a server stops growing a response: a request that would start
	// after the response reached it is not run (too-large), and fetch defers bodies past it.
	ResponseBudget = 32 << 20
	// MaxResponseSize bounds a response document a client accepts: the budget plus one
	// fetched message or page that started below it.
	MaxResponseSize = 64 << 20

	// MaxDepth bounds element nesting; the deepest legal document needs 4 levels.
	MaxDepth = 8
	// MaxTokens bounds the XML tokens (tags, text runs, comments) of one document.
	MaxTokens = 250_000
	// MaxAttributes bounds the attributes of one element (namespace declarations included).
	MaxAttributes = 16
	// MaxAttributeSize bounds one attribute value.
	MaxAttributeSize = 4096
	// MaxShortText bounds the text of small text elements (<id>, <address>, ...).
	MaxShortText = 320
	// MaxErrorMessage bounds the text of an <error> element.
	MaxErrorMessage = 1024

	// MaxBatchSize bounds the requests in one document.
	MaxBatchSize = 50
	// MaxIDs bounds the message ids of one fetch, update-flags, move, copy or delete, and
	// the addresses of one public-keys request.
	MaxIDs = 500
	// MaxRecipients bounds the recipients of one send.
	MaxRecipients = 100
	// MaxFlags bounds the flags in one flags attribute, and so the flags of a message.
	MaxFlags = 32
	// MaxPageSize bounds the limit of list-messages and list-contacts.
	MaxPageSize = 200
	// DefaultPageSize is the page size when a list request gives no limit.
	DefaultPageSize = 50
	// MaxChanges bounds max-changes of a changes request.
	MaxChanges = 5000
	// DefaultMaxChanges is used when a changes request gives no max-changes.
	DefaultMaxChanges = 500
	// MaxWaitSeconds bounds the timeout of a wait request, below common proxy idle limits.
	MaxWaitSeconds = 120

	// MaxIDLen bounds request ids, object ids (messages, folders, contacts) and states.
	MaxIDLen = 64
	// MaxCursorLen bounds a paging cursor.
	MaxCursorLen = 512
	// MaxFolderNameLen bounds a folder name (UTF-8 bytes).
	MaxFolderNameLen = 255
	// MaxAddressLen bounds an email address (RFC 5321 path limit).
	MaxAddressLen = 254
	// MaxKeywordLen bounds one keyword.
	MaxKeywordLen = 64
	// MaxInviteLen bounds an invite code.
	MaxInviteLen = 128

	// MaxMessageSize bounds a message body (append, send, fetch), and so every body a mailbox
	// stores: a fetch carries the stored (encrypted) body, and clients refuse a larger one.
	MaxMessageSize = 20 << 20
	// DeliveryMargin is the room, within MaxMessageSize, kept for what a server adds to a
	// message it encrypts into a mailbox itself (LMTP, SMTP, send's local and Sent copies):
	// its trace header fields (Return-Path, Delivered-To, Received: under 7 KiB, as the
	// envelope parts in them come from command lines of at most 2000 bytes; the server's
	// TestDeliverSizeRule measures the longest) and the OpenPGP framing (the session-key
	// packet: under 100 bytes for X25519, as large as the modulus for RSA, whose key is at
	// most MaxKeySize armored, so under 48 KiB; the SEIPD, literal-data and MDC headers,
	// under 64 bytes; one partial-length byte per chunk of each of the two streams, about
	// 2 bytes per 64 KiB).
	DeliveryMargin = 64 << 10
	// MaxDeliverySize is the size rule: the largest message (as received, before the trace
	// fields) a server encrypts into a mailbox, 20 MiB - 64 KiB = 20 905 984 bytes. Its
	// sealed form fits MaxMessageSize, so whatever is accepted can be fetched; larger is
	// refused at intake (552 5.3.4 over LMTP and SMTP, too-large for send), and the
	// delivery path refuses a sealed body over MaxMessageSize all the same, storing
	// nothing. A configured max_message_bytes may not exceed it.
	MaxDeliverySize = MaxMessageSize - DeliveryMargin
	// MaxSummarySize bounds an encrypted summary.
	MaxSummarySize = 32 << 10
	// MaxCopyBytes bounds what one copy request may add to the stored bytes: each copy's
	// summary plus a fixed cost for its row (a copy shares the original's body, so bodies
	// do not count). Over it, the copy fails with limit-exceeded and stores nothing.
	MaxCopyBytes = 2 << 20
	// MaxContactSize bounds an encrypted contact.
	MaxContactSize = 32 << 10
	// MaxKeySize bounds an OpenPGP public key and a sealed private key.
	MaxKeySize = 64 << 10

	// LoginKeySize is the size of a public login key (X25519).
	LoginKeySize = 32
	// MinSaltSize and MaxSaltSize bound a KDF salt.
	MinSaltSize = 16
	MaxSaltSize = 64
	// Argon2id parameter bounds, the floor and ceiling of docs/SEXMAP.md: the floor so no
	// account gets a cheap derivation (OWASP's minimum), the ceiling so a server cannot make
	// a client spend unbounded time or memory. Memory is in KiB.
	MinKDFTime    = 2
	MaxKDFTime    = 16
	MinKDFMemory  = 19 * 1024
	MaxKDFMemory  = 2 * 1024 * 1024 // 2 GiB
	MinKDFThreads = 1
	MaxKDFThreads = 16
)
