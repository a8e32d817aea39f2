package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"path/filepath"
	"strings"
	"time"

	cmcrypto "cryptomail/crypto"
	"cryptomail/xmap"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
)

// A Draft is a message to send. Addresses may carry a display name ("Bob <bob@x.org>").
type Draft struct {
	FromName    string // display name in the From header; the address is the session's
	To, Cc, Bcc []string
	Subject     string
	Text        string // the body, plain text
	Attachments []Attachment
	Date        time.Time // zero: now
	// AllowPlaintext lists recipients who may get a readable copy when no key is known
	// for them. A recipient without a key who is not listed stops the send with a
	// *MissingKeysError. Local recipients always have a key.
	AllowPlaintext []string
	// RecipientKeys are public keys (binary or armored) the caller knows for recipients
	// the server has no key for (remote ones), by address.
	RecipientKeys map[string][]byte
}

// An Attachment is a file in a message.
type Attachment struct {
	Filename    string
	ContentType string // empty: from the file name's extension, else application/octet-stream
	Data        []byte
}

// SendReport tells what became of a sent message.
type SendReport struct {
	MessageID  string       // the Message-ID header, without angle brackets
	Sent       xmap.Message // the copy stored in Sent
	Recipients []xmap.RecipientStatus
	// Plaintext lists the recipients who were sent a readable copy.
	Plaintext []string
}

// pgpMIMESubject replaces the subject in the outer, unencrypted headers of a PGP/MIME
// message: the real one travels in the encrypted part (protected headers).
const pgpMIMESubject = "..."

type recipient struct {
	addr  string // envelope address
	key   *cmcrypto.PublicKey
	local bool // the server knew its key: a local account
}

// SendMail composes the draft as MIME, signs it with the session's key, encrypts it to
// every recipient with a known key and to the sender (PGP/MIME, RFC 3156, with the real
// headers protected inside), writes an encrypted summary for each local recipient and for
// Sent, and sends it. Recipients without a key get a readable copy only if the draft
// allows it for them. Local recipients' keys come from the server's public-key lookup.
func (s *Session) SendMail(ctx context.Context, d *Draft) (*SendReport, error) {
	me, err := s.privateKey()
	if err != nil {
		return nil, err
	}
	now := s.c.opts.Now()
	myKey, err := cmcrypto.NewPublicKey(me, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	to, err := parseAddresses(d.To)
	if err != nil {
		return nil, fmt.Errorf("to: %w", err)
	}
	cc, err := parseAddresses(d.Cc)
	if err != nil {
		return nil, fmt.Errorf("cc: %w", err)
	}
	bcc, err := parseAddresses(d.Bcc)
	if err != nil {
		return nil, fmt.Errorf("bcc: %w", err)
	}
	rcpts, err := s.recipients(ctx, now, append(append(append([]*mail.Address(nil), to...), cc...), bcc...), d)
	if err != nil {
		return nil, err
	}

	date := d.Date
	if date.IsZero() {
		date = now
	}
	msgID, err := s.newMessageID()
	if err != nil {
		return nil, err
	}
	h := mail.Header{}
	h.SetAddressList("From", []*mail.Address{{Name: d.FromName, Address: s.address}})
	h.SetAddressList("To", to)
	h.SetAddressList("Cc", cc)
	h.SetDate(date)
	h.SetMessageID(msgID)

	readable, err := buildMessage(h, d.Subject, d.Text, d.Attachments, false)
	if err != nil {
		return nil, err
	}
	defer clear(readable)

	req := &xmap.Send{}
	report := &SendReport{MessageID: msgID}
	encTo := []*openpgp.Entity{myKey.Entity()}
	var plainRcpts []string
	for _, r := range rcpts {
		if r.key != nil {
			encTo = append(encTo, r.key.Entity())
		} else {
			plainRcpts = append(plainRcpts, r.addr)
		}
	}
	// The body always exists (the sender's copy), encrypted to every key we have.
	inner, err := buildMessage(h, d.Subject, d.Text, d.Attachments, true)
	if err != nil {
		return nil, err
	}
	body, err := s.pgpMIME(h, inner, encTo, me, now)
	clear(inner)
	if err != nil {
		return nil, err
	}
	// The server stores each copy of the body encrypted again, with trace
	// fields: the size rule (xmap.MaxDeliverySize) is its limit.
	if len(body) > xmap.MaxDeliverySize {
		return nil, fmt.Errorf("%w: the encrypted message is %d bytes, the limit is %d", ErrTooLarge, len(body), xmap.MaxDeliverySize)
	}
	req.Body = body
	if len(plainRcpts) > 0 {
		if len(readable) > xmap.MaxMessageSize {
			return nil, fmt.Errorf("%w: the message is %d bytes, the limit is %d", ErrTooLarge, len(readable), xmap.MaxMessageSize)
		}
		req.PlaintextBody = bytes.Clone(readable)
		report.Plaintext = plainRcpts
	}

	summary := cmcrypto.ExtractSummary(readable)
	sealer := &cmcrypto.Sealer{Rand: s.c.opts.Rand, Now: s.c.opts.Now}
	for _, r := range rcpts {
		x := xmap.Recipient{Address: r.addr, Encrypted: r.key != nil, AllowPlaintext: r.key == nil}
		if r.local && r.key != nil {
			if x.Summary, err = sealSummary(sealer, r.key, summary); err != nil {
				return nil, err
			}
		}
		req.Recipients = append(req.Recipients, x)
	}
	if req.SentSummary, err = sealSummary(sealer, myKey, summary); err != nil {
		return nil, err
	}
	res, err := s.Send(ctx, req)
	if err != nil {
		return nil, err
	}
	report.Sent = res.Sent
	report.Recipients = res.Recipients
	return report, nil
}

func parseAddresses(list []string) ([]*mail.Address, error) {
	var out []*mail.Address
	for _, item := range list {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		as, err := mail.ParseAddressList(item)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address: %w", clip(item, 100), err)
		}
		for _, a := range as {
			if !xmap.ValidAddress(a.Address) {
				return nil, fmt.Errorf("%q is not an address XMAP can send to", clip(a.Address, 100))
			}
			out = append(out, a)
		}
	}
	return out, nil
}

