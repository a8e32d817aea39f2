package etcddir

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// The package's tests share one embedded etcd member (started once, on
// loopback ports, in a temporary directory); each test works under a
// prefix of its own.
var (
	etcdOnce sync.Once
	etcdURL  string
	etcdErr  error
	etcdStop func()
	prefixes atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if etcdStop != nil {
		etcdStop()
	}
	os.Exit(code)
}

// freePort returns a loopback port free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startEtcd() (string, func(), error) {
	dir, err := os.MkdirTemp("", "etcddir-test-")
	if err != nil {
		return "", nil, err
	}
	var last error
	for range 3 { // a port taken between freePort and the listen: again
		cp, err := freePort()
		if err != nil {
			return "", nil, err
		}
		pp, err := freePort()
		if err != nil {
			return "", nil, err
		}
		cu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", cp))
		pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", pp))
		cfg := embed.NewConfig()
		cfg.Name = "test"
		cfg.Dir = fmt.Sprintf("%s/data-%d", dir, cp)
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		cfg.LogLevel = "fatal" // its shutdown logs "errors" that are none
		cfg.SnapshotCount = 1000
		cfg.UnsafeNoFsync = true
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			last = err
			continue
		}
		select {
		case <-e.Server.ReadyNotify():
		case <-time.After(20 * time.Second):
			e.Close()
			last = fmt.Errorf("embedded etcd not ready after 20 s")
			continue
		}
		return cu.String(), func() { e.Close(); os.RemoveAll(dir) }, nil
	}
	os.RemoveAll(dir)
	return "", nil, last
}

// testClient returns a new client of the shared embedded etcd, closed
// when t ends.
func testClient(t testing.TB) *clientv3.Client {
	t.Helper()
	etcdOnce.Do(func() { etcdURL, etcdStop, etcdErr = startEtcd() })
	if etcdErr != nil {
		t.Fatalf("embedded etcd: %v", etcdErr)
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testPrefix is a prefix no other test uses.
func testPrefix() string { return fmt.Sprintf("/test/%d/", prefixes.Add(1)) }

// openDir opens a Directory on c under prefix, closed when t ends.
func openDir(t testing.TB, c *clientv3.Client, prefix string, now func() time.Time) *Dir {
	t.Helper()
	d, err := Open(context.Background(), Config{Client: c, Prefix: prefix, ReservationTTL: time.Minute, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// eventually waits, up to a deadline, for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
