package mailback

import (
	"sync"
	"testing"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestNotifier(t *testing.T) {
	var n Notifier
	n.Notify("nobody@example.org") // no waiter: nothing kept
	if n.waiting() != 0 {
		t.Fatalf("%d users kept after a notify without waiters", n.waiting())
	}
	a1, release1 := n.subscribe("alice@example.org")
	a2, release2 := n.subscribe("ALICE@example.org")
	b, releaseB := n.subscribe("bob@example.org")
	if n.waiting() != 2 {
		t.Fatalf("%d users waiting, want 2", n.waiting())
	}
	n.Notify("alice@example.org")
	if !closed(a1) || !closed(a2) || closed(b) {
		t.Errorf("after notifying alice: alice %v %v, bob %v", closed(a1), closed(a2), closed(b))
	}
	// A later subscription waits for the next notification.
	a3, release3 := n.subscribe("alice@example.org")
	if closed(a3) {
		t.Error("new subscription already closed")
	}
	n.Notify("alice@example.org")
	if !closed(a3) {
		t.Error("second notification missed")
	}
	for _, r := range []func(){release1, release2, release3, releaseB} {
		r()
	}
	if n.waiting() != 0 {
		t.Errorf("%d users kept after every waiter left", n.waiting())
	}
}

// TestNotifierConcurrent: run with -race.
func TestNotifierConcurrent(t *testing.T) {
	var n Notifier
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(2)
		user := []string{"a", "b"}[i%2]
		go func() {
			defer wg.Done()
			for range 200 {
				_, release := n.subscribe(user)
				release()
			}
		}()
		go func() {
			defer wg.Done()
			for range 200 {
				n.Notify(user)
			}
		}()
	}
	wg.Wait()
	if n.waiting() != 0 {
		t.Errorf("%d users kept", n.waiting())
	}
}
