package xmap

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Value syntax shared by requests and results. Each check has a plain function (also used
// by the encoders' callers and tests) and an elem accessor that reports failures.

// ValidID reports whether s is a valid request id, object id or state: 1 to MaxIDLen bytes
// of ASCII letters, digits, '.', '_' and '-'.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ValidCursor reports whether s is a valid paging cursor: 1 to MaxCursorLen bytes of ASCII
// letters, digits and . _ ~ + / = : -.
func ValidCursor(s string) bool {
	if len(s) == 0 || len(s) > MaxCursorLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._~+/=:-", c) >= 0) {
			return false
		}
	}
	return true
}

// ValidFolderName reports whether s can name a folder: 1 to MaxFolderNameLen bytes of
// UTF-8 without control characters, not starting or ending with white space.
func ValidFolderName(s string) bool {
	if len(s) == 0 || len(s) > MaxFolderNameLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == utf8.RuneError || r == '\uFEFF' {
			return false
		}
	}
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	return !unicode.IsSpace(first) && !unicode.IsSpace(last)
}

// ValidAddress reports whether s is a plain email address local@domain: a dot-atom local
// part of at most 64 bytes, a domain of dot-separated labels, at most MaxAddressLen bytes in
// all. Non-ASCII (SMTPUTF8) letters are allowed. Display names and quoting are not.
func ValidAddress(s string) bool {
	if len(s) > MaxAddressLen || !utf8.ValidString(s) {
		return false
	}
	at := strings.IndexByte(s, '@')
	if at < 1 || at != strings.LastIndexByte(s, '@') {
		return false
	}
	local, domain := s[:at], s[at+1:]
	if len(local) > 64 || len(domain) == 0 || len(domain) > 253 {
		return false
	}
	for _, part := range strings.Split(local, ".") {
		if part == "" {
			return false
		}
		for _, r := range part {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
				strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r) || r > 0x7f && unicode.IsPrint(r)) {
				return false
			}
		}
	}
	for _, label := range strings.Split(domain, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r > 0x7f && unicode.IsLetter(r) || r > 0x7f && unicode.IsDigit(r)) {
				return false
			}
		}
	}
	return true
}

