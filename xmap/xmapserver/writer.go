package xmapserver

import (
	"encoding/base64"
	"fmt"

	"cryptomail/xmap"
)

// Writers are how a backend hands over results that can be big, as go-imap's FetchWriter
// and ListWriter do: the backend never builds the whole result nor touches the wire format,
// and the server keeps the response within its budget.

// A MessageWriter receives one page of a list-messages request.
type MessageWriter struct {
	res   xmap.ListMessagesResult
	limit int
	err   error
}

// SetFolderID sets the id of the folder listed.
func (w *MessageWriter) SetFolderID(id string) { w.res.FolderID = id }

// SetTotal sets the number of messages in the folder.
func (w *MessageWriter) SetTotal(n int) { w.res.Total = n }

// SetState sets the account's state as of this page.
func (w *MessageWriter) SetState(state string) { w.res.State = state }

// SetNextCursor sets the cursor of the next page; leave it unset on the last page.
func (w *MessageWriter) SetNextCursor(cursor string) { w.res.NextCursor = cursor }

// WriteMessage adds a message (with its summary; a body is dropped) to the page.
func (w *MessageWriter) WriteMessage(m *xmap.Message) error {
	if len(w.res.Messages) >= w.limit {
		return w.fail(fmt.Errorf("xmapserver: list-messages: more than the %d messages asked for", w.limit))
	}
	c := *m
	c.Body = nil
	if err := checkMessage(&c); err != nil {
		return w.fail(err)
	}
	w.res.Messages = append(w.res.Messages, c)
	return nil
}

func (w *MessageWriter) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

func (w *MessageWriter) result() (*xmap.ListMessagesResult, error) {
	if w.err != nil {
		return nil, w.err
	}
	if !xmap.ValidID(w.res.FolderID) || !xmap.ValidID(w.res.State) {
		return nil, fmt.Errorf("xmapserver: list-messages: backend set no valid folder id or state")
	}
	return &w.res, nil
}

// A ContactWriter receives one page of a list-contacts request.
type ContactWriter struct {
	res   xmap.ListContactsResult
	limit int
	err   error
}

// SetState sets the account's state as of this page.
func (w *ContactWriter) SetState(state string) { w.res.State = state }

// SetNextCursor sets the cursor of the next page; leave it unset on the last page.
func (w *ContactWriter) SetNextCursor(cursor string) { w.res.NextCursor = cursor }

// WriteContact adds a contact to the page.
func (w *ContactWriter) WriteContact(c *xmap.Contact) error {
	if len(w.res.Contacts) >= w.limit {
		err := fmt.Errorf("xmapserver: list-contacts: more than the %d contacts asked for", w.limit)
		if w.err == nil {
			w.err = err
		}
		return err
	}
	if !xmap.ValidID(c.ID) {
		err := fmt.Errorf("xmapserver: list-contacts: backend contact id %q", c.ID)
		if w.err == nil {
			w.err = err
		}
		return err
	}
	if err := checkBlob("contact", c.Data, xmap.MaxContactSize); err != nil {
		if w.err == nil {
			w.err = err
		}
		return err
	}
	w.res.Contacts = append(w.res.Contacts, *c)
	return nil
}

func (w *ContactWriter) result() (*xmap.ListContactsResult, error) {
	if w.err != nil {
		return nil, w.err
	}
	if !xmap.ValidID(w.res.State) {
		return nil, fmt.Errorf("xmapserver: list-contacts: backend set no valid state")
	}
	return &w.res, nil
}

// A FetchWriter streams the messages of a fetch request into the response. Messages that
// would take the response past xmap.ResponseBudget are deferred: the client fetches them
// again in a later request. The first message of a fetch is always taken, so a fetch makes
// progress even with a body near xmap.MaxMessageSize.
type FetchWriter struct {
	re      *xmap.ResponseEncoder
	parts   xmap.Parts
	state   map[string]fetchState
	written int
	defers  []string
	err     error
}

type fetchState uint8

const (
	fetchPending fetchState = iota
	fetchWritten
	fetchDeferred
)

