package xmap

import "strings"

// A Flag is a system flag (starting with a backslash) or a keyword.
//
// Keywords follow IMAP's atom syntax (RFC 9051 flag-keyword): 1 to MaxKeywordLen printable
// ASCII characters other than ( ) { ] % * " \ and space. They are case-insensitive; XMAP
// carries them in lower case, and the decoder lowers any upper-case letters it receives.
type Flag string

// The system flags. Clients set the first four with update-flags and append; \Deleted is
// set only by delete on a message in Trash, and cleared by moving the message out.
const (
	FlagSeen     Flag = `\Seen`
	FlagFlagged  Flag = `\Flagged`
	FlagAnswered Flag = `\Answered`
	FlagDraft    Flag = `\Draft`
	FlagDeleted  Flag = `\Deleted`
)

// IsKeyword reports whether f is a keyword rather than a system flag.
func (f Flag) IsKeyword() bool { return !strings.HasPrefix(string(f), `\`) }

// ParseFlag validates a flag as written in a document, returning it in canonical form
// (keywords lower-cased).
func ParseFlag(s string) (Flag, bool) {
	switch Flag(s) {
	case FlagSeen, FlagFlagged, FlagAnswered, FlagDraft, FlagDeleted:
		return Flag(s), true
	}
	if len(s) == 0 || len(s) > MaxKeywordLen {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte(`(){]%*"\`, c) >= 0 {
			return "", false
		}
	}
	return Flag(strings.ToLower(s)), true
}

// flags reads a space-separated flags attribute. In requests \Deleted is refused: only
// delete sets it.
func (e *elem) flags(name string, allowDeleted bool) []Flag {
	v, ok := e.attr(name)
	if !ok {
		return nil
	}
	var out []Flag
	for _, tok := range strings.FieldsFunc(v, func(r rune) bool { return r == ' ' }) {
		f, ok := ParseFlag(tok)
		if !ok {
			e.fail(CodeBadRequest, "attribute %q: invalid flag %q", name, clip(tok))
			return nil
		}
		if f == FlagDeleted && !allowDeleted {
			e.fail(CodeBadRequest, `attribute %q: \Deleted is set by delete only`, name)
			return nil
		}
		for _, g := range out {
			if g == f {
				e.fail(CodeBadRequest, "attribute %q: flag %q given twice", name, f)
				return nil
			}
		}
		if len(out) == MaxFlags {
			e.fail(CodeLimitExceeded, "attribute %q: more than %d flags", name, MaxFlags)
			return nil
		}
		out = append(out, f)
	}
	return out
}

// A FlagAction says how update-flags applies its flags.
type FlagAction string

const (
	FlagsAdd     FlagAction = "add"     // add the flags
	FlagsRemove  FlagAction = "remove"  // remove the flags
	FlagsReplace FlagAction = "replace" // the message's flags become exactly these (\Deleted kept)
)

// UpdateFlags adds, removes or replaces flags on messages. It is atomic: if any id is not
// found nothing changes.
type UpdateFlags struct {
	Action FlagAction
	Flags  []Flag
	IDs    []string
}

func (*UpdateFlags) Name() string { return "update-flags" }

func (c *UpdateFlags) decode(e *elem) {
	switch a := FlagAction(e.str("action", true)); a {
	case FlagsAdd, FlagsRemove, FlagsReplace:
		c.Action = a
	default:
		if !e.failed() {
			e.fail(CodeBadRequest, "attribute \"action\": want add, remove or replace")
		}
	}
	c.Flags = e.flags("flags", false)
	c.IDs = decodeIDs(e, MaxIDs)
}

func (c *UpdateFlags) encode(e *enc) {
	e.attr("action", string(c.Action))
	e.attrFlags("flags", c.Flags)
	e.ids("id", c.IDs)
}

// UpdateFlagsResult answers UpdateFlags.
type UpdateFlagsResult struct{}

func (*UpdateFlagsResult) Name() string   { return "update-flags" }
func (*UpdateFlagsResult) encode(*enc)    {}
func (*UpdateFlagsResult) decode(e *elem) { e.noKids() }

// decodeIDs reads the <id> children of a request: at least one, at most max, no repeats.
func decodeIDs(e *elem, max int) []string {
	var ids []string
	seen := map[string]bool{}
	e.each(func(c *elem) {
		if c.n.name != "id" {
			c.unknownChild()
			return
		}
		ids = e.idList(c, ids, seen, max)
	})
	if len(ids) == 0 && !e.failed() {
		e.fail(CodeBadRequest, "no <id> given")
	}
	return ids
}
