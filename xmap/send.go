package xmap

import "strings"

// Send sends a message the client composed, signed and encrypted. The envelope sender is
// always the session's own address: a send has no sender field, and the From header inside
// the message is the client's business.
//
// Body is the RFC 5322 message as it goes to every recipient marked Encrypted: a PGP/MIME
// message (RFC 3156) encrypted to each of them and to the sender. Local recipients get it in
// their INBOX and the sender a copy in Sent, each stored encrypted to the owner's key like
// any arriving mail; remote recipients get it through the outbound queue.
//
// A recipient the client could not encrypt to (no key known) is marked Encrypted=false and
// gets PlaintextBody, a readable RFC 5322 message, only if it also carries AllowPlaintext:
// otherwise the send fails with plaintext-refused and nothing is sent. Local recipients
// always have a key, so a local recipient not marked Encrypted is refused the same way.
type Send struct {
	Recipients    []Recipient
	Body          []byte
	PlaintextBody []byte // required when a recipient is not Encrypted; forbidden otherwise
	SentSummary   []byte // optional encrypted summary for the Sent copy
}

// A Recipient is one envelope recipient of a send.
type Recipient struct {
	Address        string
	Encrypted      bool // the client encrypted Body to this recipient's key
	AllowPlaintext bool // the user agreed to send this recipient PlaintextBody
	// Summary is an optional encrypted summary for a local recipient's INBOX copy,
	// encrypted to that recipient. Without it the server writes one from the envelope.
	Summary []byte
}

func (*Send) Name() string { return "send" }

func (c *Send) decode(e *elem) {
	var hasBody, hasPlain, hasSummary bool
	seen := map[string]bool{}
	e.each(func(k *elem) {
		switch k.n.name {
		case "rcpt":
			var r Recipient
			r.Address = k.address("address")
			r.Encrypted = k.boolean("encrypted", true)
			r.AllowPlaintext = k.boolean("allow-plaintext", false)
			var hasRS bool
			k.each(func(s *elem) {
				if s.n.name != "summary" {
					s.unknownChild()
					return
				}
				if s.once(&hasRS) {
					r.Summary = s.blob(MaxSummarySize)
				}
			})
			if k.failed() {
				return
			}
			key := strings.ToLower(r.Address)
			if seen[key] {
				k.fail(CodeBadRequest, "recipient given twice")
				return
			}
			if len(c.Recipients) == MaxRecipients {
				e.fail(CodeLimitExceeded, "more than %d recipients", MaxRecipients)
				return
			}
			seen[key] = true
			c.Recipients = append(c.Recipients, r)
		case "body":
			if k.once(&hasBody) {
				c.Body = k.blob(MaxMessageSize)
			}
		case "plaintext-body":
			if k.once(&hasPlain) {
				c.PlaintextBody = k.blob(MaxMessageSize)
			}
		case "sent-summary":
			if k.once(&hasSummary) {
				c.SentSummary = k.blob(MaxSummarySize)
			}
		default:
			k.unknownChild()
		}
	})
	if e.failed() {
		return
	}
	needPlain := false
	for _, r := range c.Recipients {
		if !r.Encrypted {
			needPlain = true
		}
	}
	switch {
	case len(c.Recipients) == 0:
		e.fail(CodeBadRequest, "no <rcpt> given")
	case !hasBody:
		e.fail(CodeBadRequest, "missing <body>")
	case needPlain && !hasPlain:
		e.fail(CodeBadRequest, "a recipient is not encrypted to but there is no <plaintext-body>")
	case !needPlain && hasPlain:
		e.fail(CodeBadRequest, "<plaintext-body> given but every recipient is encrypted to")
	}
}

func (c *Send) encode(e *enc) {
	for _, r := range c.Recipients {
		e.start("rcpt")
		e.attr("address", r.Address)
		e.attrBool("encrypted", r.Encrypted)
		if r.AllowPlaintext {
			e.attrBool("allow-plaintext", true)
		}
		e.blob("summary", r.Summary)
		e.end("rcpt")
	}
	e.blob("body", c.Body)
	e.blob("plaintext-body", c.PlaintextBody)
	e.blob("sent-summary", c.SentSummary)
}

// A DeliveryStatus says what happened to one recipient of a send.
type DeliveryStatus string

const (
	StatusDelivered DeliveryStatus = "delivered" // stored in a local recipient's INBOX
	StatusQueued    DeliveryStatus = "queued"    // in the outbound queue for a remote recipient
)

// A RecipientStatus is the outcome for one recipient.
type RecipientStatus struct {
	Address string
	Status  DeliveryStatus
}

// SendResult answers Send: the copy stored in Sent and one status per recipient.
type SendResult struct {
	Sent       Message
	Recipients []RecipientStatus
}

func (*SendResult) Name() string { return "send" }

func (r *SendResult) encode(e *enc) {
	r.Sent.encode(e)
	for _, s := range r.Recipients {
		e.start("rcpt")
		e.attr("address", s.Address)
		e.attr("status", string(s.Status))
		e.end("rcpt")
	}
}

func (r *SendResult) decode(e *elem) {
	var hasSent bool
	e.each(func(c *elem) {
		switch c.n.name {
		case "message":
			if c.once(&hasSent) {
				r.Sent.decode(c)
			}
		case "rcpt":
			c.noKids()
			s := RecipientStatus{Address: c.address("address")}
			switch st := DeliveryStatus(c.str("status", true)); st {
			case StatusDelivered, StatusQueued:
				s.Status = st
			default:
				if !c.failed() {
					c.fail(CodeBadRequest, "attribute \"status\": want delivered or queued")
				}
			}
			r.Recipients = append(r.Recipients, s)
		default:
			c.unknownChild()
		}
	})
	if !hasSent && !e.failed() {
		e.fail(CodeBadRequest, "missing <message>")
	}
}
