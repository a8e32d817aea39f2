package sexmap

// The replay window is RFC 6479's bitmap design as used by WireGuard
// (wireguard-go's replay.Filter): a ring of 64-bit blocks holding one bit per
// counter, where moving the window forward clears whole blocks instead of
// shifting bits. With 32 blocks it remembers every counter from the highest
// accepted one back ReplayWindow counters.

const (
	blockBitLog = 6
	blockBits   = 1 << blockBitLog
	ringBlocks  = 32 // a power of two
	blockMask   = ringBlocks - 1
	bitMask     = blockBits - 1

	// ReplayWindow is how far behind the highest accepted counter a counter
	// may be and still be accepted (if not seen before): counters c with
	// highest - c > ReplayWindow are refused as too old.
	ReplayWindow = (ringBlocks - 1) * blockBits
)

// windowVerdict says why a counter is or is not acceptable.
type windowVerdict int

const (
	counterOK windowVerdict = iota
	counterReplayed
	counterTooOld
)

// replayWindow is not safe for concurrent use; the server guards it with its
// mutex. The zero value is an empty window.
type replayWindow struct {
	last uint64 // highest accepted counter (0 while none)
	ring [ringBlocks]uint64
}

// check reports whether counter would be accepted, without changing
// anything. The server calls it before spending an AEAD on a frame.
func (w *replayWindow) check(counter uint64) windowVerdict {
	if counter > MaxCounter {
		return counterTooOld
	}
	if counter > w.last {
		return counterOK
	}
	if w.last-counter > ReplayWindow {
		return counterTooOld
	}
	if w.ring[(counter>>blockBitLog)&blockMask]&(1<<(counter&bitMask)) != 0 {
		return counterReplayed
	}
	return counterOK
}

// accept records counter if it is acceptable, and says whether it was. Only
// frames that passed authentication reach it, so a forged frame can neither
// move the window nor burn a counter.
func (w *replayWindow) accept(counter uint64) windowVerdict {
	if v := w.check(counter); v != counterOK {
		return v
	}
	index := counter >> blockBitLog
	if counter > w.last {
		current := w.last >> blockBitLog
		diff := index - current
		if diff > ringBlocks {
			diff = ringBlocks // clearing the whole ring is enough
		}
		for i := current + 1; i <= current+diff; i++ {
			w.ring[i&blockMask] = 0
		}
		w.last = counter
	}
	w.ring[index&blockMask] |= 1 << (counter & bitMask)
	return counterOK
}
