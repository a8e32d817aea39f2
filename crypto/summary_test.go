package crypto_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	cmcrypto "cryptomail/crypto"
)

// summaryWant lists what a fixture must give, on top of its golden JSON, so
// that a wrong golden file cannot slip through -update unnoticed.
type summaryWant struct {
	from, subject, messageID string
	to, cc                   []string
	snippet                  string // prefix of the snippet
	notInSnippet             string // must not appear in the snippet
	date                     string // RFC 3339, "" for zero
	attachments              bool
	anySnippet               bool // the snippet is not checked (garbage in, garbage out)
}

var summaryCases = map[string]summaryWant{
	"plain-ascii": {
		from: "Alice Example <alice@example.org>", subject: "Lunch on Friday?",
		to:        []string{"Bob <bob@example.net>", "carol@example.net"},
		cc:        []string{"Dave, the third <dave@example.net>"},
		messageID: "20250304095958.1234@example.org", date: "2025-03-04T10:59:58+01:00",
		snippet: "Hi Bob, are you free for lunch on Friday? We could try the new place near the station. Alice",
	},
	"rfc2047-utf8-b": {
		from: "Jürgen Müller <juergen@example.de>", subject: "Grüße aus München ☀",
		to: []string{"bob@example.net"}, snippet: "Servus!", messageID: "b64@example.de", date: "2025-03-05T08:00:00+01:00",
	},
	"rfc2047-utf8-q": {
		from: "Françoise Dupont <francoise@example.fr>", subject: "Réunion de l'équipe — mardi",
		to: []string{"Björn <bjorn@example.se>"}, snippet: "Bonjour à tous.", date: "2025-03-06T14:30:00+01:00",
	},
	"rfc2047-latin1": {
		from: "René François <rene@example.fr>", subject: "Café crème à 10h",
		to: []string{"Søren <soren@example.dk>"}, snippet: "Rendez-vous.", date: "2025-03-07T09:15:00-05:00",
	},
	"utf8-headers": {
		from: "Søren Kierkegaard <søren@eksempel.dk>", subject: "Ünïcödé in raw 8-bit headers ✓",
		to: []string{"山田太郎 <taro@例え.jp>"}, snippet: "こんにちは、世界。", date: "2025-03-07T12:00:00+09:00",
	},
	"latin1-raw-header": {
		from: "André <andre@example.fr>", subject: "Café au lait", to: []string{"bob@example.net"},
		snippet: "Très bien, merci.", date: "2025-03-08T07:00:00+01:00",
	},
	"multipart-alternative": {
		from: "Newsletter <news@example.com>", subject: "This week", to: []string{"bob@example.net"},
		messageID: "alt-1@example.com", date: "2025-03-10T06:00:00Z",
		snippet: "This week: three short stories and one long one.", notInSnippet: "multi-part",
	},
	"multipart-mixed-attachment": {
		from: "Alice <alice@example.org>", subject: "The report", to: []string{"Bob <bob@example.net>"},
		date: "2025-03-11T16:20:00+01:00", snippet: "Here is the report you asked for.", attachments: true,
	},
	"html-only": {
		from: "shop@example.com", subject: "Your order", to: []string{"bob@example.net"}, date: "2025-03-12T11:00:00Z",
		snippet: "Thank you for your order! Total: € 42 & free shipping. a < b", notInSnippet: "not text",
	},
	"quoted-printable": {
		from: "Alice <alice@example.org>", subject: "QP body", to: []string{"bob@example.net"}, date: "2025-03-13T10:00:00Z",
		snippet: "Grüße aus Köln! This line is soft-wrapped and = signs are escaped.",
	},
	"base64": {
		from: "Alice <alice@example.org>", subject: "Base64 body", to: []string{"bob@example.net"}, date: "2025-03-14T10:00:00Z",
		snippet: "Ceci est un message encodé en base64 — avec des accents.",
	},
	"latin1-body": {
		from: "Alice <alice@example.org>", subject: "Latin-1 body", to: []string{"bob@example.net"}, date: "2025-03-15T10:00:00Z",
		snippet: "Voilà un texte en ISO-8859-1: été, naïve, © 2025.",
	},
	"unknown-charset": {
		from: "Alice <alice@example.org>", subject: "tlhIngan Hol", to: []string{"bob@example.net"},
		date: "2025-03-16T10:00:00Z", snippet: "nuqneH! Qapla' é",
	},
	"broken-boundary": {
		from: "Alice <alice@example.org>", subject: "Boundary does not match", to: []string{"bob@example.net"},
		date: "2025-03-17T10:00:00Z", snippet: "The real text of the message.", attachments: true,
	},
	"missing-boundary": {
		from: "Alice <alice@example.org>", subject: "No boundary parameter", snippet: "Text found despite the missing boundary.",
	},
	"unterminated-multipart": {
		from: "Alice <alice@example.org>", subject: "Cut off in the middle", snippet: "First part is fine.", attachments: true,
	},
	"missing-headers": {snippet: "Just a body, no header at all."},
	"garbage":         {anySnippet: true},
	"empty-body": {
		from: "Alice <alice@example.org>", subject: "Nothing inside", to: []string{"bob@example.net"}, date: "2025-03-18T10:00:00Z",
	},
	"empty": {},
	"bare-lf": {
		from: "Alice <alice@example.org>", subject: "Bare LF line endings", to: []string{"bob@example.net"},
		date: "2025-03-19T10:00:00Z", snippet: "Written on a system that uses bare LF.", attachments: true,
	},
	"malformed-header-lines": {
		from: "Alice <alice@example.org>", subject: "Survives broken lines folded onto a second line",
		to: []string{"bob@example.net"}, date: "2025-03-20T10:00:00Z", snippet: "Body after a broken header.",
	},
	"nul-bytes": {
		from: "Alice <alice@example.org>", subject: "Has NUL bytes", snippet: "Text with a NUL byte inside.",
	},
	"bad-base64": {
		from: "Alice <alice@example.org>", subject: "Broken base64", snippet: "The first part decodes fine",
	},
	"bad-qp": {
		from: "Alice <alice@example.org>", subject: "Broken quoted-printable", snippet: "Café is fine,",
	},
	"nested-related": {
		from: "Alice <alice@example.org>", subject: "Photo inline", to: []string{"bob@example.net"},
		date: "2025-03-21T10:00:00Z", snippet: "Look at this photo (inline).",
	},
	"signed": {
		from: "Alice <alice@example.org>", subject: "Signed message", to: []string{"bob@example.net"},
		date: "2025-03-22T10:00:00Z", snippet: "This message is signed.",
	},
	"forwarded-message": {
		from: "Alice <alice@example.org>", subject: "Fwd: old thread", to: []string{"bob@example.net"},
		snippet: "See below.", attachments: true,
	},
	"long-snippet": {
		from: "Alice <alice@example.org>", subject: "A long body",
		snippet: "Lorem ipsum dolor sit amet, consectetur adipiscing élit. Lorem ipsum",
	},
	"bad-date": {
		from: "Alice <alice@example.org>", subject: "Unreadable date", messageID: "not-in-brackets@example.org", snippet: "text",
	},
	"bad-addresses": {
		from: `Unclosed quote <alice@example.org>`, subject: "Address salvage",
		to: []string{"bob@example.net", "not an address", "Zoë <zoe@example.org>", "broken@"}, snippet: "text",
	},
	"application-only": {
		from: "scanner@example.org", subject: "Scan", to: []string{"bob@example.net"}, attachments: true,
	},
}

