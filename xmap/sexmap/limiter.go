package sexmap

import (
	"container/list"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
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
// comes from the proxy; set Config.ClientIP to ClientIPFunc(proxies) then.
func DefaultClientIP(r *http.Request) string {
	addr, ok := remoteAddr(r)
	if !ok {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			return r.RemoteAddr
		}
		return host
	}
	return ipKey(addr)
}

// RateLimit is a token bucket per client: Burst requests at once, then Rate
// per second. Zero fields take the defaults of the place it is used.
type RateLimit struct {
	Rate  float64 // tokens added per second
	Burst int     // bucket size
}

type bucket struct {
	key    string
	tokens float64
	last   time.Time
	elem   *list.Element
}

// RateTable holds one token bucket per key (a client IP, an IPv6 /64). It is
// bounded: at most max buckets are kept, the least recently used dropped
// first, so many addresses cannot grow it without limit (a dropped key
// starts again with a full bucket, which the global bounds absorb). It is
// safe for concurrent use.
type RateTable struct {
	limit RateLimit
	max   int
	now   func() time.Time

	mu    sync.Mutex
	m     map[string]*bucket
	order list.List // of *bucket, least recently used first
}

// NewRateTable returns a table of buckets of the given limit, keeping at most
// max keys; now nil means time.Now.
func NewRateTable(limit RateLimit, max int, now func() time.Time) *RateTable {
	if now == nil {
		now = time.Now
	}
	return &RateTable{limit: limit, max: max, now: now, m: make(map[string]*bucket)}
}

// Allow takes one token from key's bucket. When it is empty it returns false
// and how long until a token is back.
func (t *RateTable) Allow(key string) (bool, time.Duration) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.m[key]
	if b == nil {
		for len(t.m) >= t.max && t.order.Len() > 0 {
			old := t.order.Front().Value.(*bucket)
			t.order.Remove(old.elem)
			delete(t.m, old.key)
		}
		b = &bucket{key: key, tokens: float64(t.limit.Burst), last: now}
		b.elem = t.order.PushBack(b)
		t.m[key] = b
	} else {
		t.order.MoveToBack(b.elem)
		if d := now.Sub(b.last); d > 0 {
			b.tokens = min(float64(t.limit.Burst), b.tokens+d.Seconds()*t.limit.Rate)
			b.last = now
		}
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	if t.limit.Rate <= 0 {
		return false, time.Hour
	}
	return false, time.Duration((1 - b.tokens) / t.limit.Rate * float64(time.Second))
}

// Len is the number of keys tracked.
func (t *RateTable) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// ClientIPFunc returns a Config.ClientIP that trusts X-Forwarded-For only from
// the listed proxies. A request whose peer (RemoteAddr) is not in trusted is
// named by its peer. From a trusted peer, X-Forwarded-For (all its fields, in
// order) is read from the right: the first address that is not itself a
// trusted proxy is the client; a field that is not an IP address stops the
// walk at the last trusted hop. As in DefaultClientIP, an IPv6 client is
// reduced to its /64. With no trusted proxies it is DefaultClientIP.
func ClientIPFunc(trusted []netip.Prefix) func(*http.Request) string {
	if len(trusted) == 0 {
		return DefaultClientIP
	}
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	return func(r *http.Request) string {
		peer, ok := remoteAddr(r)
		if !ok || !isTrusted(peer) {
			return DefaultClientIP(r)
		}
		client := peer
		var hops []string
		for _, v := range r.Header.Values("X-Forwarded-For") {
			hops = append(hops, strings.Split(v, ",")...)
		}
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break
			}
			client = a.Unmap().WithZone("")
			if !isTrusted(client) {
				break
			}
		}
		return ipKey(client)
	}
}

func remoteAddr(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// ipKey names a client for per-IP limits: an IPv4 address as is, an IPv6
// address by its /64.
func ipKey(a netip.Addr) string {
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.String()
		}
	}
	return a.String()
}

// networkKey names the network of a client key (as Config.ClientIP returns
// it): an IPv4 /24 or an IPv6 /48. A key that is not an address or prefix
// is its own network.
func networkKey(ip string) string {
	var a netip.Addr
	if p, err := netip.ParsePrefix(ip); err == nil {
		a = p.Addr()
	} else if a, err = netip.ParseAddr(ip); err != nil {
		return ip
	}
	bits := 48
	if a.Unmap().Is4() {
		a, bits = a.Unmap(), 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return ip
	}
	return p.String()
}

type clientIPKey struct{}

// ClientIP returns the client IP (as Config.ClientIP named it) of the
// transport request whose context ctx is, or "".
func ClientIP(ctx context.Context) string {
	ip, _ := ctx.Value(clientIPKey{}).(string)
	return ip
}

// RefusalLog turns a flood of refusals into one WARN line per interval per
// kind: the first refusal of a quiet period is logged at once, the ones that
// follow within the interval only counted and reported in the next line. It
// is safe for concurrent use.
type RefusalLog struct {
	log      *slog.Logger
	interval time.Duration

	mu    sync.Mutex
	kinds map[string]*refusalCount
}

type refusalCount struct {
	last       time.Time
	suppressed int
}

// NewRefusalLog returns a RefusalLog writing to log at most once per interval
// and kind.
func NewRefusalLog(log *slog.Logger, interval time.Duration) *RefusalLog {
	return &RefusalLog{log: log, interval: interval, kinds: make(map[string]*refusalCount)}
}

// Note records one refusal of a kind at now; kind is the log message, a
// fixed string (the table is as small as the set of kinds), and attrs those
// of the line if this refusal is the one logged.
func (l *RefusalLog) Note(kind string, now time.Time, attrs ...any) {
	l.mu.Lock()
	c := l.kinds[kind]
	if c == nil {
		c = &refusalCount{}
		l.kinds[kind] = c
	}
	if !c.last.IsZero() && now.Sub(c.last) < l.interval {
		c.suppressed++
		l.mu.Unlock()
		return
	}
	n := c.suppressed
	c.last, c.suppressed = now, 0
	l.mu.Unlock()
	l.log.Warn(kind, append(attrs, "refused_since_last_report", n+1, "report_interval", l.interval)...)
}
