package xmap

import (
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"io"
)

// fastTokens tokenizes the plain subset of XML that XMAP encoders write (our encoder, and
// any that writes ASCII text without entities, comments or CDATA) about thirty times
// faster than encoding/xml, which reads a byte at a time through an interface: that
// mattered for responses full of base64 summaries.
//
// It yields exactly the tokens, in the same order and at the same line numbers, that
// xml.Decoder.Token yields for the same document, and readTokens builds the tree from
// them with the same checks. For anything outside the subset — any byte that is not
// printable ASCII, tab or line feed, an entity or character reference, a comment, CDATA,
// a DTD, a processing instruction other than the usual XML declaration, a prefixed name,
// a syntax error of any kind — it gives up with errNotPlain and the document is decoded
// again, from the start, by encoding/xml, which then also produces the error a malformed
// document gets. So what is accepted and every error are as before; FuzzFastTokens
// checks the equivalence.
type fastTokens struct {
	doc  []byte
	pos  int
	line int // 1 + line feeds before pos

	stack    []fastElem
	closeTop bool       // the top element was self-closed: its EndElement is next
	attrs    []xml.Attr // reused: a StartElement's Attr is valid until the next Token
	names    []string   // names seen, so that each is allocated once per document
}

// maxNames bounds the names fastTokens remembers (XMAP has a few dozen).
const maxNames = 48

type fastElem struct {
	name xml.Name
	ns   string // default namespace in scope inside the element
}

// errNotPlain says the document is outside what fastTokens handles.
var errNotPlain = errors.New("xmap: not plain XML")

func newFastTokens(doc []byte) *fastTokens { return &fastTokens{doc: doc, line: 1} }

// InputPos returns the line as xml.Decoder.InputPos does; the column is not used.
func (t *fastTokens) InputPos() (line, column int) { return t.line, 0 }

// The XML declarations taken as they are; encoding/xml accepts them and yields this
// ProcInst. Any other declaration goes to encoding/xml.
var plainDecls = [][]byte{
	[]byte(`<?xml version="1.0" encoding="UTF-8"?>`),
	[]byte(`<?xml version="1.0"?>`),
}

func (t *fastTokens) Token() (xml.Token, error) {
	if t.closeTop {
		t.closeTop = false
		return t.pop(), nil
	}
	if t.pos == len(t.doc) {
		if len(t.stack) > 0 {
			return nil, errNotPlain // unexpected EOF: encoding/xml says it
		}
		return nil, io.EOF
	}
	if t.doc[t.pos] != '<' {
		return t.text()
	}
	if t.pos+1 == len(t.doc) {
		return nil, errNotPlain
	}
	switch t.doc[t.pos+1] {
	case '?':
		if t.pos == 0 {
			for _, d := range plainDecls {
				if bytes.HasPrefix(t.doc, d) {
					t.pos = len(d)
					inst := d[len(`<?xml `) : len(d)-len(`?>`)]
					return xml.ProcInst{Target: "xml", Inst: inst}, nil
				}
			}
		}
		return nil, errNotPlain
	case '!':
		return nil, errNotPlain
	case '/':
		return t.endTag()
	}
	return t.startTag()
}

// text yields the character data up to the next '<' or the end.
func (t *fastTokens) text() (xml.Token, error) {
	start := t.pos
	rest := t.doc[start:]
	n := bytes.IndexByte(rest, '<')
	if n < 0 {
		n = len(rest)
	}
	lines := 0
	i := 0
	for ; i+8 <= n; i += 8 {
		if plainWord(binary.LittleEndian.Uint64(rest[i:])) {
			continue
		}
		for _, c := range rest[i : i+8] {
			if textByte[c] == 0 {
				if c != '\n' {
					return nil, errNotPlain
				}
				lines++
			}
		}
	}
	for _, c := range rest[i:n] {
		if textByte[c] == 0 {
			if c != '\n' {
				return nil, errNotPlain
			}
			lines++
		}
	}
	t.pos += n
	t.line += lines
	return xml.CharData(rest[:n]), nil
}

