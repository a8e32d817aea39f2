package shard

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// errStale reports that the file a handle has open is no longer the file at
// its path: another process deleted (and maybe re-created) the user.
var errStale = errors.New("shard file was removed or replaced")

// handle is one open shard. The fields down to count are set once, by the
// goroutine that opens the handle, before ready is closed; gc has its own
// lock; the rest belongs to the pool.
type handle struct {
	key   string // hex sha256 of the address; the pool's map key
	path  string
	db    *dbPair
	ident os.FileInfo // the file we opened, to notice it being replaced
	err   error       // open failed; db is nil
	group bool        // writes use group commit (groupcommit.go)
	count *counters   // nil: not counted

	gc committer

	// pubKey caches the user's current public key (deliverykey.go); nil
	// until read.
	pubKey atomic.Pointer[[]byte]

	ready chan struct{} // closed when the open finished (db or err set)
	done  chan struct{} // closed when the handle has been closed

	// Guarded by pool.mu.
	refs int
	elem *list.Element // position in pool.idle while refs == 0
	gone bool          // out of the map: close when refs drops to 0
}

// sameFile reports whether the handle's file is still the one at its path.
// A stat is a microsecond; a delivery into an unlinked file would be mail
// lost after its 250.
func (h *handle) sameFile() bool {
	fi, err := os.Stat(h.path)
	return err == nil && os.SameFile(fi, h.ident)
}

func (h *handle) close() error {
	return h.db.close()
}

// openShardFile opens an existing shard file and applies migrations.
func openShardFile(ctx context.Context, path string, busy time.Duration) (*dbPair, os.FileInfo, error) {
	ms, err := shardMigrations()
	if err != nil {
		return nil, nil, err
	}
	before, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("shard file: %w", classify(err))
	}
	db := openPair(path, busy, kindShard)
	if err := migrate(ctx, db.w, ms); err != nil {
		_ = db.close()
		return nil, nil, err
	}
	// The writer connection is open now; make sure it opened the file we
	// stat'ed, not one that replaced it in between.
	after, err := os.Stat(path)
	if err != nil || !os.SameFile(before, after) {
		_ = db.close()
		return nil, nil, errStale
	}
	return db, after, nil
}

// Stats describes a Store's pool of open shard handles and its writes.
//
// The pool never blocks a caller to respect its limit: Open is at most
// max(Max, InUse). Idle handles beyond Max are closed, least recently used
// first; a handle in use is never closed under its user.
type Stats struct {
	Open   int    // shard handles open (or being opened), in use or idle
	InUse  int    // handles referenced by a running call
	Max    int    // MaxOpenShards
	Opened uint64 // handles opened since Open

	Writes  uint64 // write requests answered (delivery, key change, ...)
	Commits uint64 // write transactions run; below Writes when group commit batched
	Queued  int64  // write requests waiting for a group commit now
}

// counters are shared by a Store's handles.
type counters struct {
	writes, commits atomic.Uint64
	queued          atomic.Int64
}

type pool struct {
	max int
	log *slog.Logger

	mu     sync.Mutex
	m      map[string]*handle
	idle   *list.List // of *handle; front is most recently released
	open   int
	inUse  int
	opened uint64
	closed bool
}

func newPool(max int, log *slog.Logger) *pool {
	return &pool{max: max, log: log, m: make(map[string]*handle), idle: list.New()}
}

func (p *pool) stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Open: p.open, InUse: p.inUse, Max: p.max, Opened: p.opened}
}

// acquire returns the handle for key, opening it with open if no handle is
// pooled. Concurrent callers for the same key share one open.
func (p *pool) acquire(ctx context.Context, key string, open func(context.Context, *handle) error) (*handle, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		if h := p.m[key]; h != nil {
			p.refLocked(h)
			p.mu.Unlock()
			select {
			case <-h.ready:
			case <-ctx.Done():
				p.release(h)
				return nil, ctx.Err()
			}
			if h.err != nil {
				p.release(h)
				// The opener's context ended, not ours: try again.
				if isContextErr(h.err) && ctx.Err() == nil {
					continue
				}
				return nil, h.err
			}
			return h, nil
		}
		h := &handle{key: key, ready: make(chan struct{}), done: make(chan struct{}), refs: 1}
		p.m[key] = h
		p.open++
		p.inUse++
		p.opened++
		victims := p.evictLocked()
		p.mu.Unlock()
		p.closeAll(victims)

		if err := open(ctx, h); err != nil {
			h.err = err
			p.mu.Lock()
			if p.m[key] == h {
				delete(p.m, key)
			}
			h.gone = true
			p.open--
			p.mu.Unlock()
			close(h.ready)
			close(h.done)
			p.release(h)
			return nil, err
		}
		close(h.ready)
		return h, nil
	}
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func (p *pool) refLocked(h *handle) {
	if h.refs == 0 {
		p.inUse++
		if h.elem != nil {
			p.idle.Remove(h.elem)
			h.elem = nil
		}
	}
	h.refs++
}

// release drops one reference. The last reference parks the handle on the
// idle list, or closes it if it was taken out of the pool meanwhile.
func (p *pool) release(h *handle) {
	var victims []*handle
	p.mu.Lock()
	h.refs--
	if h.refs == 0 {
		p.inUse--
		switch {
		case h.err != nil:
			// Never opened; already uncounted.
		case h.gone:
			p.open--
			victims = append(victims, h)
		default:
			h.elem = p.idle.PushFront(h)
			victims = p.evictLocked()
		}
	}
	p.mu.Unlock()
	p.closeAll(victims)
}

// evictLocked takes idle handles, least recently used first, out of the pool
// until it is within its limit. The caller closes them after unlocking.
func (p *pool) evictLocked() []*handle {
	var victims []*handle
	for p.open > p.max && p.idle.Len() > 0 {
		h := p.idle.Remove(p.idle.Back()).(*handle)
		h.elem = nil
		h.gone = true
		if p.m[h.key] == h {
			delete(p.m, h.key)
		}
		p.open--
		victims = append(victims, h)
	}
	return victims
}

func (p *pool) closeAll(hs []*handle) {
	for _, h := range hs {
		if err := h.close(); err != nil {
			p.log.Warn("closing shard", "path", h.path, "err", err)
		}
		close(h.done)
	}
}

// invalidate takes h out of the pool so the next acquire opens afresh; h is
// closed when its last user releases it.
func (p *pool) invalidate(h *handle) {
	p.mu.Lock()
	if p.m[h.key] == h {
		delete(p.m, h.key)
	}
	h.gone = true
	p.mu.Unlock()
}

// drop takes key's handle out of the pool and waits until it is closed,
// i.e. until every running call that uses it has returned.
func (p *pool) drop(ctx context.Context, key string) error {
	p.mu.Lock()
	h := p.m[key]
	if h == nil {
		p.mu.Unlock()
		return nil
	}
	delete(p.m, key)
	h.gone = true
	var victims []*handle
	if h.refs == 0 {
		p.idle.Remove(h.elem)
		h.elem = nil
		p.open--
		victims = append(victims, h)
	}
	p.mu.Unlock()
	p.closeAll(victims)
	select {
	case <-h.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// shutdown closes idle handles now and the others as they are released.
func (p *pool) shutdown() {
	var victims []*handle
	p.mu.Lock()
	p.closed = true
	for key, h := range p.m {
		delete(p.m, key)
		h.gone = true
		if h.refs == 0 {
			p.idle.Remove(h.elem)
			h.elem = nil
			p.open--
			victims = append(victims, h)
		}
	}
	p.mu.Unlock()
	p.closeAll(victims)
}
