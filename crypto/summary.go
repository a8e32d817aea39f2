package crypto

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"mime"
	netmail "net/mail"
	"strings"
	"time"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // registers message.CharsetReader for non-UTF-8 charsets
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// Summary is the small description of a message that clients list mail from.
// It is stored as JSON (see MarshalSummary), encrypted separately from the
// message body. All strings are valid UTF-8 without control characters.
type Summary struct {
	From           string    `json:"from"`
	To             []string  `json:"to,omitempty"`
	Cc             []string  `json:"cc,omitempty"`
	Subject        string    `json:"subject"`
	Date           time.Time `json:"date,omitzero"`
	MessageID      string    `json:"message_id,omitempty"`
	Snippet        string    `json:"snippet"`
	HasAttachments bool      `json:"has_attachments"`
}

// Limits that keep a summary small and its extraction cheap whatever the
// message looks like.
const (
	SnippetRunes        = 200 // runes in Summary.Snippet at most
	MaxSummaryAddresses = 100 // entries in Summary.To and Summary.Cc at most

	maxFromAddresses = 10
	maxSubjectRunes  = 1000
	maxNameRunes     = 200
	maxAddrRunes     = 320
	maxMessageIDRune = 250

	maxHeaderBytes  = 256 << 10 // header bytes parsed; the rest is ignored
	maxHeaderFields = 1000
	maxPlainBytes   = 64 << 10  // decoded bytes of a text/plain part read for the snippet
	maxHTMLBytes    = 512 << 10 // decoded bytes of a text/html part (style sheets come first)
	maxDepth        = 12        // nesting of multiparts
	maxParts        = 256       // MIME parts looked at
)

// ExtractSummary reads the headers and the first text part of a raw RFC 5322
// message. It never fails: for malformed input (broken headers or multipart
// boundaries, unknown charsets, bad base64 or quoted-printable, NUL bytes,
// bare LF line endings) it returns whatever it could read. It decodes only the
// part it takes the snippet from, and only its first few kilobytes.
func ExtractSummary(raw []byte) (sm Summary) {
	defer func() {
		// A last line of defence for the delivery path: a decoder bug must not
		// take the server down or lose the mail. The fields set so far are kept.
		if v := recover(); v != nil {
			slog.Error("crypto: summary extraction panicked; summary is partial", "size", len(raw))
		}
	}()
	extractInto(&sm, raw)
	return sm
}

// extractInto fills sm from raw. Tests call it without ExtractSummary's
// recover so that fuzzing sees panics.
func extractInto(sm *Summary, raw []byte) {
	hdr, body := splitHeader(raw)
	h := parseHeader(hdr)
	mh := mail.Header{Header: message.Header{Header: h}}

	sm.From = strings.Join(addressList(&mh, "From", maxFromAddresses), ", ")
	sm.To = addressList(&mh, "To", MaxSummaryAddresses)
	sm.Cc = addressList(&mh, "Cc", MaxSummaryAddresses)
	subject, err := mh.Subject()
	if err != nil {
		subject = decodeWords(mh.Get("Subject"))
	}
	sm.Subject = cleanText(subject, maxSubjectRunes)
	sm.Date = headerDate(&mh)
	sm.MessageID = messageID(&mh)

	w := walker{}
	w.walk(h, bytes.NewReader(body), body, 0, "", 0)
	sm.Snippet = w.plain
	if sm.Snippet == "" {
		sm.Snippet = w.html
	}
	sm.HasAttachments = w.attachment
}

// splitHeader splits raw at the first empty line (CRLF or bare LF).
func splitHeader(raw []byte) (hdr, body []byte) {
	pos := 0
	for pos < len(raw) {
		nl := bytes.IndexByte(raw[pos:], '\n')
		if nl < 0 {
			break
		}
		line := raw[pos : pos+nl]
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return raw[:pos], raw[pos+nl+1:]
		}
		pos += nl + 1
	}
	return raw, nil
}

