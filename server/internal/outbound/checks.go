package outbound

import (
	"bufio"
	"bytes"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"
	"time"

	cmcrypto "cryptomail/crypto"
	"cryptomail/xmap"
)

// The checks Send runs before anything is queued or stored (issue 9, items 6
// and 10): whose name the message goes out under, whether what is labelled
// encrypted is, and how much one user may send. Each is a function of its
// own, called early in Send.

// maxHeaderBytes bounds the header section checkSender reads.
const maxHeaderBytes = 256 << 10

// checkSender refuses a message whose readable From: (and Sender:, when
// present) is not the session's own address. The envelope sender is always
// user (Send never takes one from the client); this keeps the headers a
// recipient reads in line with it. An address is the user's when the
// resolver maps it to user's mailbox (so user+tag@ is the user's own).
// There are no aliases yet: an administrator cannot allow another address.
func (s *Sender) checkSender(user string, msg []byte, which string) error {
	br := bufio.NewReader(bytes.NewReader(msg[:min(len(msg), maxHeaderBytes)]))
	h, err := textproto.NewReader(br).ReadMIMEHeader()
	if err != nil {
		return xmap.Errorf(xmap.CodeBadRequest, "%s: unreadable header section", which)
	}
	// A field name with white space ("From : x") is filed apart by this
	// parser but read as From: by others (go-message, the web client): refuse
	// it rather than guess which one a reader shows.
	for name := range h {
		if strings.ContainsAny(name, " \t") {
			return xmap.Errorf(xmap.CodeBadRequest, "%s: a header field name contains white space", which)
		}
	}
	from := h.Values("From")
	if len(from) != 1 {
		return xmap.Errorf(xmap.CodeDenied, "%s: needs exactly one From: field, with your own address", which)
	}
	if err := s.ownAddresses(user, from[0], which, "From:"); err != nil {
		return err
	}
	for _, name := range []string{"Sender", "Resent-From", "Resent-Sender"} {
		switch v := h.Values(name); len(v) {
		case 0:
		case 1:
			if err := s.ownAddresses(user, v[0], which, name+":"); err != nil {
				return err
			}
		default:
			return xmap.Errorf(xmap.CodeDenied, "%s: more than one %s: field", which, name)
		}
	}
	return nil
}

// ownAddresses checks that an address field names exactly one address, the
// user's own.
func (s *Sender) ownAddresses(user, field, which, name string) error {
	list, err := (&mail.AddressParser{WordDecoder: nil}).ParseList(field)
	if err != nil || len(list) != 1 {
		return xmap.Errorf(xmap.CodeDenied, "%s: %s must be exactly your own address", which, name)
	}
	// A display name that holds an address ("alice@example.org" <mallory@...>,
	// or one hidden in an encoded word) is how a reader is shown someone else.
	if strings.ContainsAny(list[0].Name, "@<>") {
		return xmap.Errorf(xmap.CodeDenied, "%s: the display name of %s must not contain an address", which, name)
	}
	mailbox, local, err := s.resolve(list[0].Address)
	if err != nil || !local || mailbox != user {
		return xmap.Errorf(xmap.CodeDenied, "%s: %s must be your own address (%s)", which, name, user)
	}
	return nil
}

// checkContent runs the content checks of one send: the sender's address
// in every body, PGP/MIME that really is encrypted, and summaries that are
// OpenPGP messages.
func (s *Sender) checkContent(user string, req *xmap.Send) error {
	if err := s.checkSender(user, req.Body, "body"); err != nil {
		return err
	}
	// The body goes to every encrypted recipient and into Sent: it must be
	// PGP/MIME around a real OpenPGP message, or a mislabelled readable
	// message would leave the server as "encrypted".
	if err := cmcrypto.CheckPGPMIME(req.Body); err != nil {
		return xmap.Errorf(xmap.CodeBadRequest, "body is not a PGP/MIME encrypted message (multipart/encrypted around an OpenPGP message)")
	}
	if len(req.PlaintextBody) > 0 {
		if err := s.checkSender(user, req.PlaintextBody, "plaintext-body"); err != nil {
			return err
		}
		// Readable by consent, but no part of it labelled as what it is not.
		if cmcrypto.CheckLabelledParts(req.PlaintextBody) != nil {
			return xmap.Errorf(xmap.CodeBadRequest, "plaintext-body has a part labelled encrypted that is not an OpenPGP message")
		}
	}
	for _, r := range req.Recipients {
		if len(r.Summary) > 0 && cmcrypto.CheckEncrypted(r.Summary) != nil {
			return xmap.Errorf(xmap.CodeBadRequest, "summary for %s is not an OpenPGP encrypted message", clip(r.Address))
		}
	}
	if len(req.SentSummary) > 0 && cmcrypto.CheckEncrypted(req.SentSummary) != nil {
		return xmap.Errorf(xmap.CodeBadRequest, "sent-summary is not an OpenPGP encrypted message")
	}
	return nil
}

// sendLimiter is a token bucket per user: each holds up to perHour
// recipients and refills at perHour per hour, so a user may send perHour
// recipients at once and then about one every hour/perHour. It lives in
// memory: a restart refills every bucket, and each cluster node keeps its own.
type sendLimiter struct {
	perHour int // <= 0: no limit

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// sweepAt is the number of buckets above which allow drops the full ones.
const sweepAt = 4096

// allow takes n tokens from user's bucket, or refuses with rate-limited and
// takes none.
func (l *sendLimiter) allow(user string, n int, now time.Time) error {
	if l.perHour <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buckets == nil {
		l.buckets = map[string]*bucket{}
	}
	max := float64(l.perHour)
	refill := func(b *bucket) {
		if d := now.Sub(b.at); d > 0 {
			b.tokens = min(max, b.tokens+d.Hours()*max)
		}
		b.at = now
	}
	if len(l.buckets) >= sweepAt {
		for u, b := range l.buckets {
			if refill(b); b.tokens >= max {
				delete(l.buckets, u)
			}
		}
	}
	b := l.buckets[user]
	if b == nil {
		b = &bucket{tokens: max, at: now}
		l.buckets[user] = b
	}
	refill(b)
	if float64(n) > b.tokens {
		return xmap.Errorf(xmap.CodeRateLimited, "send limit reached: at most %d recipients per hour; try again later", l.perHour)
	}
	b.tokens -= float64(n)
	return nil
}
