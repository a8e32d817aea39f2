package sexmap

import (
	"net/http/httptest"
	"testing"
	"time"
)

func TestLockoutDelay(t *testing.T) {
	p := LockoutPolicy{}
	if err := p.setDefaults(); err != nil {
		t.Fatal(err)
	}
	for failures, want := range map[int]time.Duration{
		0: 0, 4: 0,
		5: time.Second, 6: 2 * time.Second, 7: 4 * time.Second, 14: 512 * time.Second,
		15: 15 * time.Minute, 19: 15 * time.Minute, 20: 15 * time.Minute, 1000: 15 * time.Minute,
	} {
		if got := p.delay(failures); got != want {
			t.Errorf("delay(%d) = %v, want %v", failures, got, want)
		}
	}
}

func TestFailureTableBounded(t *testing.T) {
	p := LockoutPolicy{BackoffAfter: 1, MaxTracked: 3}
	if err := p.setDefaults(); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1e9, 0)
	tab := newFailureTable()
	for i, k := range []string{"a", "b", "c", "d"} {
		tab.fail(k, now.Add(time.Duration(i)*time.Second), &p)
	}
	if len(tab.m) != 3 || tab.m["a"] != nil {
		t.Fatalf("oldest record not dropped: %v", tab.m)
	}
	if w := tab.wait("d", now.Add(3*time.Second), &p); w != time.Second {
		t.Fatalf("wait = %v", w)
	}
	tab.reset("d")
	if w := tab.wait("d", now.Add(3*time.Second), &p); w != 0 {
		t.Fatalf("after reset wait = %v", w)
	}
}

func TestDefaultClientIP(t *testing.T) {
	for remote, want := range map[string]string{
		"192.0.2.7:5000":             "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:443": "2001:db8:1:2::/64",
		"[::ffff:192.0.2.9]:80":      "192.0.2.9",
		"[fe80::1%eth0]:80":          "fe80::/64",
		"not an address":             "not an address",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		if got := DefaultClientIP(r); got != want {
			t.Errorf("DefaultClientIP(%q) = %q, want %q", remote, got, want)
		}
	}
}

func TestDefaultCanonicalAddress(t *testing.T) {
	for in, want := range map[string]string{
		"Alice@Example.ORG": "alice@example.org",
		"a@b":               "a@b",
		"@b":                "",
		"a@":                "",
		"ab":                "",
		"a b@c":             "",
		"a\x00@c":           "",
		"a\n@c":             "",
	} {
		got, err := defaultCanonicalAddress(in)
		if (err == nil) != (want != "") || got != want {
			t.Errorf("defaultCanonicalAddress(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
