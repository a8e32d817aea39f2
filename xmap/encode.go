package xmap

import (
	"encoding/base64"
	"io"
	"strconv"
	"time"
	"unicode/utf8"
)

// The encoder writes the canonical form of a document: an XML declaration, two-space
// indentation, one element per line, attributes in a fixed order, empty elements
// self-closed, base64 on one line. The golden files and the examples in docs/XMAP.md are in
// this form, so decoding one and encoding it again gives the same bytes.

const xmlHeader = `<?xml version="1.0" encoding="UTF-8"?>` + "\n"

type enc struct {
	b     []byte
	depth int
	open  bool // a start tag awaits '>' or '/>'
	text  bool // the current element holds text, so its end tag goes on the same line
}

func (e *enc) indent() {
	for i := 0; i < e.depth; i++ {
		e.b = append(e.b, ' ', ' ')
	}
}

func (e *enc) closeOpen() {
	if e.open {
		e.b = append(e.b, ">\n"...)
		e.open = false
	}
}

func (e *enc) start(name string) {
	e.closeOpen()
	e.indent()
	e.b = append(e.b, '<')
	e.b = append(e.b, name...)
	e.open = true
	e.depth++
}

func (e *enc) end(name string) {
	e.depth--
	switch {
	case e.open:
		e.b = append(e.b, "/>\n"...)
		e.open = false
	case e.text:
		e.b = append(e.b, "</"...)
		e.b = append(e.b, name...)
		e.b = append(e.b, ">\n"...)
		e.text = false
	default:
		e.indent()
		e.b = append(e.b, "</"...)
		e.b = append(e.b, name...)
		e.b = append(e.b, ">\n"...)
	}
}

// attr writes an attribute; empty values are omitted, since no attribute is meaningful empty.
func (e *enc) attr(name, value string) {
	if value == "" {
		return
	}
	e.b = append(e.b, ' ')
	e.b = append(e.b, name...)
	e.b = append(e.b, `="`...)
	e.b = escape(e.b, value)
	e.b = append(e.b, '"')
}

func (e *enc) attrNum(name string, n int64) {
	e.b = append(e.b, ' ')
	e.b = append(e.b, name...)
	e.b = append(e.b, `="`...)
	e.b = strconv.AppendInt(e.b, n, 10)
	e.b = append(e.b, '"')
}

func (e *enc) attrBool(name string, v bool) {
	e.attr(name, strconv.FormatBool(v))
}

func (e *enc) attrTime(name string, t time.Time) {
	if !t.IsZero() {
		e.attr(name, formatTime(t))
	}
}

func (e *enc) attrFlags(name string, flags []Flag) {
	if len(flags) == 0 {
		return
	}
	e.b = append(e.b, ' ')
	e.b = append(e.b, name...)
	e.b = append(e.b, `="`...)
	for i, f := range flags {
		if i > 0 {
			e.b = append(e.b, ' ')
		}
		e.b = escape(e.b, string(f))
	}
	e.b = append(e.b, '"')
}

func (e *enc) folderRef(r FolderRef) {
	e.attr("folder", r.Name)
	e.attr("folder-id", r.ID)
}

// textElem writes <name>text</name>.
func (e *enc) textElem(name, text string) {
	e.start(name)
	e.chars(text)
	e.end(name)
}

// chars writes escaped text into the current element.
func (e *enc) chars(text string) {
	if text == "" {
		return
	}
	e.b = append(e.b, '>')
	e.open = false
	e.text = true
	e.b = escapeText(e.b, text)
}

// blob writes <name>base64</name>, or nothing for a nil blob.
func (e *enc) blob(name string, data []byte) {
	if data == nil {
		return
	}
	e.start(name)
	e.blobText(data)
	e.end(name)
}

func (e *enc) blobText(data []byte) {
	if len(data) == 0 {
		return
	}
	e.b = append(e.b, '>')
	e.open = false
	e.text = true
	e.b = base64.StdEncoding.AppendEncode(e.b, data)
}

func (e *enc) ids(name string, ids []string) {
	for _, id := range ids {
		e.textElem(name, id)
	}
}

// escape appends s as XML character data safe in a double-quoted attribute. Characters XML
// cannot carry at all become U+FFFD; tab, newline and carriage return are written as
// references so they survive attribute-value normalisation.
func escape(b []byte, s string) []byte { return escapeMode(b, s, true) }

// escapeText is escape for element text, where quotes need no escaping.
func escapeText(b []byte, s string) []byte { return escapeMode(b, s, false) }

