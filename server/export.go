package server

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	cmcrypto "cryptomail/crypto"
	"cryptomail/shard"
)

// MessageLister lists a user's stored messages with their bodies
// (shard.Store implements it).
type MessageLister interface {
	Messages(ctx context.Context, address string, fn func(shard.Message) error) error
}

// ExportMbox writes every stored message of address as an mbox. Each entry is
// a PGP/MIME (RFC 3156) message whose encrypted part is the stored OpenPGP
// message, ASCII-armored: `gpg --decrypt` on an entry yields the message as
// received, and mail clients that read PGP/MIME can import the file. Armor
// never has a line starting with "From ", so no mbox escaping is needed and
// the ciphertext is byte-exact.
func ExportMbox(ctx context.Context, st MessageLister, address string, w io.Writer) (int, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	n := 0
	err := st.Messages(ctx, address, func(m shard.Message) error {
		armored, err := cmcrypto.Armor(m.Body)
		if err != nil {
			return fmt.Errorf("message %d: %w", m.ID, err)
		}
		var rb [12]byte
		if _, err := rand.Read(rb[:]); err != nil {
			return err
		}
		boundary := "cryptomail-" + hex.EncodeToString(rb[:])
		recv := m.Received.UTC()
		fmt.Fprintf(bw, "From MAILER-DAEMON %s\n", recv.Format(time.ANSIC))
		fmt.Fprintf(bw, "X-CryptoMail-Folder: %s\n", headerSafe(m.Folder))
		fmt.Fprintf(bw, "X-CryptoMail-UID: %d\n", m.UID)
		if len(m.Flags) > 0 {
			fmt.Fprintf(bw, "X-CryptoMail-Flags: %s\n", headerSafe(strings.Join(m.Flags, " ")))
		}
		fmt.Fprintf(bw, "Date: %s\n", recv.Format(time.RFC1123Z))
		fmt.Fprintf(bw, "Subject: ...\n")
		fmt.Fprintf(bw, "MIME-Version: 1.0\n")
		fmt.Fprintf(bw, "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\n boundary=\"%s\"\n\n", boundary)
		fmt.Fprintf(bw, "--%s\nContent-Type: application/pgp-encrypted\nContent-Description: PGP/MIME version identification\n\nVersion: 1\n\n", boundary)
		fmt.Fprintf(bw, "--%s\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\nContent-Disposition: inline; filename=\"encrypted.asc\"\n\n", boundary)
		bw.Write(armored)
		if len(armored) > 0 && armored[len(armored)-1] != '\n' {
			bw.WriteByte('\n')
		}
		fmt.Fprintf(bw, "\n--%s--\n\n", boundary)
		n++
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("export %s: %w", address, err)
	}
	return n, bw.Flush()
}

// headerSafe keeps folder names (user-chosen) from breaking the header block.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}
