package mailback

import (
	"strings"
	"sync"
)

// A Notifier wakes the Wait calls (XMAP wait, for push) of a user whose
// mail changed. Whatever stores mail for a user — LMTP delivery, local
// delivery of a send, the Mailboxes's own writes — calls Notify after its
// write is committed. The zero value is ready to use; it is safe for
// concurrent use.
//
// It keeps one broadcast channel per user with a waiter, and nothing for
// users without one, so its memory is bounded by the number of waits in
// progress. A notification carries no data: a woken Wait reads the state
// again, so a spurious or merged notification costs one read and a missed
// one is impossible as long as every writer notifies. (A write made by
// another process, such as the admin CLI, is seen when the wait next reads
// the state, at its timeout at the latest.)
type Notifier struct {
	mu    sync.Mutex
	users map[string]*waiters
}

type waiters struct {
	ch chan struct{} // closed by Notify, then replaced
	n  int           // Wait calls holding this entry
}

// key folds case: addresses are compared ignoring case, and an extra
// wake-up only costs a read.
func key(user string) string { return strings.ToLower(user) }

// Notify wakes every Wait of user. It never blocks and costs nothing when
// nobody waits.
func (n *Notifier) Notify(user string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if w := n.users[key(user)]; w != nil {
		close(w.ch)
		w.ch = make(chan struct{})
	}
}

// subscribe returns a channel closed by the next Notify of user, and the
// function to call when no longer waiting. Subscribe before reading the
// state, so a change committed after the read cannot go unnoticed.
func (n *Notifier) subscribe(user string) (<-chan struct{}, func()) {
	k := key(user)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.users == nil {
		n.users = make(map[string]*waiters)
	}
	w := n.users[k]
	if w == nil {
		w = &waiters{ch: make(chan struct{})}
		n.users[k] = w
	}
	w.n++
	return w.ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if w.n--; w.n == 0 {
			delete(n.users, k)
		}
	}
}

// waiting reports how many users have a Wait in progress.
func (n *Notifier) waiting() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.users)
}
