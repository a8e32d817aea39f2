package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cmcrypto "cryptomail/crypto"
	"cryptomail/xmap"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // decode non-UTF-8 parts
	"github.com/emersion/go-message/mail"
)

// Summary is a decrypted message summary (docs/XMAP.md, "Encrypted data").
type Summary struct {
	From           string    `json:"from"`
	To             []string  `json:"to"`
	Cc             []string  `json:"cc"`
	Subject        string    `json:"subject"`
	Date           time.Time `json:"date"` // zero when the message had none
	MessageID      string    `json:"message_id"`
	Snippet        string    `json:"snippet"`
	HasAttachments bool      `json:"has_attachments"`
}

// DecryptSummary decrypts an encrypted summary with the session's key. Unknown fields are
// ignored and missing ones left empty, as XMAP.md asks of readers.
func (s *Session) DecryptSummary(blob []byte) (*Summary, error) {
	e, err := s.privateKey()
	if err != nil {
		return nil, err
	}
	js, err := cmcrypto.Decrypt(openpgp.EntityList{e}, blob)
	if err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	defer clear(js)
	var raw struct {
		From           string   `json:"from"`
		To             []string `json:"to"`
		Cc             []string `json:"cc"`
		Subject        string   `json:"subject"`
		Date           string   `json:"date"`
		MessageID      string   `json:"message_id"`
		Snippet        string   `json:"snippet"`
		HasAttachments bool     `json:"has_attachments"`
	}
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	sm := &Summary{From: raw.From, To: raw.To, Cc: raw.Cc, Subject: raw.Subject,
		MessageID: strings.Trim(raw.MessageID, "<>"), Snippet: raw.Snippet, HasAttachments: raw.HasAttachments}
	if t, err := time.Parse(time.RFC3339, raw.Date); err == nil {
		sm.Date = t
	}
	return sm, nil
}

// Listed is a message of a listing: its metadata and decrypted summary. Summary is nil
// when the message has none or SummaryErr says why it could not be read.
type Listed struct {
	xmap.Message
	Summary    *Summary
	SummaryErr error
}

// Page is one decrypted page of a folder.
type Page struct {
	FolderID   string
	Total      int
	State      string
	NextCursor string
	Messages   []Listed
}

// ListOptions select a page: zero values mean newest first, the server's page size, the
// first page.
type ListOptions struct {
	Sort   xmap.Sort
	Limit  int
	Cursor string
}

// List lists one page of a folder and decrypts the summaries. A summary already decrypted
// in this session, from the same ciphertext for the same message id, comes from the
// session's in-memory cache (Options.SummaryCacheSize) instead of being decrypted again.
func (s *Session) List(ctx context.Context, folder xmap.FolderRef, o ListOptions) (*Page, error) {
	if _, err := s.privateKey(); err != nil {
		return nil, err
	}
	r, err := s.ListMessages(ctx, &xmap.ListMessages{Folder: folder, Sort: o.Sort, Limit: o.Limit, Cursor: o.Cursor})
	if err != nil {
		return nil, err
	}
	p := &Page{FolderID: r.FolderID, Total: r.Total, State: r.State, NextCursor: r.NextCursor}
	p.Messages = s.listedAll(r.Messages)
	return p, nil
}

// listedAll decrypts a page's summaries on up to GOMAXPROCS goroutines: each costs a
// public-key decryption (tens of microseconds), and a first page has 50 of them.
func (s *Session) listedAll(ms []xmap.Message) []Listed {
	if len(ms) == 0 {
		return nil
	}
	out := make([]Listed, len(ms))
	workers := min(runtime.GOMAXPROCS(0), len(ms))
	if workers <= 1 {
		for i, m := range ms {
			out[i] = s.listed(m)
		}
		return out
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(ms); i = int(next.Add(1) - 1) {
				out[i] = s.listed(ms[i])
			}
		}()
	}
	wg.Wait()
	return out
}

