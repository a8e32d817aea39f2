package crypto

import (
	"html"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message"
)

// textBuilder collects display text: white space and control characters
// collapse to single spaces (none leading or trailing), invisible format
// characters are dropped, and at most max runes are kept.
type textBuilder struct {
	b     strings.Builder
	max   int
	n     int
	space bool // a space is due before the next visible rune
	full  bool
}

func newTextBuilder(max int) *textBuilder { return &textBuilder{max: max} }

// brk marks a word boundary (a block-level HTML tag, say).
func (t *textBuilder) brk() {
	if t.n > 0 {
		t.space = true
	}
}

func (t *textBuilder) writeRune(r rune) {
	if t.full {
		return
	}
	switch {
	case unicode.IsSpace(r) || unicode.IsControl(r):
		t.brk()
		return
	case invisible(r):
		return
	}
	need := 1
	if t.space {
		need = 2
	}
	if t.n+need > t.max {
		t.full = true
		return
	}
	if t.space {
		t.b.WriteByte(' ')
		t.n++
		t.space = false
	}
	t.b.WriteRune(r)
	t.n++
}

func (t *textBuilder) writeString(s string) {
	for _, r := range s {
		if t.full {
			return
		}
		t.writeRune(r)
	}
}

func (t *textBuilder) String() string { return t.b.String() }

// invisible reports format characters that only hide or reorder text: zero
// width spaces and joiners used as padding in newsletters, the byte order
// mark, soft hyphens and bidirectional overrides (which could disguise a
// subject). The zero width joiner stays because emoji sequences need it.
func invisible(r rune) bool {
	return r == '\u034f' || (r != '\u200d' && unicode.Is(unicode.Cf, r))
}

// cleanText returns s as valid UTF-8 display text of at most max runes.
func cleanText(s string, max int) string {
	t := newTextBuilder(max)
	t.writeString(toUTF8(s))
	return t.String()
}

// toUTF8 returns s unchanged when it is valid UTF-8; otherwise it reads it as
// Windows-1252 (a superset of ISO-8859-1 for text), which is what unlabelled
// 8-bit mail almost always is.
func toUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return bytesToUTF8([]byte(s), false)
}