// recipients resolves every recipient's key: the server's lookup (local accounts), then
// the draft's own keys; the others need the draft's consent to readable delivery.
func (s *Session) recipients(ctx context.Context, now time.Time, all []*mail.Address, d *Draft) ([]recipient, error) {
	var rcpts []recipient
	seen := map[string]bool{}
	for _, a := range all {
		k := asciiLower(a.Address)
		if seen[k] {
			continue
		}
		seen[k] = true
		rcpts = append(rcpts, recipient{addr: a.Address})
	}
	if len(rcpts) == 0 {
		return nil, fmt.Errorf("client: no recipients")
	}
	if len(rcpts) > xmap.MaxRecipients {
		return nil, fmt.Errorf("client: %d recipients, at most %d", len(rcpts), xmap.MaxRecipients)
	}
	addrs := make([]string, len(rcpts))
	for i, r := range rcpts {
		addrs[i] = r.addr
	}
	keys, err := s.lookupKeys(ctx, addrs)
	if err != nil {
		return nil, err
	}
	allowed := map[string]bool{}
	for _, a := range d.AllowPlaintext {
		if pa, err := mail.ParseAddress(a); err == nil {
			a = pa.Address
		}
		allowed[asciiLower(strings.TrimSpace(a))] = true
	}
	own := map[string][]byte{}
	for a, k := range d.RecipientKeys {
		own[asciiLower(a)] = k
	}
	var missing []string
	for i := range rcpts {
		r := &rcpts[i]
		k := asciiLower(r.addr)
		if key := keys[k]; key != nil {
			r.key, r.local = key, true
			continue
		}
		if data, ok := own[k]; ok {
			key, err := cmcrypto.ParsePublicKey(data, now)
			if err != nil {
				return nil, fmt.Errorf("the key given for %s: %w", r.addr, err)
			}
			r.key = key
			continue
		}
		if !allowed[k] {
			missing = append(missing, r.addr)
		}
	}
	if len(missing) > 0 {
		return nil, &MissingKeysError{Addresses: missing}
	}
	return rcpts, nil
}

// lookupKeys returns the server's keys for addresses (local accounts), by lower-cased
// address, caching answers (also "no key") for the session.
func (s *Session) lookupKeys(ctx context.Context, addrs []string) (map[string]*cmcrypto.PublicKey, error) {
	out := map[string]*cmcrypto.PublicKey{}
	var ask []string
	s.keysMu.Lock()
	for _, a := range addrs {
		k := asciiLower(a)
		if key, ok := s.keys[k]; ok {
			out[k] = key
		} else {
			ask = append(ask, a)
		}
	}
	s.keysMu.Unlock()
	if len(ask) == 0 {
		return out, nil
	}
	now := s.c.opts.Now()
	found := map[string]*cmcrypto.PublicKey{}
	for start := 0; start < len(ask); start += xmap.MaxIDs {
		part := ask[start:min(start+xmap.MaxIDs, len(ask))]
		res, err := s.PublicKeys(ctx, part...)
		if err != nil {
			return nil, err
		}
		for _, pk := range res.Keys {
			key, err := cmcrypto.ParsePublicKey(pk.Key, now)
			if err != nil {
				return nil, fmt.Errorf("the server's key for %s: %w", pk.Address, err)
			}
			found[asciiLower(pk.Address)] = key
		}
	}
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	for _, a := range ask {
		k := asciiLower(a)
		s.keys[k] = found[k]
		out[k] = found[k]
	}
	return out, nil
}