// parseHeader parses a header section leniently: lines that are not
// "Name: value" fields (an mbox "From " line, garbage) are dropped with their
// continuation lines instead of ending the parse, and size is bounded.
func parseHeader(hdr []byte) textproto.Header {
	if len(hdr) > maxHeaderBytes {
		hdr = hdr[:maxHeaderBytes]
		if i := bytes.LastIndexByte(hdr, '\n'); i >= 0 {
			hdr = hdr[:i+1]
		}
	}
	var clean bytes.Buffer
	clean.Grow(len(hdr) + 64)
	keep, fields := false, 0
	for line := range bytes.Lines(hdr) {
		line = bytes.TrimRight(line, "\r\n")
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			if keep {
				clean.WriteString("\r\n")
				clean.Write(line)
			}
			continue
		}
		if keep {
			clean.WriteString("\r\n")
		}
		keep = fields < maxHeaderFields && validFieldLine(line)
		if keep {
			fields++
			clean.Write(line)
		}
	}
	if keep {
		clean.WriteString("\r\n")
	}
	clean.WriteString("\r\n")
	// Errors are not expected after the clean-up; a partial header is still
	// returned if one happens.
	h, _ := textproto.ReadHeader(bufio.NewReader(&clean))
	return h
}

// validFieldLine reports whether line starts a header field with a
// well-formed name (RFC 5322 section 2.2).
func validFieldLine(line []byte) bool {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return false
	}
	name := bytes.TrimRight(line[:i], " \t")
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// addressList renders the addresses of every key field as "Name <addr>" or
// "addr". Unparseable lists are salvaged entry by entry.
func addressList(h *mail.Header, key string, limit int) []string {
	var out []string
	for _, v := range h.Values(key) {
		v = toUTF8(v) // raw 8-bit Latin-1 would otherwise reach net/mail
		addrs, err := mail.ParseAddressList(v)
		if err != nil {
			// Again with encoded words in unknown charsets decoded as well
			// as they can be.
			addrs, err = (&netmail.AddressParser{WordDecoder: &lenientWords}).ParseList(v)
		}
		if err == nil {
			for _, a := range addrs {
				out = appendNonEmpty(out, formatAddress(a))
			}
		} else {
			for piece := range strings.SplitSeq(v, ",") {
				if a, err := mail.ParseAddress(piece); err == nil {
					out = appendNonEmpty(out, formatAddress(a))
				} else {
					out = appendNonEmpty(out, salvageAddress(piece))
				}
				if len(out) >= limit {
					break
				}
			}
		}
		if len(out) >= limit {
			return out[:limit]
		}
	}
	return out
}

// salvageAddress renders an entry net/mail refused: "Name <addr>" when an
// angle-bracketed address can be found, the cleaned text otherwise.
func salvageAddress(piece string) string {
	s := decodeWords(piece)
	if lt := strings.LastIndexByte(s, '<'); lt >= 0 {
		if gt := strings.IndexByte(s[lt:], '>'); gt > 0 && strings.Contains(s[lt:lt+gt], "@") {
			name := strings.Trim(s[:lt], " \t\"'")
			return formatAddress(&mail.Address{Name: name, Address: strings.TrimSpace(s[lt+1 : lt+gt])})
		}
	}
	return cleanText(s, maxNameRunes+maxAddrRunes)
}

func appendNonEmpty(list []string, s string) []string {
	if s == "" {
		return list
	}
	return append(list, s)
}

func formatAddress(a *mail.Address) string {
	name := cleanText(a.Name, maxNameRunes)
	addr := cleanText(a.Address, maxAddrRunes)
	switch {
	case name == "" || name == addr:
		return addr
	case addr == "":
		return name
	default:
		return name + " <" + addr + ">"
	}
}

// lenientWords decodes RFC 2047 encoded words; a word in a charset nobody
// knows is read as UTF-8 if it is valid UTF-8 and as Windows-1252 otherwise,
// rather than left encoded.
var lenientWords = mime.WordDecoder{CharsetReader: lenientCharsetReader}