func escapeMode(b []byte, s string, attr bool) []byte {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\uFFFD"...)
			i++
			continue
		}
		switch {
		case r == '&':
			b = append(b, "&amp;"...)
		case r == '<':
			b = append(b, "&lt;"...)
		case r == '>':
			b = append(b, "&gt;"...)
		case r == '"' && attr:
			b = append(b, "&quot;"...)
		case r == '\t':
			b = append(b, "&#x9;"...)
		case r == '\n':
			b = append(b, "&#xA;"...)
		case r == '\r':
			b = append(b, "&#xD;"...)
		case r < 0x20 || r >= 0xD800 && r <= 0xDFFF || r == 0xFFFE || r == 0xFFFF:
			b = append(b, "\uFFFD"...)
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return b
}

func (e *enc) startDoc() {
	e.b = append(e.b, xmlHeader...)
	e.start("xmap")
	e.attr("xmlns", Namespace)
	e.attr("version", Version)
}

// EncodeRequest writes a batch in canonical form. It does not validate: a Go client builds
// requests from values it trusts; the server validates what it decodes.
func EncodeRequest(w io.Writer, b *Batch) error {
	var e enc
	e.startDoc()
	for _, r := range b.Requests {
		e.start(r.Command.Name())
		e.attr("id", r.ID)
		r.Command.encode(&e)
		e.end(r.Command.Name())
	}
	e.end("xmap")
	_, err := w.Write(e.b)
	return err
}

// EncodeResponse writes a response document in canonical form.
func EncodeResponse(w io.Writer, resp *BatchResponse) error {
	re := NewResponseEncoder()
	if resp.Error != nil {
		re.ProtocolError(resp.Error)
	} else {
		for i := range resp.Responses {
			re.Response(&resp.Responses[i])
		}
	}
	_, err := w.Write(re.Finish())
	return err
}

// A ResponseEncoder builds a response document in memory one result at a time, so a server
// can stream a large result (fetch) straight into the document and roll a failed result
// back. EncodeResponse uses it too, so both produce the same bytes.
type ResponseEncoder struct {
	e enc
}

// A Mark is a position in a ResponseEncoder to roll back to.
type Mark struct {
	n     int
	depth int
	open  bool
	text  bool
}

// NewResponseEncoder starts a response document.
func NewResponseEncoder() *ResponseEncoder {
	re := &ResponseEncoder{}
	re.e.startDoc()
	return re
}

// Len is the size of the document so far.
func (re *ResponseEncoder) Len() int { return len(re.e.b) }

// Mark records the current position.
func (re *ResponseEncoder) Mark() Mark {
	return Mark{n: len(re.e.b), depth: re.e.depth, open: re.e.open, text: re.e.text}
}

// Rewind drops everything written since m.
func (re *ResponseEncoder) Rewind(m Mark) {
	re.e.b = re.e.b[:m.n]
	re.e.depth, re.e.open, re.e.text = m.depth, m.open, m.text
}

// Response writes one complete result or error.
func (re *ResponseEncoder) Response(r *Response) {
	e := &re.e
	e.start(r.Name)
	e.attr("id", r.ID)
	switch {
	case r.Err != nil:
		writeError(e, r.Err.Code, r.Err.Message)
	case r.Result != nil:
		r.Result.encode(e)
	}
	e.end(r.Name)
}

// ProtocolError writes a document-level error. It must be the only thing in the document.
func (re *ResponseEncoder) ProtocolError(pe *ProtocolError) {
	writeError(&re.e, pe.Code, pe.Message)
}

func writeError(e *enc, code ErrorCode, msg string) {
	e.start("error")
	e.attr("code", string(code))
	e.chars(msg)
	e.end("error")
}

// StartFetch opens the result of fetch request id; FetchMessage and EndFetch complete it.
func (re *ResponseEncoder) StartFetch(id string) {
	re.e.start((*Fetch)(nil).Name())
	re.e.attr("id", id)
}

// FetchMessage writes one fetched message inside an open fetch result.
func (re *ResponseEncoder) FetchMessage(m *Message) {
	m.encode(&re.e)
}

// EndFetch writes the ids not found and deferred, and closes the fetch result.
func (re *ResponseEncoder) EndFetch(notFound, deferred []string) {
	re.e.ids("not-found", notFound)
	re.e.ids("deferred", deferred)
	re.e.end((*Fetch)(nil).Name())
}

// Finish closes the document and returns it. The encoder must not be used afterwards.
func (re *ResponseEncoder) Finish() []byte {
	re.e.end("xmap")
	return re.e.b
}

// MessageSize estimates the bytes a fetched message adds to a response, to check a budget
// before encoding it.
func MessageSize(m *Message) int {
	n := 256 + base64.StdEncoding.EncodedLen(len(m.Body)) + base64.StdEncoding.EncodedLen(len(m.Summary))
	for _, f := range m.Flags {
		n += len(f) + 1
	}
	return n
}