func (s *Session) listed(m xmap.Message) Listed {
	l := Listed{Message: m}
	l.Summary, l.SummaryErr = nil, nil
	if len(m.Summary) > 0 {
		if sm, ok := s.summaries.get(m.ID, m.Summary); ok {
			l.Summary = sm
		} else if l.Summary, l.SummaryErr = s.DecryptSummary(m.Summary); l.SummaryErr == nil {
			s.summaries.put(m.ID, m.Summary, l.Summary)
		}
	}
	l.Message.Summary, l.Message.Body = nil, nil
	return l
}

// SignatureStatus says what a message's OpenPGP signature proved.
type SignatureStatus string

const (
	SignatureNone       SignatureStatus = "none"        // not signed (or not end-to-end encrypted)
	SignatureVerified   SignatureStatus = "verified"    // signed by the key of the From address
	SignatureUnknownKey SignatureStatus = "unknown-key" // signed by a key this client does not have
	SignatureBad        SignatureStatus = "bad"         // the signature does not verify, or is not From's key
)

// Signature is the outcome of checking a message's signature.
type Signature struct {
	Status SignatureStatus
	Signer string // fingerprint (verified) or key id (unknown-key, bad) of the signing key
	Reason string // for SignatureBad: why
}

// Message is a decrypted message.
type Message struct {
	ID       string
	FolderID string
	Flags    []xmap.Flag
	Size     int64
	Received time.Time

	From      string
	To, Cc    []string
	Subject   string
	Date      time.Time
	MessageID string // without angle brackets

	Text        string // the first text/plain part
	HTML        string // the first text/html part
	Attachments []Attachment

	// Encrypted: the message was end-to-end encrypted (PGP/MIME or an inline PGP
	// message), not only encrypted by the server for storage.
	Encrypted bool
	Signature Signature
	// StorageEncrypted: the server stored the message encrypted to the user's key, as
	// XMAP requires. False means the server kept it readable.
	StorageEncrypted bool
	// Raw is the message as RFC 5322: for a PGP/MIME message, its outer header fields
	// joined with the decrypted entity (whose protected header fields take precedence).
	Raw []byte
}

// Read fetches a message and decrypts it.
func (s *Session) Read(ctx context.Context, id string) (*Message, error) {
	if _, err := s.privateKey(); err != nil {
		return nil, err
	}
	r, err := s.Fetch(ctx, &xmap.Fetch{IDs: []string{id}, Parts: xmap.PartBody})
	if err != nil {
		return nil, err
	}
	for _, m := range r.Messages {
		if m.ID == id {
			return s.OpenMessage(ctx, m)
		}
	}
	return nil, fmt.Errorf("fetch: %w", xmap.Errorf(xmap.CodeNotFound, "no message %s", id))
}

// maxPlaintext bounds what decryption may produce: a stored body is at most
// MaxMessageSize, so its plaintext cannot honestly be larger.
const maxPlaintext = xmap.MaxMessageSize

// OpenMessage decrypts a fetched message (m.Body must be set): the storage layer, then a
// PGP/MIME or inline PGP layer, checking the signature against the From address's key.
func (s *Session) OpenMessage(ctx context.Context, m xmap.Message) (*Message, error) {
	me, err := s.privateKey()
	if err != nil {
		return nil, err
	}
	msg := &Message{ID: m.ID, FolderID: m.FolderID, Flags: m.Flags, Size: m.Size, Received: m.Received,
		Signature: Signature{Status: SignatureNone}}
	raw := m.Body
	if len(raw) > 0 && raw[0]&0x80 != 0 {
		if raw, err = cmcrypto.Decrypt(openpgp.EntityList{me}, m.Body); err != nil {
			return nil, fmt.Errorf("message %s: %w", m.ID, err)
		}
		msg.StorageEncrypted = true
	}
	ent, err := readEntity(raw)
	if err != nil {
		return nil, fmt.Errorf("message %s: %w", m.ID, err)
	}
	outer := mail.Header{Header: ent.Header}
	fields := outer
	content := ent
	msg.Raw = raw
	if mt, params, _ := outer.ContentType(); mt == "multipart/encrypted" && strings.EqualFold(params["protocol"], "application/pgp-encrypted") {
		armored, err := encryptedPart(ent)
		if err != nil {
			return nil, fmt.Errorf("message %s: %w", m.ID, err)
		}
		inner, sig, err := s.decryptPGP(ctx, me, armored, headerAddress(outer, "From"))
		if err != nil {
			return nil, fmt.Errorf("message %s: %w", m.ID, err)
		}
		msg.Encrypted, msg.Signature = true, sig
		if content, err = readEntity(inner); err != nil {
			return nil, fmt.Errorf("message %s: decrypted part: %w", m.ID, err)
		}
		fields = mergeHeaders(outer, mail.Header{Header: content.Header})
		msg.Raw = joinRaw(outer, content.Header, inner)
	}
	msg.From = headerList(fields, "From")
	msg.To = headerAddresses(fields, "To")
	msg.Cc = headerAddresses(fields, "Cc")
	msg.Subject, _ = fields.Subject()
	msg.Date, _ = fields.Date()
	msg.MessageID, _ = fields.MessageID()
	if err := walkParts(content, msg); err != nil {
		return nil, fmt.Errorf("message %s: %w", m.ID, err)
	}
	if !msg.Encrypted && strings.HasPrefix(strings.TrimSpace(msg.Text), "-----BEGIN PGP MESSAGE-----") {
		// Inline PGP (an older client, or a list): the text part is the armored message.
		text, sig, err := s.decryptPGP(ctx, me, []byte(strings.TrimSpace(msg.Text)), headerAddress(outer, "From"))
		if err == nil {
			msg.Text, msg.Encrypted, msg.Signature = string(text), true, sig
		}
	}
	return msg, nil
}

