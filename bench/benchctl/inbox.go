package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// A realistic inbox: mostly short text mail, some with attachments of a few
// hundred kB, a few with multi-MB ones. Sizes are of the whole encoded
// message; the shares are of messages.
var inboxMix = []struct {
	share    float64
	min, max int
	attach   string // "" for none, else the attachment's MIME type
}{
	{0.78, 2_000, 12_000, ""},
	{0.15, 30_000, 400_000, "image/jpeg"},
	{0.06, 500_000, 2_000_000, "application/pdf"},
	{0.01, 3_000_000, 6_000_000, "application/zip"},
}

var words = strings.Fields(`the of and to in is for on that with as this by at from be are it an or was
have not but we you they meeting report invoice budget schedule project review draft please thanks
tomorrow attached see below regards team update question answer release server mail client week`)

var senders = []string{"Alice Martin <alice@corp.example>", "Bob Li <bob@partner.example>",
	"Newsletter <news@list.example>", "Carol Diaz <carol@uni.example>", "Billing <billing@shop.example>",
	"Dave Okafor <dave@corp.example>", "Erin Sato <erin@mail.example>", "GitHub <noreply@code.example>"}

// cmdInbox writes the benchmark inbox twice: as one .eml file per message (CRLF,
// delivered to CryptoMail over LMTP) and as an mbox (LF, mboxrd escaping) for
// Dovecot. The content is deterministic for a given -seed.
func cmdInbox(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("inbox", flag.ContinueOnError)
	n := fs.Int("n", 666, "messages")
	total := fs.Int64("total", 100_000_000, "approximate total size in bytes")
	to := fs.String("to", "inbox@example.test", "recipient address in the To: field")
	out := fs.String("out", "", "directory to write msgs/*.eml and inbox.mbox into")
	seed := fs.Uint64("seed", 666, "random seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *n < 1 {
		return fmt.Errorf("inbox: want -out DIR and -n >= 1")
	}
	rng := rand.New(rand.NewPCG(*seed, 1))
	// Draw the sizes, then scale the attachment-bearing ones so the sum
	// comes close to -total.
	sizes := make([]int, *n)
	kinds := make([]int, *n)
	var plain, attach int64
	for i := range sizes {
		x, k := rng.Float64(), 0
		for acc := inboxMix[0].share; k < len(inboxMix)-1 && x >= acc; acc += inboxMix[k].share {
			k++
		}
		m := inboxMix[k]
		kinds[i], sizes[i] = k, m.min+rng.IntN(m.max-m.min+1)
		if m.attach == "" {
			plain += int64(sizes[i])
		} else {
			attach += int64(sizes[i])
		}
	}
	if attach > 0 && *total > plain {
		f := float64(*total-plain) / float64(attach)
		for i, k := range kinds {
			if inboxMix[k].attach != "" {
				sizes[i] = int(float64(sizes[i]) * f)
			}
		}
	}
	msgs := filepath.Join(*out, "msgs")
	if err := os.MkdirAll(msgs, 0o755); err != nil {
		return err
	}
	mf, err := os.Create(filepath.Join(*out, "inbox.mbox"))
	if err != nil {
		return err
	}
	defer mf.Close()
	mbox := bufio.NewWriterSize(mf, 1<<20)
	start := time.Date(2025, 1, 1, 8, 0, 0, 0, time.UTC)
	var sum int64
	var withAtt int
	for i := range *n {
		if err := ctx.Err(); err != nil {
			return err
		}
		date := start.Add(time.Duration(i) * 13 * time.Hour)
		from := senders[rng.IntN(len(senders))]
		msg := makeInboxMessage(rng, i, from, *to, date, sizes[i], inboxMix[kinds[i]].attach)
		if inboxMix[kinds[i]].attach != "" {
			withAtt++
		}
		sum += int64(len(msg))
		if err := os.WriteFile(filepath.Join(msgs, fmt.Sprintf("%04d.eml", i+1)), msg, 0o644); err != nil {
			return err
		}
		envFrom := from[strings.IndexByte(from, '<')+1 : len(from)-1]
		fmt.Fprintf(mbox, "From %s %s\n", envFrom, date.Format("Mon Jan _2 15:04:05 2006"))
		for line := range bytes.Lines(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))) {
			if bytes.HasPrefix(bytes.TrimLeft(line, ">"), []byte("From ")) {
				mbox.WriteByte('>')
			}
			mbox.Write(line)
		}
		mbox.WriteString("\n")
	}
	if err := mbox.Flush(); err != nil {
		return err
	}
	if err := mf.Close(); err != nil {
		return err
	}
	fmt.Printf("messages=%d bytes=%d with_attachments=%d\n", *n, sum, withAtt)
	return nil
}

func makeInboxMessage(rng *rand.Rand, i int, from, to string, date time.Time, size int, attach string) []byte {
	var b bytes.Buffer
	subject := sentence(rng, 3+rng.IntN(6))
	fmt.Fprintf(&b, "From: %s\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%d.%d@bench.example>\r\nMIME-Version: 1.0\r\n",
		from, to, subject, date.Format(time.RFC1123Z), i+1, date.Unix())
	text := func(n int) {
		line := 0
		for n > 0 {
			w := words[rng.IntN(len(words))]
			b.WriteString(w)
			n -= len(w) + 1
			if line += len(w) + 1; line > 70 {
				b.WriteString("\r\n")
				line = 0
			} else {
				b.WriteByte(' ')
			}
		}
		b.WriteString("\r\n")
	}
	if attach == "" {
		b.WriteString("Content-Type: text/plain; charset=us-ascii\r\n\r\n")
		text(size - b.Len())
		return b.Bytes()
	}
	boundary := fmt.Sprintf("=_bench_%d", i+1)
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=%q\r\n\r\n--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", boundary, boundary)
	text(500 + rng.IntN(3000))
	ext := map[string]string{"image/jpeg": "jpg", "application/pdf": "pdf", "application/zip": "zip"}[attach]
	fmt.Fprintf(&b, "--%s\r\nContent-Type: %s; name=\"file%d.%s\"\r\nContent-Disposition: attachment; filename=\"file%d.%s\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
		boundary, attach, i+1, ext, i+1, ext)
	// Random bytes: attachments are already compressed (JPEG, PDF, ZIP).
	raw := make([]byte, max(1024, (size-b.Len())*3/4*76/78))
	for j := 0; j < len(raw); j += 8 {
		v := rng.Uint64()
		for k := 0; k < 8 && j+k < len(raw); k++ {
			raw[j+k] = byte(v >> (8 * k))
		}
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	fmt.Fprintf(&b, "\r\n--%s--\r\n", boundary)
	return b.Bytes()
}

func sentence(rng *rand.Rand, n int) string {
	ws := make([]string, n)
	for i := range ws {
		ws[i] = words[rng.IntN(len(words))]
	}
	s := strings.Join(ws, " ")
	return strings.ToUpper(s[:1]) + s[1:]
}
