package xmap

// Move moves messages to a folder, keeping their ids. Moving a message out of Trash clears
// \Deleted. It is atomic: if any id or the folder is not found nothing moves.
type Move struct {
	Folder FolderRef // destination
	IDs    []string
}

func (*Move) Name() string { return "move" }

func (c *Move) decode(e *elem) {
	c.Folder = e.folderRef()
	c.IDs = decodeIDs(e, MaxIDs)
}

func (c *Move) encode(e *enc) {
	e.folderRef(c.Folder)
	e.ids("id", c.IDs)
}

// MoveResult answers Move.
type MoveResult struct{}

func (*MoveResult) Name() string   { return "move" }
func (*MoveResult) encode(*enc)    {}
func (*MoveResult) decode(e *elem) { e.noKids() }

// Copy copies messages into a folder; each copy is a new message with a new id and the
// original's flags (without \Deleted). Atomic, like Move.
type Copy struct {
	Folder FolderRef // destination
	IDs    []string
}

func (*Copy) Name() string { return "copy" }

func (c *Copy) decode(e *elem) {
	c.Folder = e.folderRef()
	c.IDs = decodeIDs(e, MaxIDs)
}

func (c *Copy) encode(e *enc) {
	e.folderRef(c.Folder)
	e.ids("id", c.IDs)
}

// Copied pairs an original message id with the id of its copy.
type Copied struct {
	From string
	ID   string
}

// CopyResult answers Copy, one Copied per id, in request order.
type CopyResult struct {
	Copies []Copied
}

func (*CopyResult) Name() string { return "copy" }

func (r *CopyResult) encode(e *enc) {
	for _, c := range r.Copies {
		e.start("copied")
		e.attr("from", c.From)
		e.attr("id", c.ID)
		e.end("copied")
	}
}

func (r *CopyResult) decode(e *elem) {
	e.each(func(c *elem) {
		if c.n.name != "copied" {
			c.unknownChild()
			return
		}
		c.noKids()
		r.Copies = append(r.Copies, Copied{From: c.id("from", true), ID: c.id("id", true)})
	})
}

// Delete deletes messages: one outside Trash moves to Trash; one in Trash gets \Deleted
// and disappears at the next expunge of Trash. Atomic, like Move.
type Delete struct {
	IDs []string
}

func (*Delete) Name() string { return "delete" }

func (c *Delete) decode(e *elem) { c.IDs = decodeIDs(e, MaxIDs) }
func (c *Delete) encode(e *enc)  { e.ids("id", c.IDs) }

// DeleteResult answers Delete.
type DeleteResult struct{}

func (*DeleteResult) Name() string   { return "delete" }
func (*DeleteResult) encode(*enc)    {}
func (*DeleteResult) decode(e *elem) { e.noKids() }

// Expunge permanently removes the messages with \Deleted from a folder.
type Expunge struct {
	Folder FolderRef
}

func (*Expunge) Name() string { return "expunge" }

func (c *Expunge) decode(e *elem) {
	e.noKids()
	c.Folder = e.folderRef()
}

func (c *Expunge) encode(e *enc) { e.folderRef(c.Folder) }

// ExpungeResult answers Expunge with the number of messages removed.
type ExpungeResult struct {
	Count int
}

func (*ExpungeResult) Name() string { return "expunge" }

func (r *ExpungeResult) encode(e *enc) { e.attrNum("count", int64(r.Count)) }

func (r *ExpungeResult) decode(e *elem) {
	e.noKids()
	r.Count = int(e.num("count", true, 0, 1<<53))
}