func TestExtractSummary(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "summary", "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".eml")
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			want, ok := summaryCases[name]
			if !ok {
				t.Fatalf("fixture %s has no entry in summaryCases", file)
			}
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got := cmcrypto.ExtractSummary(raw)
			checkSummaryInvariants(t, got)
			checkSummaryWant(t, got, want)

			js, err := cmcrypto.MarshalSummary(got)
			if err != nil {
				t.Fatal(err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, js, "", "  "); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			golden(t, filepath.Join("summary", name+".json"), pretty.Bytes())

			// The stored JSON must read back to the same summary.
			var back cmcrypto.Summary
			if err := json.Unmarshal(js, &back); err != nil {
				t.Fatal(err)
			}
			if !back.Date.Equal(got.Date) {
				t.Errorf("date round trip: %v != %v", back.Date, got.Date)
			}
			back.Date, got.Date = time.Time{}, time.Time{}
			if fmt.Sprint(back) != fmt.Sprint(got) {
				t.Errorf("JSON round trip:\n got %+v\nwant %+v", back, got)
			}
		})
	}
	for name := range summaryCases {
		if !seen[name] {
			t.Errorf("summaryCases names %q but testdata/summary/%s.eml is missing", name, name)
		}
	}
}

func checkSummaryWant(t *testing.T, got cmcrypto.Summary, want summaryWant) {
	t.Helper()
	if got.From != want.from {
		t.Errorf("From = %q, want %q", got.From, want.from)
	}
	if got.Subject != want.subject {
		t.Errorf("Subject = %q, want %q", got.Subject, want.subject)
	}
	if !slices.Equal(got.To, want.to) {
		t.Errorf("To = %q, want %q", got.To, want.to)
	}
	if !slices.Equal(got.Cc, want.cc) {
		t.Errorf("Cc = %q, want %q", got.Cc, want.cc)
	}
	if got.MessageID != want.messageID {
		t.Errorf("MessageID = %q, want %q", got.MessageID, want.messageID)
	}
	gotDate := ""
	if !got.Date.IsZero() {
		gotDate = got.Date.Format(time.RFC3339)
	}
	if gotDate != want.date {
		t.Errorf("Date = %q, want %q", gotDate, want.date)
	}
	switch {
	case want.anySnippet:
	case want.snippet == "" && got.Snippet != "":
		t.Errorf("Snippet = %q, want none", got.Snippet)
	case !strings.HasPrefix(got.Snippet, want.snippet):
		t.Errorf("Snippet = %q, want prefix %q", got.Snippet, want.snippet)
	}
	if want.notInSnippet != "" && strings.Contains(got.Snippet, want.notInSnippet) {
		t.Errorf("Snippet = %q contains %q", got.Snippet, want.notInSnippet)
	}
	if got.HasAttachments != want.attachments {
		t.Errorf("HasAttachments = %v, want %v", got.HasAttachments, want.attachments)
	}
}

