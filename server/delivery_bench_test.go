package server

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	cmcrypto "cryptomail/crypto"
	"cryptomail/lmtp"
	"cryptomail/server/internal/deliver"
	"cryptomail/shard"
)

// BenchmarkDeliver4KB is the whole delivery step for one recipient: key
// lookup, encryption of body and summary, and the durable commit.
func BenchmarkDeliver4KB(b *testing.B) {
	for _, users := range []int{1, 1000} {
		b.Run(fmt.Sprintf("users=%d", users), func(b *testing.B) {
			benchmarkDeliver(b, users, 4<<10)
		})
	}
}

// BenchmarkDeliverLarge is BenchmarkDeliver4KB for the 100 KB and 1 MB
// messages of the LMTP benchmark (make bench), to 100 users.
func BenchmarkDeliverLarge(b *testing.B) {
	for _, size := range []int{100 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("size=%dKB", size>>10), func(b *testing.B) {
			benchmarkDeliver(b, 100, size)
		})
	}
}

func benchmarkDeliver(b *testing.B, users, size int) {
	d, _, addrs := benchDelivery(b, users)
	msg := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n"), size/64)
	msg = append([]byte("From: a@elsewhere.test\r\nSubject: bench\r\n\r\n"), msg...)
	env := &lmtp.Envelope{From: "a@elsewhere.test", Protocol: "LMTP", Hostname: "localhost", Received: time.Now()}
	b.SetBytes(int64(len(msg)))
	b.SetParallelism(5) // 10 concurrent deliveries on 2 cores, like 10 LMTP sessions
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			a := addrs[i%len(addrs)]
			i++
			if err := d.Deliver(context.Background(), env, lmtp.Recipient{Address: a, Mailbox: a}, msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func benchDelivery(b testing.TB, users int) (*delivery, *shard.Store, []string) {
	b.Helper()
	dir := b.TempDir()
	cfg, err := ParseConfig([]byte("[server]\ndomains = [\"example.test\"]\n[storage]\nhomes = [\"homes\"]\n"), "bench.toml", dir)
	if err != nil {
		b.Fatal(err)
	}
	st, err := OpenStore(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	addrs := make([]string, users)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("u%d@example.test", i)
		ent, err := cmcrypto.GenerateKey("U", addrs[i], nil, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		k, err := cmcrypto.NewPublicKey(ent, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		armored, _ := k.Armored()
		if _, err := st.CreateUser(context.Background(), addrs[i], armored); err != nil {
			b.Fatal(err)
		}
	}
	return newDelivery(cfg, deliver.New(st, deliver.Options{})), st, addrs
}
