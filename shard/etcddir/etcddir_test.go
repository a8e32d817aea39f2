package etcddir

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"cryptomail/shard"
	"cryptomail/shard/directorytest"
)

var ctx = context.Background()

// clock is a settable clock for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const (
	homeA = "0000000000000000000000000000000a"
	homeB = "0000000000000000000000000000000b"
)

// TestDirectory runs the Directory conformance suite on etcd.
func TestDirectory(t *testing.T) {
	directorytest.Run(t, func(t *testing.T) directorytest.Harness {
		c := &clock{t: time.Now()}
		d := openDir(t, testClient(t), testPrefix(), c.now)
		for _, id := range []string{homeA, homeB} {
			if err := d.AddHome(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		return directorytest.Harness{Dir: d, Homes: []string{homeA, homeB}, TTL: time.Minute, Advance: c.advance}
	})
}

func create(t *testing.T, d shard.Directory, address string) shard.Entry {
	t.Helper()
	r, err := d.Reserve(ctx, address, []string{homeA})
	if err != nil {
		t.Fatal(err)
	}
	e, err := d.Commit(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestOtherWriter: what another Directory (another node, its own client)
// writes reaches this one's cache through the watch.
func TestOtherWriter(t *testing.T) {
	prefix := testPrefix()
	d1 := openDir(t, testClient(t), prefix, time.Now)
	d2 := openDir(t, testClient(t), prefix, time.Now)
	if err := d2.AddHome(ctx, homeA); err != nil {
		t.Fatal(err)
	}
	e := create(t, d2, "alice@example.org")
	eventually(t, "d1 sees d2's create", func() bool {
		got, err := d1.Lookup(ctx, "alice@example.org")
		return err == nil && bytes.Equal(got.AccountID, e.AccountID) && got.HomeID == homeA
	})
	if _, err := d2.Delete(ctx, "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "d1 sees d2's delete", func() bool {
		_, err := d1.Lookup(ctx, "alice@example.org")
		return errors.Is(err, shard.ErrNotFound)
	})
	// Read your writes: d1's own create is in its cache when Commit returns.
	e = create(t, d1, "bob@example.org")
	if got, err := d1.Lookup(ctx, "bob@example.org"); err != nil || !bytes.Equal(got.AccountID, e.AccountID) {
		t.Fatalf("Lookup right after Commit: %+v, %v", got, err)
	}
}

// TestCompactedReload: a watch that resumes from a compacted revision
// reloads the cache, which then holds exactly what etcd holds.
func TestCompactedReload(t *testing.T) {
	prefix := testPrefix()
	client := testClient(t)
	other := openDir(t, testClient(t), prefix, time.Now)
	if err := other.AddHome(ctx, homeA); err != nil {
		t.Fatal(err)
	}
	create(t, other, "gone@example.org")
	create(t, other, "stays@example.org")

	// d loads now and starts its watch only after the changes below and a
	// compaction past them: it misses them, and must reload.
	d, err := newDir(Config{Client: client, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.load(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if _, err := other.Delete(ctx, "gone@example.org"); err != nil {
		t.Fatal(err)
	}
	added := create(t, other, "new@example.org")
	resp, err := client.Get(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Lookup(ctx, "gone@example.org"); err != nil {
		t.Fatalf("before the watch, the cache still has the loaded entry: %v", err)
	}
	d.start()
	eventually(t, "reload after compaction", func() bool { return d.reloads.Load() >= 1 })
	if _, err := d.Lookup(ctx, "gone@example.org"); !errors.Is(err, shard.ErrNotFound) {
		t.Fatalf("deleted entry after the reload: %v", err)
	}
	if got, err := d.Lookup(ctx, "new@example.org"); err != nil || !bytes.Equal(got.AccountID, added.AccountID) {
		t.Fatalf("new entry after the reload: %+v, %v", got, err)
	}
	if _, err := d.Lookup(ctx, "stays@example.org"); err != nil {
		t.Fatalf("kept entry after the reload: %v", err)
	}
	// And the new watch follows changes again.
	create(t, other, "later@example.org")
	eventually(t, "watch after the reload", func() bool {
		_, err := d.Lookup(ctx, "later@example.org")
		return err == nil
	})
}

// TestConcurrentPlacement: reservations of different addresses made at
// once each see the others: they split evenly between two homes.
func TestConcurrentPlacement(t *testing.T) {
	prefix := testPrefix()
	var ds []*Dir
	for range 2 { // two nodes, two clients
		ds = append(ds, openDir(t, testClient(t), prefix, time.Now))
	}
	for _, id := range []string{homeA, homeB} {
		if err := ds[0].AddHome(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	const n = 24
	rs := make([]shard.Reservation, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			rs[i], errs[i] = ds[i%2].Reserve(ctx, fmt.Sprintf("u%d@example.org", i), []string{homeA, homeB})
		})
	}
	wg.Wait()
	on := map[string]int{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Reserve %d: %v", i, err)
		}
		on[rs[i].HomeID]++
	}
	if on[homeA] != n/2 || on[homeB] != n/2 {
		t.Fatalf("reservations per home %v, want %d each", on, n/2)
	}
	for i, r := range rs {
		if _, err := ds[i%2].Commit(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	hs, err := ds[1].Homes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if h.Users != n/2 {
			t.Fatalf("homes %v, want %d users each", hs, n/2)
		}
	}
}

// TestClosed: calls after Close fail with ErrClosed.
func TestClosed(t *testing.T) {
	d := openDir(t, testClient(t), testPrefix(), time.Now)
	d.Close()
	if _, err := d.Lookup(ctx, "a@example.org"); !errors.Is(err, shard.ErrClosed) {
		t.Fatalf("Lookup after Close: %v", err)
	}
	if _, err := d.Reserve(ctx, "a@example.org", []string{homeA}); !errors.Is(err, shard.ErrClosed) {
		t.Fatalf("Reserve after Close: %v", err)
	}
}

// fillCache puts n entries in d's cache through the code path of load and
// the watch, from KeyValues as etcd sends them.
func fillCache(d *Dir, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	prefix := d.userKey("")
	account := make([]byte, shard.AccountIDSize)
	for i := range n {
		account[0], account[1], account[2] = byte(i), byte(i>>8), byte(i>>16)
		kv := &mvccpb.KeyValue{Key: []byte(d.userKey(fmt.Sprintf("user%07d@example.org", i))),
			Value: []byte(mustJSON(entryValue{Home: homeA, State: shard.StateActive, Account: account, Created: 1700000000}))}
		d.cache(d.users, prefix, kv)
	}
}

const cacheUsers = 100_000

// TestCacheMemory measures what a cached user costs (reported in
// docs/CLUSTER.md): the heap before and after caching 100,000 entries
// through load's code path. The KeyValues are made here rather than read
// from the embedded etcd, whose own work shares this process's heap and
// made the figure swing by ±40 bytes; TestOtherWriter and
// TestCompactedReload check the real load.
func TestCacheMemory(t *testing.T) {
	d, err := newDir(Config{Client: testClient(t), Prefix: "/cryptomail/"})
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fillCache(d, cacheUsers)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if len(d.users) != cacheUsers {
		t.Fatalf("cached %d users, want %d", len(d.users), cacheUsers)
	}
	per := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / cacheUsers
	t.Logf("cache: %.0f bytes per user (%d users, addresses of %d bytes)", per, cacheUsers, len("user0000000@example.org"))
	if per > 400 {
		t.Errorf("a cached user costs %.0f bytes, more than 400", per)
	}
	runtime.KeepAlive(d)
}

// BenchmarkLookup: a Lookup in a cache of 100,000 users.
func BenchmarkLookup(b *testing.B) {
	d, err := newDir(Config{Client: testClient(b)})
	if err != nil {
		b.Fatal(err)
	}
	fillCache(d, cacheUsers)
	addresses := make([]string, 1024)
	for i := range addresses {
		addresses[i] = fmt.Sprintf("user%07d@example.org", i*97%cacheUsers)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := d.Lookup(ctx, addresses[i%len(addresses)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// TestEtcdDown: with etcd out of reach, a Directory answers Lookup from its
// cache and refuses changes with a temporary error naming the cause. The
// Directory reaches etcd through a proxy, cut to take etcd away (stopping
// an embedded member with a watch open takes seconds).
func TestEtcdDown(t *testing.T) {
	testClient(t) // the shared member is up
	p := newProxy(t, strings.TrimPrefix(etcdURL, "http://"))
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + p.addr()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	d, err := Open(ctx, Config{Client: client, Prefix: testPrefix(), Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.AddHome(ctx, homeA); err != nil {
		t.Fatal(err)
	}
	e := create(t, d, "alice@example.org")

	p.cut()
	if got, err := d.Lookup(ctx, "alice@example.org"); err != nil || !bytes.Equal(got.AccountID, e.AccountID) {
		t.Fatalf("Lookup with etcd down: %+v, %v; want the cached entry", got, err)
	}
	_, err = d.Reserve(ctx, "bob@example.org", []string{homeA})
	if !errors.Is(err, shard.ErrBusy) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Reserve with etcd down: %v, want ErrBusy and ErrUnavailable", err)
	}
	t.Logf("Reserve with etcd down: %v", err)
}

// proxy forwards TCP connections to an address until cut.
type proxy struct {
	l     net.Listener
	to    string
	mu    sync.Mutex
	conns []net.Conn
	gone  bool // cut
}

func newProxy(t *testing.T, to string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, to: to}
	t.Cleanup(p.cut)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.gone {
				c.Close()
				up.Close()
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

// cut closes the listener and every connection.
func (p *proxy) cut() {
	p.l.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gone = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
