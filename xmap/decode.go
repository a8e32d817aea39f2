package xmap

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Decoding is two passes. readTree streams tokens from an xml.Decoder into a small element
// tree, enforcing every limit that protects the server as it goes (bytes, depth, tokens,
// attribute and text sizes) and refusing DTDs, entities and processing instructions; no
// schema knowledge beyond text sizes is needed there. The typed pass then maps the tree
// onto Commands or Results, rejecting anything unknown.

// A node is one element of a decoded document, namespace already checked.
type node struct {
	name  string
	attrs []xml.Attr // unprefixed attributes only; namespace declarations dropped
	kids  []*node
	text  []byte // text of a text element; nil for containers
	line  int
}

// errReadLimit marks the document passing its size limit inside the xml.Decoder.
var errReadLimit = errors.New("xmap: document size limit")

// limitReader fails with errReadLimit once more than n bytes were read, so an oversized
// document is refused while it streams in, not after it was buffered.
type limitReader struct {
	r   io.Reader
	n   int64
	err error // the first error from r other than io.EOF
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		return 0, errReadLimit
	}
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.n < 0 {
		return n, errReadLimit
	}
	if err != nil && err != io.EOF {
		l.err = err
	}
	return n, err
}

// textLimit is the largest text an element may hold; 0 makes it a container that holds
// only elements and white space. Base64 limits leave room for line breaks.
func textLimit(name string) int {
	switch name {
	case "body", "plaintext-body":
		return b64Limit(MaxMessageSize)
	case "summary", "sent-summary":
		return b64Limit(MaxSummarySize)
	case "contact":
		return b64Limit(MaxContactSize)
	case "public-key", "sealed-key", "key":
		return b64Limit(MaxKeySize)
	case "login-key":
		return b64Limit(LoginKeySize)
	case "id", "address", "not-found", "deferred":
		return MaxShortText
	case "error":
		return MaxErrorMessage
	}
	return 0
}

func b64Limit(n int) int {
	enc := (n + 2) / 3 * 4
	return enc + enc/32 + 64
}

func isXMLSpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// tokenSource is what readTokens reads: an *xml.Decoder, or fastTokens.
type tokenSource interface {
	Token() (xml.Token, error)
	InputPos() (line, column int)
}

// readTree reads one XMAP document of at most maxSize bytes.
func readTree(r io.Reader, maxSize int64) (*node, *ProtocolError) {
	lr := &limitReader{r: r, n: maxSize}
	d := xml.NewDecoder(lr)
	d.Strict = true
	// No CharsetReader: a non-UTF-8 encoding declaration is an error. No Entity map: only
	// the five predefined entities and character references are accepted.
	return readTokens(d, false, func(err error) *ProtocolError {
		switch {
		case errors.Is(err, errReadLimit):
			return protocolErrorf(CodeTooLarge, "document larger than %d bytes", maxSize)
		case lr.err != nil && errors.Is(err, lr.err):
			return protocolErrorf(CodeInternal, "reading the document failed")
		}
		var se *xml.SyntaxError
		if errors.As(err, &se) {
			return protocolErrorf(CodeBadRequest, "line %d: malformed XML: %s", se.Line, se.Msg)
		}
		line, _ := d.InputPos()
		return protocolErrorf(CodeBadRequest, "line %d: %s", line, strings.TrimPrefix(err.Error(), "xml: "))
	})
}

// readTreeBytes is readTree of a document held in memory: fastTokens first, and
// encoding/xml when the document is not plain (see fastTokens), so the result is always
// the one readTree gives. The tree may share doc's bytes: doc must not change while it is
// used.
func readTreeBytes(doc []byte, maxSize int64) (*node, *ProtocolError) {
	if int64(len(doc)) <= maxSize {
		notPlain := false
		root, perr := readTokens(newFastTokens(doc), true, func(error) *ProtocolError {
			notPlain = true // fastTokens fails with errNotPlain only
			return nil
		})
		if !notPlain {
			return root, perr
		}
	}
	return readTree(bytes.NewReader(doc), maxSize)
}