func (s *Session) newMessageID() (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(s.c.opts.Rand, b[:]); err != nil {
		return "", fmt.Errorf("client: message id: %w", err)
	}
	domain := s.address[strings.LastIndexByte(s.address, '@')+1:]
	return hex.EncodeToString(b[:]) + "@" + domain, nil
}

// buildMessage writes the message as MIME: the header fields of h, the subject, and a
// text/plain body, or multipart/mixed with the attachments. protected marks the top-level
// Content-Type with protected-headers="v1": the entity is the encrypted part of a
// PGP/MIME message, and its header fields are the authoritative ones.
func buildMessage(h mail.Header, subject, text string, atts []Attachment, protected bool) ([]byte, error) {
	h = mail.Header{Header: h.Header.Copy()}
	h.SetSubject(subject)
	var params map[string]string
	if protected {
		params = map[string]string{"protected-headers": "v1"}
	}
	var buf bytes.Buffer
	text = normalizeNewlines(text)
	if len(atts) == 0 {
		p := map[string]string{"charset": "utf-8"}
		for k, v := range params {
			p[k] = v
		}
		h.SetContentType("text/plain", p)
		h.Set("Content-Transfer-Encoding", "quoted-printable")
		w, err := message.CreateWriter(&buf, h.Header)
		if err != nil {
			return nil, fmt.Errorf("client: composing: %w", err)
		}
		if _, err := io.WriteString(w, text); err != nil {
			return nil, fmt.Errorf("client: composing: %w", err)
		}
		if err := w.Close(); err != nil {
			return nil, fmt.Errorf("client: composing: %w", err)
		}
		return buf.Bytes(), nil
	}
	if params == nil {
		params = map[string]string{}
	}
	h.SetContentType("multipart/mixed", params)
	w, err := message.CreateWriter(&buf, h.Header)
	if err != nil {
		return nil, fmt.Errorf("client: composing: %w", err)
	}
	var th message.Header
	th.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	th.Set("Content-Transfer-Encoding", "quoted-printable")
	th.SetContentDisposition("inline", nil)
	pw, err := w.CreatePart(th)
	if err == nil {
		_, err = io.WriteString(pw, text)
	}
	if err == nil {
		err = pw.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("client: composing: %w", err)
	}
	for _, a := range atts {
		name := filepath.Base(a.Filename)
		ct := a.ContentType
		if ct == "" {
			ct = mime.TypeByExtension(filepath.Ext(name))
		}
		mt, mp, err := mime.ParseMediaType(ct)
		if err != nil || ct == "" {
			mt, mp = "application/octet-stream", nil
		}
		if mp == nil {
			mp = map[string]string{}
		}
		mp["name"] = name
		var ah message.Header
		ah.SetContentType(mt, mp)
		ah.SetContentDisposition("attachment", map[string]string{"filename": name})
		ah.Set("Content-Transfer-Encoding", "base64")
		pw, err := w.CreatePart(ah)
		if err == nil {
			_, err = pw.Write(a.Data)
		}
		if err == nil {
			err = pw.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("client: attaching %s: %w", name, err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("client: composing: %w", err)
	}
	return buf.Bytes(), nil
}

// normalizeNewlines turns CRLF and lone CR into LF; the quoted-printable writer then
// writes every line break as CRLF.
func normalizeNewlines(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n")
}

// pgpMIME signs inner with signer, encrypts it to every entity of to, and wraps the
// armored result as multipart/encrypted (RFC 3156 section 4) under the header fields of
// h with the subject hidden.
func (s *Session) pgpMIME(h mail.Header, inner []byte, to []*openpgp.Entity, signer *openpgp.Entity, now time.Time) ([]byte, error) {
	var armored bytes.Buffer
	aw, err := armor.Encode(&armored, "PGP MESSAGE", nil)
	if err != nil {
		return nil, fmt.Errorf("client: encrypting: %w", err)
	}
	cfg := &packet.Config{
		Rand:                   s.c.opts.Rand,
		Time:                   func() time.Time { return now },
		DefaultCipher:          packet.CipherAES256,
		DefaultCompressionAlgo: packet.CompressionNone,
		// No AEAD (SEIPDv2): GnuPG 2.2 cannot read it, and recipients use GnuPG.
	}
	pw, err := openpgp.Encrypt(aw, to, signer, &openpgp.FileHints{IsBinary: true}, cfg)
	if err != nil {
		return nil, fmt.Errorf("client: encrypting: %w", err)
	}
	if _, err := pw.Write(inner); err != nil {
		return nil, fmt.Errorf("client: encrypting: %w", err)
	}
	if err := pw.Close(); err != nil {
		return nil, fmt.Errorf("client: encrypting: %w", err)
	}
	if err := aw.Close(); err != nil {
		return nil, fmt.Errorf("client: encrypting: %w", err)
	}
	armored.WriteByte('\n')
	crlf := bytes.ReplaceAll(armored.Bytes(), []byte("\n"), []byte("\r\n"))

	outer := mail.Header{Header: h.Header.Copy()}
	outer.SetSubject(pgpMIMESubject)
	outer.SetContentType("multipart/encrypted", map[string]string{"protocol": "application/pgp-encrypted"})
	var buf bytes.Buffer
	w, err := message.CreateWriter(&buf, outer.Header)
	if err != nil {
		return nil, fmt.Errorf("client: composing: %w", err)
	}
	var vh message.Header
	vh.SetContentType("application/pgp-encrypted", nil)
	vh.Set("Content-Description", "PGP/MIME version identification")
	vw, err := w.CreatePart(vh)
	if err == nil {
		_, err = io.WriteString(vw, "Version: 1\r\n")
	}
	if err == nil {
		err = vw.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("client: composing: %w", err)
	}
	var dh message.Header
	dh.SetContentType("application/octet-stream", map[string]string{"name": "encrypted.asc"})
	dh.Set("Content-Description", "OpenPGP encrypted message")
	dh.SetContentDisposition("inline", map[string]string{"filename": "encrypted.asc"})
	dw, err := w.CreatePart(dh)
	if err == nil {
		_, err = dw.Write(crlf)
	}
	if err == nil {
		err = dw.Close()
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("client: composing: %w", err)
	}
	return buf.Bytes(), nil
}

// sealSummary encrypts a summary to key, shortening the address lists and the snippet
// until it fits XMAP's summary limit.
func sealSummary(sealer *cmcrypto.Sealer, key *cmcrypto.PublicKey, sm cmcrypto.Summary) ([]byte, error) {
	for {
		js, err := cmcrypto.MarshalSummary(sm)
		if err != nil {
			return nil, fmt.Errorf("client: summary: %w", err)
		}
		blob, err := sealer.Encrypt(key, js)
		clear(js)
		if err != nil {
			return nil, fmt.Errorf("client: summary: %w", err)
		}
		if len(blob) <= xmap.MaxSummarySize {
			return blob, nil
		}
		switch {
		case len(sm.To)+len(sm.Cc) > 1:
			sm.To, sm.Cc = sm.To[:len(sm.To)/2], sm.Cc[:len(sm.Cc)/2]
		case sm.Snippet != "" || sm.Subject != "":
			sm.Snippet, sm.Subject = "", clip(sm.Subject, 200)
		default:
			return nil, fmt.Errorf("%w: summary", ErrTooLarge)
		}
	}
}

// AppendMessage encrypts a raw RFC 5322 message to the session's own key, with its
// summary, and stores it in a folder (drafts, imports).
func (s *Session) AppendMessage(ctx context.Context, folder xmap.FolderRef, raw []byte, flags []xmap.Flag) (xmap.Message, error) {
	me, err := s.privateKey()
	if err != nil {
		return xmap.Message{}, err
	}
	myKey, err := cmcrypto.NewPublicKey(me, s.c.opts.Now())
	if err != nil {
		return xmap.Message{}, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	sealer := &cmcrypto.Sealer{Rand: s.c.opts.Rand, Now: s.c.opts.Now}
	body, err := sealer.Encrypt(myKey, raw)
	if err != nil {
		return xmap.Message{}, err
	}
	if len(body) > xmap.MaxMessageSize {
		return xmap.Message{}, fmt.Errorf("%w: the encrypted message is %d bytes, the limit is %d", ErrTooLarge, len(body), xmap.MaxMessageSize)
	}
	summary, err := sealSummary(sealer, myKey, cmcrypto.ExtractSummary(raw))
	if err != nil {
		return xmap.Message{}, err
	}
	return s.Append(ctx, &xmap.Append{Folder: folder, Flags: flags, Body: body, Summary: summary})
}
