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

// SummaryUnverified reports whether the summary is only its sender's word: another user
// wrote it through send (summary-by="sender"), or the server did not say who did. Its From,
// subject and snippet are what that user chose to write, checked by nothing; show it marked
// until the message is opened (Read) and its signature checked.
func (l Listed) SummaryUnverified() bool { return l.Summary != nil && !l.SummaryBy.Trusted() }

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
	SignatureNone SignatureStatus = "none" // not signed (or not end-to-end encrypted)
	// SignatureVerified: signed by the key the server has for the From address the
	// message shows (the protected, inner From of a PGP/MIME message).
	SignatureVerified   SignatureStatus = "verified"
	SignatureUnknownKey SignatureStatus = "unknown-key" // signed by a key this client does not have
	SignatureBad        SignatureStatus = "bad"         // the signature does not verify
	// SignatureOtherSigner: a good signature, but by the key of another address
	// (SignerAddress) than the From shown: the message says it is from someone who did
	// not sign it. Never to be shown as verified.
	SignatureOtherSigner SignatureStatus = "other-signer"
)

// Signature is the outcome of checking a message's signature.
type Signature struct {
	Status SignatureStatus
	Signer string // fingerprint of the signing key when this client has it, else its key id
	// SignerAddress is the address whose key (as the server's public-key lookup gives it,
	// or the user's own) made the signature; empty when the key is not known.
	SignerAddress string
	Reason        string // for SignatureBad and SignatureOtherSigner: why; for verified, a caveat or ""
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
// PGP/MIME or inline PGP layer, checking the signature against the key of the From
// address the message shows (for PGP/MIME, the protected inner From).
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
	outerFrom := headerAddress(outer, "From")
	fields := outer
	content := ent
	msg.Raw = raw
	if mt, params, _ := outer.ContentType(); mt == "multipart/encrypted" && strings.EqualFold(params["protocol"], "application/pgp-encrypted") {
		armored, err := encryptedPart(ent)
		if err != nil {
			return nil, fmt.Errorf("message %s: %w", m.ID, err)
		}
		var innerEnt *message.Entity
		// The From shown is the merged one: the inner From where the entity has one.
		shown := func(plain []byte) string {
			if innerEnt, err = readEntity(plain); err != nil {
				return ""
			}
			return headerAddress(mergeHeaders(outer, mail.Header{Header: innerEnt.Header}), "From")
		}
		inner, sig, perr := s.decryptPGP(ctx, me, armored, outerFrom, shown)
		if perr != nil {
			return nil, fmt.Errorf("message %s: %w", m.ID, perr)
		}
		if innerEnt == nil || err != nil {
			return nil, fmt.Errorf("message %s: decrypted part: %w", m.ID, err)
		}
		msg.Encrypted, msg.Signature = true, sig
		content = innerEnt
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
		// Inline PGP (an older client, or a list): the text part is the armored message,
		// and the From shown is the message's own.
		shown := func([]byte) string { return outerFrom }
		text, sig, err := s.decryptPGP(ctx, me, []byte(strings.TrimSpace(msg.Text)), outerFrom, shown)
		if err == nil {
			msg.Text, msg.Encrypted, msg.Signature = string(text), true, sig
			// Only that text was encrypted and signed. An HTML part beside it would be
			// shown instead of it, unprotected: drop it. Attachments beside it stay, but
			// the signature must not seem to cover them.
			msg.HTML = ""
			if n := len(msg.Attachments); n > 0 && sig.Status != SignatureNone {
				note := fmt.Sprintf("only the text is signed; the %d attachment(s) beside it are not", n)
				if msg.Signature.Reason != "" {
					note = msg.Signature.Reason + "; " + note
				}
				msg.Signature.Reason = note
			}
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

// signerKeys are the keys a signature can be recognised by, by lower-cased address: the
// user's own, the outer From's (looked up; a failed lookup only means a signature by it
// cannot be recognised) and every key this session has already looked up, so a signature
// by a known user is named as that user's whatever the message claims.
func (s *Session) signerKeys(ctx context.Context, me *openpgp.Entity, outerFrom string) map[string]*openpgp.Entity {
	keys := map[string]*openpgp.Entity{asciiLower(s.address): me}
	if outerFrom != "" {
		s.addKey(ctx, keys, outerFrom)
	}
	s.keysMu.Lock()
	for a, k := range s.keys {
		if k != nil && keys[a] == nil {
			keys[a] = k.Entity()
		}
	}
	s.keysMu.Unlock()
	return keys
}

// addKey adds the server's key for address to keys and reports whether it found one.
func (s *Session) addKey(ctx context.Context, keys map[string]*openpgp.Entity, address string) bool {
	a := asciiLower(address)
	if keys[a] != nil {
		return true
	}
	found, err := s.lookupKeys(ctx, []string{address})
	if err != nil || found[a] == nil {
		return false
	}
	keys[a] = found[a].Entity()
	return true
}

// pgpResult is what reading one OpenPGP message gave.
type pgpResult struct {
	out    []byte
	signed bool
	keyID  uint64
	signer *openpgp.Entity // nil when the signing key is not in the keyring
	sigErr error
}

// decryptPGP decrypts an (armored or binary) OpenPGP message with the session's key and
// checks its signature. The signature counts as verified only if it was made by the key
// of the address shown(plaintext) returns, the From the user will see; a good signature
// by any other known key is reported as that key owner's (SignatureOtherSigner).
func (s *Session) decryptPGP(ctx context.Context, me *openpgp.Entity, data []byte, outerFrom string, shown func([]byte) string) ([]byte, Signature, error) {
	keys := s.signerKeys(ctx, me, outerFrom)
	res, err := readPGP(me, data, keys)
	if err != nil {
		return nil, Signature{Status: SignatureNone}, err
	}
	from := shown(res.out)
	if res.signed && from != "" && keys[asciiLower(from)] == nil && s.addKey(ctx, keys, from) && res.signer == nil {
		// The signing key was unknown until the shown From's key was looked up: read
		// again with it, since the signature is checked only while reading.
		clear(res.out)
		if res, err = readPGP(me, data, keys); err != nil {
			return nil, Signature{Status: SignatureNone}, err
		}
		from = shown(res.out) // shown may keep what it parsed: let it parse the new copy
	}
	return res.out, classifySignature(res, keys, from, outerFrom), nil
}

// readPGP decrypts data with me, checking a signature by any key of keys.
func readPGP(me *openpgp.Entity, data []byte, keys map[string]*openpgp.Entity) (pgpResult, error) {
	keyring := openpgp.EntityList{me}
	for _, k := range keys {
		if k != me {
			keyring = append(keyring, k)
		}
	}
	in := io.Reader(bytes.NewReader(data))
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0]&0x80 == 0 {
		block, err := armor.Decode(bytes.NewReader(t))
		if err != nil {
			return pgpResult{}, fmt.Errorf("malformed armor: %w", err)
		}
		if block.Type != cmcrypto.MessageType {
			return pgpResult{}, fmt.Errorf("armor holds a %q block, not a message", clip(block.Type, 40))
		}
		in = block.Body
	}
	md, err := openpgp.ReadMessage(in, keyring, nil, &packet.Config{})
	if err != nil {
		return pgpResult{}, fmt.Errorf("decrypt: %w", err)
	}
	if !md.IsEncrypted {
		return pgpResult{}, fmt.Errorf("decrypt: %w", cmcrypto.ErrNotEncrypted)
	}
	// Read to the end: only then are integrity and signature checked.
	out, err := io.ReadAll(io.LimitReader(md.UnverifiedBody, maxPlaintext+1))
	if err != nil {
		clear(out)
		return pgpResult{}, fmt.Errorf("decrypt: %w", err)
	}
	if len(out) > maxPlaintext {
		clear(out)
		return pgpResult{}, fmt.Errorf("decrypt: %w: plaintext over %d bytes", ErrTooLarge, maxPlaintext)
	}
	res := pgpResult{out: out, signed: md.IsSigned, keyID: md.SignedByKeyId, sigErr: md.SignatureError}
	if md.SignedBy != nil {
		res.signer = md.SignedBy.Entity
	}
	return res, nil
}

// classifySignature turns a read's signature into what the user is told: verified only
// when the signing key is the key of from, the address shown.
func classifySignature(res pgpResult, keys map[string]*openpgp.Entity, from, outerFrom string) Signature {
	if !res.signed {
		return Signature{Status: SignatureNone}
	}
	if res.signer == nil {
		return Signature{Status: SignatureUnknownKey, Signer: fmt.Sprintf("%016X", res.keyID)}
	}
	fp := fingerprint(res.signer)
	var owner string
	for a, k := range keys {
		// Several addresses can share a key (aliases); the shown one wins, then the
		// smallest, so the answer does not depend on map order.
		if fingerprint(k) == fp && (owner == "" || a == asciiLower(from) || (owner != asciiLower(from) && a < owner)) {
			owner = a
		}
	}
	sig := Signature{Signer: fp, SignerAddress: owner}
	switch {
	case res.sigErr != nil:
		sig.Status, sig.Reason = SignatureBad, "the signature does not verify"
	case from == "" || keys[asciiLower(from)] == nil || fingerprint(keys[asciiLower(from)]) != fp:
		sig.Status, sig.Reason = SignatureOtherSigner, "signed by "+owner+", not by the sender shown"
		if from == "" {
			sig.Reason = "signed by " + owner + ", but the message shows no single sender"
		}
	default:
		sig.Status = SignatureVerified
		if outerFrom != "" && !strings.EqualFold(outerFrom, from) {
			sig.Reason = "the outer From: is " + outerFrom
		}
	}
	return sig
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

// headerAddress returns the one address of a field, or "" when it has none, more
// than one, or cannot be parsed: a signature is checked against the sender shown, and a
// From: that shows several senders shows none a signature could vouch for.
func headerAddress(h mail.Header, key string) string {
	as, err := h.AddressList(key)
	if err != nil || len(as) != 1 {
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