// readTokens builds the tree from ts, enforcing the limits; tokenErr maps an error from
// ts.Token other than io.EOF to what readTokens returns. With stableText the CharData
// tokens stay valid and unchanged while the tree is used (they are slices of a document in
// memory), so text nodes may share them instead of copying.
func readTokens(ts tokenSource, stableText bool, tokenErr func(error) *ProtocolError) (*node, *ProtocolError) {
	var (
		root   *node
		stack  []*node
		tokens int
		ended  bool
	)
	for {
		tok, err := ts.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, tokenErr(err)
		}
		tokens++
		if tokens > MaxTokens {
			return nil, protocolErrorf(CodeLimitExceeded, "more than %d XML tokens", MaxTokens)
		}
		line, _ := ts.InputPos()
		switch t := tok.(type) {
		case xml.ProcInst:
			// encoding/xml already refuses XML versions other than 1.0 and non-UTF-8
			// encodings; the declaration must come first, as XML requires.
			if t.Target != "xml" || tokens != 1 {
				return nil, protocolErrorf(CodeBadRequest, "line %d: processing instructions are not allowed", line)
			}
		case xml.Directive:
			// <!DOCTYPE ...> and any other declaration: no DTD, so no entity can be
			// defined, internal (billion laughs) or external (XXE).
			return nil, protocolErrorf(CodeBadRequest, "line %d: DTDs and declarations are not allowed", line)
		case xml.Comment:
		case xml.CharData:
			if len(stack) == 0 {
				if !isXMLSpace(t) {
					return nil, protocolErrorf(CodeBadRequest, "line %d: text outside the root element", line)
				}
				continue
			}
			top := stack[len(stack)-1]
			limit := textLimit(top.name)
			if limit == 0 {
				if !isXMLSpace(t) {
					return nil, protocolErrorf(CodeBadRequest, "line %d: <%s> holds no text", line, top.name)
				}
				continue
			}
			if len(top.text)+len(t) > limit {
				return nil, protocolErrorf(CodeTooLarge, "line %d: <%s> text larger than %d bytes", line, top.name, limit)
			}
			if stableText && top.text == nil {
				top.text = t[:len(t):len(t)] // no copy; an append would make one
			} else {
				top.text = append(top.text, t...)
			}
		case xml.StartElement:
			if len(stack) >= MaxDepth {
				return nil, protocolErrorf(CodeLimitExceeded, "line %d: elements nested deeper than %d", line, MaxDepth)
			}
			if ended {
				return nil, protocolErrorf(CodeBadRequest, "line %d: more than one root element", line)
			}
			n, perr := newNode(t, line, root == nil)
			if perr != nil {
				return nil, perr
			}
			if root == nil {
				root = n
			} else {
				parent := stack[len(stack)-1]
				if textLimit(parent.name) != 0 {
					return nil, protocolErrorf(CodeBadRequest, "line %d: <%s> holds no elements", line, parent.name)
				}
				parent.kids = append(parent.kids, n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			// encoding/xml checks that end tags match.
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				ended = true
			}
		}
	}
	if root == nil {
		return nil, protocolErrorf(CodeBadRequest, "empty document")
	}
	return root, nil
}