func readEntity(raw []byte) (*message.Entity, error) {
	ent, err := message.Read(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return nil, fmt.Errorf("malformed message: %w", err)
	}
	return ent, nil
}

// encryptedPart returns the body of the application/octet-stream part of a
// multipart/encrypted entity.
func encryptedPart(ent *message.Entity) ([]byte, error) {
	mr := ent.MultipartReader()
	if mr == nil {
		return nil, errors.New("malformed PGP/MIME message")
	}
	for i := 0; ; i++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			return nil, errors.New("PGP/MIME message without its encrypted part")
		}
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return nil, fmt.Errorf("malformed PGP/MIME message: %w", err)
		}
		if mt, _, _ := p.Header.ContentType(); i == 1 || mt == "application/octet-stream" {
			return io.ReadAll(io.LimitReader(p.Body, 2*maxPlaintext))
		}
	}
}

// decryptPGP decrypts an (armored or binary) OpenPGP message with the session's key and
// checks its signature with the key the server has for from, if any.
func (s *Session) decryptPGP(ctx context.Context, me *openpgp.Entity, data []byte, from string) ([]byte, Signature, error) {
	sig := Signature{Status: SignatureNone}
	keyring := openpgp.EntityList{me}
	var fromKey *openpgp.Entity
	switch {
	case from == "":
	case strings.EqualFold(from, s.address):
		fromKey = me
	default:
		// A failed lookup only means the signature cannot be checked.
		if keys, err := s.lookupKeys(ctx, []string{from}); err == nil && keys[asciiLower(from)] != nil {
			fromKey = keys[asciiLower(from)].Entity()
			keyring = append(keyring, fromKey)
		}
	}
	in := io.Reader(bytes.NewReader(data))
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0]&0x80 == 0 {
		block, err := armor.Decode(bytes.NewReader(t))
		if err != nil {
			return nil, sig, fmt.Errorf("malformed armor: %w", err)
		}
		if block.Type != cmcrypto.MessageType {
			return nil, sig, fmt.Errorf("armor holds a %q block, not a message", clip(block.Type, 40))
		}
		in = block.Body
	}
	md, err := openpgp.ReadMessage(in, keyring, nil, &packet.Config{})
	if err != nil {
		return nil, sig, fmt.Errorf("decrypt: %w", err)
	}
	if !md.IsEncrypted {
		return nil, sig, fmt.Errorf("decrypt: %w", cmcrypto.ErrNotEncrypted)
	}
	// Read to the end: only then are integrity and signature checked.
	out, err := io.ReadAll(io.LimitReader(md.UnverifiedBody, maxPlaintext+1))
	if err != nil {
		clear(out)
		return nil, sig, fmt.Errorf("decrypt: %w", err)
	}
	if len(out) > maxPlaintext {
		clear(out)
		return nil, sig, fmt.Errorf("decrypt: %w: plaintext over %d bytes", ErrTooLarge, maxPlaintext)
	}
	if !md.IsSigned {
		return out, sig, nil
	}
	keyID := fmt.Sprintf("%016X", md.SignedByKeyId)
	switch {
	case md.SignedBy == nil:
		sig = Signature{Status: SignatureUnknownKey, Signer: keyID}
	case md.SignatureError != nil:
		sig = Signature{Status: SignatureBad, Signer: keyID, Reason: "the signature does not verify"}
	case fromKey == nil || fingerprint(md.SignedBy.Entity) != fingerprint(fromKey):
		sig = Signature{Status: SignatureBad, Signer: fingerprint(md.SignedBy.Entity), Reason: "signed by a key that is not the From address's"}
	default:
		sig = Signature{Status: SignatureVerified, Signer: fingerprint(md.SignedBy.Entity)}
	}
	return out, sig, nil
}

