package accounts_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"cryptomail/xmap"
)

// TestSaltLookupTiming prints the median time of a salt lookup for an
// account and for unknown addresses (issue 9 item 9): they should be within
// noise of each other. It reports and never fails, since speed is measured,
// not asserted; run it with -v.
func TestSaltLookupTiming(t *testing.T) {
	if testing.Short() {
		t.Skip("timing report")
	}
	e := newEnv(t)
	alice := newUser(t, e, "alice@example.org", "correct horse battery staple")
	if r := call(t, e.nk(t), alice.signup(e.invite(t, alice.address, time.Hour))); r.Err != nil {
		t.Fatalf("signup: %v", r.Err)
	}
	ctx := context.Background()
	const n = 3000
	var known, unknown []time.Duration
	for i := range 2 * n {
		addr := "alice@example.org"
		if i%2 == 1 {
			addr = fmt.Sprintf("nobody%d@example.org", i)
		}
		start := time.Now()
		if _, err := e.acc.LookupSalt(ctx, &xmap.SaltLookup{Address: addr}); err != nil {
			t.Fatal(err)
		}
		d := time.Since(start)
		if i < 200 {
			continue // warm-up
		}
		if i%2 == 1 {
			unknown = append(unknown, d)
		} else {
			known = append(known, d)
		}
	}
	med := func(ds []time.Duration) time.Duration { slices.Sort(ds); return ds[len(ds)/2] }
	p90 := func(ds []time.Duration) time.Duration { slices.Sort(ds); return ds[len(ds)*9/10] }
	t.Logf("salt lookup: account p50 %v p90 %v; unknown address p50 %v p90 %v", med(known), p90(known), med(unknown), p90(unknown))
}