// newNode checks an element's namespace and attributes. The root element also carries the
// version check, so a newer client gets unsupported-version before anything else.
func newNode(t xml.StartElement, line int, isRoot bool) (*node, *ProtocolError) {
	name := t.Name.Local
	if t.Name.Space != Namespace {
		if isRoot && strings.HasPrefix(t.Name.Space, namespacePrefix) {
			return nil, protocolErrorf(CodeUnsupportedVersion, "namespace %q is not supported; this server speaks %s", clip(t.Name.Space), Namespace)
		}
		return nil, protocolErrorf(CodeBadRequest, "line %d: element <%s> is not in namespace %s", line, clip(name), Namespace)
	}
	if isRoot && name != "xmap" {
		return nil, protocolErrorf(CodeBadRequest, "line %d: root element must be <xmap>, not <%s>", line, clip(name))
	}
	if len(t.Attr) > MaxAttributes {
		return nil, protocolErrorf(CodeLimitExceeded, "line %d: <%s> has more than %d attributes", line, clip(name), MaxAttributes)
	}
	n := &node{name: name, line: line}
	if len(t.Attr) > 0 {
		n.attrs = make([]xml.Attr, 0, len(t.Attr))
	}
	for _, a := range t.Attr {
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			continue
		}
		if a.Name.Space != "" {
			return nil, protocolErrorf(CodeBadRequest, "line %d: <%s>: namespaced attribute %q not allowed", line, clip(name), clip(a.Name.Local))
		}
		if len(a.Value) > MaxAttributeSize {
			return nil, protocolErrorf(CodeTooLarge, "line %d: <%s>: attribute %q larger than %d bytes", line, clip(name), clip(a.Name.Local), MaxAttributeSize)
		}
		for _, b := range n.attrs {
			if b.Name.Local == a.Name.Local {
				return nil, protocolErrorf(CodeBadRequest, "line %d: <%s>: duplicate attribute %q", line, clip(name), clip(a.Name.Local))
			}
		}
		n.attrs = append(n.attrs, a)
	}
	if isRoot {
		// The version first: a newer document may carry root attributes this version
		// does not know.
		v, ok := "", false
		for _, a := range n.attrs {
			if a.Name.Local == "version" {
				v, ok = a.Value, true
			}
		}
		if !ok {
			return nil, protocolErrorf(CodeBadRequest, "line %d: <xmap>: missing version attribute", line)
		}
		if v != Version {
			return nil, protocolErrorf(CodeUnsupportedVersion, "version %q is not supported; this server speaks version %s", clip(v), Version)
		}
		for _, a := range n.attrs {
			if a.Name.Local != "version" {
				return nil, protocolErrorf(CodeBadRequest, "line %d: <xmap>: unknown attribute %q", line, clip(a.Name.Local))
			}
		}
	}
	return n, nil
}

// clip bounds client-supplied names quoted in error texts.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// DecodeRequest reads and validates a request document. On failure it returns a
// *ProtocolError (and nothing in the batch may run). A successfully decoded batch is fully
// valid: every field has the syntax docs/XMAP.md gives it.
func DecodeRequest(r io.Reader) (*Batch, error) {
	root, perr := readTree(r, MaxDocumentSize)
	if perr != nil {
		return nil, perr
	}
	return decodeRequest(root)
}

// DecodeRequestBytes is DecodeRequest of a document already in memory, as a transport
// has it; it gives the same results, faster for the plain XML encoders write.
func DecodeRequestBytes(doc []byte) (*Batch, error) {
	root, perr := readTreeBytes(doc, MaxDocumentSize)
	if perr != nil {
		return nil, perr
	}
	return decodeRequest(root)
}

func decodeRequest(root *node) (*Batch, error) {
	if len(root.kids) > MaxBatchSize {
		return nil, protocolErrorf(CodeLimitExceeded, "more than %d requests in one document", MaxBatchSize)
	}
	st := &dstate{}
	b := &Batch{}
	ids := make(map[string]bool, len(root.kids))
	for _, k := range root.kids {
		newCommand, ok := commands[k.name]
		if !ok {
			return nil, protocolErrorf(CodeBadRequest, "line %d: unknown request <%s>", k.line, clip(k.name))
		}
		e := st.elem(k)
		id := e.id("id", true)
		if st.err == nil && ids[id] {
			e.fail(CodeBadRequest, "request id %q used twice", id)
		}
		ids[id] = true
		c := newCommand()
		c.decode(e)
		e.finish()
		if st.err != nil {
			return nil, st.err
		}
		b.Requests = append(b.Requests, Request{ID: id, Command: c})
	}
	return b, nil
}

// DecodeResponse reads a response document, as a client does. A document-level error sent
// by the server is returned in BatchResponse.Error, not as an error: the error return is for
// a response that is itself malformed (a *ProtocolError).
func DecodeResponse(r io.Reader) (*BatchResponse, error) {
	root, perr := readTree(r, MaxResponseSize)
	if perr != nil {
		return nil, perr
	}
	return decodeResponse(root)
}

// DecodeResponseBytes is DecodeResponse of a document already in memory; it gives the
// same results, faster for the plain XML encoders write.
func DecodeResponseBytes(doc []byte) (*BatchResponse, error) {
	root, perr := readTreeBytes(doc, MaxResponseSize)
	if perr != nil {
		return nil, perr
	}
	return decodeResponse(root)
}

