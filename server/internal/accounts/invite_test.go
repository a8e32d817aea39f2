package accounts_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"

	"cryptomail/server/internal/accounts"
)

var codeShape = regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){6}$`)

func TestNewInviteCode(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		c, err := accounts.NewInviteCode(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if !codeShape.MatchString(c) {
			t.Fatalf("code %q has the wrong shape", c)
		}
		if seen[c] {
			t.Fatalf("code %q drawn twice", c)
		}
		seen[c] = true
		if n, ok := accounts.NormalizeInviteCode(c); !ok || n != strings.ReplaceAll(c, "-", "") {
			t.Fatalf("NormalizeInviteCode(%q) = %q, %v", c, n, ok)
		}
	}
	// Every symbol is used: the code carries 5 bits per symbol.
	all := strings.Join(mapKeys(seen), "")
	for _, r := range "0123456789ABCDEFGHJKMNPQRSTVWXYZ" {
		if !strings.ContainsRune(all, r) {
			t.Errorf("symbol %q never drawn in 200 codes", r)
		}
	}
	if _, err := accounts.NewInviteCode(iotest.ErrReader(iotest.ErrTimeout)); err == nil {
		t.Error("NewInviteCode with a failing random source succeeded")
	}
}

func mapKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestNormalizeInviteCode(t *testing.T) {
	const canon = "7Q2KMX4P9RTA0123456789ABCDEF"
	tests := []struct {
		in   string
		want string // "" = refused
	}{
		{"7Q2K-MX4P-9RTA-0123-4567-89AB-CDEF", canon},
		{canon, canon},
		{"7q2k-mx4p-9rta-0123-4567-89ab-cdef", canon},
		{"7Q2K-MX4P-9RTA-O123-4567-89AB-CDEF", canon},                          // O read as 0
		{"7Q2K-MX4P-9RTA-0I23-4567-89AB-CDEF", "7Q2KMX4P9RTA0123456789ABCDEF"}, // I read as 1
		{"7Q2K-MX4P-9RTA-0l23-4567-89AB-CDEF", "7Q2KMX4P9RTA0123456789ABCDEF"}, // l read as 1
		{"7Q2K-MX4P-9RTA-0123-4567-89AB-CDE", ""},                              // short
		{"7Q2K-MX4P-9RTA-0123-4567-89AB-CDEFG", ""},                            // long
		{"7Q2K-MX4P-9RTA-0123-4567-89AB-CDEU", ""},                             // U is not a symbol
		{"7Q2K MX4P 9RTA 0123 4567 89AB CDEF", ""},                             // spaces
		{"7Q2K-MX4P-9RTA-0123-4567-89AB-CDE\u00e9", ""},                        // not ASCII
		{"", ""},
		{strings.Repeat("-", 200) + canon, ""},
	}
	for _, tt := range tests {
		got, ok := accounts.NormalizeInviteCode(tt.in)
		if ok != (tt.want != "") || got != tt.want {
			t.Errorf("NormalizeInviteCode(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
	h1, ok1 := accounts.InviteHash("7q2k-mx4p-9rta-o123-4567-89ab-cdef")
	want := sha256.Sum256([]byte(canon))
	if !ok1 || !bytes.Equal(h1, want[:]) {
		t.Errorf("InviteHash is not the SHA-256 of the canonical code")
	}
	if _, ok := accounts.InviteHash("short"); ok {
		t.Error("InviteHash accepted a malformed code")
	}
}

func FuzzNormalizeInviteCode(f *testing.F) {
	f.Add("7Q2K-MX4P-9RTA-0123-4567-89AB-CDEF")
	f.Add("7q2k-mx4p-9rta-o123-4567-89ab-cdef")
	f.Add("")
	f.Add("----")
	f.Fuzz(func(t *testing.T, in string) {
		n, ok := accounts.NormalizeInviteCode(in)
		if !ok {
			return
		}
		if len(n) != 28 || strings.Trim(n, "0123456789ABCDEFGHJKMNPQRSTVWXYZ") != "" {
			t.Fatalf("NormalizeInviteCode(%q) = %q", in, n)
		}
		if again, ok := accounts.NormalizeInviteCode(n); !ok || again != n {
			t.Fatalf("not idempotent: %q → %q → %q", in, n, again)
		}
	})
}
