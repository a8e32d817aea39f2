// Package etcddir is the shard.Directory (the MetaBase) on etcd, for a
// cluster of nodes: the same contract as the SQLite metabase
// (shard/directory.go), checked by the same conformance suite
// (shard/directorytest).
//
// It lives under shard/ because it is one more engine behind the
// Directory interface, next to metasql.go; it knows nothing of nodes.
//
// # Keys
//
// Every key is under Config.Prefix (default "/cryptomail/"); values are
// JSON.
//
//	users/<address>               an entry: home, state, account id, created
//	reservations/<address>        a reservation: home, token, expires (ns)
//	homes/<id>                    a home taken in: its number of users
//	invites/<address>/<hex hash>  an invite: created, expires, used, claim
//	invitecodes/<hex hash>        the address an invite code belongs to, so a
//	                              code hash is stored once in the whole
//	                              directory (CreateInvite's ErrExists)
//	tokens/<address>              the device tokens of the address's current
//	                              account id, oldest first (one key, so that
//	                              "keep the newest max" is one compare-and-set)
//
// # Atomicity
//
// Every write is one etcd transaction (clientv3.Txn) whose If compares the
// ModRevision of every key the decision was made on, as read just before:
// an absent key compares with 0, so "no entry" and "no reservation" are
// checked too. When the If fails, something changed between the read and
// the write: the method reads again and decides again (a bounded retry), so
// two racing Reserves of one address end with one winner and one
// ErrReserved, and two racing claims of one invite with one ErrInvalidInvite.
// Counts of users per home live in homes/<id> and change in the same
// transaction as the entry they count (Commit, CompleteSignup, Delete), so
// Homes and placement never see an entry without its count.
//
// Placement (Reserve) reads the homes and every reservation at one revision
// and compares that neither prefix gained or changed a key since: the home
// picked is the least loaded (users plus unexpired reservations, ties to the
// first) at the revision the reservation is written after.
//
// Reservations and invite claims expire by stored times compared with
// Config.Now, as in SQLite, not by etcd leases: the contract needs an
// expired reservation to be taken over and reported (Reservation.TookOver),
// which a lease that deletes the key would hide; and the times follow the
// caller's clock, so tests can move it. A reservation left by a crashed
// holder stays in etcd until the next Reserve of its address takes it over.
//
// # The cache
//
// Lookup, the call on every delivery and login, costs no etcd round trip:
// Open loads every users/ key into a map and watches the prefix from the
// revision after the load (clientv3.WithRev(rev+1)), so no change falls
// between them. A watch answered with a compacted revision, or broken, is
// replaced by a reload (a new Get and a new watch from its revision). A write
// through this Directory that changes users/ (Commit, CompleteSignup, Delete)
// returns only once the watch has brought the cache to the write's revision,
// so the writer's own Lookup sees it. Changes made by other nodes arrive
// through the watch, usually within milliseconds.
//
// Home ids and states are interned, the account id is stored inline: a
// cached user costs about 125 bytes of heap (measured by TestCacheMemory; see
// docs/CLUSTER.md).
//
// # When etcd is down
//
// Lookup keeps answering from the cache (possibly stale, never wrong about
// what it last saw); the watch retries and the cache catches up when etcd
// returns. Every other method goes to etcd, within Config.Timeout, and fails
// with an error wrapping shard.ErrBusy ("metabase unavailable"), which
// callers treat as temporary.
package etcddir