func decodeResponse(root *node) (*BatchResponse, error) {
	st := &dstate{}
	resp := &BatchResponse{}
	for i, k := range root.kids {
		if k.name == "error" {
			if len(root.kids) != 1 || i != 0 {
				return nil, protocolErrorf(CodeBadRequest, "line %d: a document-level <error> must be alone", k.line)
			}
			e := st.elem(k)
			code, msg := e.errorBody()
			e.finish()
			if st.err != nil {
				return nil, st.err
			}
			resp.Error = &ProtocolError{Code: code, Message: msg}
			return resp, nil
		}
		newResult, ok := results[k.name]
		if !ok {
			return nil, protocolErrorf(CodeBadRequest, "line %d: unknown result <%s>", k.line, clip(k.name))
		}
		e := st.elem(k)
		r := Response{Name: k.name, ID: e.id("id", true)}
		if len(k.kids) > 0 && k.kids[0].name == "error" {
			if len(k.kids) != 1 {
				e.fail(CodeBadRequest, "<error> must be the only child")
			}
			ee := st.elem(k.kids[0])
			code, msg := ee.errorBody()
			ee.finish()
			r.Err = &Error{Code: code, Message: msg}
		} else {
			r.Result = newResult()
			r.Result.decode(e)
		}
		e.finish()
		if st.err != nil {
			return nil, st.err
		}
		resp.Responses = append(resp.Responses, r)
	}
	return resp, nil
}

// errorBody decodes <error code="...">text</error>. Unknown codes are kept: a client treats
// a code it does not know like internal.
func (e *elem) errorBody() (ErrorCode, string) {
	code := e.str("code", true)
	if e.st.err == nil && !validCode(code) {
		e.fail(CodeBadRequest, "invalid error code %q", clip(code))
	}
	return ErrorCode(code), string(e.n.text)
}

func validCode(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// dstate carries the first error of a typed decoding pass.
type dstate struct {
	err *ProtocolError
}

func (st *dstate) elem(n *node) *elem {
	return &elem{st: st, n: n, used: make([]bool, len(n.attrs))}
}

// elem is a typed view of a node: each accessor marks what it used, finish rejects the rest.
type elem struct {
	st   *dstate
	n    *node
	used []bool
}

func (e *elem) fail(code ErrorCode, format string, args ...any) {
	if e.st.err == nil {
		e.st.err = &ProtocolError{Code: code, Message: fmt.Sprintf("line %d: <%s>: ", e.n.line, e.n.name) + fmt.Sprintf(format, args...)}
	}
}

func (e *elem) failed() bool { return e.st.err != nil }

// finish rejects attributes nothing asked for.
func (e *elem) finish() {
	for i, u := range e.used {
		if !u {
			e.fail(CodeBadRequest, "unknown attribute %q", clip(e.n.attrs[i].Name.Local))
			return
		}
	}
}

// attr returns an attribute and marks it used.
func (e *elem) attr(name string) (string, bool) {
	for i, a := range e.n.attrs {
		if a.Name.Local == name {
			e.used[i] = true
			return a.Value, true
		}
	}
	return "", false
}

// str returns an attribute's raw value, failing if it is required and absent or empty.
func (e *elem) str(name string, required bool) string {
	v, ok := e.attr(name)
	if required && (!ok || v == "") {
		e.fail(CodeBadRequest, "missing attribute %q", name)
	}
	return v
}

// each calls f for every child element, then rejects its unused attributes. A child name f
// does not know must be reported by f with unknownChild.
func (e *elem) each(f func(c *elem)) {
	for _, k := range e.n.kids {
		if e.failed() {
			return
		}
		c := e.st.elem(k)
		f(c)
		c.finish()
	}
}

func (e *elem) unknownChild() {
	e.fail(CodeBadRequest, "unexpected element")
}

// noKids fails if the element has child elements.
func (e *elem) noKids() {
	if len(e.n.kids) > 0 {
		e.st.elem(e.n.kids[0]).unknownChild()
	}
}

// once fails when a single-valued child appears twice; seen is the caller's flag.
func (e *elem) once(seen *bool) bool {
	if *seen {
		e.fail(CodeBadRequest, "element given twice")
		return false
	}
	*seen = true
	return true
}