// checkSummaryInvariants holds for every input whatsoever.
func checkSummaryInvariants(t testing.TB, s cmcrypto.Summary) {
	t.Helper()
	text := func(field, v string, maxRunes int) {
		if !utf8.ValidString(v) {
			t.Errorf("%s is not valid UTF-8: %q", field, v)
		}
		if n := utf8.RuneCountInString(v); n > maxRunes {
			t.Errorf("%s has %d runes, more than %d", field, n, maxRunes)
		}
		if v != strings.TrimSpace(v) {
			t.Errorf("%s has leading or trailing space: %q", field, v)
		}
		for _, r := range v {
			if unicode.IsControl(r) {
				t.Errorf("%s holds control character %U: %q", field, r, v)
				break
			}
		}
	}
	text("From", s.From, 10*600)
	text("Subject", s.Subject, 1000)
	text("MessageID", s.MessageID, 250)
	text("Snippet", s.Snippet, cmcrypto.SnippetRunes)
	for _, list := range [][]string{s.To, s.Cc} {
		if len(list) > cmcrypto.MaxSummaryAddresses {
			t.Errorf("%d addresses, more than %d", len(list), cmcrypto.MaxSummaryAddresses)
		}
		for _, a := range list {
			text("address", a, 600)
			if a == "" {
				t.Error("empty address in list")
			}
		}
	}
	if _, err := cmcrypto.MarshalSummary(s); err != nil {
		t.Errorf("summary does not marshal: %v", err)
	}
}

