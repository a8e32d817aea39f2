package crypto

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// maxKeyPackets bounds the PKESK/SKESK packets CheckEncrypted reads before
// the encrypted data: one per recipient, and XMAP allows 100 recipients
// plus the sender.
const maxKeyPackets = 256

// CheckEncrypted reports whether msg is one binary OpenPGP encrypted message
// (RFC 9580, section 10.3), as stored bodies and summaries must be: one or
// more public- or symmetric-key encrypted session key packets (PKESK,
// SKESK), then exactly one integrity-protected encrypted data packet (SEIPD
// version 1 or 2, or the AEAD encrypted data packet of draft versions), and
// nothing after it. Anything else (a literal or compressed data packet, the
// unprotected SED packet, a marker, padding or unknown packet that could
// carry readable bytes, trailing data) is refused with ErrNotEncrypted.
// The packets are read with ProtonMail/go-crypto's packet reader; nothing
// is decrypted, so whether the ciphertext is to the right key is not known
// here. The error never quotes msg.
func CheckEncrypted(msg []byte) error {
	return checkEncrypted(bytes.NewReader(msg))
}

func checkEncrypted(r io.Reader) error {
	br := bufio.NewReader(r)
	keys := 0
	for {
		p, err := packet.Read(br)
		if err == io.EOF && keys == 0 {
			return fmt.Errorf("%w: empty", ErrNotEncrypted)
		}
		if err == io.EOF {
			return fmt.Errorf("%w: no encrypted data packet", ErrNotEncrypted)
		}
		if err != nil {
			return fmt.Errorf("%w: unreadable packet", ErrNotEncrypted)
		}
		var contents io.Reader
		switch p := p.(type) {
		case *packet.EncryptedKey, *packet.SymmetricKeyEncrypted:
			if keys++; keys > maxKeyPackets {
				return fmt.Errorf("%w: more than %d session keys", ErrNotEncrypted, maxKeyPackets)
			}
			continue
		case *packet.SymmetricallyEncrypted:
			if !p.IntegrityProtected {
				return fmt.Errorf("%w: encrypted data without integrity protection", ErrNotEncrypted)
			}
			contents = p.Contents
		case *packet.AEADEncrypted:
			contents = p.Contents
		default:
			return fmt.Errorf("%w: unexpected %T", ErrNotEncrypted, p)
		}
		if keys == 0 {
			return fmt.Errorf("%w: encrypted data without a session key packet", ErrNotEncrypted)
		}
		// The encrypted data runs to the end of its packet; nothing may follow.
		if _, err := io.Copy(io.Discard, contents); err != nil {
			return fmt.Errorf("%w: truncated encrypted data", ErrNotEncrypted)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			return fmt.Errorf("%w: data after the encrypted data packet", ErrNotEncrypted)
		}
		return nil
	}
}

// CheckArmoredEncrypted is CheckEncrypted for an ASCII-armored message, as
// PGP/MIME carries it: the armor must be a PGP MESSAGE block with nothing
// but white space around it.
func CheckArmoredEncrypted(text []byte) error {
	trimmed := bytes.TrimSpace(text)
	const begin, end = "-----BEGIN PGP MESSAGE-----", "-----END PGP MESSAGE-----"
	if !bytes.HasPrefix(trimmed, []byte(begin)) || !bytes.HasSuffix(trimmed, []byte(end)) {
		return fmt.Errorf("%w: not one armored PGP MESSAGE block", ErrNotEncrypted)
	}
	if bytes.Count(trimmed, []byte("-----BEGIN ")) != 1 {
		return fmt.Errorf("%w: more than one armored block", ErrNotEncrypted)
	}
	block, err := armor.Decode(bytes.NewReader(trimmed))
	if err != nil || block.Type != "PGP MESSAGE" {
		return fmt.Errorf("%w: bad armor", ErrNotEncrypted)
	}
	if err := checkEncrypted(block.Body); err != nil {
		return err
	}
	// The checksum, when present, is verified at the end of the body.
	if _, err := io.Copy(io.Discard, block.Body); err != nil {
		return fmt.Errorf("%w: bad armor", ErrNotEncrypted)
	}
	return nil
}

// maxPGPMIMEHeader bounds the header section CheckPGPMIME reads.
const maxPGPMIMEHeader = 256 << 10

// CheckPGPMIME reports whether msg is a PGP/MIME encrypted message (RFC
// 3156, section 4) whose encrypted part really is an OpenPGP encrypted
// message: the top-level Content-Type is multipart/encrypted with protocol
// application/pgp-encrypted, and its two parts are the application/pgp-
// encrypted control part ("Version: 1") and an application/octet-stream
// part holding one armored message that passes CheckArmoredEncrypted.
// Nothing else may sit beside them (preamble and epilogue aside). The error
// never quotes msg.
func CheckPGPMIME(msg []byte) error {
	h, body, err := splitMessage(msg)
	if err != nil {
		return fmt.Errorf("%w: unreadable header", ErrNotEncrypted)
	}
	return checkPGPMIME(h, body)
}

