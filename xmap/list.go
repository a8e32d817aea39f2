package xmap

import (
	"slices"
	"time"
)

// A Message is a stored message as results carry it. Summary and Body are set only where a
// result includes them (list-messages: Summary; fetch: what was asked for).
//
// A message id is unique within the account and does not change when the message moves;
// copy makes a new message with a new id.
type Message struct {
	ID       string
	FolderID string
	Flags    []Flag
	Size     int64 // bytes of the stored (encrypted) body
	Received time.Time
	// Summary is the encrypted summary: an OpenPGP message holding JSON, see docs/XMAP.md.
	Summary []byte
	// Body is the encrypted message: an OpenPGP message holding the RFC 5322 message.
	Body []byte
	// SummaryBy says who wrote Summary (the summary-by attribute); empty in a result from
	// a server that does not say, which a client treats as SummaryBySender.
	SummaryBy SummaryOrigin
}

// A SummaryOrigin says who made a message's encrypted summary. Only the server (from the
// message as it arrived) and the account's owner can be trusted to have summarised the
// message truthfully; a summary another user wrote (send to a local recipient) says
// whatever that user chose, so clients mark it unverified until the message itself has
// been opened and its signature checked (docs/XMAP.md, "Summary origin").
type SummaryOrigin string

const (
	SummaryByServer SummaryOrigin = "server" // sealed by the server from the message as received (LMTP, SMTP, bounces, a send without a summary)
	SummaryBySender SummaryOrigin = "sender" // written by another user, the sender, through send
	SummaryByOwner  SummaryOrigin = "owner"  // written by the account's owner: append, the Sent copy of send
)

// Trusted reports whether the summary was written by the server or the owner, not by a
// sender; an unknown or missing origin is not trusted.
func (o SummaryOrigin) Trusted() bool { return o == SummaryByServer || o == SummaryByOwner }

func (m *Message) encode(e *enc) {
	e.start("message")
	e.attr("id", m.ID)
	e.attr("folder-id", m.FolderID)
	e.attrFlags("flags", m.Flags)
	e.attrNum("size", m.Size)
	e.attrTime("received", m.Received)
	e.attr("summary-by", string(m.SummaryBy))
	e.blob("summary", m.Summary)
	e.blob("body", m.Body)
	e.end("message")
}

func (m *Message) decode(e *elem) {
	m.ID = e.id("id", true)
	m.FolderID = e.id("folder-id", true)
	m.Flags = e.flags("flags", true)
	m.Size = e.num("size", true, 0, 1<<53)
	m.Received = e.timestamp("received", true)
	if v, ok := e.attr("summary-by"); ok {
		switch o := SummaryOrigin(v); o {
		case SummaryByServer, SummaryBySender, SummaryByOwner:
			m.SummaryBy = o
		default:
			// A value this reader does not know: the cautious reading, never an error,
			// so a newer server's origins do not make its listings unreadable.
			m.SummaryBy = SummaryBySender
		}
	}
	var hasSummary, hasBody bool
	e.each(func(c *elem) {
		switch c.n.name {
		case "summary":
			if c.once(&hasSummary) {
				m.Summary = c.blob(MaxSummarySize)
			}
		case "body":
			if c.once(&hasBody) {
				m.Body = c.blob(MaxMessageSize)
			}
		default:
			c.unknownChild()
		}
	})
}

// decodeMessageChild decodes the single <message> child of a result.
func decodeMessageChild(e *elem, m *Message) {
	seen := false
	e.each(func(c *elem) {
		if c.n.name != "message" {
			c.unknownChild()
			return
		}
		if c.once(&seen) {
			m.decode(c)
		}
	})
	if !seen {
		e.fail(CodeBadRequest, "missing <message>")
	}
}

// A Sort orders a message listing.
type Sort string

const (
	SortReceivedDesc Sort = "received-desc" // newest first (the default)
	SortReceivedAsc  Sort = "received-asc"  // oldest first
)

// ListMessages lists one page of a folder, with each message's encrypted summary. Messages
// received at the same time are ordered by id, in the same direction.
type ListMessages struct {
	Folder FolderRef
	Sort   Sort   // empty: SortReceivedDesc
	Limit  int    // 0: DefaultPageSize; at most MaxPageSize
	Cursor string // from the previous page's NextCursor; empty for the first page
}

func (*ListMessages) Name() string { return "list-messages" }

func (c *ListMessages) decode(e *elem) {
	e.noKids()
	c.Folder = e.folderRef()
	if s, ok := e.attr("sort"); ok {
		switch Sort(s) {
		case SortReceivedAsc, SortReceivedDesc:
			c.Sort = Sort(s)
		default:
			e.fail(CodeBadRequest, "attribute \"sort\": want received-desc or received-asc")
		}
	}
	c.Limit = decodeLimit(e)
	c.Cursor = e.cursor("cursor")
}

func decodeLimit(e *elem) int {
	v, ok := e.attr("limit")
	if !ok {
		return 0
	}
	n, good := parseNum(v)
	switch {
	case !good || n < 1:
		e.fail(CodeBadRequest, "attribute \"limit\": want a number from 1 to %d", MaxPageSize)
	case n > MaxPageSize:
		e.fail(CodeLimitExceeded, "attribute \"limit\": more than %d", MaxPageSize)
	}
	return int(n)
}

func (c *ListMessages) encode(e *enc) {
	e.folderRef(c.Folder)
	e.attr("sort", string(c.Sort))
	if c.Limit != 0 {
		e.attrNum("limit", int64(c.Limit))
	}
	e.attr("cursor", c.Cursor)
}

// ListMessagesResult answers ListMessages.
type ListMessagesResult struct {
	FolderID string
	Total    int    // messages in the folder
	State    string // the account's state when the page was read, for a later changes
	// NextCursor continues the listing; empty on the last page.
	NextCursor string
	Messages   []Message // with Summary, without Body
}

func (*ListMessagesResult) Name() string { return "list-messages" }

func (r *ListMessagesResult) encode(e *enc) {
	e.attr("folder-id", r.FolderID)
	e.attrNum("total", int64(r.Total))
	e.attr("state", r.State)
	e.attr("next-cursor", r.NextCursor)
	// One allocation for the page rather than a doubling per summary or so.
	n := 0
	for i := range r.Messages {
		n += MessageSize(&r.Messages[i])
	}
	e.b = slices.Grow(e.b, n)
	for i := range r.Messages {
		r.Messages[i].encode(e)
	}
}

func (r *ListMessagesResult) decode(e *elem) {
	r.FolderID = e.id("folder-id", true)
	r.Total = int(e.num("total", true, 0, 1<<53))
	r.State = e.id("state", true)
	r.NextCursor = e.cursor("next-cursor")
	if len(e.n.kids) > 0 {
		r.Messages = make([]Message, 0, len(e.n.kids))
	}
	e.each(func(c *elem) {
		if c.n.name != "message" {
			c.unknownChild()
			return
		}
		var m Message
		m.decode(c)
		r.Messages = append(r.Messages, m)
	})
}
