package sexmap

import (
	"encoding/binary"
	"testing"
)

func TestReplayWindow(t *testing.T) {
	const W = ReplayWindow
	steps := []struct {
		counter uint64
		want    windowVerdict
	}{
		{0, counterOK},
		{0, counterReplayed},
		{2, counterOK},
		{1, counterOK},
		{1, counterReplayed},
		{W + 2, counterOK},       // window now starts at 2
		{2, counterReplayed},     // still remembered
		{3, counterOK},           // oldest acceptable
		{1, counterTooOld},       // below the window
		{W + 1, counterOK},       // behind the top, inside the window
		{W + 1, counterReplayed}, //
		{10 * W, counterOK},      // a big jump clears the ring
		{10*W - W, counterOK},    // oldest acceptable after the jump
		{10*W - W - 1, counterTooOld},
		{W + 2, counterTooOld},
		{MaxCounter, counterOK},
		{MaxCounter, counterReplayed},
		{MaxCounter + 1, counterTooOld}, // the reserved value, never accepted
		{MaxCounter - 1, counterOK},
	}
	var w replayWindow
	for i, s := range steps {
		if got := w.check(s.counter); got != s.want {
			t.Fatalf("step %d: check(%d) = %d, want %d", i, s.counter, got, s.want)
		}
		if got := w.accept(s.counter); got != s.want {
			t.Fatalf("step %d: accept(%d) = %d, want %d", i, s.counter, got, s.want)
		}
	}
}

// FuzzReplayWindow compares the window with a model that remembers every
// counter: a counter is accepted exactly when it is not reserved, was never
// accepted, and is above the highest or at most ReplayWindow below it. In
// particular no counter is ever accepted twice.
func FuzzReplayWindow(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0x80, 7, 0, 0, 0, 0, 0, 0, 0x40, 9, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var w replayWindow
		seen := map[uint64]bool{}
		var highest uint64
		var cur uint64
		for len(data) >= 8 {
			// Mix absolute counters and small steps around the current
			// one, so the fuzzer explores both jumps and the window edge.
			v := binary.BigEndian.Uint64(data)
			data = data[8:]
			switch v >> 62 {
			case 0:
				cur += v & 0xfff
			case 1:
				cur -= v & 0xfff
			default:
				cur = v
			}
			wantOK := cur <= MaxCounter && !seen[cur] && (len(seen) == 0 || cur > highest || highest-cur <= ReplayWindow)
			pre := w.check(cur)
			got := w.accept(cur)
			if pre != got {
				t.Fatalf("check(%d) = %d but accept = %d", cur, pre, got)
			}
			if (got == counterOK) != wantOK {
				t.Fatalf("accept(%d) = %d, model says ok=%v (highest %d, seen before %v)", cur, got, wantOK, highest, seen[cur])
			}
			if got == counterOK {
				seen[cur] = true
				if cur > highest {
					highest = cur
				}
			}
		}
	})
}
