package sexmap

import (
	"container/list"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// LockoutPolicy slows down and then stops password guessing. Failed logins
// are counted per account address and per client IP (an IPv6 client by its
// /64), for unknown addresses too. After BackoffAfter failures each further
// attempt must wait BackoffBase·2^(failures−BackoffAfter), at most
// LockDuration, after the last failure; after LockAfter failures it must wait
// LockDuration. Attempts refused this way are not counted and do not extend
// the wait. A successful login clears its address's count (not its IP's, so
// one good account does not buy an attacker new guesses); any count is
// forgotten ForgetAfter after its last failure. Zero fields take the
// defaults shown.
type LockoutPolicy struct {
	BackoffAfter int           // default 5
	BackoffBase  time.Duration // default 1s
	LockAfter    int           // default 20
	LockDuration time.Duration // default 15m
	ForgetAfter  time.Duration // default 24h; must exceed LockDuration
	MaxTracked   int           // records kept per table (addresses, IPs); default 100000, oldest dropped first
}

func (p *LockoutPolicy) setDefaults() error {
	if p.BackoffAfter <= 0 {
		p.BackoffAfter = 5
	}
	if p.BackoffBase <= 0 {
		p.BackoffBase = time.Second
	}
	if p.LockAfter <= 0 {
		p.LockAfter = 20
	}
	if p.LockDuration <= 0 {
		p.LockDuration = 15 * time.Minute
	}
	if p.ForgetAfter <= 0 {
		p.ForgetAfter = 24 * time.Hour
	}
	if p.MaxTracked <= 0 {
		p.MaxTracked = 100000
	}
	if p.LockAfter < p.BackoffAfter {
		return errors.New("sexmap: Lockout.LockAfter is below Lockout.BackoffAfter")
	}
	if p.ForgetAfter <= p.LockDuration {
		return errors.New("sexmap: Lockout.ForgetAfter must exceed Lockout.LockDuration")
	}
	return nil
}

// delay is how long after the last of failures failures the next attempt
// has to wait.
func (p *LockoutPolicy) delay(failures int) time.Duration {
	switch {
	case failures < p.BackoffAfter:
		return 0
	case failures >= p.LockAfter:
		return p.LockDuration
	}
	d := p.BackoffBase
	for i := p.BackoffAfter; i < failures && d < p.LockDuration; i++ {
		d *= 2
	}
	return min(d, p.LockDuration)
}

type failureRecord struct {
	key      string
	failures int
	last     time.Time
	elem     *list.Element
}

// failureTable counts failures by key. Records are kept in order of their
// last failure, so both forgetting and dropping the oldest when full are
// cheap. Not safe for concurrent use: the server's mutex guards it.
type failureTable struct {
	m     map[string]*failureRecord
	order list.List // of *failureRecord, oldest last failure first
}

func newFailureTable() *failureTable {
	return &failureTable{m: make(map[string]*failureRecord)}
}

func (t *failureTable) forget(now time.Time, p *LockoutPolicy) {
	for e := t.order.Front(); e != nil; e = t.order.Front() {
		r := e.Value.(*failureRecord)
		if now.Sub(r.last) < p.ForgetAfter {
			return
		}
		t.remove(r)
	}
}

func (t *failureTable) remove(r *failureRecord) {
	t.order.Remove(r.elem)
	delete(t.m, r.key)
}

// wait returns how much longer key must wait before its next attempt; zero
// means it may try now.
func (t *failureTable) wait(key string, now time.Time, p *LockoutPolicy) time.Duration {
	t.forget(now, p)
	r := t.m[key]
	if r == nil {
		return 0
	}
	if w := r.last.Add(p.delay(r.failures)).Sub(now); w > 0 {
		return w
	}
	return 0
}

// fail counts one failure of key and returns the new count.
func (t *failureTable) fail(key string, now time.Time, p *LockoutPolicy) int {
	t.forget(now, p)
	r := t.m[key]
	if r == nil {
		for len(t.m) >= p.MaxTracked {
			t.remove(t.order.Front().Value.(*failureRecord))
		}
		r = &failureRecord{key: key}
		r.elem = t.order.PushBack(r)
		t.m[key] = r
	} else {
		t.order.MoveToBack(r.elem)
	}
	r.failures++
	r.last = now
	return r.failures
}

func (t *failureTable) reset(key string) {
	if r := t.m[key]; r != nil {
		t.remove(r)
	}
}

// DefaultClientIP is the Config.ClientIP used when none is set: the host of
// the request's RemoteAddr, an IPv6 address reduced to its /64 (one
// subscriber usually holds a whole /64). Behind a reverse proxy every request
// comes from the proxy; set Config.ClientIP to read the proxy's header then.
func DefaultClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		if p, err := addr.Prefix(64); err == nil {
			return p.String()
		}
	}
	return addr.String()
}
