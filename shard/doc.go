// Package shard stores CryptoMail's users and their mail: the MetaBase
// (a Directory mapping each user to a home id; on one machine the SQLite file
// meta.db, metasql.go) and the DataBase (one SQLite file per user, the
// shard). It stores opaque ciphertext and knows nothing of XML, SMTP or
// OpenPGP.
//
// # The Directory
//
// The Store keeps the shards and orchestrates; what the metabase answers
// (entries, placement, reservations, invites, device tokens, homes' user
// counts) is behind the Directory interface (directory.go), whose methods are
// each one atomic, compare-and-set operation, as a transactional KV store
// (etcd) can do them. The SQLite Directory (sqlDir, metasql.go) is its own
// file set: it owns every SQL statement on meta.db's users, reservations,
// invites and device_tokens, and the Store reaches them only through the
// interface; Options.Directory puts the Store on another engine's instead,
// and then no meta.db is opened or created. Open brings the homes in through
// the Directory too (Homes, AddHome). meta.db's migrations, and CheckHomes,
// which reads meta.db without opening a Store, stay SQLite's. Directory
// conformance tests: shard/directorytest.
//
// # Layout
//
// A user's shard is <home>/<hh>/<hex sha256(address)>.db, hh being the
// first two hex digits of the hash, so no part of an address reaches the
// file system. A new user goes to the configured home with the fewest users
// (ties: the first in configured order). Files are created 0600, directories
// 0700. Schemas are numbered migrations embedded in the binary, tracked with
// PRAGMA user_version and applied in one transaction when a file is opened
// (internal/sqlitedb, shared with the outbound queue). Open creates the data
// dir, the homes and meta.db where missing, unless Options.NoCreate says the
// store must exist already (admin tools): then nothing is created.
//
// # Homes
//
// A home is known by a stable id, never by its path: 32 hex digits (16
// random bytes) in the file HOME (0600) at the top of the home directory,
// written once, when the home is first used, and never changed. The
// metabase stores only ids (users.home_id; the homes table, keyed by id,
// counts users per home for placement and lists every home this metabase
// has taken in, users or not). Options.Homes says where each home is now;
// Open reads their HOME files, and a shard's path is always computed from
// the configured directory of its user's home id, so a data dir restored to
// another path, with Homes pointed at it, never reaches the original.
//
// Open requires the configuration and the metabase to agree (processes
// opening at once agree without a lock: HOME files are read before the
// Directory's homes, never replaced, and a new home is registered before
// anyone is placed on it; see openHomes), and otherwise fails with ErrHome
// naming every disagreement (matchHomes):
//   - a configured home without a HOME file must be empty (hold no <hh>
//     shard directory): it is a new home, and Open writes its HOME file (to a
//     temporary name, fsync'ed, linked into place: never half written,
//     never replacing one) and registers its id. One with shards may be a
//     home restored without its file, and giving it a new id would orphan
//     its users;
//   - a configured home whose id the metabase does not know must be empty
//     (a crash between writing and registering it); otherwise it is
//     another data dir's home;
//   - no two configured homes may share an id (a home and its copy);
//   - every id with users must be configured: a user whose home is not
//     configured stops Open, naming the id and a user.
//
// CheckHomes makes the same checks without creating or writing anything
// (meta.db opened read-only, immutable when no server has it open), for
// check-config. A user whose home id another process's configuration
// added later is reported as ErrHome by every call that needs the shard.
//
// Meta migration 0004 turned the stored paths into ids: before its SQL,
// in its transaction, every distinct users.home path (each must be a
// configured home, or nothing changes) gets its HOME file read or written,
// and the SQL rewrites the rows through that map.
//
// # Durability
//
// Every database runs in WAL mode with synchronous=FULL, foreign_keys=ON,
// secure_delete=ON and a busy timeout. Write transactions start with BEGIN
// IMMEDIATE, so a locked database is reported at BEGIN (ErrBusy), never at
// COMMIT. Deliver returns only after its transaction is committed and
// fsync'ed: a caller may acknowledge the message as soon as it returns.
// Concurrent writes to one shard are group-committed: those that queue while
// a transaction runs share the next one (each in its own savepoint, with its
// own modseq), so they share its fsync; every caller still waits for it.
// Closing a shard checkpoints its WAL into the database file (fsync'ed) and
// empties it, but keeps the -wal and -shm files (SQLITE_FCNTL_PERSIST_WAL):
// reopening a shard then creates no file and dirties no directory.
// Reads that must see one moment (a page and its count and state) run in
// one read transaction on a reader connection.
//
// Received times are stored as unix nanoseconds.
//
// # Mail operations
//
// Folders, messages and contacts are reached through one user's shard at a
// time (mail.go, contact.go, changes.go), so another user's objects cannot
// even be named: ids are numbers within a shard, never reused (a destroyed
// id stays destroyed for delta sync), and an id that is not in the shard is
// simply not found. Operations on several messages run in one transaction:
// all or nothing. Listings are keyed pages: ordered by (received second,
// id) through the index messages_folder_received, with a cursor that is the
// position after the page's last message, so arrivals between pages neither
// repeat nor shift it. A page, its folder's count and the state it reports
// are read in one snapshot.
//
// # Bodies
//
// A message's body (the large ciphertext) is a row of its own in the
// bodies table, which the message refers to (messages.body_id). A copy
// within the shard refers to its original's body instead of storing it
// again, so a copy costs a row and a summary, never a body; CopyMessages
// also caps what one copy adds (summaries and rows). Triggers keep the rule
// that no write path can forget: a message cannot be stored without a body
// nor change it, and the delete of the last message referring to a body
// deletes the body in the same transaction (with secure_delete, its pages
// are zeroed). The stored-bytes counter counts each body once however many
// messages share it. Messages and export read the body through the
// reference, so every message is still emitted with its body.
//
// # Modseq and delta sync
//
// The shard's modseq (table state) only grows. Every write bumps it first
// and stamps what it changes with the new value; a write that changes
// several objects (a move of many messages, an expunge, a folder deleted
// with its messages) bumps it again for each further object, so every
// object carries a modseq of its own: its last change. Deletions leave
// tombstones (destroyed_messages, destroyed_folders, destroyed_contacts),
// written by triggers that read the state, so no delete can forget its
// tombstone and each gets the stamp of its own deletion. Only the newest
// MaxTombstones tombstones are kept (tombstones.go). Objects also keep
// the modseq they were created at (created_modseq; 0 for objects older than
// schema 2, which are then reported as updated, never wrongly as created).
//
// Changes(since, max) lists the objects and tombstones stamped after since,
// in modseq order, and cuts a page after its max-th change, answering the
// modseq of that change as the state to continue from. Because no two
// objects share a modseq, the cut always falls between two changes:
// everything stamped up to it is in the page, everything after it (an
// object changed again meanwhile included) comes in a later one, so paging
// neither skips nor loses a change. (Should two objects ever share one, the
// cut moves back to the last boundary, never through a modseq.) A write
// that turns out to change nothing is rolled back, so it moves no state.
// Folder counts (total, unseen) and the stored-bytes counter are kept by
// triggers too; a folder's modseq tracks the folder itself (creation,
// rename), not its messages.
//
// # Open shards
//
// Shard handles are pooled, at most Options.MaxOpenShards idle ones: the
// least recently used idle handle is closed when the pool is over its limit.
// A handle in use is never closed, and no caller waits for a free slot, so
// the number of open handles is at most max(MaxOpenShards, handles in use);
// see Stats. Each handle has one writer connection (writes of this
// process queue for it instead of contending inside SQLite) and a few
// query_only readers, which WAL lets run beside the writer. Readers are
// opened on demand: a delivery uses the writer alone, because the public key
// it encrypts to is read once, when the handle opens, and kept in the
// handle (DeliveryKey). DeliverSealed checks inside its own transaction that
// the key is still current, so a key replaced meanwhile, by this process or
// another, is never used for a stored message (ErrKeyChanged).
//
// # Other processes
//
// Another process (the admin CLI, or another node with a shared Directory)
// may open the same files while a server runs; SQLite's locks and the busy
// timeout arbitrate within a file. No rule spanning the Directory and a
// shard file relies on a lock held across calls (meta.db's write lock is
// taken only inside one Directory call); the rules are built from
// reservations and claims, which the Directory grants atomically and which
// expire (Options.ReservationTTL), so a crashed holder blocks nobody for
// long:
//
//   - Creating a user: Reserve the address (fails if it has an entry or a
//     live reservation: ErrExists), create the shard file on the
//     reservation's home, then Commit, a compare-and-set on the
//     reservation's token that inserts the entry. Until Commit no entry
//     exists, so no delivery or login reaches the half-made file. On failure
//     the files are removed and the reservation cancelled. A crash leaves an
//     expired reservation: the next Reserve of the address takes it over
//     (Reservation.TookOver) and removes the files left on every home.
//   - Deleting a user: Delete removes the entry (new mail and logins are
//     refused from then on) and leaves a reservation of the address on its
//     home in the same step; the shard's handle is dropped once running
//     calls return, its files removed, and the reservation cancelled. Nobody
//     can create the address again before that, or before the reservation
//     expires (then the taker removes the files). An address without an
//     entry is cleaned up the same way under a reservation of its own.
//   - A holder touches files only in the first half of its reservation's
//     life (Store.holds), so one who takes over an expired reservation
//     never races it; a holder whose Commit reports ErrLost touches nothing.
//   - Sign-up: ClaimInvite claims the invite (one sign-up at a time: the
//     others get ErrInvalidInvite). A new address is reserved, its shard
//     made with the public key and the login row, and CompleteSignup marks
//     the invite used and commits the entry in one step: an entry never
//     exists without its login row. An activation of an existing entry
//     writes the login row (refused if one exists) before CompleteSignup
//     marks the invite used; a crash between leaves a working account and a
//     dead invite. A released or expired claim leaves the invite unused.
//
// Shard files are created only under a reservation and removed only under
// one, and removed while holding the shard's own write lock. A handle
// notices (by inode) that its file was removed or replaced, before each read
// and inside each write transaction (under the write lock, which is what
// makes the check sound), and then reopens instead of writing into an
// unlinked file. Closing such a stale handle cannot harm a new shard at the
// same path: it removes no file, and checkpoints and truncates only the
// files it has open.
//
// # Account generations
//
// Every directory entry carries a random account id (meta.db: account_id,
// drawn by a trigger when the row is inserted and again whenever its state
// changes); a deleted and re-created account therefore never shares one with
// its predecessor. Generation (session.go) is that id followed by the
// current login key, read from the Directory and the shard on every call, so
// SeXMAP can end the sessions of an account another process deleted,
// disabled or re-keyed. Device tokens are stored as SHA-256 hashes keyed by
// the account id and deleted with the entry or when its account id changes.
package shard
