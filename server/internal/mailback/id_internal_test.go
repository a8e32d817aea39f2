package mailback

import "testing"

// FuzzParseID: an id from a client names at most one object, and only in the form the
// backend writes it.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"1", "01", "0", "-1", "+1", "9223372036854775807", "9223372036854775808", "1e3", " 1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := parseID(s)
		if !ok {
			return
		}
		if n <= 0 || fmtID(n) != s {
			t.Fatalf("parseID(%q) = %d: not its canonical form", s, n)
		}
	})
}
