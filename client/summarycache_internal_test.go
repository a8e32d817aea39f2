package client

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

func testSummary(i int) *Summary {
	return &Summary{From: fmt.Sprintf("s%d@example.org", i), To: []string{"a@example.org"}, Cc: []string{"c@example.org"},
		Subject: fmt.Sprintf("subject %d", i), Date: time.Date(2025, 3, 1, 9, i, 0, 0, time.UTC), Snippet: "hello"}
}

func TestSummaryCacheKeys(t *testing.T) {
	c := newSummaryCache(10)
	blobA, blobB := []byte("ciphertext A"), []byte("ciphertext B")
	c.put("1", blobA, testSummary(1))
	tests := []struct {
		name string
		id   string
		blob []byte
		want *Summary // nil: a miss
	}{
		{"same id and ciphertext", "1", []byte("ciphertext A"), testSummary(1)},
		{"another id, same ciphertext", "2", blobA, nil},
		{"same id, another ciphertext", "1", blobB, nil},
		{"same id, ciphertext prefix", "1", blobA[:5], nil},
		{"same id, no ciphertext", "1", nil, nil},
		{"unknown id", "3", blobB, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := c.get(tt.id, tt.blob)
			if ok != (tt.want != nil) || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("get(%q, %q) = %+v, %v; want %+v", tt.id, tt.blob, got, ok, tt.want)
			}
		})
	}
}

// What a caller does with a summary it got must not change what the next caller gets.
func TestSummaryCacheCopies(t *testing.T) {
	c := newSummaryCache(10)
	blob := []byte("ciphertext")
	in := testSummary(1)
	c.put("1", blob, in)
	in.Subject, in.To[0] = "changed", "changed"
	blob[0] = 'X'
	got, ok := c.get("1", []byte("ciphertext"))
	if !ok || !reflect.DeepEqual(got, testSummary(1)) {
		t.Fatalf("after changing the input: %+v, %v", got, ok)
	}
	got.To[0], got.Cc = "changed", nil
	if again, _ := c.get("1", []byte("ciphertext")); !reflect.DeepEqual(again, testSummary(1)) {
		t.Errorf("after changing a result: %+v", again)
	}
}

func TestSummaryCacheBound(t *testing.T) {
	c := newSummaryCache(3)
	for i := range 3 {
		c.put(fmt.Sprint(i), []byte{byte(i)}, testSummary(i))
	}
	c.get("0", []byte{0}) // 1 is now the least recently used
	c.put("3", []byte{3}, testSummary(3))
	if n := c.len(); n != 3 {
		t.Errorf("%d entries, want 3", n)
	}
	for i, want := range []bool{true, false, true, true} {
		if _, ok := c.get(fmt.Sprint(i), []byte{byte(i)}); ok != want {
			t.Errorf("entry %d cached = %v, want %v", i, ok, want)
		}
	}
	// Replacing an entry does not grow the cache.
	c.put("3", []byte{33}, testSummary(33))
	if got, ok := c.get("3", []byte{33}); !ok || got.Subject != "subject 33" || c.len() != 3 {
		t.Errorf("replaced entry: %+v %v, %d entries", got, ok, c.len())
	}
}

func TestSummaryCacheClose(t *testing.T) {
	c := newSummaryCache(10)
	c.put("1", []byte("a"), testSummary(1))
	c.close()
	if _, ok := c.get("1", []byte("a")); ok || c.len() != 0 {
		t.Errorf("closed cache still serves (%d entries)", c.len())
	}
	c.put("2", []byte("b"), testSummary(2))
	if c.len() != 0 {
		t.Error("closed cache took a new entry")
	}
}

func TestSummaryCacheDisabled(t *testing.T) {
	for _, c := range []*summaryCache{newSummaryCache(-1), nil} {
		c.put("1", []byte("a"), testSummary(1))
		if _, ok := c.get("1", []byte("a")); ok || c.len() != 0 {
			t.Errorf("disabled cache %v serves", c)
		}
		c.close()
	}
}

func TestSummaryCacheByteBound(t *testing.T) {
	c := newSummaryCache(100)
	c.maxBytes = 3000
	blob := make([]byte, 900)
	for i := range 5 {
		c.put(fmt.Sprint(i), blob, testSummary(i))
	}
	if c.len() != 2 || c.bytes > c.maxBytes {
		t.Errorf("%d entries of %d bytes, want 2 within %d", c.len(), c.bytes, c.maxBytes)
	}
	for i, want := range []bool{false, false, false, true, true} {
		if _, ok := c.get(fmt.Sprint(i), blob); ok != want {
			t.Errorf("entry %d cached = %v, want %v", i, ok, want)
		}
	}
	c.put("big", make([]byte, 4000), testSummary(9)) // larger than the cache: not kept, nothing evicted
	if _, ok := c.get("big", make([]byte, 4000)); ok || c.len() != 2 {
		t.Errorf("an entry over the byte bound was kept (%d entries)", c.len())
	}
	c.close()
	if c.bytes != 0 {
		t.Errorf("closed cache counts %d bytes", c.bytes)
	}
}