// validInvite: printable ASCII without spaces.
func validInvite(s string) bool {
	if len(s) == 0 || len(s) > MaxInviteLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// id reads an attribute that must be a valid id.
func (e *elem) id(name string, required bool) string {
	v, ok := e.attr(name)
	if !ok {
		if required {
			e.fail(CodeBadRequest, "missing attribute %q", name)
		}
		return ""
	}
	if !ValidID(v) {
		e.fail(CodeBadRequest, "attribute %q: invalid id", name)
	}
	return v
}

func (e *elem) cursor(name string) string {
	v, ok := e.attr(name)
	if ok && !ValidCursor(v) {
		e.fail(CodeBadRequest, "attribute %q: invalid cursor", name)
	}
	return v
}

func (e *elem) address(name string) string {
	v, ok := e.attr(name)
	if !ok {
		e.fail(CodeBadRequest, "missing attribute %q", name)
	} else if !ValidAddress(v) {
		e.fail(CodeBadRequest, "attribute %q: invalid address", name)
	}
	return v
}

func (e *elem) folderName(name string) string {
	v, ok := e.attr(name)
	if !ok {
		e.fail(CodeBadRequest, "missing attribute %q", name)
	} else if !ValidFolderName(v) {
		e.fail(CodeBadRequest, "attribute %q: invalid folder name", name)
	}
	return v
}

// num reads a decimal attribute in [min, max]: digits only, no sign.
func (e *elem) num(name string, required bool, min, max int64) int64 {
	v, ok := e.attr(name)
	if !ok {
		if required {
			e.fail(CodeBadRequest, "missing attribute %q", name)
		}
		return 0
	}
	n, good := parseNum(v)
	if !good || n < min || n > max {
		e.fail(CodeBadRequest, "attribute %q: want a number from %d to %d", name, min, max)
	}
	return n
}

func parseNum(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

func (e *elem) boolean(name string, required bool) bool {
	v, ok := e.attr(name)
	switch {
	case !ok:
		if required {
			e.fail(CodeBadRequest, "missing attribute %q", name)
		}
		return false
	case v == "true":
		return true
	case v == "false":
		return false
	}
	e.fail(CodeBadRequest, "attribute %q: want true or false", name)
	return false
}

// rfc3339 is RFC 3339's date-time: time.Parse alone also takes one-digit
// hours, which no other implementation need read.
var rfc3339 = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$`)

// timestamp reads an RFC 3339 time, normalised to UTC. The zero instant
// (0001-01-01T00:00:00Z) is refused: encoders write no attribute for it, so
// it cannot stand for a time.
func (e *elem) timestamp(name string, required bool) time.Time {
	v, ok := e.attr(name)
	if !ok {
		if required {
			e.fail(CodeBadRequest, "missing attribute %q", name)
		}
		return time.Time{}
	}
	var t time.Time
	err := errors.New("not RFC 3339")
	if rfc3339.MatchString(v) {
		t, err = time.Parse(time.RFC3339Nano, v)
	}
	if err == nil {
		t = t.UTC()
	}
	if err != nil || t.Year() < 1 || t.Year() > 9999 || t.IsZero() {
		e.fail(CodeBadRequest, "attribute %q: want an RFC 3339 time", name)
		return time.Time{}
	}
	return t
}

func formatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// folderRef reads folder (a name) or folder-id: exactly one must be given.
func (e *elem) folderRef() FolderRef {
	id, hasID := e.attr("folder-id")
	name, hasName := e.attr("folder")
	switch {
	case hasID == hasName:
		e.fail(CodeBadRequest, "give exactly one of folder and folder-id")
	case hasID && !ValidID(id):
		e.fail(CodeBadRequest, "attribute \"folder-id\": invalid id")
	case hasName && !ValidFolderName(name):
		e.fail(CodeBadRequest, "attribute \"folder\": invalid folder name")
	}
	return FolderRef{ID: id, Name: name}
}

// text returns a short text element's content, which must be a valid value for check.
func (e *elem) shortText(what string, check func(string) bool) string {
	e.noKids()
	s := string(e.n.text)
	if !check(s) {
		e.fail(CodeBadRequest, "invalid %s", what)
	}
	return s
}

// blob decodes a base64 text element of at most max decoded bytes. Blobs are never empty,
// so an absent blob and an empty one cannot be confused. White space (line breaks) inside
// the base64 is ignored.
func (e *elem) blob(max int) []byte {
	e.noKids()
	raw := e.n.text
	if !isXMLSpace(raw) {
		raw = stripSpace(raw)
	} else {
		raw = nil
	}
	if len(raw) == 0 {
		e.fail(CodeBadRequest, "empty value")
		return nil
	}
	if base64.StdEncoding.DecodedLen(len(raw)) > max+2 {
		e.fail(CodeTooLarge, "value larger than %d bytes", max)
		return nil
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(raw)))
	n, err := base64.StdEncoding.Strict().Decode(out, raw)
	if err != nil {
		e.fail(CodeBadRequest, "invalid base64")
		return nil
	}
	if n > max {
		e.fail(CodeTooLarge, "value larger than %d bytes", max)
		return nil
	}
	if n == 0 {
		e.fail(CodeBadRequest, "empty value")
		return nil
	}
	return out[:n]
}

var xmlSpace = [256]byte{' ': 1, '\t': 1, '\n': 1, '\r': 1}

// stripSpace returns b without XML white space; b itself when it has none.
func stripSpace(b []byte) []byte {
	i := 0
	for i+8 <= len(b) && !hasLess(binary.LittleEndian.Uint64(b[i:]), ' '+1) {
		i += 8 // no byte up to ' ', so no white space
	}
	for i < len(b) && xmlSpace[b[i]] == 0 {
		i++
	}
	if i == len(b) {
		return b // the usual case, base64 on one line: nothing to copy
	}
	out := make([]byte, i, len(b))
	copy(out, b[:i])
	for _, c := range b[i:] {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			out = append(out, c)
		}
	}
	return out
}

// idList appends the text of an <id> child, checking syntax, count and duplicates.
func (e *elem) idList(c *elem, ids []string, seen map[string]bool, max int) []string {
	id := c.shortText("id", ValidID)
	if e.failed() {
		return ids
	}
	if seen[id] {
		c.fail(CodeBadRequest, "id %q given twice", id)
		return ids
	}
	if len(ids) >= max {
		e.fail(CodeLimitExceeded, "more than %d ids", max)
		return ids
	}
	seen[id] = true
	return append(ids, id)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// b64Attr reads a required base64 attribute of min to max decoded bytes (small binary
// parameters such as a salt; blobs are element text).
func (e *elem) b64Attr(name string, min, max int) []byte {
	v := e.str(name, true)
	if e.failed() {
		return nil
	}
	b, err := base64.StdEncoding.Strict().DecodeString(v)
	if err != nil || len(b) < min || len(b) > max {
		e.fail(CodeBadRequest, "attribute %q: want base64 of %d to %d bytes", name, min, max)
		return nil
	}
	return b
}
