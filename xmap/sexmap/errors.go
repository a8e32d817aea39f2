package sexmap

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// rejection is one row of the spec's status table: an HTTP status and the
// short text code sent as the body. Codes never carry internal detail.
type rejection struct {
	status int
	code   string
}

var (
	rejBadFrame       = rejection{http.StatusBadRequest, "bad-frame"}
	rejBadHeader      = rejection{http.StatusBadRequest, "bad-header"}
	rejBadHandshake   = rejection{http.StatusBadRequest, "bad-handshake"}
	rejAuthFailed     = rejection{http.StatusBadRequest, "auth-failed"}
	rejUnknownSession = rejection{http.StatusUnauthorized, "unknown-session"}
	rejUnknownHS      = rejection{http.StatusUnauthorized, "unknown-handshake"}
	rejLoginFailed    = rejection{http.StatusForbidden, "login-failed"}
	rejNotFound       = rejection{http.StatusNotFound, "not-found"}
	rejMethod         = rejection{http.StatusMethodNotAllowed, "method-not-allowed"}
	rejReplayed       = rejection{http.StatusConflict, "replayed"}
	rejTooOld         = rejection{http.StatusConflict, "too-old"}
	rejTooLarge       = rejection{http.StatusRequestEntityTooLarge, "too-large"}
	rejMediaType      = rejection{http.StatusUnsupportedMediaType, "unsupported-media-type"}
	rejLocked         = rejection{http.StatusTooManyRequests, "too-many-failures"}
	rejRateLimited    = rejection{http.StatusTooManyRequests, "rate-limited"}
	rejInternal       = rejection{http.StatusInternalServerError, "internal"}
	rejBusy           = rejection{http.StatusServiceUnavailable, "busy"}
)

// reject writes a rejection; retryAfter > 0 adds a Retry-After header in
// whole seconds, rounded up.
func reject(w http.ResponseWriter, rej rejection, retryAfter time.Duration) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((retryAfter+time.Second-1)/time.Second), 10))
	}
	w.WriteHeader(rej.status)
	io.WriteString(w, rej.code+"\n")
}

// Errors a client gets from DialNK, DialXK and RoundTrip. A *StatusError
// matches them with errors.Is according to its status.
var (
	// ErrUnknownSession: the session (or the pending handshake) is unknown,
	// expired or ended; make a new one.
	ErrUnknownSession = errors.New("sexmap: session unknown or expired")
	// ErrLoginFailed: wrong login key or no such account (the server does not
	// say which).
	ErrLoginFailed = errors.New("sexmap: login failed")
	// ErrLockedOut: too many failed logins for this address or client; wait
	// StatusError.RetryAfter.
	ErrLockedOut = errors.New("sexmap: too many failed logins, try later")
	// ErrRateLimited: too many handshakes (or pending handshakes) from this
	// client IP; wait StatusError.RetryAfter.
	ErrRateLimited = errors.New("sexmap: too many handshakes from this address, try later")
	// ErrBusy: the server has too many pending handshakes; wait RetryAfter.
	ErrBusy = errors.New("sexmap: server busy")
	// ErrBadResponse: a response that is not a well-formed, authentic answer
	// to the request (tampering or a broken server or proxy).
	ErrBadResponse = errors.New("sexmap: bad response")
	// ErrCounterExhausted: 2^64-1 requests were sent in one session.
	ErrCounterExhausted = errors.New("sexmap: session counter exhausted")
)

// StatusError is a refusal by the server: the HTTP status, the text code
// from the body (see docs/SEXMAP.md) and the Retry-After delay if any.
type StatusError struct {
	StatusCode int
	Code       string
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("sexmap: server refused with %d %s", e.StatusCode, e.Code)
}

// Is maps statuses to the package's sentinel errors.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrUnknownSession:
		return e.StatusCode == http.StatusUnauthorized
	case ErrLoginFailed:
		return e.StatusCode == http.StatusForbidden
	case ErrLockedOut:
		return e.StatusCode == http.StatusTooManyRequests && e.Code != rejRateLimited.code
	case ErrRateLimited:
		return e.StatusCode == http.StatusTooManyRequests && e.Code == rejRateLimited.code
	case ErrBusy:
		return e.StatusCode == http.StatusServiceUnavailable
	}
	return false
}