// TestExtractSummaryLimits feeds generated pathological messages and checks
// that the bounds hold (work is bounded by construction; no timing asserted).
func TestExtractSummaryLimits(t *testing.T) {
	manyParts := func(n int) []byte {
		var b bytes.Buffer
		b.WriteString("Subject: parts\r\nContent-Type: multipart/mixed; boundary=p\r\n\r\n")
		for range n {
			b.WriteString("--p\r\nContent-Type: text/plain\r\n\r\nx\r\n")
		}
		b.WriteString("--p--\r\n")
		return b.Bytes()
	}
	deep := func(n int) []byte {
		var b bytes.Buffer
		b.WriteString("Subject: deep\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n")
		for i := 1; i < n; i++ {
			fmt.Fprintf(&b, "--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n", i-1, i)
		}
		fmt.Fprintf(&b, "--b%d\r\nContent-Type: text/plain\r\n\r\ndeep text\r\n", n-1)
		return b.Bytes()
	}
	bigAttachment := func() []byte {
		var b bytes.Buffer
		b.WriteString("Subject: big\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n")
		b.WriteString("--x\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
		line := strings.Repeat("QUJD", 19) + "\r\n"
		for range (8 << 20) / len(line) {
			b.WriteString(line)
		}
		b.WriteString("--x\r\nContent-Type: text/plain\r\n\r\ntext after the attachment\r\n--x--\r\n")
		return b.Bytes()
	}

	tests := []struct {
		name  string
		raw   []byte
		check func(t *testing.T, s cmcrypto.Summary)
	}{
		{"huge header", []byte("Subject: first\r\n" + strings.Repeat("X-Filler: "+strings.Repeat("a", 100)+"\r\n", 30000) + "To: late@example.org\r\n\r\nbody\r\n"),
			func(t *testing.T, s cmcrypto.Summary) {
				if s.Subject != "first" || s.Snippet != "body" || len(s.To) != 0 {
					t.Errorf("got %+v", s)
				}
			}},
		{"one huge header line", []byte("Subject: " + strings.Repeat("long ", 1<<20) + "\r\n\r\nbody"),
			func(t *testing.T, s cmcrypto.Summary) {
				if s.Snippet != "body" {
					t.Errorf("snippet %q", s.Snippet)
				}
			}},
		{"long subject", []byte("Subject: " + strings.Repeat("é", 5000) + "\r\n\r\nbody"),
			func(t *testing.T, s cmcrypto.Summary) {
				if utf8.RuneCountInString(s.Subject) != 1000 {
					t.Errorf("subject has %d runes", utf8.RuneCountInString(s.Subject))
				}
			}},
		{"many recipients", []byte("To: " + strings.Repeat("a@example.org, ", 10000) + "z@example.org\r\n\r\n"),
			func(t *testing.T, s cmcrypto.Summary) {
				if len(s.To) != cmcrypto.MaxSummaryAddresses {
					t.Errorf("%d recipients", len(s.To))
				}
			}},
		{"many parts", manyParts(5000), func(t *testing.T, s cmcrypto.Summary) {
			if s.Snippet != "x" {
				t.Errorf("snippet %q", s.Snippet)
			}
		}},
		{"deep nesting", deep(5000), func(t *testing.T, s cmcrypto.Summary) {
			if s.Subject != "deep" {
				t.Errorf("subject %q", s.Subject)
			}
		}},
		{"shallow nesting", deep(5), func(t *testing.T, s cmcrypto.Summary) {
			if s.Snippet != "deep text" {
				t.Errorf("snippet %q", s.Snippet)
			}
		}},
		{"big attachment", bigAttachment(), func(t *testing.T, s cmcrypto.Summary) {
			if !s.HasAttachments || s.Snippet != "text after the attachment" {
				t.Errorf("got %+v", s)
			}
		}},
		{"many style tags", []byte("Content-Type: text/html\r\n\r\n" + strings.Repeat("<style>x</style>", 20000) + "<p>visible</p>"),
			func(t *testing.T, s cmcrypto.Summary) {
				if s.Snippet != "visible" {
					t.Errorf("snippet %q", s.Snippet)
				}
			}},
		{"unterminated style", []byte("Content-Type: text/html\r\n\r\n<p>before</p><style>" + strings.Repeat("x", 100000)),
			func(t *testing.T, s cmcrypto.Summary) {
				if s.Snippet != "before" {
					t.Errorf("snippet %q", s.Snippet)
				}
			}},
		{"year 99999", []byte("Date: Mon, 1 Jan 99999 00:00:00 +0000\r\n\r\n"), func(t *testing.T, s cmcrypto.Summary) {
			if !s.Date.IsZero() {
				t.Errorf("date %v", s.Date)
			}
		}},
		{"bidi override in subject", []byte("Subject: invoice\u202Efdp.exe\r\n\r\n"), func(t *testing.T, s cmcrypto.Summary) {
			if s.Subject != "invoicefdp.exe" {
				t.Errorf("subject %q", s.Subject)
			}
		}},
		{"snippet cut mid-rune", []byte("Content-Type: text/plain; charset=utf-8\r\n\r\n" + strings.Repeat("€", 100000)),
			func(t *testing.T, s cmcrypto.Summary) {
				if s.Snippet != strings.Repeat("€", cmcrypto.SnippetRunes) {
					t.Errorf("snippet %q", s.Snippet)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := cmcrypto.ExtractSummaryStrict(tt.raw)
			checkSummaryInvariants(t, s)
			tt.check(t, s)
		})
	}
}

func FuzzExtractSummary(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "summary", "*.eml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		// The strict variant has no recover: a panic fails the fuzz run.
		checkSummaryInvariants(t, cmcrypto.ExtractSummaryStrict(raw))
	})
}

func BenchmarkExtractSummary(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("testdata", "summary", "multipart-mixed-attachment.eml"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		cmcrypto.ExtractSummary(raw)
	}
}

// BenchmarkExtractSummary1MB: a large plain text message, of which the
// summary reads the first text part's first 64 KiB.
func BenchmarkExtractSummary1MB(b *testing.B) {
	raw := bytes.Repeat([]byte("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n"), (1<<20)/58+1)[:1<<20]
	copy(raw, "From: a@example.org\r\nTo: b@example.org\r\nSubject: bench\r\nContent-Type: text/plain\r\n\r\n")
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		cmcrypto.ExtractSummary(raw)
	}
}
