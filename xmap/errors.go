package xmap

import "fmt"

// An ErrorCode names the kind of a failure. Clients act on codes, never on the text.
type ErrorCode string

// The error codes. docs/XMAP.md says when each occurs.
const (
	CodeBadRequest         ErrorCode = "bad-request"         // malformed or invalid request
	CodeNotFound           ErrorCode = "not-found"           // no such folder, message, contact or address (for this user)
	CodeDenied             ErrorCode = "denied"              // not allowed in this session or on this object
	CodeConflict           ErrorCode = "conflict"            // name or address already taken
	CodeOverQuota          ErrorCode = "over-quota"          // the user's storage or object quota is full
	CodeTooLarge           ErrorCode = "too-large"           // a document, value or message is over its size limit
	CodeLimitExceeded      ErrorCode = "limit-exceeded"      // too many of something: requests, ids, depth, flags
	CodeRateLimited        ErrorCode = "rate-limited"        // slow down and retry later
	CodeUnsupportedVersion ErrorCode = "unsupported-version" // the document's namespace or version is not spoken here
	CodeInvalidInvite      ErrorCode = "invalid-invite"      // unknown or used invite code, or one for another address
	CodeExpired            ErrorCode = "expired"             // the invite code has expired
	CodeResyncRequired     ErrorCode = "resync-required"     // changes since that state cannot be given: list again
	CodePlaintextRefused   ErrorCode = "plaintext-refused"   // send would deliver readable mail without explicit consent
	CodeInvalidRecipient   ErrorCode = "invalid-recipient"   // a send recipient does not exist at this server
	CodeInternal           ErrorCode = "internal"            // server failure; the text never says more
)

// Sentinel errors, one per code, for backends to return (wrapped or not) and callers to test
// with errors.Is. errors.Is matches any *Error or *ProtocolError with the same code.
var (
	ErrBadRequest         = &Error{Code: CodeBadRequest, Message: "bad request"}
	ErrNotFound           = &Error{Code: CodeNotFound, Message: "not found"}
	ErrDenied             = &Error{Code: CodeDenied, Message: "denied"}
	ErrConflict           = &Error{Code: CodeConflict, Message: "conflict"}
	ErrOverQuota          = &Error{Code: CodeOverQuota, Message: "over quota"}
	ErrTooLarge           = &Error{Code: CodeTooLarge, Message: "too large"}
	ErrLimitExceeded      = &Error{Code: CodeLimitExceeded, Message: "limit exceeded"}
	ErrRateLimited        = &Error{Code: CodeRateLimited, Message: "rate limited"}
	ErrUnsupportedVersion = &Error{Code: CodeUnsupportedVersion, Message: "unsupported version"}
	ErrInvalidInvite      = &Error{Code: CodeInvalidInvite, Message: "invalid invite"}
	ErrExpired            = &Error{Code: CodeExpired, Message: "expired"}
	ErrResyncRequired     = &Error{Code: CodeResyncRequired, Message: "state too old or unknown; resynchronise"}
	ErrPlaintextRefused   = &Error{Code: CodePlaintextRefused, Message: "plaintext delivery refused"}
	ErrInvalidRecipient   = &Error{Code: CodeInvalidRecipient, Message: "invalid recipient"}
	ErrInternal           = &Error{Code: CodeInternal, Message: "internal error"}
)

// An Error is the failure of one request, sent as <error code="...">Message</error> inside
// the request's result element. Message is shown to the client: a backend that builds an
// Error must keep anything internal (paths, SQL, other users' data) out of it.
type Error struct {
	Code    ErrorCode
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "xmap: " + string(e.Code)
	}
	return fmt.Sprintf("xmap: %s: %s", e.Code, e.Message)
}

// Is matches any *Error or *ProtocolError with the same code.
func (e *Error) Is(target error) bool {
	return sameCode(e.Code, target)
}

// Errorf returns an *Error with the code and a formatted, client-visible message.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// A ProtocolError is the failure of a whole document: it could not be decoded, broke a
// limit, or is of another version. Nothing in the batch ran. The decoders return it, and a
// server sends it as the response's only element.
type ProtocolError struct {
	Code    ErrorCode
	Message string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("xmap: document refused: %s: %s", e.Code, e.Message)
}

// Is matches any *Error or *ProtocolError with the same code.
func (e *ProtocolError) Is(target error) bool {
	return sameCode(e.Code, target)
}

func sameCode(code ErrorCode, target error) bool {
	switch t := target.(type) {
	case *Error:
		return t.Code == code
	case *ProtocolError:
		return t.Code == code
	}
	return false
}

func protocolErrorf(code ErrorCode, format string, args ...any) *ProtocolError {
	return &ProtocolError{Code: code, Message: fmt.Sprintf(format, args...)}
}
