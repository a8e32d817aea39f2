package sexmap_test

import (
	"bytes"
	"errors"
	"testing"

	"cryptomail/xmap/sexmap"
)

func TestKDFParamsBounds(t *testing.T) {
	salt := bytes.Repeat([]byte{7}, 16)
	min := sexmap.MinKDFParams
	for name, p := range map[string]sexmap.KDFParams{
		"time below floor":      {Time: min.Time - 1, MemoryKiB: min.MemoryKiB, Threads: min.Threads},
		"memory below floor":    {Time: min.Time, MemoryKiB: min.MemoryKiB - 1, Threads: min.Threads},
		"no threads":            {Time: min.Time, MemoryKiB: min.MemoryKiB, Threads: 0},
		"zero":                  {},
		"time above ceiling":    {Time: sexmap.MaxKDFParams.Time + 1, MemoryKiB: min.MemoryKiB, Threads: 1},
		"memory above ceiling":  {Time: 2, MemoryKiB: sexmap.MaxKDFParams.MemoryKiB + 1, Threads: 1},
		"threads above ceiling": {Time: 2, MemoryKiB: min.MemoryKiB, Threads: sexmap.MaxKDFParams.Threads + 1},
	} {
		if _, _, err := sexmap.DeriveKeys([]byte("pass"), salt, p); !errors.Is(err, sexmap.ErrKDFParams) {
			t.Errorf("%s: %v, want ErrKDFParams", name, err)
		}
	}
	for _, p := range []sexmap.KDFParams{sexmap.DefaultKDFParams, sexmap.MinKDFParams, sexmap.MaxKDFParams} {
		if err := p.Validate(); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
	if _, _, err := sexmap.DeriveKeys([]byte("pass"), salt[:15], min); !errors.Is(err, sexmap.ErrBadSalt) {
		t.Errorf("short salt: %v", err)
	}
	if _, _, err := sexmap.DeriveKeys([]byte("pass"), make([]byte, 65), min); !errors.Is(err, sexmap.ErrBadSalt) {
		t.Errorf("long salt: %v", err)
	}
	if _, _, err := sexmap.DeriveKeys(nil, salt, min); !errors.Is(err, sexmap.ErrEmptyPassphrase) {
		t.Errorf("empty passphrase: %v", err)
	}
}

func TestDeriveKeys(t *testing.T) {
	salt := bytes.Repeat([]byte{7}, 16)
	p := sexmap.MinKDFParams
	l1, s1, err := sexmap.DeriveKeys([]byte("correct horse"), salt, p)
	if err != nil {
		t.Fatal(err)
	}
	l2, s2, _ := sexmap.DeriveKeys([]byte("correct horse"), salt, p)
	if l1 != l2 || s1 != s2 {
		t.Fatal("not deterministic")
	}
	if l1 == s1 {
		t.Fatal("login and seal keys are equal")
	}
	l3, s3, _ := sexmap.DeriveKeys([]byte("correct horse"), bytes.Repeat([]byte{8}, 16), p)
	l4, _, _ := sexmap.DeriveKeys([]byte("correct horsf"), salt, p)
	if l3 == l1 || s3 == s1 || l4 == l1 {
		t.Fatal("salt or passphrase ignored")
	}
	pub := sexmap.LoginPublicKey(l1)
	if len(pub) != 32 || bytes.Equal(pub, l1[:]) {
		t.Fatalf("LoginPublicKey = %x", pub)
	}
	salt2, err := sexmap.NewSalt(bytes.NewReader(bytes.Repeat([]byte{9}, 32)))
	if err != nil || !bytes.Equal(salt2, bytes.Repeat([]byte{9}, 16)) {
		t.Fatalf("NewSalt = %x, %v", salt2, err)
	}
}

// BenchmarkDeriveKeys is the client's share of a login at the default cost.
func BenchmarkDeriveKeys(b *testing.B) {
	salt := bytes.Repeat([]byte{7}, 16)
	for b.Loop() {
		if _, _, err := sexmap.DeriveKeys([]byte("correct horse"), salt, sexmap.DefaultKDFParams); err != nil {
			b.Fatal(err)
		}
	}
}
