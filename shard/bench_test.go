package shard_test

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"cryptomail/shard"
)

// Benchmarks run on the disk holding the test's temp dir; every delivery is
// a synchronous=FULL commit (an fsync of the WAL), so they measure the disk
// as much as the code. msgs/s is reported beside ns/op. Each compares group
// commit (the default) with one transaction per delivery.

var commitModes = []struct {
	name  string
	group bool
}{{"group", true}, {"single", false}}

func benchMessage() shard.NewMessage {
	return shard.NewMessage{
		Flags:    []string{`\Recent`},
		Received: time.Now(),
		Size:     4096,
		Summary:  bytes.Repeat([]byte{0xa5}, 300),
		Body:     bytes.Repeat([]byte{0x5a}, 4096),
	}
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// benchStore makes a store with users created and their shards opened once,
// shared by every run of a sub-benchmark (creating users is slow).
func benchStore(b *testing.B, users int, group bool) (*shard.Store, []string) {
	ctx := context.Background()
	restore := shard.SetGroupCommit(group)
	s := newEnv(b, 2).open(b)
	restore()
	addrs := make([]string, users)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("user%04d@example.org", i)
		mustCreate(b, s, addrs[i])
		// Measure deliveries, not first opens.
		if _, _, err := s.Deliver(ctx, addrs[i], benchMessage()); err != nil {
			b.Fatal(err)
		}
	}
	return s, addrs
}

func BenchmarkDeliver4KB(b *testing.B) {
	for _, mode := range commitModes {
		s, addrs := benchStore(b, 1, mode.group)
		b.Run("commit="+mode.name, func(b *testing.B) {
			ctx := context.Background()
			m := benchMessage()
			b.SetBytes(int64(len(m.Body) + len(m.Summary)))
			for b.Loop() {
				if _, _, err := s.Deliver(ctx, addrs[0], m); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b)
		})
	}
}

func BenchmarkDeliverParallel(b *testing.B) {
	for _, users := range []int{1, 1000} {
		for _, mode := range commitModes {
			s, addrs := benchStore(b, users, mode.group)
			b.Run(fmt.Sprintf("users=%d/commit=%s", users, mode.name), func(b *testing.B) {
				ctx := context.Background()
				m := benchMessage()
				b.SetBytes(int64(len(m.Body) + len(m.Summary)))
				var next atomic.Int64
				// Deliveries wait on fsync, not CPU: run more of them than
				// cores, as an MTA with several LMTP connections would.
				b.SetParallelism(8)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						a := addrs[int(next.Add(1))%users]
						if _, _, err := s.Deliver(ctx, a, m); err != nil {
							b.Error(err)
							return
						}
					}
				})
				reportRate(b)
			})
		}
	}
}

// BenchmarkDeliverCold is the first delivery to a shard that is not open,
// with the key read of a server's LMTP path. "open": the store was just
// opened and the pool is big enough, as after a server start; "evict": the
// pool is far smaller than the users delivered to round-robin, so every
// delivery opens its shard and also closes the least recently used one, as
// at a large user base; "evict-parallel" is that with 10 concurrent
// deliveries, as a server with 10 LMTP sessions. cpu-ns/op is the process's
// CPU time (user and system) per delivery, steadier than wall time on a
// shared machine; a handle still closing when the run ends is not counted.
func BenchmarkDeliverCold(b *testing.B) {
	const users = 200
	ctx := context.Background()
	for _, tt := range []struct {
		name     string
		maxOpen  int
		parallel bool
	}{{"open", 2 * users, false}, {"evict", 4, false}, {"evict-parallel", 4, true}} {
		b.Run(tt.name, func(b *testing.B) {
			e := newEnv(b, 1)
			opts := func(o *shard.Options) { o.MaxOpenShards = tt.maxOpen }
			s := e.open(b, opts)
			addrs := make([]string, users)
			for i := range addrs {
				addrs[i] = fmt.Sprintf("user%04d@example.org", i)
				mustCreate(b, s, addrs[i])
			}
			m := benchMessage()
			deliver := func(a string) error {
				key, err := s.DeliveryKey(ctx, a)
				if err != nil {
					return err
				}
				_, _, err = s.DeliverSealed(ctx, a, key, m)
				return err
			}
			b.SetBytes(int64(len(m.Body) + len(m.Summary)))
			cpu0 := processCPU()
			if tt.parallel {
				var next atomic.Int64
				b.SetParallelism(5) // 10 goroutines on 2 cores
				b.ResetTimer()
				cpu0 = processCPU()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := deliver(addrs[int(next.Add(1))%users]); err != nil {
							b.Error(err)
							return
						}
					}
				})
			} else {
				i := 0
				for b.Loop() {
					if i == users && tt.maxOpen >= users {
						// Every shard is open now: start again from a fresh
						// store, closing these outside the timing.
						b.StopTimer()
						c := processCPU()
						if err := s.Close(); err != nil {
							b.Fatal(err)
						}
						s = e.open(b, opts)
						cpu0 += processCPU() - c
						i = 0
						b.StartTimer()
					}
					if err := deliver(addrs[i%users]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			reportRate(b)
		})
	}
}

// processCPU is the user and system CPU time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