// mergeHeaders returns the header fields to show: the protected ones of the decrypted
// entity where it has them, the outer ones otherwise.
func mergeHeaders(outer, inner mail.Header) mail.Header {
	h := mail.Header{Header: outer.Header.Copy()}
	for _, k := range []string{"From", "To", "Cc", "Subject", "Date", "Message-Id", "Reply-To", "In-Reply-To", "References"} {
		if inner.Has(k) {
			h.Set(k, inner.Get(k))
		}
	}
	return h
}

// joinRaw rebuilds a PGP/MIME message as the sender wrote it: the outer fields the
// decrypted entity does not carry itself, then the entity (its own fields and body).
func joinRaw(outer mail.Header, inner message.Header, innerRaw []byte) []byte {
	var buf bytes.Buffer
	fields := outer.Header.Fields()
	for fields.Next() {
		k := fields.Key()
		switch strings.ToLower(k) {
		case "content-type", "content-transfer-encoding", "mime-version", "content-description", "content-disposition":
			continue
		}
		if inner.Has(k) {
			continue
		}
		raw, err := fields.Raw()
		if err != nil {
			continue
		}
		buf.Write(raw)
	}
	buf.Write(innerRaw)
	return buf.Bytes()
}

func headerAddresses(h mail.Header, key string) []string {
	as, err := h.AddressList(key)
	if err != nil {
		if v := h.Get(key); v != "" {
			return []string{v}
		}
		return nil
	}
	var out []string
	for _, a := range as {
		out = append(out, a.String())
	}
	return out
}

func headerList(h mail.Header, key string) string {
	return strings.Join(headerAddresses(h, key), ", ")
}

func headerAddress(h mail.Header, key string) string {
	as, err := h.AddressList(key)
	if err != nil || len(as) == 0 {
		return ""
	}
	return as[0].Address
}

// walkParts fills msg's text, HTML and attachments from a MIME entity.
func walkParts(ent *message.Entity, msg *Message) error {
	return ent.Walk(func(path []int, part *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return fmt.Errorf("malformed MIME part: %w", err)
		}
		if part.MultipartReader() != nil {
			return nil
		}
		mt, params, _ := part.Header.ContentType()
		disp, dparams, _ := part.Header.ContentDisposition()
		name := dparams["filename"]
		if name == "" {
			name = params["name"]
		}
		if mt == "" {
			mt = "text/plain"
		}
		data, err := io.ReadAll(io.LimitReader(part.Body, maxPlaintext))
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return fmt.Errorf("reading a MIME part: %w", err)
		}
		isText := mt == "text/plain" || mt == "text/html"
		switch {
		case disp != "attachment" && isText && mt == "text/plain" && msg.Text == "" && name == "":
			msg.Text = string(data)
		case disp != "attachment" && isText && mt == "text/html" && msg.HTML == "" && name == "":
			msg.HTML = string(data)
		case mt == "application/pgp-encrypted" || mt == "application/pgp-signature":
			// PGP/MIME control parts are not attachments.
		default:
			msg.Attachments = append(msg.Attachments, Attachment{Filename: name, ContentType: mt, Data: data})
		}
		return nil
	})
}
