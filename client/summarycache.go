package client

import (
	"bytes"
	"container/list"
	"slices"
	"sync"
)

// DefaultSummaryCacheSize is how many decrypted summaries a Session keeps when
// Options.SummaryCacheSize is 0: a few screens of every folder a user pages through,
// at most MaxSummarySize of ciphertext plus its plaintext fields each.
const DefaultSummaryCacheSize = 4096

// summaryCacheBytes bounds the memory a Session's cache takes whatever the entry count: a
// summary may be up to xmap.MaxSummarySize, though most are about a kilobyte.
const summaryCacheBytes = 16 << 20

// summaryCache keeps decrypted summaries in memory, by message id, so that paging through
// a folder again does not decrypt the same summaries again. A message's summary never
// changes for its id (ids are never reused; a copy gets a new id), but an entry is still
// only used when the ciphertext it was decrypted from is byte for byte the one the server
// sent now: the cache can only return what decrypting that ciphertext returned.
//
// It lives in memory only and is dropped with the session's keys (forget); it is bounded
// by entries and by bytes, least recently used out first.
type summaryCache struct {
	mu       sync.Mutex
	max      int // entries; <= 0: disabled
	maxBytes int
	bytes    int // sum of the entries' size
	closed   bool
	order    list.List // of *summaryEntry, least recently used first
	entries  map[string]*list.Element
}

type summaryEntry struct {
	id   string
	blob []byte // the encrypted summary it was decrypted from
	sum  Summary
	size int
}

func newSummaryCache(max int) *summaryCache {
	return &summaryCache{max: max, maxBytes: summaryCacheBytes, entries: make(map[string]*list.Element)}
}

// entrySize approximates the memory an entry holds.
func entrySize(id string, blob []byte, s *Summary) int {
	n := 256 + len(id) + len(blob) + len(s.From) + len(s.Subject) + len(s.MessageID) + len(s.Snippet)
	for _, a := range s.To {
		n += 16 + len(a)
	}
	for _, a := range s.Cc {
		n += 16 + len(a)
	}
	return n
}

// get returns a copy of the summary decrypted from blob for message id, if cached.
func (c *summaryCache) get(id string, blob []byte) (*Summary, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.entries[id]
	if el == nil {
		return nil, false
	}
	e := el.Value.(*summaryEntry)
	if !bytes.Equal(e.blob, blob) {
		return nil, false
	}
	c.order.MoveToBack(el)
	return e.sum.clone(), true
}

// put remembers sum as the decryption of blob for message id. It keeps its own copies, so
// a caller changing what it was given cannot change what later pages get.
func (c *summaryCache) put(id string, blob []byte, sum *Summary) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.max <= 0 {
		return
	}
	size := entrySize(id, blob, sum)
	if size > c.maxBytes {
		return
	}
	if el := c.entries[id]; el != nil {
		c.remove(el)
	}
	for len(c.entries) >= c.max || c.bytes+size > c.maxBytes {
		c.remove(c.order.Front())
	}
	e := &summaryEntry{id: id, blob: bytes.Clone(blob), sum: *sum.clone(), size: size}
	c.entries[id] = c.order.PushBack(e)
	c.bytes += size
}

func (c *summaryCache) remove(el *list.Element) {
	e := c.order.Remove(el).(*summaryEntry)
	delete(c.entries, e.id)
	c.bytes -= e.size
}

// close empties the cache for good: nothing is added after it.
func (c *summaryCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for el := c.order.Front(); el != nil; el = el.Next() {
		el.Value.(*summaryEntry).sum.wipe()
	}
	c.order.Init()
	clear(c.entries)
	c.bytes = 0
}

// len returns the number of cached summaries.
func (c *summaryCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func (s *Summary) clone() *Summary {
	c := *s
	c.To, c.Cc = slices.Clone(s.To), slices.Clone(s.Cc)
	return &c
}

// wipe drops the references to the decrypted fields (Go strings cannot be overwritten;
// this lets the collector reclaim them).
func (s *Summary) wipe() { *s = Summary{} }