func lenientCharsetReader(charset string, r io.Reader) (io.Reader, error) {
	if message.CharsetReader != nil {
		// charset.Reader looks the charset up before it reads anything, so r
		// is still whole when it fails.
		if cr, err := message.CharsetReader(charset, r); err == nil && cr != nil {
			return cr, nil
		}
	}
	b, err := io.ReadAll(io.LimitReader(r, maxHeaderBytes))
	if err != nil {
		return nil, err
	}
	return strings.NewReader(bytesToUTF8(b, false)), nil
}

// decodeWords decodes RFC 2047 encoded words; on failure s comes back as is.
func decodeWords(s string) string {
	if d, err := lenientWords.DecodeHeader(s); err == nil {
		return d
	}
	return s
}

// headerDate parses the Date field; zero when absent, unreadable, or not
// representable in JSON (year outside 0..9999 and the like).
func headerDate(h *mail.Header) time.Time {
	d, err := h.Date()
	if err != nil || d.IsZero() {
		return time.Time{}
	}
	if _, err := d.MarshalJSON(); err != nil {
		return time.Time{}
	}
	return d
}

// messageID returns the Message-ID without angle brackets.
func messageID(h *mail.Header) string {
	id, err := h.MessageID()
	if err != nil {
		id = strings.TrimSpace(h.Get("Message-Id"))
		id = strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">")
	}
	return cleanText(id, maxMessageIDRune)
}

// walker visits MIME parts to find the snippet text and attachments.
type walker struct {
	parts      int
	plain      string // snippet from the first non-empty text/plain part
	html       string // snippet from the first non-empty text/html part
	attachment bool
}

func (w *walker) done() bool {
	return w.parts >= maxParts || (w.plain != "" && w.attachment)
}

// walk visits one entity. raw is the entity's undecoded body when it is
// available as a whole (the top level), which lets a broken multipart be
// retried; index is the entity's position in its parent multipart.
func (w *walker) walk(h textproto.Header, body io.Reader, raw []byte, depth int, parent string, index int) {
	w.parts++
	mt, params := contentType(h, parent)
	if strings.HasPrefix(mt, "multipart/") {
		if depth < maxDepth {
			w.walkMultipart(mt, params["boundary"], body, raw, depth)
		}
		return
	}
	disp, dparams := parseParams(h.Get("Content-Disposition"))
	if isAttachment(mt, params, disp, dparams, parent, index) {
		w.attachment = true
		return
	}
	switch {
	case mt == "text/plain" && w.plain == "":
		w.plain = plainSnippet(readText(h, params, body, maxPlainBytes))
	case mt == "text/html" && w.plain == "" && w.html == "":
		w.html = htmlSnippet(readText(h, params, body, maxHTMLBytes))
	}
}

func (w *walker) walkMultipart(mt, boundary string, body io.Reader, raw []byte, depth int) {
	n := w.readParts(mt, boundary, body, depth)
	if n > 0 || raw == nil {
		return
	}
	// Not one part could be read: the boundary parameter is missing or does
	// not match the body. Retry with the first delimiter-looking line.
	if g := guessBoundary(raw); g != "" && g != boundary {
		n = w.readParts(mt, g, bytes.NewReader(raw), depth)
	}
	if n == 0 && w.plain == "" {
		w.plain = plainSnippet(bytesToUTF8(raw[:min(len(raw), maxPlainBytes)], false))
	}
}

// readParts walks the parts of one multipart body and returns how many it
// could read. It stops at the first framing error, keeping what it found.
func (w *walker) readParts(mt, boundary string, body io.Reader, depth int) int {
	if boundary == "" {
		return 0
	}
	mr := textproto.NewMultipartReader(body, boundary)
	n := 0
	for !w.done() {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		w.walk(p.Header, p, nil, depth+1, mt, n)
		n++
	}
	return n
}

