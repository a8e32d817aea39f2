package outbound

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; got:\n%s", name, got)
	}
}

func TestDSNGolden(t *testing.T) {
	arrival := time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC)
	now := arrival.Add(5 * 24 * time.Hour)
	tests := []struct {
		name string
		in   dsnInput
	}{
		{"dsn.golden", dsnInput{
			Hostname: "mx.example.org", Sender: "alice@example.org", Arrival: arrival, Date: now,
			MessageID: "0123@mx.example.org", Boundary: "b0undary", Lifetime: 5 * 24 * time.Hour,
			Recipients: []dsnRecipient{
				{Address: "dave@remote.example", Status: "5.1.1", Reply: "550 5.1.1 <dave@remote.example>: no such user", LastAttempt: now},
				{Address: "carol@remote.example", Status: "4.4.7", Reason: "could not connect to the mail relay", LastAttempt: now},
			},
			Headers: []byte("From: alice@example.org\r\nTo: dave@remote.example\r\nSubject: ...\r\n\r\nbody text\r\n"),
		}},
		{"dsn-utf8.golden", dsnInput{
			Hostname: "mx.example.org", Sender: "jörg@example.org", Arrival: arrival, Date: now,
			MessageID: "4567@mx.example.org", Boundary: "b0undary", Lifetime: 2 * time.Hour,
			Recipients: []dsnRecipient{
				{Address: "zoë@remote.example", Status: "5.6.7", Reason: "the mail relay does not support internationalized addresses (SMTPUTF8)", LastAttempt: now},
			},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeDSN(&b, tt.in); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name, b.Bytes())
			if bytes.Contains(b.Bytes(), []byte("body text")) {
				t.Error("the bounce quotes the message body")
			}
			// It parses as a report with the parts in RFC 3464 order.
			m, err := message.Read(bytes.NewReader(b.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			mr := m.MultipartReader()
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				mt, _, _ := p.Header.ContentType()
				types = append(types, mt)
			}
			if len(types) < 2 || types[0] != "text/plain" || !strings.HasSuffix(types[1], "delivery-status") {
				t.Errorf("parts %v", types)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	c := Config{MinRetry: time.Minute, MaxRetry: time.Hour}
	want := []time.Duration{time.Minute, 4 * time.Minute, 16 * time.Minute, time.Hour, time.Hour}
	for i, w := range want {
		if got := c.backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %s, want %s", i+1, got, w)
		}
	}
	huge := Config{MinRetry: time.Hour, MaxRetry: 1 << 62}
	if got := huge.backoff(1000); got <= 0 || got > 1<<62 {
		t.Errorf("backoff overflowed: %s", got)
	}
}

func TestCleanReply(t *testing.T) {
	tests := []struct{ in, want string }{
		{"550 5.1.1 no such user", "550 5.1.1 no such user"},
		{"451 first line\nsecond\tline\r\n", "451 first line second line"},
		{"550 bell\a and \x00 nul", "550 bell? and ? nul"},
		{"550 \xff\xfe broken utf-8", "550 broken utf-8"},
		{strings.Repeat("x", 600), strings.Repeat("x", 512)},
	}
	for _, tt := range tests {
		if got := cleanReply(tt.in); got != tt.want {
			t.Errorf("cleanReply(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestQuotedHeaders(t *testing.T) {
	tests := []struct{ in, want string }{
		{"A: 1\r\nB: 2\r\n\r\nbody", "A: 1\r\nB: 2\r\n"},
		{"A: 1\nB: 2\n\nbody", "A: 1\r\nB: 2\r\n"},
		{"A: 1\r\n folded\r\n\r\n", "A: 1\r\n folded\r\n"},
		{"no line end", ""},
		{"\r\nbody only", ""},
		{" leading continuation\r\n\r\n", ""},
		{"A: 1\r\n--boundary\r\n\r\n", ""},
	}
	for _, tt := range tests {
		if got := string(quotedHeaders([]byte(tt.in))); got != tt.want {
			t.Errorf("quotedHeaders(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzQuotedHeaders(f *testing.F) {
	f.Add([]byte("From: a@b\r\nSubject: x\r\n\r\nbody"))
	f.Add([]byte("A: 1\n folded\n\nB"))
	f.Add([]byte("--x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		hdr := quotedHeaders(msg)
		if len(hdr) == 0 {
			return
		}
		if len(hdr) > maxDSNHeaders {
			t.Fatalf("%d bytes quoted", len(hdr))
		}
		if !bytes.HasSuffix(hdr, []byte("\r\n")) || bytes.Contains(hdr, []byte("\r\n\r\n")) || bytes.Contains(hdr, []byte("\r\n--")) {
			t.Fatalf("quoted section could break the report: %q", hdr)
		}
		// Everything quoted comes from before the first empty line.
		end := len(msg)
		if i := bytes.Index(msg, []byte("\n\n")); i >= 0 {
			end = i + 1
		}
		if i := bytes.Index(msg, []byte("\n\r\n")); i >= 0 && i+1 < end {
			end = i + 1
		}
		plain := bytes.ReplaceAll(hdr, []byte("\r\n"), []byte("\n"))
		src := bytes.ReplaceAll(msg[:end], []byte("\r\n"), []byte("\n"))
		if !bytes.HasPrefix(src, plain) {
			t.Fatalf("quoted %q is not a prefix of the header section %q", hdr, msg[:end])
		}
	})
}

func FuzzCleanReply(f *testing.F) {
	f.Add("550 5.1.1 user unknown")
	f.Add("451-first\r\n451 second")
	f.Fuzz(func(t *testing.T, s string) {
		out := cleanReply(s)
		if len(out) > 512 || !utf8.ValidString(out) || strings.ContainsAny(out, "\r\n\t\x00") {
			t.Fatalf("cleanReply(%q) = %q", s, out)
		}
	})
}

// FuzzWriteDSN: whatever the relay said and whatever headers the client
// sent, the bounce parses and its report names each recipient.
func FuzzWriteDSN(f *testing.F) {
	f.Add("550 5.1.1 no such user", []byte("Subject: x\r\n\r\nbody"))
	f.Add("452 \x00\r\n--b0undary--", []byte("A: --b0undary\r\n\r\n"))
	f.Fuzz(func(t *testing.T, reply string, headers []byte) {
		now := time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC)
		in := dsnInput{Hostname: "mx.example.org", Sender: "alice@example.org", Arrival: now, Date: now,
			MessageID: "1@mx.example.org", Boundary: "b0undary", Lifetime: time.Hour, Headers: headers,
			Recipients: []dsnRecipient{{Address: "carol@remote.example", Status: "5.0.0", Reply: cleanReply(reply)}}}
		var b bytes.Buffer
		if err := writeDSN(&b, in); err != nil {
			return // a header go-message refuses to write; never a panic
		}
		m, err := message.Read(bytes.NewReader(b.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		mr := m.MultipartReader()
		if _, err := mr.NextPart(); err != nil {
			t.Fatal(err)
		}
		p, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		status, _ := io.ReadAll(p.Body)
		if !bytes.Contains(status, []byte("Final-Recipient: rfc822; carol@remote.example\r\n")) {
			t.Fatalf("report lost the recipient:\n%s", status)
		}
	})
}

// TestHeldDroppedAtStart: rows of a send that never completed are not
// relayed after a restart.
func TestHeldDroppedAtStart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "outbound.db")
	q, err := openQueue(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	held, err := q.insertHeld(ctx, "alice@example.org", now, []batch{{body: []byte("x"), rcpts: []string{"carol@remote.example"}}})
	if err != nil {
		t.Fatal(err)
	}
	released, err := q.insertHeld(ctx, "alice@example.org", now, []batch{{body: []byte("y"), rcpts: []string{"dave@remote.example"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.release(ctx, released); err != nil {
		t.Fatal(err)
	}
	if ids, err := q.due(ctx, now, 10); err != nil || len(ids) != 1 || ids[0] != released[0] {
		t.Fatalf("due %v (%v): held rows must not be due", ids, err)
	}
	if n, err := q.dropHeld(ctx); err != nil || n != 1 {
		t.Fatalf("dropHeld = %d, %v", n, err)
	}
	all, err := q.all(ctx)
	if err != nil || len(all) != 1 || all[0].id != released[0] || all[0].rcpts[0].address != "dave@remote.example" {
		t.Fatalf("after dropHeld: %+v, %v (held %v)", all, err, held)
	}
	q.close()
}
