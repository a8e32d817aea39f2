package faulttest

import (
	"encoding/base64"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// crashKillsEnv overrides how many times TestCrash kills the server.
const crashKillsEnv = "CRYPTOMAIL_CRASH_KILLS"

// crashPlan is the shape of one TestCrash run.
type crashPlan struct {
	kills    int
	sessions int           // parallel LMTP sessions
	users    int           // recipients to spread over
	maxGap   time.Duration // longest run between a restart and the next kill
}

func planCrash(t *testing.T) crashPlan {
	p := crashPlan{kills: 3, sessions: 4, users: 4, maxGap: time.Second}
	if longCrash {
		p = crashPlan{kills: 30, sessions: 8, users: 8, maxGap: 4 * time.Second}
	}
	if s := os.Getenv(crashKillsEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", crashKillsEnv, s)
		}
		p.kills = n
	}
	return p
}

// TestCrash: a loader delivers over LMTP from parallel sessions while the
// server is killed with SIGKILL at random moments (in the middle of
// deliveries, and during startup and WAL recovery) and restarted. Every
// message acknowledged with 250 must be stored exactly once and decrypt to
// what was sent; a message whose reply never arrived may be stored, at most
// once; every SQLite file must pass its integrity check.
func TestCrash(t *testing.T) {
	t.Parallel()
	plan := planCrash(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("plan %+v, seed %d", plan, seed)
	rng := mrand.New(mrand.NewPCG(seed, 0))

	in := newInstance(t, options{})
	var users []string
	for i := range plan.users {
		u := fmt.Sprintf("crash%d@%s", i+1, domain)
		in.addUser(u)
		users = append(users, u)
	}
	in.start()
	in.waitReady()

	ld := &loader{in: in, l: newLedger(), users: users}
	var wg sync.WaitGroup
	for i := range plan.sessions {
		wg.Go(func() { ld.session(seed, uint64(i+1)) })
	}
	defer func() {
		// On a failed run, stop the loader before the cleanups kill the server.
		ld.stop.Store(true)
		wg.Wait()
	}()

	for k := range plan.kills {
		if k%4 == 2 {
			// Right after a restart: while the process starts, opens the
			// metabase and recovers the shards' WALs.
			time.Sleep(time.Duration(rng.Int64N(int64(30 * time.Millisecond))))
		} else {
			in.waitReady()
			time.Sleep(time.Duration(rng.Int64N(int64(plan.maxGap))))
		}
		in.alive(t) // it must die by our hand, not on its own
		in.kill()
		in.start()
	}
	in.waitReady()

	// The server must be back to work after the last restart.
	base := ld.acks.Load()
	deadline := time.Now().Add(replyWait)
	for ld.acks.Load() < base+20 {
		if time.Now().After(deadline) {
			t.Fatalf("no deliveries acknowledged within %v after the last restart\nserver log:\n%s", replyWait, in.logTail(40))
		}
		in.alive(t)
		time.Sleep(20 * time.Millisecond)
	}
	ld.stop.Store(true)
	wg.Wait()
	in.stop()

	v := in.verify(t, ld.l)
	t.Logf("%d kills; %d messages sent; %d copies acknowledged; %d without a verdict (%d of them stored); %d stored in all",
		plan.kills, len(ld.l.msgs), v.acked, v.unknown, v.unknownKept, v.stored)
	if v.acked == 0 {
		t.Fatal("nothing was acknowledged: the test proved nothing")
	}
}

// loader delivers unique messages from one session per goroutine and records
// every recipient's verdict in its ledger.
type loader struct {
	in    *instance
	l     *ledger
	users []string
	acks  atomic.Int64
	stop  atomic.Bool
}

func (ld *loader) session(seed, id uint64) {
	rng := mrand.New(mrand.NewPCG(seed, id))
	for !ld.stop.Load() {
		w, err := dialWire(ld.in.lmtpAddr)
		if err != nil {
			time.Sleep(5 * time.Millisecond) // down or restarting
			continue
		}
		if err := w.greet(true); err == nil {
			for !ld.stop.Load() && ld.deliver(w, rng) {
			}
		}
		w.Close()
	}
}

// deliver runs one transaction and reports whether the connection is still
// usable.
func (ld *loader) deliver(w *wire, rng *mrand.Rand) bool {
	n := 1 + rng.IntN(min(3, len(ld.users)))
	perm := rng.Perm(len(ld.users))
	rcpts := make([]string, n)
	for i := range rcpts {
		rcpts[i] = ld.users[perm[i]]
	}
	tok := newToken()
	msg := crashMessage(tok, rcpts, rng)
	tr, err := w.transact(true, "loader@elsewhere.test", "", rcpts, msg)

	// Which recipients could have the message: those whose RCPT was
	// accepted, once the message itself went out (after 354).
	sentData := tr != nil && tr.data.code() == 354
	j := 0
	for i, r := range rcpts {
		o := mustNotStore
		if sentData && tr.rcpts[i].code() == 250 {
			o = mayStore
			if j < len(tr.final) && tr.final[j].code() == 250 {
				o = mustStore
				ld.acks.Add(1)
			}
			j++
		}
		ld.l.record(tok, msg, r, o)
	}
	return err == nil
}

// crashMessage builds a message with a unique token; most are a few KB, some
// up to 200 KB, so that WAL checkpoints happen during the run.
func crashMessage(tok string, rcpts []string, rng *mrand.Rand) []byte {
	size := 200 + rng.IntN(6000)
	if rng.IntN(10) == 0 {
		size = 20_000 + rng.IntN(180_000)
	}
	var b strings.Builder
	b.Grow(size + 512)
	fmt.Fprintf(&b, "%s%s\r\nFrom: Loader <loader@elsewhere.test>\r\nTo: %s\r\nSubject: crash %s\r\nMessage-ID: <%s@faulttest.test>\r\nDate: %s\r\n\r\nbody-id: %s\r\n",
		tokenHeader, tok, strings.Join(rcpts, ", "), tok, tok, time.Now().Format(time.RFC1123Z), tok)
	raw := make([]byte, 57)
	for b.Len() < size {
		for i := range raw {
			raw[i] = byte(rng.Uint32())
		}
		b.WriteString(base64.StdEncoding.EncodeToString(raw))
		b.WriteString("\r\n")
	}
	return []byte(b.String())
}
