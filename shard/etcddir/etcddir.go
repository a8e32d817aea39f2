package etcddir

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"cryptomail/shard"
)

// Config configures a Directory on etcd.
type Config struct {
	// Client is the etcd client; the Directory does not close it.
	Client *clientv3.Client
	// Prefix is put before every key; default "/cryptomail/". It must end
	// with "/".
	Prefix string
	// ReservationTTL is how long reservations and invite claims last;
	// default shard.DefaultReservationTTL.
	ReservationTTL time.Duration
	// Now is the clock of reservations and claims; default time.Now.
	Now func() time.Time
	// Timeout bounds each method's calls to etcd (a write fails with
	// shard.ErrBusy when etcd does not answer in time); default 5 s.
	Timeout time.Duration
}

// DefaultPrefix is Config.Prefix's default.
const DefaultPrefix = "/cryptomail/"

const (
	tokenSize   = 16
	maxAttempts = 64 // reads and compare-and-sets before ErrBusy
)

// ErrUnavailable is wrapped (beside shard.ErrBusy) in the error of a method
// that could not reach etcd.
var ErrUnavailable = errors.New("metabase (etcd) unavailable")

var _ shard.Directory = (*Dir)(nil)

// The values stored, as JSON.
type (
	entryValue struct {
		Home    string `json:"home"`
		State   string `json:"state"`
		Account []byte `json:"account"`
		Created int64  `json:"created"` // Unix seconds
	}
	reservationValue struct {
		Home    string `json:"home"`
		Token   []byte `json:"token"`
		Expires int64  `json:"expires"` // Unix nanoseconds
	}
	homeValue struct {
		Users int64 `json:"users"`
	}
	inviteValue struct {
		Address      string `json:"address"`
		Created      int64  `json:"created"` // Unix seconds
		Expires      int64  `json:"expires"` // Unix seconds
		Used         int64  `json:"used,omitempty"`
		ClaimToken   []byte `json:"claim_token,omitempty"`
		ClaimExpires int64  `json:"claim_expires,omitempty"` // Unix nanoseconds
	}
	tokensValue struct {
		Account []byte   `json:"account"`
		Hashes  [][]byte `json:"hashes"` // oldest first
	}
)

func (d *Dir) userKey(a string) string        { return d.prefix + "users/" + a }
func (d *Dir) reservationKey(a string) string { return d.prefix + "reservations/" + a }
func (d *Dir) homeKey(id string) string       { return d.prefix + "homes/" + id }
func (d *Dir) invitesOf(a string) string      { return d.prefix + "invites/" + a + "/" }
func (d *Dir) codeKey(h []byte) string        { return d.prefix + "invitecodes/" + hex.EncodeToString(h) }
func (d *Dir) tokensKey(a string) string      { return d.prefix + "tokens/" + a }

func newToken() ([]byte, error) {
	b := make([]byte, tokenSize)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("etcddir: token: %w", err)
	}
	return b, nil
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs of strings, ints and bytes
	}
	return string(b)
}

// decode decodes kv's value into v; a value that does not decode is an
// error naming its key.
func decode(kv *mvccpb.KeyValue, v any) error {
	if err := json.Unmarshal(kv.Value, v); err != nil {
		return fmt.Errorf("etcddir: bad value at %q: %w", kv.Key, err)
	}
	return nil
}

// modRev is kv's ModRevision, 0 for a key that is absent.
func modRev(kv *mvccpb.KeyValue) int64 {
	if kv == nil {
		return 0
	}
	return kv.ModRevision
}

// same compares key with what was read of it (kv, nil when absent).
func same(key string, kv *mvccpb.KeyValue) clientv3.Cmp {
	return clientv3.Compare(clientv3.ModRevision(key), "=", modRev(kv))
}

// unchangedSince compares that no key under prefix was created or changed
// after rev.
func unchangedSince(prefix string, rev int64) clientv3.Cmp {
	return clientv3.Compare(clientv3.ModRevision(prefix), "<", rev+1).WithPrefix()
}

// reading is one read transaction's answer.
type reading struct {
	rev  int64
	resp *clientv3.TxnResponse
}

// one returns the single key of the i-th Get, nil if absent.
func (r reading) one(i int) *mvccpb.KeyValue {
	kvs := r.resp.Responses[i].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return nil
	}
	return kvs[0]
}

func (r reading) all(i int) []*mvccpb.KeyValue { return r.resp.Responses[i].GetResponseRange().Kvs }

// read runs ops (Gets) in one transaction: one revision for all.
func (d *Dir) read(ctx context.Context, what string, ops ...clientv3.Op) (reading, error) {
	resp, err := d.c.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return reading{}, d.unavailable(what, err)
	}
	return reading{rev: resp.Header.Revision, resp: resp}, nil
}