func (t *fastTokens) startTag() (xml.Token, error) {
	t.pos++ // '<'
	local, ok := t.name()
	if !ok {
		return nil, errNotPlain
	}
	ns := ""
	if len(t.stack) > 0 {
		ns = t.stack[len(t.stack)-1].ns
	}
	attrs := t.attrs[:0]
	defer func() { t.attrs = attrs[:0] }()
	for {
		spaced := t.space()
		if t.pos == len(t.doc) {
			return nil, errNotPlain
		}
		switch t.doc[t.pos] {
		case '>':
			t.pos++
			return t.push(local, ns, attrs, false), nil
		case '/':
			if t.pos+1 == len(t.doc) || t.doc[t.pos+1] != '>' {
				return nil, errNotPlain
			}
			t.pos += 2
			return t.push(local, ns, attrs, true), nil
		}
		if !spaced {
			return nil, errNotPlain
		}
		name, ok := t.name()
		if !ok {
			return nil, errNotPlain
		}
		t.space()
		if t.pos == len(t.doc) || t.doc[t.pos] != '=' {
			return nil, errNotPlain
		}
		t.pos++
		t.space()
		if t.pos == len(t.doc) || (t.doc[t.pos] != '"' && t.doc[t.pos] != '\'') {
			return nil, errNotPlain
		}
		q := t.doc[t.pos]
		t.pos++
		end := bytes.IndexByte(t.doc[t.pos:], q)
		if end < 0 {
			return nil, errNotPlain
		}
		value := t.doc[t.pos : t.pos+end]
		for _, c := range value {
			if attrByte[c] == 0 {
				return nil, errNotPlain
			}
		}
		t.pos += end + 1
		if name == "xmlns" {
			ns = string(value)
		}
		attrs = append(attrs, xml.Attr{Name: xml.Name{Local: name}, Value: string(value)})
	}
}

func (t *fastTokens) push(local, ns string, attrs []xml.Attr, selfClosed bool) xml.StartElement {
	name := xml.Name{Space: ns, Local: local}
	t.stack = append(t.stack, fastElem{name: name, ns: ns})
	t.closeTop = selfClosed
	return xml.StartElement{Name: name, Attr: attrs}
}

func (t *fastTokens) pop() xml.EndElement {
	top := t.stack[len(t.stack)-1]
	t.stack = t.stack[:len(t.stack)-1]
	return xml.EndElement{Name: top.name}
}

func (t *fastTokens) endTag() (xml.Token, error) {
	t.pos += 2 // "</"
	local, ok := t.name()
	if !ok || len(t.stack) == 0 || t.stack[len(t.stack)-1].name.Local != local {
		return nil, errNotPlain
	}
	t.space()
	if t.pos == len(t.doc) || t.doc[t.pos] != '>' {
		return nil, errNotPlain
	}
	t.pos++
	return t.pop(), nil
}

// name reads an ASCII name without a prefix: a letter or '_', then letters, digits and
// ". _ -".
func (t *fastTokens) name() (string, bool) {
	start := t.pos
	if start == len(t.doc) {
		return "", false
	}
	if c := t.doc[start]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_') {
		return "", false
	}
	t.pos++
	for t.pos < len(t.doc) && nameByte[t.doc[t.pos]] != 0 {
		t.pos++
	}
	b := t.doc[start:t.pos]
	for _, n := range t.names {
		if n == string(b) {
			return n, true
		}
	}
	n := string(b)
	if len(t.names) < maxNames {
		t.names = append(t.names, n)
	}
	return n, true
}

// space skips spaces, tabs and line feeds (a carriage return is left for encoding/xml,
// which normalizes line ends) and says whether there were any.
func (t *fastTokens) space() bool {
	start := t.pos
	for t.pos < len(t.doc) {
		switch t.doc[t.pos] {
		case ' ', '\t':
		case '\n':
			t.line++
		default:
			return t.pos > start
		}
		t.pos++
	}
	return t.pos > start
}

// Byte classes: textByte is printable ASCII and tab but for '&', '<', '>' (line feeds
// are counted apart); attrByte is printable ASCII but for '&', '<', '>' and quotes
// (white space in a value would be normalized by some parsers; leave it to
// encoding/xml); nameByte is what names go on with.
var textByte, attrByte, nameByte [256]byte

func init() {
	for c := 0x20; c < 0x7f; c++ {
		switch c {
		case '&', '<', '>':
			continue
		}
		textByte[c] = 1
		if c != '"' && c != '\'' {
			attrByte[c] = 1
		}
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' {
			nameByte[c] = 1
		}
	}
	textByte['\t'] = 1
}

// Eight bytes at a time (the bit tricks of "Bit Twiddling Hacks": each test is exact
// about whether any byte of x matches): text is mostly long base64 runs.
const (
	lowBits  = 0x0101010101010101
	highBits = 0x8080808080808080
)

// hasLess reports whether a byte of x is below n (n <= 128).
func hasLess(x uint64, n byte) bool { return (x-lowBits*uint64(n))&^x&highBits != 0 }

// hasMore reports whether a byte of x is above n (n <= 127).
func hasMore(x uint64, n byte) bool { return ((x+lowBits*uint64(127-n))|x)&highBits != 0 }

// hasByte reports whether a byte of x is b.
func hasByte(x uint64, b byte) bool { return hasLess(x^(lowBits*uint64(b)), 1) }

// plainWord reports whether all eight bytes of x are printable ASCII other than '&' and
// '>' ('<' ends a text before it is checked): textByte without tab, line feed counted.
func plainWord(x uint64) bool {
	return !hasLess(x, 0x20) && !hasMore(x, 0x7e) && !hasByte(x, '&') && !hasByte(x, '>')
}
