package shard

import (
	"context"
	"database/sql"
	"sync"
)

// Group commit: concurrent writes to one shard share a transaction, and so
// one fsync, while every caller stays blocked until that transaction is
// durable. With one shard and 16 concurrent deliveries this gives about 4x
// the throughput of one transaction per write (see BenchmarkDeliverParallel);
// an uncontended write runs in its caller's goroutine exactly as a plain
// transaction would.
//
// In a batch each write runs inside its own savepoint with its own modseq,
// so one write failing (say, no such folder) does not affect the others.

// maxBatch bounds the writes in one transaction, and so a caller's wait.
const maxBatch = 64

// groupCommit is off only in benchmarks comparing with one transaction per
// write.
var groupCommit = true

type writeFunc func(ctx context.Context, tx *sql.Tx, modseq int64) error

type writeReq struct {
	ctx  context.Context
	fn   writeFunc
	done chan error // buffered: a committer never blocks on a caller
}

type committer struct {
	mu      sync.Mutex
	queue   []*writeReq
	running bool // someone is committing; queued writes will be picked up
}

// write runs fn in a durable write transaction that gives it a fresh modseq
// to stamp its changes with, and returns once that transaction is committed
// and fsync'ed (or failed).
func (h *handle) write(ctx context.Context, fn writeFunc) error {
	r := &writeReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	if !h.group {
		h.commitBatch([]*writeReq{r})
		return <-r.done
	}
	c := &h.gc
	c.mu.Lock()
	c.queue = append(c.queue, r)
	if !c.running {
		// Nobody is committing, so the queue is just r: commit it here,
		// and leave writes that queued meanwhile to a goroutine.
		c.running = true
		c.queue = c.queue[:0]
		c.mu.Unlock()
		h.commitBatch([]*writeReq{r})
		c.mu.Lock()
		if len(c.queue) > 0 {
			go h.commitLoop()
		} else {
			c.running = false
		}
		c.mu.Unlock()
		return <-r.done
	}
	h.countQueued(1)
	c.mu.Unlock()
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
	}
	// Withdraw if still queued; once in a transaction, its outcome counts.
	c.mu.Lock()
	for i, q := range c.queue {
		if q == r {
			c.queue = append(c.queue[:i], c.queue[i+1:]...)
			h.countQueued(-1)
			c.mu.Unlock()
			return ctx.Err()
		}
	}
	c.mu.Unlock()
	return <-r.done
}

// commitLoop commits queued writes in batches until the queue is empty.
func (h *handle) commitLoop() {
	c := &h.gc
	for {
		c.mu.Lock()
		n := min(len(c.queue), maxBatch)
		if n == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		batch := make([]*writeReq, n)
		copy(batch, c.queue)
		c.queue = append(c.queue[:0], c.queue[n:]...)
		h.countQueued(-int64(n))
		c.mu.Unlock()
		h.commitBatch(batch)
	}
}

// commitBatch runs batch in one transaction and answers every request.
func (h *handle) commitBatch(batch []*writeReq) {
	// A shared transaction runs under no caller's context, as one caller
	// giving up must not undo the others' writes. A lone write keeps its
	// caller's values but not its cancellation once it has begun: its
	// statements are short, BEGIN's wait is bounded by busy_timeout, its
	// caller waits for the outcome either way, and a context without a
	// Done channel spares mattn/go-sqlite3 a goroutine per statement.
	ctx := context.Background()
	if len(batch) == 1 {
		ctx = context.WithoutCancel(batch[0].ctx)
	}
	results := make([]error, len(batch))
	err := func() error {
		if len(batch) == 1 {
			if err := batch[0].ctx.Err(); err != nil {
				return err
			}
		}
		tx, err := h.db.w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		// Checked under the write lock: a deleter in another process
		// unlinks while holding that lock, so now the file is either still
		// ours or visibly gone.
		if !h.sameFile() {
			return errStale
		}
		if len(batch) == 1 {
			r := batch[0]
			modseq, err := bumpModSeq(ctx, tx)
			if err != nil {
				return err
			}
			if results[0] = r.fn(ctx, tx, modseq); results[0] != nil {
				return nil // rolled back
			}
			return tx.Commit()
		}
		for i, r := range batch {
			if err := r.ctx.Err(); err != nil {
				results[i] = err
				continue
			}
			if results[i], err = applyOne(ctx, tx, r.fn); err != nil {
				return err
			}
		}
		return tx.Commit()
	}()
	if h.count != nil {
		h.count.commits.Add(1)
		h.count.writes.Add(uint64(len(batch)))
	}
	for i, r := range batch {
		if err != nil {
			r.done <- classify(err)
		} else {
			r.done <- classify(results[i])
		}
	}
}

func bumpModSeq(ctx context.Context, tx *sql.Tx) (int64, error) {
	var modseq int64
	err := tx.QueryRowContext(ctx, `UPDATE state SET modseq = modseq + 1 WHERE id = 1 RETURNING modseq`).Scan(&modseq)
	return modseq, err
}

// applyOne runs fn in a savepoint with its own modseq. It returns fn's error
// as the write's result, and a second error if the whole transaction is
// lost: SQLite may roll back a transaction by itself (SQLITE_FULL,
// SQLITE_IOERR, ...), and then the batch must fail rather than go on in
// autocommit mode.
func applyOne(ctx context.Context, tx *sql.Tx, fn writeFunc) (result, fatal error) {
	if _, err := tx.ExecContext(ctx, `SAVEPOINT w`); err != nil {
		return nil, err
	}
	modseq, err := bumpModSeq(ctx, tx)
	if err == nil {
		err = fn(ctx, tx, modseq)
	}
	if err != nil {
		if _, rerr := tx.ExecContext(ctx, `ROLLBACK TO w`); rerr != nil {
			return nil, err
		}
	}
	if _, rerr := tx.ExecContext(ctx, `RELEASE w`); rerr != nil {
		return nil, rerr
	}
	return err, nil
}

func (h *handle) countQueued(n int64) {
	if h.count != nil {
		h.count.queued.Add(n)
	}
}
