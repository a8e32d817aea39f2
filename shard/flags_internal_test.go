package shard

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// FuzzFlags: any accepted flag list survives storage as itself, minus
// duplicates; anything that would not survive is refused.
func FuzzFlags(f *testing.F) {
	for _, s := range []string{`\Seen`, `\Seen \Flagged`, `$Label1 \Seen $Label1`, "", "a\tb", "é ü", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		flags := strings.Split(in, " ")
		joined, err := joinFlags(flags)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("joinFlags(%q): %v, want ErrInvalid", flags, err)
			}
			return
		}
		var want []string
		for _, fl := range flags {
			if !slices.Contains(want, fl) {
				want = append(want, fl)
			}
		}
		if got := splitFlags(joined); !slices.Equal(got, want) {
			t.Fatalf("flags %q stored as %q, read back as %q", flags, joined, got)
		}
	})
}