func checkPGPMIME(h textproto.MIMEHeader, body []byte) error {
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "multipart/encrypted" || !strings.EqualFold(params["protocol"], "application/pgp-encrypted") {
		return fmt.Errorf("%w: not multipart/encrypted with protocol application/pgp-encrypted", ErrNotEncrypted)
	}
	if params["boundary"] == "" {
		return fmt.Errorf("%w: multipart without boundary", ErrNotEncrypted)
	}
	if cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))); cte != "" && cte != "7bit" && cte != "8bit" && cte != "binary" {
		return fmt.Errorf("%w: encoded multipart", ErrNotEncrypted)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var parts [][]byte
	var types []string
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: malformed multipart", ErrNotEncrypted)
		}
		if len(parts) == 2 {
			return fmt.Errorf("%w: more than two parts", ErrNotEncrypted)
		}
		pt, _, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if err != nil {
			return fmt.Errorf("%w: part without a content type", ErrNotEncrypted)
		}
		if cte := strings.ToLower(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding"))); cte != "" && cte != "7bit" && cte != "8bit" && cte != "binary" {
			return fmt.Errorf("%w: encoded part", ErrNotEncrypted)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return fmt.Errorf("%w: malformed multipart", ErrNotEncrypted)
		}
		parts, types = append(parts, b), append(types, pt)
	}
	if len(parts) != 2 || types[0] != "application/pgp-encrypted" || types[1] != "application/octet-stream" {
		return fmt.Errorf("%w: parts are not application/pgp-encrypted then application/octet-stream", ErrNotEncrypted)
	}
	if v := strings.TrimSpace(string(parts[0])); !strings.EqualFold(v, "Version: 1") {
		return fmt.Errorf("%w: control part is not \"Version: 1\"", ErrNotEncrypted)
	}
	return CheckArmoredEncrypted(parts[1])
}

// Bounds of the MIME tree CheckLabelledParts walks.
const (
	maxMIMEDepth = 16
	maxMIMEParts = 1000
)

// CheckLabelledParts reports whether every part of msg that is labelled
// encrypted is: a multipart/encrypted part (the message itself or one
// nested anywhere, message/rfc822 included) must pass the PGP/MIME check of
// CheckPGPMIME, and an application/pgp-encrypted part outside one must hold
// an encrypted OpenPGP message, binary or armored (after its transfer
// encoding). A message with no such part passes, so a readable message may
// go out readable, but never labelled as encrypted. The tree is walked to
// maxMIMEDepth levels and maxMIMEParts parts; a deeper or larger one is
// refused. The error never quotes msg.
func CheckLabelledParts(msg []byte) error {
	h, body, err := splitMessage(msg)
	if err != nil {
		return fmt.Errorf("%w: unreadable header", ErrNotEncrypted)
	}
	parts := 0
	return walkLabelled(h, body, 0, &parts)
}

func walkLabelled(h textproto.MIMEHeader, body []byte, depth int, parts *int) error {
	if depth > maxMIMEDepth {
		return fmt.Errorf("%w: MIME structure too deep to check", ErrNotEncrypted)
	}
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		return nil // no readable type: text/plain to a reader, labelled nothing
	}
	switch {
	case mt == "multipart/encrypted":
		return checkPGPMIME(h, body)
	case mt == "application/pgp-encrypted":
		data, err := decodeTransfer(h.Get("Content-Transfer-Encoding"), body)
		if err != nil {
			return fmt.Errorf("%w: undecodable application/pgp-encrypted part", ErrNotEncrypted)
		}
		if CheckEncrypted(data) != nil && CheckArmoredEncrypted(data) != nil {
			return fmt.Errorf("%w: application/pgp-encrypted part is not an OpenPGP encrypted message", ErrNotEncrypted)
		}
		return nil
	case mt == "message/rfc822":
		ih, ibody, err := splitMessage(body)
		if err != nil {
			return nil // not a message a reader can open either
		}
		return walkLabelled(ih, ibody, depth+1, parts)
	case strings.HasPrefix(mt, "multipart/"):
		if params["boundary"] == "" {
			return nil
		}
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return nil // the rest is not a part to a reader either
			}
			if *parts++; *parts > maxMIMEParts {
				return fmt.Errorf("%w: too many MIME parts to check", ErrNotEncrypted)
			}
			b, err := io.ReadAll(p)
			if err != nil {
				return nil
			}
			if err := walkLabelled(p.Header, b, depth+1, parts); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeTransfer undoes a part's Content-Transfer-Encoding.
func decodeTransfer(cte string, body []byte) ([]byte, error) {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "", "7bit", "8bit", "binary":
		return body, nil
	case "base64":
		return io.ReadAll(base64.NewDecoder(base64.StdEncoding, &newlineStripper{r: bytes.NewReader(body)}))
	case "quoted-printable":
		return io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
	}
	return nil, fmt.Errorf("unknown transfer encoding")
}

// newlineStripper drops CR and LF, which base64 bodies are broken with.
type newlineStripper struct{ r io.Reader }

func (n *newlineStripper) Read(p []byte) (int, error) {
	for {
		k, err := n.r.Read(p)
		j := 0
		for _, c := range p[:k] {
			if c != '\r' && c != '\n' {
				p[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

// splitMessage reads an RFC 5322 message's header section and returns it
// with the body after it.
func splitMessage(msg []byte) (textproto.MIMEHeader, []byte, error) {
	r := bytes.NewReader(msg)
	br := bufio.NewReader(io.LimitReader(r, maxPGPMIMEHeader))
	h, err := textproto.NewReader(br).ReadMIMEHeader()
	if err != nil {
		return nil, nil, err
	}
	consumed := len(msg) - r.Len() - br.Buffered()
	return h, msg[consumed:], nil
}
