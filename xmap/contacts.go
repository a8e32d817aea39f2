package xmap

// Contacts are the user's address book, each entry an opaque blob the client encrypts to
// its own key (the format inside is the client's), with an id the server assigns.

// A Contact is one address-book entry.
type Contact struct {
	ID   string
	Data []byte // encrypted; nil where a result carries only the id
}

func (c *Contact) encode(e *enc) {
	e.start("contact")
	e.attr("id", c.ID)
	e.blobText(c.Data)
	e.end("contact")
}

// ListContacts lists one page of contacts, in id order.
type ListContacts struct {
	Limit  int    // 0: DefaultPageSize; at most MaxPageSize
	Cursor string // from the previous page's NextCursor
}

func (*ListContacts) Name() string { return "list-contacts" }

func (c *ListContacts) decode(e *elem) {
	e.noKids()
	c.Limit = decodeLimit(e)
	c.Cursor = e.cursor("cursor")
}

func (c *ListContacts) encode(e *enc) {
	if c.Limit != 0 {
		e.attrNum("limit", int64(c.Limit))
	}
	e.attr("cursor", c.Cursor)
}

// ListContactsResult answers ListContacts.
type ListContactsResult struct {
	State      string
	NextCursor string // empty on the last page
	Contacts   []Contact
}

func (*ListContactsResult) Name() string { return "list-contacts" }

func (r *ListContactsResult) encode(e *enc) {
	e.attr("state", r.State)
	e.attr("next-cursor", r.NextCursor)
	for i := range r.Contacts {
		r.Contacts[i].encode(e)
	}
}

func (r *ListContactsResult) decode(e *elem) {
	r.State = e.id("state", true)
	r.NextCursor = e.cursor("next-cursor")
	e.each(func(c *elem) {
		if c.n.name != "contact" {
			c.unknownChild()
			return
		}
		r.Contacts = append(r.Contacts, Contact{ID: c.id("id", true), Data: c.blob(MaxContactSize)})
	})
}

// PutContact creates a contact (no ID) or replaces an existing one's data (ID given; an
// unknown ID is not found).
type PutContact struct {
	Contact Contact
}

func (*PutContact) Name() string { return "put-contact" }

func (c *PutContact) decode(e *elem) {
	var seen bool
	e.each(func(k *elem) {
		if k.n.name != "contact" {
			k.unknownChild()
			return
		}
		if k.once(&seen) {
			c.Contact = Contact{ID: k.id("id", false), Data: k.blob(MaxContactSize)}
		}
	})
	if !seen && !e.failed() {
		e.fail(CodeBadRequest, "missing <contact>")
	}
}

func (c *PutContact) encode(e *enc) { c.Contact.encode(e) }

// PutContactResult answers PutContact with the contact's id.
type PutContactResult struct {
	ID string
}

func (*PutContactResult) Name() string { return "put-contact" }

func (r *PutContactResult) encode(e *enc) {
	e.start("contact")
	e.attr("id", r.ID)
	e.end("contact")
}

func (r *PutContactResult) decode(e *elem) {
	var seen bool
	e.each(func(c *elem) {
		if c.n.name != "contact" {
			c.unknownChild()
			return
		}
		if c.once(&seen) {
			r.ID = c.id("id", true)
			if len(c.n.text) > 0 {
				c.fail(CodeBadRequest, "holds no data in a put-contact result")
			}
		}
	})
	if !seen && !e.failed() {
		e.fail(CodeBadRequest, "missing <contact>")
	}
}

// DeleteContact deletes a contact.
type DeleteContact struct {
	ID string
}

func (*DeleteContact) Name() string { return "delete-contact" }

func (c *DeleteContact) decode(e *elem) {
	e.noKids()
	c.ID = e.id("contact-id", true)
}

func (c *DeleteContact) encode(e *enc) { e.attr("contact-id", c.ID) }

// DeleteContactResult answers DeleteContact.
type DeleteContactResult struct{}

func (*DeleteContactResult) Name() string   { return "delete-contact" }
func (*DeleteContactResult) encode(*enc)    {}
func (*DeleteContactResult) decode(e *elem) { e.noKids() }