func (d *Dir) unavailable(what string, err error) error {
	return fmt.Errorf("etcddir: %s: %w (%w): %w", what, ErrUnavailable, shard.ErrBusy, err)
}

// withTimeout bounds ctx by Config.Timeout.
func (d *Dir) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d.timeout)
}

// change is one compare-and-set: ops run if every cmp holds.
type change struct {
	cmps []clientv3.Cmp
	ops  []clientv3.Op
}

// update reads and decides (plan) and writes the change in one transaction
// whose If holds only if nothing plan read has changed; else it plans again.
// A plan that returns no ops has nothing to write. It returns the write's
// revision (0 when nothing was written).
func (d *Dir) update(ctx context.Context, what string, plan func(ctx context.Context) (change, error)) (int64, error) {
	if d.isClosed() {
		return 0, fmt.Errorf("etcddir: %s: %w", what, shard.ErrClosed)
	}
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	for range maxAttempts {
		ch, err := plan(ctx)
		if err != nil {
			return 0, err
		}
		if len(ch.ops) == 0 {
			return 0, nil
		}
		resp, err := d.c.Txn(ctx).If(ch.cmps...).Then(ch.ops...).Commit()
		if err != nil {
			return 0, d.unavailable(what, err)
		}
		if resp.Succeeded {
			return resp.Header.Revision, nil
		}
	}
	return 0, fmt.Errorf("etcddir: %s: %w: %d conflicting writes in a row", what, shard.ErrBusy, maxAttempts)
}

// Lookup answers from the cache; see the package documentation.
func (d *Dir) Lookup(ctx context.Context, address string) (shard.Entry, error) {
	d.mu.RLock()
	c, ok := d.users[address]
	closed := d.closed
	d.mu.RUnlock()
	if closed {
		return shard.Entry{}, fmt.Errorf("etcddir: lookup: %w", shard.ErrClosed)
	}
	if !ok {
		return shard.Entry{}, fmt.Errorf("user %w", shard.ErrNotFound)
	}
	return c.entry(address), nil
}

const usersPage = 1000

// Users reads the entries from etcd, a page at a time.
func (d *Dir) Users(ctx context.Context, fn func(shard.Entry) error) error {
	if d.isClosed() {
		return fmt.Errorf("etcddir: users: %w", shard.ErrClosed)
	}
	prefix := d.userKey("")
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	for {
		tctx, cancel := d.withTimeout(ctx)
		resp, err := d.c.Get(tctx, from, clientv3.WithRange(end), clientv3.WithLimit(usersPage))
		cancel()
		if err != nil {
			return d.unavailable("users", err)
		}
		for _, kv := range resp.Kvs {
			var v entryValue
			if err := decode(kv, &v); err != nil {
				return err
			}
			if err := fn(v.entry(strings.TrimPrefix(string(kv.Key), prefix))); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

func (v entryValue) entry(address string) shard.Entry {
	return shard.Entry{Address: address, HomeID: v.Home, State: v.State, AccountID: v.Account, Created: time.Unix(v.Created, 0)}
}

func (d *Dir) Homes(ctx context.Context) ([]shard.HomeLoad, error) {
	if d.isClosed() {
		return nil, fmt.Errorf("etcddir: homes: %w", shard.ErrClosed)
	}
	ctx, cancel := d.withTimeout(ctx)
	defer cancel()
	prefix := d.homeKey("")
	resp, err := d.c.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, d.unavailable("homes", err)
	}
	out := make([]shard.HomeLoad, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var v homeValue
		if err := decode(kv, &v); err != nil {
			return nil, err
		}
		out = append(out, shard.HomeLoad{ID: strings.TrimPrefix(string(kv.Key), prefix), Users: v.Users})
	}
	return out, nil
}

// validHomeID is shard's rule: 32 lowercase hex digits.
func validHomeID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func (d *Dir) AddHome(ctx context.Context, id string) error {
	if !validHomeID(id) {
		return fmt.Errorf("etcddir: %w: home id %q", shard.ErrInvalid, id)
	}
	key := d.homeKey(id)
	_, err := d.update(ctx, "add home", func(ctx context.Context) (change, error) {
		r, err := d.read(ctx, "add home", clientv3.OpGet(key))
		if err != nil || r.one(0) != nil {
			return change{}, err // a home taken in already keeps its count
		}
		return change{
			cmps: []clientv3.Cmp{same(key, nil)},
			ops:  []clientv3.Op{clientv3.OpPut(key, mustJSON(homeValue{}))},
		}, nil
	})
	return err
}
