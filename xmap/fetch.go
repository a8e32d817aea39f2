package xmap

import "strings"

// Parts selects what fetch returns besides metadata. The zero value means PartBody.
type Parts uint8

const (
	PartSummary Parts = 1 << iota
	PartBody
)

// Has reports whether p (with the zero value meaning PartBody) includes part.
func (p Parts) Has(part Parts) bool {
	if p == 0 {
		p = PartBody
	}
	return p&part != 0
}

func (p Parts) String() string {
	var s []string
	if p&PartSummary != 0 {
		s = append(s, "summary")
	}
	if p&PartBody != 0 {
		s = append(s, "body")
	}
	return strings.Join(s, " ")
}

// Fetch returns messages by id: metadata plus the parts asked for. Ids that are not found
// (including every id of another account) are listed as not found; messages that did not
// fit in the response are listed as deferred, to be fetched again in a later request.
type Fetch struct {
	IDs   []string
	Parts Parts
}

func (*Fetch) Name() string { return "fetch" }

func (c *Fetch) decode(e *elem) {
	if v, ok := e.attr("parts"); ok {
		for _, tok := range strings.FieldsFunc(v, func(r rune) bool { return r == ' ' }) {
			var p Parts
			switch tok {
			case "summary":
				p = PartSummary
			case "body":
				p = PartBody
			default:
				e.fail(CodeBadRequest, "attribute \"parts\": want summary and/or body")
				return
			}
			if c.Parts&p != 0 {
				e.fail(CodeBadRequest, "attribute \"parts\": %s given twice", tok)
				return
			}
			c.Parts |= p
		}
		if c.Parts == 0 {
			e.fail(CodeBadRequest, "attribute \"parts\": want summary and/or body")
		}
	}
	c.IDs = decodeIDs(e, MaxIDs)
}

func (c *Fetch) encode(e *enc) {
	e.attr("parts", c.Parts.String())
	e.ids("id", c.IDs)
}

// FetchResult answers Fetch.
type FetchResult struct {
	Messages []Message
	NotFound []string
	Deferred []string
}

func (*FetchResult) Name() string { return "fetch" }

func (r *FetchResult) encode(e *enc) {
	for i := range r.Messages {
		r.Messages[i].encode(e)
	}
	e.ids("not-found", r.NotFound)
	e.ids("deferred", r.Deferred)
}

func (r *FetchResult) decode(e *elem) {
	e.each(func(c *elem) {
		switch c.n.name {
		case "message":
			var m Message
			m.decode(c)
			r.Messages = append(r.Messages, m)
		case "not-found":
			r.NotFound = append(r.NotFound, c.shortText("id", ValidID))
		case "deferred":
			r.Deferred = append(r.Deferred, c.shortText("id", ValidID))
		default:
			c.unknownChild()
		}
	})
}
