package etcddir

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"cryptomail/shard"
)

// Dir is the Directory on etcd. Open it with Open; Close stops its watch.
type Dir struct {
	c       *clientv3.Client
	prefix  string
	ttl     time.Duration
	now     func() time.Time
	timeout time.Duration

	mu      sync.RWMutex      // Lookups read-lock; the watch and loads lock
	users   map[string]cached // by address: the cache of users/
	rev     int64             // the cache holds every change up to rev
	moved   chan struct{}     // closed (and replaced) when rev grows or on Close
	strs    map[string]string // interned home ids and states
	closed  bool
	reloads atomic.Int64 // loads after the first (compaction, broken watch)

	stop context.CancelFunc
	done chan struct{}
}

// cached is one cached entry: the address is the map's key, home and state
// are interned, the account id inline.
type cached struct {
	home, state string
	account     [shard.AccountIDSize]byte
	created     int64 // Unix seconds
}

func (c *cached) entry(address string) shard.Entry {
	return shard.Entry{
		Address:   address,
		HomeID:    c.home,
		State:     c.state,
		AccountID: append([]byte(nil), c.account[:]...),
		Created:   time.Unix(c.created, 0),
	}
}

// newDir checks cfg and makes a Dir with an empty cache.
func newDir(cfg Config) (*Dir, error) {
	if cfg.Client == nil {
		return nil, fmt.Errorf("etcddir: %w: no etcd client", shard.ErrInvalid)
	}
	d := &Dir{
		c: cfg.Client, prefix: cfg.Prefix, ttl: cfg.ReservationTTL, now: cfg.Now, timeout: cfg.Timeout,
		users: make(map[string]cached), strs: make(map[string]string), moved: make(chan struct{}),
		done: make(chan struct{}),
	}
	if d.prefix == "" {
		d.prefix = DefaultPrefix
	}
	if !strings.HasSuffix(d.prefix, "/") {
		return nil, fmt.Errorf("etcddir: %w: prefix %q must end with /", shard.ErrInvalid, d.prefix)
	}
	if d.ttl <= 0 {
		d.ttl = shard.DefaultReservationTTL
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.timeout <= 0 {
		d.timeout = 5 * time.Second
	}
	return d, nil
}

// Open loads the users into the cache and starts following them with a
// watch; ctx bounds the load only.
func Open(ctx context.Context, cfg Config) (*Dir, error) {
	d, err := newDir(cfg)
	if err != nil {
		return nil, err
	}
	if err := d.load(ctx); err != nil {
		return nil, err
	}
	d.start()
	return d, nil
}

func (d *Dir) start() {
	ctx, cancel := context.WithCancel(context.Background())
	d.stop = cancel
	go d.follow(ctx)
}

// Close stops the watch; the client stays open. Calls after Close fail
// with shard.ErrClosed.
func (d *Dir) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	close(d.moved)
	d.mu.Unlock()
	if d.stop != nil {
		d.stop()
		<-d.done
	}
	return nil
}

func (d *Dir) isClosed() bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.closed
}

const loadPage = 10000

// load reads every users/ key at one revision, a page at a time, and
// replaces the cache with them.
func (d *Dir) load(ctx context.Context) error {
	prefix := d.userKey("")
	end := clientv3.GetPrefixRangeEnd(prefix)
	users := make(map[string]cached)
	from, rev := prefix, int64(0)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(loadPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		tctx, cancel := d.withTimeout(ctx)
		resp, err := d.c.Get(tctx, from, opts...)
		cancel()
		if err != nil {
			return d.unavailable("load users", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		d.mu.Lock()
		for _, kv := range resp.Kvs {
			d.cache(users, prefix, kv)
		}
		d.mu.Unlock()
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.users = users
	d.advance(rev)
	return nil
}

// cache puts the entry kv (a key under prefix) in users; d.mu is held. A
// value that does not decode is left out (Lookup says ErrNotFound, the write
// paths report it).
func (d *Dir) cache(users map[string]cached, prefix string, kv *mvccpb.KeyValue) {
	address := keyTail(kv.Key, prefix)
	if c, ok := d.decodeCached(kv); ok {
		users[address] = c
	} else {
		delete(users, address)
	}
}

// keyTail is key without prefix, a string of its own: a map key made by
// slicing the whole key would keep the prefix alive with it.
func keyTail(key []byte, prefix string) string {
	return string(bytes.TrimPrefix(key, []byte(prefix)))
}

// decodeCached decodes an entry for the cache; d.mu is held.
func (d *Dir) decodeCached(kv *mvccpb.KeyValue) (cached, bool) {
	var v entryValue
	if decode(kv, &v) != nil || len(v.Account) != shard.AccountIDSize {
		return cached{}, false
	}
	c := cached{home: d.intern(v.Home), state: d.intern(v.State), created: v.Created}
	copy(c.account[:], v.Account)
	return c, true
}

func (d *Dir) intern(s string) string {
	if i, ok := d.strs[s]; ok {
		return i
	}
	d.strs[s] = s
	return s
}

// advance records that the cache holds every change up to rev and wakes
// the writers waiting for it; d.mu is held.
func (d *Dir) advance(rev int64) {
	if rev <= d.rev {
		return
	}
	d.rev = rev
	if !d.closed {
		close(d.moved)
		d.moved = make(chan struct{})
	}
}

// follow keeps the cache current: a watch from the revision after the
// cache's; when it ends (compacted revision, cancelled, broken), a reload
// and a new watch.
func (d *Dir) follow(ctx context.Context) {
	defer close(d.done)
	prefix := d.userKey("")
	backoff := 50 * time.Millisecond
	for {
		d.mu.Lock()
		rev := d.rev
		d.mu.Unlock()
		// The watch ends (compacted, cancelled, broken, leader lost):
		// whatever the reason, the cure is a reload.
		_ = d.watch(ctx, prefix, rev)
		if ctx.Err() != nil {
			return
		}
		for {
			if err := d.load(ctx); err == nil {
				d.reloads.Add(1)
				backoff = 50 * time.Millisecond
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// watch applies the changes under prefix after rev until the watch ends.
func (d *Dir) watch(ctx context.Context, prefix string, rev int64) error {
	// Require a leader: a member cut off from the cluster ends the watch
	// (and the reload goes to a member that has one) instead of keeping it
	// silently stalled.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range d.c.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if resp.CompactRevision != 0 {
			return fmt.Errorf("etcddir: watch from revision %d: compacted at %d", rev+1, resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			return fmt.Errorf("etcddir: watch: %w", err)
		}
		if resp.Canceled {
			return fmt.Errorf("etcddir: watch cancelled")
		}
		d.apply(prefix, resp.Events)
	}
	return fmt.Errorf("etcddir: watch closed")
}

func (d *Dir) apply(prefix string, events []*clientv3.Event) {
	if len(events) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ev := range events {
		if ev.Type == clientv3.EventTypePut {
			d.cache(d.users, prefix, ev.Kv)
		} else {
			delete(d.users, keyTail(ev.Kv.Key, prefix))
		}
	}
	d.advance(events[len(events)-1].Kv.ModRevision)
}

// caughtUp waits until the cache holds the write at rev, so that the
// writer's next Lookup sees it; the write is done already, so a ctx that
// ends first, or Close, only ends the wait.
func (d *Dir) caughtUp(ctx context.Context, rev int64) {
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	for {
		d.mu.Lock()
		if d.rev >= rev || d.closed {
			d.mu.Unlock()
			return
		}
		moved := d.moved
		d.mu.Unlock()
		select {
		case <-moved:
		case <-ctx.Done():
			return
		}
	}
}
