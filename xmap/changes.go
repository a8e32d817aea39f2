package xmap

// Delta sync. Every change to an object of an account (a folder, a message, a contact)
// advances the account's state, an opaque string. A client remembers the state of its last
// sync and asks what changed since; wait blocks until the state moves.

// A Kind is the kind of object a change is about.
type Kind string

const (
	KindFolder  Kind = "folder"
	KindMessage Kind = "message"
	KindContact Kind = "contact"
)

// An ObjectRef names one changed object.
type ObjectRef struct {
	Kind Kind
	ID   string
}

// Changes asks which objects changed since a state.
type Changes struct {
	Since      string
	MaxChanges int // 0: DefaultMaxChanges; at most MaxChanges
}

func (*Changes) Name() string { return "changes" }

func (c *Changes) decode(e *elem) {
	e.noKids()
	c.Since = e.id("since", true)
	if v, ok := e.attr("max-changes"); ok {
		n, good := parseNum(v)
		switch {
		case !good || n < 1:
			e.fail(CodeBadRequest, "attribute \"max-changes\": want a number from 1 to %d", MaxChanges)
		case n > MaxChanges:
			e.fail(CodeLimitExceeded, "attribute \"max-changes\": more than %d", MaxChanges)
		}
		c.MaxChanges = int(n)
	}
}

func (c *Changes) encode(e *enc) {
	e.attr("since", c.Since)
	if c.MaxChanges != 0 {
		e.attrNum("max-changes", int64(c.MaxChanges))
	}
}

// ChangesResult answers Changes. An object created since the state is only in Created, even
// if it also changed; one created and destroyed since is in neither list. Folder counts are
// not tracked: a message change does not mark its folder updated.
type ChangesResult struct {
	State     string // the state the client has after applying these changes
	HasMore   bool   // more changes follow: ask again since State
	Created   []ObjectRef
	Updated   []ObjectRef
	Destroyed []ObjectRef
}

func (*ChangesResult) Name() string { return "changes" }

func (r *ChangesResult) encode(e *enc) {
	e.attr("state", r.State)
	e.attrBool("has-more", r.HasMore)
	for _, l := range []struct {
		name string
		refs []ObjectRef
	}{{"created", r.Created}, {"updated", r.Updated}, {"destroyed", r.Destroyed}} {
		for _, o := range l.refs {
			e.start(l.name)
			e.attr("kind", string(o.Kind))
			e.attr("id", o.ID)
			e.end(l.name)
		}
	}
}

func (r *ChangesResult) decode(e *elem) {
	r.State = e.id("state", true)
	r.HasMore = e.boolean("has-more", true)
	e.each(func(c *elem) {
		var list *[]ObjectRef
		switch c.n.name {
		case "created":
			list = &r.Created
		case "updated":
			list = &r.Updated
		case "destroyed":
			list = &r.Destroyed
		default:
			c.unknownChild()
			return
		}
		c.noKids()
		o := ObjectRef{ID: c.id("id", true)}
		switch k := Kind(c.str("kind", true)); k {
		case KindFolder, KindMessage, KindContact:
			o.Kind = k
		default:
			if !c.failed() {
				c.fail(CodeBadRequest, "attribute \"kind\": want folder, message or contact")
			}
		}
		*list = append(*list, o)
	})
}

// Wait blocks until the account's state differs from Since or Timeout seconds pass (0 to
// MaxWaitSeconds; 0 answers at once), for push. It returns at once if Since is not the
// current state.
type Wait struct {
	Since   string
	Timeout int
}

func (*Wait) Name() string { return "wait" }

func (c *Wait) decode(e *elem) {
	e.noKids()
	c.Since = e.id("since", true)
	v, ok := e.attr("timeout")
	if !ok {
		e.fail(CodeBadRequest, "missing attribute \"timeout\"")
		return
	}
	n, good := parseNum(v)
	switch {
	case !good:
		e.fail(CodeBadRequest, "attribute \"timeout\": want seconds from 0 to %d", MaxWaitSeconds)
	case n > MaxWaitSeconds:
		e.fail(CodeLimitExceeded, "attribute \"timeout\": more than %d seconds", MaxWaitSeconds)
	}
	c.Timeout = int(n)
}

func (c *Wait) encode(e *enc) {
	e.attr("since", c.Since)
	e.attrNum("timeout", int64(c.Timeout))
}

// WaitResult answers Wait with the current state.
type WaitResult struct {
	State   string
	Changed bool // State differs from the request's Since
}

func (*WaitResult) Name() string { return "wait" }

func (r *WaitResult) encode(e *enc) {
	e.attr("state", r.State)
	e.attrBool("changed", r.Changed)
}

func (r *WaitResult) decode(e *elem) {
	e.noKids()
	r.State = e.id("state", true)
	r.Changed = e.boolean("changed", true)
}
