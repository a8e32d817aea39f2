package shard

import (
	"strings"
	"testing"
)

// FuzzCursor: a cursor from a client is parsed without panicking, only for its own
// folder and direction, and every cursor the shard makes reads back as itself.
func FuzzCursor(f *testing.F) {
	for _, s := range []string{"d.1.1740816900.12", "a.4.-5.3", "", "d.1.2", "d.1.2.3.4", "a.01.2.3", "x.1.2.3", "d.1.9223372036854775808.1"} {
		f.Add(s, true, int64(1))
	}
	f.Fuzz(func(t *testing.T, s string, desc bool, folder int64) {
		at, id, ok := parseCursor(s, desc, folder)
		if !ok {
			return
		}
		if (s[0] == 'd') != desc {
			t.Fatalf("cursor %q accepted for desc=%v", s, desc)
		}
		again := makeCursor(desc, folder, at, id)
		if at2, id2, ok := parseCursor(again, desc, folder); !ok || at2 != at || id2 != id {
			t.Fatalf("cursor %q → (%d, %d) → %q does not read back", s, at, id, again)
		}
		if _, _, ok := parseCursor(again, !desc, folder); ok {
			t.Fatalf("cursor %q accepted for the other direction", again)
		}
		if strings.Count(again, ".") != 3 {
			t.Fatalf("made cursor %q", again)
		}
	})
}