// guessBoundary returns the boundary of the first line that looks like a
// multipart delimiter ("--" and 1 to 70 boundary characters).
func guessBoundary(raw []byte) string {
	for line := range bytes.Lines(raw[:min(len(raw), maxHeaderBytes)]) {
		line = bytes.TrimRight(line, " \t\r\n")
		if len(line) < 3 || line[0] != '-' || line[1] != '-' {
			continue
		}
		b := bytes.TrimSuffix(line[2:], []byte("--"))
		if len(b) == 0 || len(b) > 70 {
			continue
		}
		ok := true
		for _, c := range b {
			if c < 32 || c > 126 {
				ok = false
				break
			}
		}
		if ok {
			return string(b)
		}
	}
	return ""
}

// contentType returns the lower-cased media type (with RFC 2045 defaults)
// and its parameters.
func contentType(h textproto.Header, parent string) (string, map[string]string) {
	v := h.Get("Content-Type")
	if strings.TrimSpace(v) == "" {
		if parent == "multipart/digest" {
			return "message/rfc822", nil
		}
		return "text/plain", nil
	}
	mt, params := parseParams(v)
	if typ, sub, ok := strings.Cut(mt, "/"); !ok || typ == "" || sub == "" {
		// RFC 2045 section 5.2: an invalid Content-Type means text/plain.
		return "text/plain", params
	}
	return mt, params
}

// parseParams parses "value; k=v; ..." (Content-Type, Content-Disposition),
// falling back to a forgiving split when the strict parser refuses it.
func parseParams(v string) (string, map[string]string) {
	if strings.TrimSpace(v) == "" {
		return "", nil
	}
	if mt, params, err := mime.ParseMediaType(v); err == nil {
		return mt, params
	}
	first, rest, _ := strings.Cut(v, ";")
	mt := strings.ToLower(strings.TrimSpace(first))
	params := make(map[string]string)
	for p := range strings.SplitSeq(rest, ";") {
		k, val, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		val = strings.Trim(strings.TrimSpace(val), `"'`)
		if _, dup := params[k]; k != "" && !dup {
			params[k] = val
		}
	}
	return mt, params
}

// isAttachment decides whether a leaf part is something a user would call an
// attachment, as opposed to body text, an inline resource of an HTML body,
// or the signature of a signed message.
func isAttachment(mt string, params map[string]string, disp string, dparams map[string]string, parent string, index int) bool {
	switch {
	case parent == "multipart/signed" && index > 0, parent == "multipart/encrypted":
		// The signature of a signed message, the parts of an encrypted one.
		return false
	case disp == "attachment":
		return true
	case parent == "multipart/related" && index > 0:
		return false
	case mt == "message/rfc822" || mt == "message/global":
		return true
	case dparams["filename"] != "" || dparams["filename*"] != "" || params["name"] != "" || params["name*"] != "":
		return true
	case strings.HasPrefix(mt, "text/") || strings.HasPrefix(mt, "message/"):
		return false
	default:
		return true
	}
}

// readText decodes (transfer encoding, then charset) at most limit bytes of a
// text part and returns them as valid UTF-8.
func readText(h textproto.Header, params map[string]string, body io.Reader, limit int64) string {
	cs := strings.ToLower(strings.TrimSpace(params["charset"]))
	cte, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))), ";")

	// A fresh, well-formed header for go-message, so that a sloppy
	// Content-Type (already parsed leniently above) does not stop decoding.
	var th textproto.Header
	ct := "text/plain"
	if cs != "" {
		if f := mime.FormatMediaType("text/plain", map[string]string{"charset": cs}); f != "" {
			ct = f
		} else {
			cs = ""
		}
	}
	th.Set("Content-Type", ct)
	if cte = strings.TrimSpace(cte); cte != "" {
		th.Set("Content-Transfer-Encoding", cte)
	}
	e, err := message.New(message.Header{Header: th}, body)
	// Read errors (bad base64, a broken quoted-printable escape) keep the
	// text decoded before them.
	buf, _ := io.ReadAll(io.LimitReader(e.Body, limit))

	declaredUTF8 := cs == "utf-8" || cs == "utf8"
	converted := cs != "" && cs != "us-ascii" && !declaredUTF8 && !message.IsUnknownCharset(err)
	return bytesToUTF8(buf, declaredUTF8 || converted)
}
