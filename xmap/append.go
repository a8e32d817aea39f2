package xmap

import "time"

// Append stores a message the client encrypted itself (a draft, an import) into a folder.
// Body is an OpenPGP message holding the RFC 5322 message, encrypted to the user's key;
// Summary, optional, is the encrypted summary (see docs/XMAP.md). The server cannot read
// either and stores them as given.
type Append struct {
	Folder   FolderRef
	Flags    []Flag    // system flags other than \Deleted, and keywords
	Received time.Time // zero: now
	Body     []byte
	Summary  []byte
}

func (*Append) Name() string { return "append" }

func (c *Append) decode(e *elem) {
	c.Folder = e.folderRef()
	c.Flags = e.flags("flags", false)
	c.Received = e.timestamp("received", false)
	var hasBody, hasSummary bool
	e.each(func(k *elem) {
		switch k.n.name {
		case "body":
			if k.once(&hasBody) {
				c.Body = k.blob(MaxMessageSize)
			}
		case "summary":
			if k.once(&hasSummary) {
				c.Summary = k.blob(MaxSummarySize)
			}
		default:
			k.unknownChild()
		}
	})
	if !hasBody && !e.failed() {
		e.fail(CodeBadRequest, "missing <body>")
	}
}

func (c *Append) encode(e *enc) {
	e.folderRef(c.Folder)
	e.attrFlags("flags", c.Flags)
	e.attrTime("received", c.Received)
	e.blob("body", c.Body)
	e.blob("summary", c.Summary)
}

// AppendResult answers Append with the stored message's metadata.
type AppendResult struct {
	Message Message
}

func (*AppendResult) Name() string     { return "append" }
func (r *AppendResult) encode(e *enc)  { r.Message.encode(e) }
func (r *AppendResult) decode(e *elem) { decodeMessageChild(e, &r.Message) }