func newFetchWriter(re *xmap.ResponseEncoder, req *xmap.Fetch) *FetchWriter {
	w := &FetchWriter{re: re, parts: req.Parts, state: make(map[string]fetchState, len(req.IDs))}
	for _, id := range req.IDs {
		w.state[id] = fetchPending
	}
	return w
}

// Parts says what to include besides metadata.
func (w *FetchWriter) Parts() xmap.Parts { return w.parts }

// Fits reports whether a message whose summary and body (as far as Parts asks for them)
// total size bytes still fits in the response. When it does not, call Defer.
func (w *FetchWriter) Fits(size int64) bool {
	return w.fits(256 + base64.StdEncoding.EncodedLen(int(size)))
}

func (w *FetchWriter) fits(encoded int) bool {
	return w.written == 0 || w.re.Len()+encoded <= xmap.ResponseBudget
}

// WriteMessage writes a message, with the parts asked for (others are dropped). A message
// that does not fit is deferred rather than written.
func (w *FetchWriter) WriteMessage(m *xmap.Message) error {
	if err := w.claim(m.ID); err != nil {
		return err
	}
	c := *m
	if !w.parts.Has(xmap.PartSummary) {
		c.Summary = nil
	}
	if !w.parts.Has(xmap.PartBody) {
		c.Body = nil
	}
	if err := checkMessage(&c); err != nil {
		if w.err == nil {
			w.err = err
		}
		return err
	}
	if !w.fits(xmap.MessageSize(&c)) {
		w.state[m.ID] = fetchDeferred
		w.defers = append(w.defers, m.ID)
		return nil
	}
	w.re.FetchMessage(&c)
	w.state[m.ID] = fetchWritten
	w.written++
	return nil
}

// Defer reports a message left for a later fetch.
func (w *FetchWriter) Defer(id string) error {
	if err := w.claim(id); err != nil {
		return err
	}
	w.state[id] = fetchDeferred
	w.defers = append(w.defers, id)
	return nil
}

// claim checks that id was asked for and not yet answered: a backend writing anything else
// has a bug, and the request fails as internal.
func (w *FetchWriter) claim(id string) error {
	if s, ok := w.state[id]; !ok || s != fetchPending {
		err := fmt.Errorf("xmapserver: fetch: backend wrote id %q not asked for or twice", id)
		if w.err == nil {
			w.err = err
		}
		return err
	}
	return nil
}

// finish lists every id not written or deferred as not found, in request order.
func (w *FetchWriter) finish(req *xmap.Fetch) (notFound []string) {
	for _, id := range req.IDs {
		if w.state[id] == fetchPending {
			notFound = append(notFound, id)
		}
	}
	return notFound
}

// checkMessage refuses a stored message a client could not decode (a bad id or flag, a blob
// over its limit): one bad row must fail its request, not make the whole response unreadable.
// An empty blob, which XMAP cannot carry, is dropped as absent.
func checkMessage(m *xmap.Message) error {
	if len(m.Summary) == 0 {
		m.Summary = nil
	}
	if len(m.Body) == 0 {
		m.Body = nil
	}
	if !xmap.ValidID(m.ID) || !xmap.ValidID(m.FolderID) || m.Size < 0 || m.Received.Year() < 1 || m.Received.Year() > 9999 {
		return fmt.Errorf("xmapserver: backend message %q has an invalid id, folder id, size or time", m.ID)
	}
	if len(m.Flags) > xmap.MaxFlags {
		return fmt.Errorf("xmapserver: backend message %s has %d flags", m.ID, len(m.Flags))
	}
	for _, f := range m.Flags {
		if g, ok := xmap.ParseFlag(string(f)); !ok || g != f {
			return fmt.Errorf("xmapserver: backend message %s has an invalid flag", m.ID)
		}
	}
	if len(m.Summary) > xmap.MaxSummarySize || len(m.Body) > xmap.MaxMessageSize {
		return fmt.Errorf("xmapserver: backend message %s has an oversized summary or body", m.ID)
	}
	return nil
}

// checkBlob refuses a stored contact or key outside its limits.
func checkBlob(what string, b []byte, max int) error {
	if len(b) == 0 || len(b) > max {
		return fmt.Errorf("xmapserver: backend %s of %d bytes", what, len(b))
	}
	return nil
}
