package mailback_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"cryptomail/server/internal/mailback"
	"cryptomail/shard"
	"cryptomail/xmap"
	"cryptomail/xmap/xmapserver"
)

// benchInbox makes a user with an inbox of 666 messages totalling about 100 MB of
// ciphertext (random bytes: 150 KB bodies, 1 KB summaries), the benchmark
// mailbox, and returns a server on it with the message ids, oldest first.
func benchInbox(b *testing.B) (*fixture, *xmapserver.Server, []string) {
	b.Helper()
	ctx := context.Background()
	f := newFixture(b, mailback.Options{})
	const a = "alice@example.org"
	if err := f.AddUser(ctx, a); err != nil {
		b.Fatal(err)
	}
	rnd := rand.NewChaCha8([32]byte{1})
	body, summary := make([]byte, 150_000), make([]byte, 1_000)
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var ids []string
	for i := range 666 {
		rnd.Read(body)
		rnd.Read(summary)
		id, err := f.Deliver(ctx, a, body, summary, start.Add(time.Duration(i)*time.Minute))
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, id)
	}
	return f, &xmapserver.Server{Backend: f.Backend(), Logger: quiet}, ids
}

func handle(b *testing.B, srv *xmapserver.Server, doc []byte) []byte {
	out := srv.Handle(context.Background(), "alice@example.org", false, doc)
	if bytes.Contains(out, []byte("<error")) {
		b.Fatalf("error response: %.300s", out)
	}
	return out
}

// BenchmarkListPage50: the first page (50 summaries, newest first) of that inbox, as a
// whole XMAP request: decode, shard read, encode. Client-side decryption is not included.
func BenchmarkListPage50(b *testing.B) {
	_, srv, _ := benchInbox(b)
	doc := []byte(`<xmap xmlns="urn:cryptomail:xmap:1" version="1"><list-messages id="l" folder="INBOX" limit="50"/></xmap>`)
	var n int
	for b.Loop() {
		n = len(handle(b, srv, doc))
	}
	b.ReportMetric(float64(n), "resp-bytes")
}

// BenchmarkFetch: fetching from that inbox: one message's body, and the summaries of 50.
func BenchmarkFetch(b *testing.B) {
	_, srv, ids := benchInbox(b)
	b.Run("body", func(b *testing.B) {
		b.SetBytes(150_000)
		i := 0
		for b.Loop() {
			doc := fmt.Sprintf(`<xmap xmlns="urn:cryptomail:xmap:1" version="1"><fetch id="f"><id>%s</id></fetch></xmap>`, ids[i%len(ids)])
			handle(b, srv, []byte(doc))
			i++
		}
	})
	b.Run("summary50", func(b *testing.B) {
		req := &xmap.Fetch{IDs: ids[len(ids)-50:], Parts: xmap.PartSummary}
		var doc bytes.Buffer
		if err := xmap.EncodeRequest(&doc, &xmap.Batch{Requests: []xmap.Request{{ID: "f", Command: req}}}); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			handle(b, srv, doc.Bytes())
		}
	})
}

// BenchmarkShardListPage50 is the storage part of BenchmarkListPage50 alone.
func BenchmarkShardListPage50(b *testing.B) {
	f, _, _ := benchInbox(b)
	q := shard.ListQuery{Folder: shard.FolderRef{Name: "INBOX"}, Desc: true, Limit: 50}
	for b.Loop() {
		n := 0
		if _, err := f.store.ListMessages(context.Background(), "alice@example.org", q, func(shard.MessageInfo) error { n++; return nil }); err != nil || n != 50 {
			b.Fatalf("%d messages, %v", n, err)
		}
	}
}
