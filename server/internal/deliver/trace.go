package deliver

import (
	"bytes"
	"strings"
	"time"
)

// Envelope is what the trace fields of a delivered message record.
type Envelope struct {
	From       string // envelope sender ("" for a bounce's <>)
	Helo       string // the client's HELO/LHLO name; "" with RemoteAddr "": a local submission
	RemoteAddr string
	Hostname   string // this server's
	Protocol   string // "LMTP", "ESMTP", "XMAP", ...
	Received   time.Time
}

// TraceFields returns the Return-Path, Delivered-To and Received fields put
// before msg for its copy in mailbox, addressed as rcpt, in msg's own line
// ending. A message received from a client (Helo or RemoteAddr set) gets a
// "from" clause; a local submission (send) does not.
func TraceFields(env *Envelope, mailbox, rcpt string, msg []byte) []byte {
	eol := "\r\n"
	if i := bytes.IndexByte(msg, '\n'); i >= 0 && (i == 0 || msg[i-1] != '\r') {
		eol = "\n"
	}
	b := make([]byte, 0, 256+len(env.From)+len(mailbox)+len(env.Helo)+len(env.RemoteAddr)+len(env.Hostname)+len(rcpt))
	b = append(b, "Return-Path: <"...)
	// The listener refuses control characters in these; stripping them here
	// too keeps a header injection out whatever the caller.
	b = append(b, noControl(env.From)...)
	b = append(b, '>')
	b = append(b, eol...)
	b = append(b, "Delivered-To: "...)
	b = append(b, mailbox...)
	b = append(b, eol...)
	b = append(b, "Received: "...)
	if env.Helo != "" || env.RemoteAddr != "" {
		from := noControl(env.Helo)
		if from == "" {
			from = "unknown"
		}
		b = append(b, "from "...)
		b = append(b, from...)
		b = append(b, " ("...)
		b = append(b, noControl(env.RemoteAddr)...)
		b = append(b, ')')
		b = append(b, eol...)
		b = append(b, '\t')
	}
	b = append(b, "by "...)
	b = append(b, env.Hostname...)
	b = append(b, " with "...)
	b = append(b, env.Protocol...)
	b = append(b, eol...)
	b = append(b, "\tfor <"...)
	b = append(b, noControl(rcpt)...)
	b = append(b, ">; "...)
	b = env.Received.AppendFormat(b, time.RFC1123Z)
	b = append(b, eol...)
	return b
}

// noControl drops ASCII control characters.
func noControl(v string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, v)
}
