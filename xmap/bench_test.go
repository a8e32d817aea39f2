package xmap_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"cryptomail/xmap"
)

// listPage50 is a list-messages response with 50 messages of 1 KB summaries: the first
// page a client decodes.
func listPage50(b *testing.B) []byte {
	rnd := rand.NewChaCha8([32]byte{2})
	r := &xmap.ListMessagesResult{FolderID: "1", Total: 666, State: "700", NextCursor: "c50"}
	for i := range 50 {
		sum := make([]byte, 1000)
		rnd.Read(sum)
		r.Messages = append(r.Messages, xmap.Message{ID: fmt.Sprint(616 + i), FolderID: "1", Flags: []xmap.Flag{xmap.FlagSeen},
			Size: 20000, Received: time.Date(2025, 3, 1, 9, i, 0, 0, time.UTC), Summary: sum})
	}
	var doc bytes.Buffer
	resp := &xmap.BatchResponse{Responses: []xmap.Response{{ID: "r1", Name: "list-messages", Result: r}}}
	if err := xmap.EncodeResponse(&doc, resp); err != nil {
		b.Fatal(err)
	}
	return doc.Bytes()
}

// BenchmarkDecodeListPage50: the client's decoding of that page, streaming through
// encoding/xml (Reader) and from memory (Bytes, which the client and server use).
func BenchmarkDecodeListPage50(b *testing.B) {
	doc := listPage50(b)
	b.Run("Reader", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			if _, err := xmap.DecodeResponse(bytes.NewReader(doc)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Bytes", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			if _, err := xmap.DecodeResponseBytes(doc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
