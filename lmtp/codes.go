package lmtp

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	"github.com/emersion/go-smtp"
)

// Replies. go-smtp type-asserts err.(*smtp.SMTPError) without errors.As and
// puts the text of any other error on the wire, so everything returned to it
// is one of these bare pointers (or the success reply built in session.go).
var (
	replyBadAddress   = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad recipient address syntax"}
	replyNoSuchDomain = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 2}, Message: "Domain not served here"}
	replyRelayDenied  = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relaying denied"}
	replyUnknownUser  = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	replyBusy         = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Temporarily busy, try again later"}
	replyNoSpace      = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage"}
	replyMailboxFull  = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full"}
	replyTempFail     = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary local problem, try again later"}
	replyConnProblem  = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Connection problem while receiving the message"}
	replyLineTooLong  = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Line too long"}
	replyTooLarge     = smtp.ErrDataTooLarge // 552 5.3.4
	replyShuttingDown = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service shutting down, try again later"}
	replyBadSender    = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Bad sender address syntax"}
	replyBadHelo      = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "Bad HELO/LHLO name"}
	replyNestedMail   = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Nested MAIL command"}
	replyPartial      = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Not delivered to every recipient, try again later"}
)

// replyFor maps an error from the Backend or from reading the message to the
// reply the client sees. internal reports errors outside every known class:
// those are the ones worth an operator's attention.
func replyFor(err error, smtpMode bool) (reply *smtp.SMTPError, internal bool) {
	switch {
	case errors.Is(err, ErrBadAddress):
		return replyBadAddress, false
	case errors.Is(err, ErrDomainNotServed):
		if smtpMode {
			return replyRelayDenied, false
		}
		return replyNoSuchDomain, false
	case errors.Is(err, ErrUnknownUser):
		return replyUnknownUser, false
	case errors.Is(err, ErrBusy):
		return replyBusy, false
	case errors.Is(err, ErrNoSpace):
		return replyNoSpace, false
	case errors.Is(err, ErrMailboxFull):
		return replyMailboxFull, false
	case errors.Is(err, smtp.ErrDataTooLarge), errors.Is(err, ErrTooLarge):
		return replyTooLarge, false
	case errors.Is(err, smtp.ErrTooLongLine):
		return replyLineTooLong, false
	case errors.Is(err, errReceive) && isConnError(err):
		return replyConnProblem, false
	default:
		return replyTempFail, true
	}
}

// errReceive marks errors from reading the message off the connection (as
// opposed to Backend errors, which may be network errors of their own).
var errReceive = errors.New("receiving message")

// isConnError reports a failure of the client's connection while it sent the
// message: a timeout, a disconnect, or go-smtp aborting a BDAT transfer.
func isConnError(err error) bool {
	var ne net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, smtp.ErrDataReset) || (errors.As(err, &ne) && ne.Timeout())
}

// fail maps err to a reply and logs it: internal errors at Error level with
// their text (for the operator, never for the client), expected refusals at
// Info. attrs must not hold message content.
func (s *Server) fail(op string, err error, attrs ...slog.Attr) *smtp.SMTPError {
	reply, internal := replyFor(err, !s.lmtp)
	level := slog.LevelInfo
	if internal {
		level = slog.LevelError
	}
	attrs = append(attrs,
		slog.Int("code", reply.Code),
		slog.String("enhanced", fmt.Sprintf("%d.%d.%d", reply.EnhancedCode[0], reply.EnhancedCode[1], reply.EnhancedCode[2])),
		slog.String("err", err.Error()))
	s.log.LogAttrs(s.baseCtx, level, op+" failed", attrs...)
	return reply
}

func sprintf(format string, v ...any) string { return fmt.Sprintf(format, v...) }

func sprintln(v ...any) string { return strings.TrimSuffix(fmt.Sprintln(v...), "\n") }