// bytesToUTF8 returns b as valid UTF-8. When trusted is false and b is not
// valid UTF-8 (ignoring a rune cut by a read limit at the end), b is decoded
// as Windows-1252; otherwise invalid bytes become U+FFFD.
func bytesToUTF8(b []byte, trusted bool) string {
	if utf8.Valid(b) {
		// The common case, and the same result as below: utf8.Valid is
		// several times faster than strings.ToValidUTF8 on a text part of
		// tens of kilobytes.
		return string(b)
	}
	if !trusted && !validUTF8Prefix(b) && message.CharsetReader != nil {
		if r, err := message.CharsetReader("windows-1252", strings.NewReader(string(b))); err == nil && r != nil {
			if out, err := io.ReadAll(r); err == nil && utf8.Valid(out) {
				return string(out)
			}
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// validUTF8Prefix is utf8.Valid, except that an incomplete sequence at the end
// of b is ignored.
func validUTF8Prefix(b []byte) bool {
	for i := 1; i <= utf8.UTFMax-1 && i <= len(b); i++ {
		if utf8.RuneStart(b[len(b)-i]) {
			if !utf8.FullRune(b[len(b)-i:]) {
				b = b[:len(b)-i]
			}
			break
		}
	}
	return utf8.Valid(b)
}

// plainSnippet returns the first SnippetRunes runes of text, white space
// collapsed.
func plainSnippet(text string) string {
	t := newTextBuilder(SnippetRunes)
	t.writeString(text)
	return t.String()
}

// htmlSnippet returns the first SnippetRunes runes of the text of an HTML
// document: tags, comments, scripts and style sheets removed, character
// references decoded, block-level tags turned into spaces. It is a display
// heuristic, not an HTML parser, and it never renders anything.
func htmlSnippet(doc string) string {
	t := newTextBuilder(SnippetRunes)
	for i := 0; i < len(doc) && !t.full; {
		switch doc[i] {
		case '<':
			next, ok := skipMarkup(doc, i, t)
			if !ok {
				return t.String()
			}
			i = next
		case '&':
			i = writeCharRef(doc, i, t)
		default:
			r, size := utf8.DecodeRuneInString(doc[i:])
			t.writeRune(r)
			i += size
		}
	}
	return t.String()
}

// skipMarkup handles the markup starting with '<' at doc[i] and returns where
// text resumes. ok is false when the rest of doc is an unterminated tag or
// comment.
func skipMarkup(doc string, i int, t *textBuilder) (next int, ok bool) {
	if strings.HasPrefix(doc[i:], "<!--") {
		end := strings.Index(doc[i+4:], "-->")
		if end < 0 {
			return 0, false
		}
		return i + 4 + end + 3, true
	}
	j := i + 1
	closing := j < len(doc) && doc[j] == '/'
	if closing {
		j++
	}
	if j >= len(doc) || !(isASCIILetter(doc[j]) || (!closing && (doc[j] == '!' || doc[j] == '?'))) {
		// A lone "<" as in "a < b" is text.
		t.writeRune('<')
		return i + 1, true
	}
	k := j
	for k < len(doc) && (isASCIILetter(doc[k]) || (doc[k] >= '0' && doc[k] <= '9') || doc[k] == '-') {
		k++
	}
	name := strings.ToLower(doc[j:k])
	end := tagEnd(doc, k)
	if end < 0 {
		return 0, false
	}
	if !inlineTags[name] {
		t.brk()
	}
	if !closing && rawTextTags[name] {
		// Skip to the matching end tag; it is handled as markup next.
		idx := indexEndTag(doc[end:], name)
		if idx < 0 {
			return 0, false
		}
		return end + idx, true
	}
	return end, true
}

// tagEnd returns the index just past the '>' that closes the tag whose
// attributes start at doc[k], honouring quoted attribute values, or -1.
func tagEnd(doc string, k int) int {
	var quote byte
	for ; k < len(doc); k++ {
		c := doc[k]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '>':
			return k + 1
		}
	}
	return -1
}

// indexEndTag finds "</name" (any case) in s without allocating.
func indexEndTag(s, name string) int {
	for i := 0; i+2+len(name) <= len(s); {
		j := strings.Index(s[i:], "</")
		if j < 0 {
			return -1
		}
		i += j
		if i+2+len(name) <= len(s) && strings.EqualFold(s[i+2:i+2+len(name)], name) {
			return i
		}
		i += 2
	}
	return -1
}

// writeCharRef decodes the character reference at doc[i] ('&') and returns
// where text resumes.
func writeCharRef(doc string, i int, t *textBuilder) int {
	j := i + 1
	for j < len(doc) && j-i <= 32 && (isASCIILetter(doc[j]) || (doc[j] >= '0' && doc[j] <= '9') || doc[j] == '#') {
		j++
	}
	if j < len(doc) && doc[j] == ';' {
		j++
	}
	ref := doc[i:j]
	if dec := html.UnescapeString(ref); dec != ref {
		t.writeString(dec)
		return j
	}
	t.writeRune('&')
	return i + 1
}

func isASCIILetter(c byte) bool { return (c|0x20) >= 'a' && (c|0x20) <= 'z' }

// rawTextTags hold no text a reader sees.
var rawTextTags = map[string]bool{"script": true, "style": true, "title": true, "template": true}

// inlineTags do not separate words ("H<b>ello</b>" reads "Hello").
var inlineTags = map[string]bool{
	"a": true, "abbr": true, "b": true, "bdi": true, "bdo": true, "big": true, "cite": true, "code": true,
	"del": true, "dfn": true, "em": true, "font": true, "i": true, "ins": true, "kbd": true, "mark": true,
	"q": true, "s": true, "samp": true, "small": true, "span": true, "strike": true, "strong": true,
	"sub": true, "sup": true, "time": true, "tt": true, "u": true, "var": true, "wbr": true,
}
