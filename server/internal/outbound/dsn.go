package outbound

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
)

// maxDSNHeaders bounds the original header section quoted in a bounce.
const maxDSNHeaders = 64 << 10

// dsnInput is what a bounce (RFC 3464 delivery status notification) says.
type dsnInput struct {
	Hostname   string    // Reporting-MTA, and the domain of the From address
	Sender     string    // the user the bounce goes to
	Arrival    time.Time // when the message entered the queue
	Date       time.Time
	MessageID  string // without angle brackets
	Boundary   string
	Lifetime   time.Duration
	Recipients []dsnRecipient
	// Headers is the undelivered message's header section, quoted as
	// text/rfc822-headers; nil leaves the part out. Never the body.
	Headers []byte
}

type dsnRecipient struct {
	Address     string
	Status      string // RFC 3463 code, e.g. 5.1.1; 4.4.7 when the lifetime ran out
	Reply       string // the relay's reply ("550 5.1.1 ..."), or ""
	Reason      string // our own fixed description when there is no reply
	LastAttempt time.Time
}

func (r *dsnRecipient) expired() bool { return strings.HasPrefix(r.Status, "4.") }

// writeDSN writes a multipart/report bounce to w.
func writeDSN(w io.Writer, in dsnInput) error {
	global := !isASCII(in.Sender)
	for _, r := range in.Recipients {
		global = global || !isASCII(r.Address)
	}

	var h mail.Header
	// go-message writes fields in the reverse order of Add.
	h.SetContentType("multipart/report", map[string]string{"report-type": "delivery-status", "boundary": in.Boundary})
	h.Set("MIME-Version", "1.0")
	h.Set("Auto-Submitted", "auto-replied") // RFC 3834: no replies to this
	h.SetMessageID(in.MessageID)
	h.SetDate(in.Date)
	h.SetSubject("Undelivered Mail Returned to Sender")
	h.SetAddressList("To", []*mail.Address{{Address: in.Sender}})
	h.SetAddressList("From", []*mail.Address{{Name: "Mail Delivery System", Address: "MAILER-DAEMON@" + in.Hostname}})

	mw, err := message.CreateWriter(w, h.Header)
	if err != nil {
		return err
	}

	hdr := quotedHeaders(in.Headers)
	var text message.Header
	text.Set("Content-Transfer-Encoding", "quoted-printable")
	text.Set("Content-Description", "Notification")
	text.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	if err := writePart(mw, text, humanText(&in, len(hdr) > 0)); err != nil {
		return err
	}

	var status message.Header
	status.Set("Content-Description", "Delivery report")
	if global {
		status.SetContentType("message/global-delivery-status", nil) // RFC 6533
	} else {
		status.SetContentType("message/delivery-status", nil)
	}
	if err := writePart(mw, status, deliveryStatus(&in, global)); err != nil {
		return err
	}

	if len(hdr) > 0 {
		var orig message.Header
		orig.Set("Content-Description", "Undelivered message headers")
		orig.SetContentType("text/rfc822-headers", nil)
		if err := writePart(mw, orig, hdr); err != nil {
			return err
		}
	}
	return mw.Close()
}

func writePart(mw *message.Writer, h message.Header, body []byte) error {
	pw, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	if _, err := pw.Write(body); err != nil {
		return err
	}
	return pw.Close()
}

func humanText(in *dsnInput, withHeaders bool) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "This is the mail system at %s.\r\n\r\n", in.Hostname)
	b.WriteString("Your message could not be delivered to the recipients below, and will\r\n")
	b.WriteString("not be tried again.\r\n")
	for _, r := range in.Recipients {
		fmt.Fprintf(&b, "\r\n<%s>\r\n", r.Address)
		why := r.Reply
		if why == "" {
			why = r.Reason
		}
		switch {
		case r.expired() && why != "":
			fmt.Fprintf(&b, "    Not delivered within %s. Last error: %s\r\n", lifetimeText(in.Lifetime), why)
		case r.expired():
			fmt.Fprintf(&b, "    Not delivered within %s.\r\n", lifetimeText(in.Lifetime))
		case r.Reply != "":
			fmt.Fprintf(&b, "    The receiving mail system refused it: %s\r\n", r.Reply)
		default:
			fmt.Fprintf(&b, "    Not delivered: %s\r\n", why)
		}
	}
	if withHeaders {
		b.WriteString("\r\nThe message's headers are attached; its content is not.\r\n")
	}
	return b.Bytes()
}

func lifetimeText(d time.Duration) string {
	switch {
	case d >= 24*time.Hour && d%(24*time.Hour) == 0:
		if d == 24*time.Hour {
			return "1 day"
		}
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	case d >= time.Hour && d%time.Hour == 0:
		if d == time.Hour {
			return "1 hour"
		}
		return fmt.Sprintf("%d hours", d/time.Hour)
	}
	return d.String()
}

// deliveryStatus is the message/delivery-status body (RFC 3464, section 2).
func deliveryStatus(in *dsnInput, global bool) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Reporting-MTA: dns; %s\r\n", in.Hostname)
	fmt.Fprintf(&b, "Arrival-Date: %s\r\n", in.Arrival.Format(time.RFC1123Z))
	addrType := "rfc822"
	if global {
		addrType = "utf-8"
	}
	for _, r := range in.Recipients {
		fmt.Fprintf(&b, "\r\nFinal-Recipient: %s; %s\r\n", addrType, r.Address)
		b.WriteString("Action: failed\r\n")
		fmt.Fprintf(&b, "Status: %s\r\n", r.Status)
		if r.Reply != "" {
			fmt.Fprintf(&b, "Diagnostic-Code: smtp; %s\r\n", r.Reply)
		}
		if !r.LastAttempt.IsZero() {
			fmt.Fprintf(&b, "Last-Attempt-Date: %s\r\n", r.LastAttempt.Format(time.RFC1123Z))
		}
	}
	return b.Bytes()
}

// quotedHeaders returns the header section of msg (up to the first empty
// line, at most maxDSNHeaders bytes cut at a line end) with CRLF line ends.
// The body is never part of it.
func quotedHeaders(msg []byte) []byte {
	var out bytes.Buffer
	for rest := msg; len(rest) > 0; {
		line, tail, found := bytes.Cut(rest, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 || !found {
			// The end of the header section, or a last line without an end:
			// a header section must end with a line break, so that is body.
			break
		}
		if out.Len()+len(line)+2 > maxDSNHeaders {
			break
		}
		out.Write(line)
		out.WriteString("\r\n")
		rest = tail
	}
	// A continuation line cut off from its field, or bytes that could end
	// the MIME part early, make the quoted section unusable: leave it out.
	hdr := out.Bytes()
	if len(hdr) == 0 || hdr[0] == ' ' || hdr[0] == '\t' || bytes.Contains(hdr, []byte("\r\n--")) || bytes.HasPrefix(hdr, []byte("--")) {
		return nil
	}
	return hdr
}

// cleanReply turns a relay reply into one line of printable text, at most
// maxReply bytes, for the queue, logs and bounces.
func cleanReply(s string) string {
	const maxReply = 512
	var b strings.Builder
	space := false
	for _, r := range s {
		switch {
		case r == utf8.RuneError, r == '\r':
			continue
		case r == '\n' || r == '\t' || r == ' ':
			space = true
			continue
		case !unicode.IsPrint(r):
			r = '?'
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		if b.Len()+utf8.RuneLen(r) > maxReply {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
