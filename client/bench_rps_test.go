package client_test

import (
	"context"
	"testing"

	"cryptomail/internal/testenv"
	"cryptomail/xmap"
	"cryptomail/xmap/sexmap"
)

// BenchmarkListSmall is benchctl rps in process: one logged-in session
// sending list-messages limit=10 over SeXMAP to the real server (summaries
// returned, not decrypted).
func BenchmarkListSmall(b *testing.B) {
	s := realServer(b)
	c, pass := signedUp(b, s, "alice@example.test", sexmap.MinKDFParams)
	for i := range 10 {
		res := testenv.LMTPSend(b, s.Addr("lmtp"), "s@remote.example", []string{"alice@example.test"}, inboxMessage(i, 4<<10), false)
		if err := res["alice@example.test"]; err != nil {
			b.Fatal(err)
		}
	}
	sess, err := c.Login(context.Background(), "alice@example.test", pass)
	if err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r, err := sess.ListMessages(context.Background(), &xmap.ListMessages{Folder: xmap.FolderRef{Name: "INBOX"}, Limit: 10})
			if err != nil || len(r.Messages) != 10 {
				b.Errorf("%d messages, %v", len(r.Messages), err)
				return
			}
		}
	})
}
