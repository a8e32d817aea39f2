// Package memback is a complete in-memory xmapserver.Backend, as go-imap's imapmemserver
// is for IMAP: accounts with invites, system folders, messages with flags, Trash and
// expunge, contacts, a per-account modseq with change tracking and tombstones, wait, and
// sending (local delivery and an outbox). It keeps every account apart exactly as the
// shard storage must. Protocol tests run against it; it is not meant for production: it
// stores bodies as given and keeps nothing on disk.
package memback

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cmcrypto "cryptomail/crypto"
	"cryptomail/xmap"
	"cryptomail/xmap/xmapserver"
)

// Options configure a Backend. The zero value works.
type Options struct {
	// Now is the clock; nil means time.Now. Times are kept in UTC, to the second.
	Now func() time.Time
	// LocalDomains are the domains this server receives mail for: a send to an address in
	// one of them without an account is invalid-recipient. Any account's domain is local too.
	LocalDomains []string
	// Quota bounds each account's stored bytes (bodies, summaries, contacts); 0: none.
	Quota int64
	// MaxFolders bounds each account's folders, system ones included; 0: 1000.
	MaxFolders int
	// FakeSaltKey keys the made-up salts of unknown addresses; nil: a random key, so the
	// salts are stable for the life of the Backend only.
	FakeSaltKey []byte
	// DefaultKDF holds the parameters (Alg, Time, Memory, Threads) answered with a made-up
	// salt; zero: Argon2id with RFC 9106's second recommended option (t=3, 64 MiB, p=4).
	DefaultKDF xmap.KDF
	// Rand draws device tokens; nil: crypto/rand.Reader.
	Rand io.Reader
}

// Backend is the in-memory backend. Its methods are safe for concurrent use.
type Backend struct {
	opts    Options
	mu      sync.Mutex
	users   map[string]*account // by lower-cased address
	invites map[[32]byte]*invite
	nextID  uint64 // one counter for every object of every account
	// generations numbers account objects (Generation), apart from nextID so that
	// object ids stay as they were.
	generations uint64
	outbox      []Outgoing
}

var _ xmapserver.Backend = (*Backend)(nil)

// An Outgoing is a message queued for remote recipients.
type Outgoing struct {
	From string
	To   []string
	Body []byte
}

type invite struct {
	address string
	expires time.Time
	used    bool
}

// New returns an empty Backend.
func New(opts Options) *Backend {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxFolders == 0 {
		opts.MaxFolders = 1000
	}
	if opts.FakeSaltKey == nil {
		opts.FakeSaltKey = make([]byte, 32)
		if _, err := rand.Read(opts.FakeSaltKey); err != nil {
			panic("memback: no randomness: " + err.Error())
		}
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.DefaultKDF.Alg == "" {
		opts.DefaultKDF = xmap.KDF{Alg: xmap.KDFArgon2id, Time: 3, Memory: 64 << 10, Threads: 4}
	}
	domains := make([]string, len(opts.LocalDomains))
	for i, d := range opts.LocalDomains {
		domains[i] = strings.ToLower(d)
	}
	opts.LocalDomains = domains
	return &Backend{opts: opts, users: map[string]*account{}, invites: map[[32]byte]*invite{}}
}

func (b *Backend) now() time.Time { return b.opts.Now().UTC().Truncate(time.Second) }

func (b *Backend) newID() uint64 {
	b.nextID++
	return b.nextID
}

func fmtID(id uint64) string { return strconv.FormatUint(id, 10) }

func parseID(s string) (uint64, bool) {
	id, err := strconv.ParseUint(s, 10, 64)
	return id, err == nil
}

func key(address string) string { return strings.ToLower(address) }

// AddUser creates an account that can receive mail before its owner signs up, as
// `cryptomail user add --public-key` does. Signup with an invite and the same public key
// activates it.
func (b *Backend) AddUser(address string, publicKey []byte) error {
	if !xmap.ValidAddress(address) {
		return fmt.Errorf("memback: invalid address")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.users[key(address)] != nil {
		return fmt.Errorf("memback: %s: %w", address, xmap.ErrConflict)
	}
	b.users[key(address)] = b.newAccount(address, bytes.Clone(publicKey))
	return nil
}

// AddInvite records a one-time invite code for address, valid until expires.
func (b *Backend) AddInvite(code, address string, expires time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.invites[sha256.Sum256([]byte(code))] = &invite{address: key(address), expires: expires}
}

// Deliver stores an arriving message in address's INBOX, as LMTP delivery does, and
// returns its id. A zero received means now.
func (b *Backend) Deliver(ctx context.Context, address string, body, summary []byte, received time.Time) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a := b.users[key(address)]
	if a == nil {
		return "", fmt.Errorf("memback: deliver: %w", xmap.ErrNotFound)
	}
	if received.IsZero() {
		received = b.now()
	}
	if err := a.reserve(b.opts.Quota, int64(len(body)+len(summary))); err != nil {
		return "", err
	}
	m := a.addMessage(b.newID(), a.role(xmap.RoleInbox).id, nil, received.UTC().Truncate(time.Second), bytes.Clone(summary), bytes.Clone(body), xmap.SummaryByServer)
	return fmtID(m.id), nil
}

// Outbox returns the messages queued for remote recipients so far.
func (b *Backend) Outbox() []Outgoing {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.outbox)
}

// Credentials is what an account stores for login.
type Credentials struct {
	Active    bool
	PublicKey []byte
	LoginKey  []byte
	KDF       xmap.KDF
	SealedKey []byte
}

// Credentials returns the login material of an account.
func (b *Backend) Credentials(address string) (Credentials, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a := b.users[key(address)]
	if a == nil {
		return Credentials{}, false
	}
	return Credentials{Active: a.active, PublicKey: a.publicKey, LoginKey: a.loginKey, KDF: a.kdf, SealedKey: a.sealedKey}, true
}

// user returns the session user's account. The transport only makes sessions for active
// accounts; one that has gone since is denied.
func (b *Backend) user(user string) (*account, error) {
	a := b.users[key(user)]
	if a == nil || !a.active {
		return nil, xmap.Errorf(xmap.CodeDenied, "no such account")
	}
	return a, nil
}

// LookupSalt implements xmapserver.Backend.
func (b *Backend) LookupSalt(ctx context.Context, req *xmap.SaltLookup) (xmap.KDF, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a := b.users[key(req.Address)]; a != nil && a.active {
		return a.kdf, nil
	}
	mac := hmac.New(sha256.New, b.opts.FakeSaltKey)
	mac.Write([]byte("cryptomail xmap fake salt\x00"))
	mac.Write([]byte(key(req.Address)))
	kdf := b.opts.DefaultKDF
	kdf.Salt = mac.Sum(nil)[:16]
	return kdf, nil
}

// Signup implements xmapserver.Backend.
func (b *Backend) Signup(ctx context.Context, req *xmap.Signup) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	inv := b.invites[sha256.Sum256([]byte(req.Invite))]
	// One answer for unknown, used and other-address codes: a guesser learns nothing.
	if inv == nil || inv.used || inv.address != key(req.Address) {
		return xmap.ErrInvalidInvite
	}
	if !b.now().Before(inv.expires) {
		return xmap.Errorf(xmap.CodeExpired, "invite code expired")
	}
	a := b.users[key(req.Address)]
	switch {
	case a == nil:
		a = b.newAccount(req.Address, nil)
		b.users[key(req.Address)] = a
	case a.active:
		return xmap.Errorf(xmap.CodeConflict, "address already has an account")
	case !bytes.Equal(a.publicKey, req.PublicKey):
		return xmap.Errorf(xmap.CodeConflict, "public key differs from the one the account was created with")
	}
	inv.used = true
	a.active = true
	a.publicKey = bytes.Clone(req.PublicKey)
	a.setLogin(req.LoginKey, req.KDF, req.SealedKey)
	return nil
}

// ChangePassphrase implements xmapserver.Backend.
func (b *Backend) ChangePassphrase(ctx context.Context, user string, req *xmap.ChangePassphrase) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, err := b.user(user)
	if err != nil {
		return err
	}
	a.setLogin(req.LoginKey, req.KDF, req.SealedKey)
	a.deviceTokens = nil
	return nil
}

// IssueDeviceToken implements xmapserver.Backend: current if it is valid, else a random
// token (from Options.Rand), of which the account keeps the hashes of the newest
// MaxDeviceTokens.
func (b *Backend) IssueDeviceToken(ctx context.Context, user string, current []byte) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, err := b.user(user)
	if err != nil {
		return nil, err
	}
	if current != nil && a.hasDeviceToken(current) {
		return bytes.Clone(current), nil
	}
	token := make([]byte, xmap.DeviceTokenSize)
	if _, err := io.ReadFull(b.opts.Rand, token); err != nil {
		return nil, err
	}
	h := sha256.Sum256(token)
	a.deviceTokens = append(a.deviceTokens, h)
	if len(a.deviceTokens) > MaxDeviceTokens {
		a.deviceTokens = a.deviceTokens[len(a.deviceTokens)-MaxDeviceTokens:]
	}
	return token, nil
}

// MaxDeviceTokens is how many device tokens an account keeps.
const MaxDeviceTokens = 10

// Generation returns the generation of an active account: the account object's number
// followed by its login key, so a deleted and re-created account, or a new passphrase,
// changes it (sexmap.Accounts.Generation).
func (b *Backend) Generation(address string) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a := b.users[key(address)]
	if a == nil || !a.active || len(a.loginKey) == 0 {
		return nil, false
	}
	return append(binary.BigEndian.AppendUint64(nil, a.generation), a.loginKey...), true
}

// DeleteUser removes an account with everything it holds, as `cryptomail user del` does.
func (b *Backend) DeleteUser(address string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.users, key(address))
}

// DeviceTokenValid reports whether token was issued to the active account address and is
// still kept; every kept hash is compared in constant time.
func (b *Backend) DeviceTokenValid(address string, token []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	a := b.users[key(address)]
	return a != nil && a.active && a.hasDeviceToken(token)
}

// hasDeviceToken compares the token's hash with every kept one in constant time.
func (a *account) hasDeviceToken(token []byte) bool {
	h := sha256.Sum256(token)
	found := 0
	for _, t := range a.deviceTokens {
		found |= subtle.ConstantTimeCompare(t[:], h[:])
	}
	return found == 1
}

// Account implements xmapserver.Backend.
func (b *Backend) Account(ctx context.Context, user string) (xmap.Account, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, err := b.user(user)
	if err != nil {
		return xmap.Account{}, err
	}
	kdf := a.kdf
	kdf.Salt = bytes.Clone(kdf.Salt)
	return xmap.Account{Address: a.address, PublicKey: bytes.Clone(a.publicKey), KDF: kdf, SealedKey: bytes.Clone(a.sealedKey)}, nil
}

// Logout implements xmapserver.Backend. Sessions belong to the transport, so an account
// has nothing to end; the session user must still exist.
func (b *Backend) Logout(ctx context.Context, user string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, err := b.user(user)
	return err
}

// PublicKeys implements xmapserver.Backend.
func (b *Backend) PublicKeys(ctx context.Context, user string, req *xmap.PublicKeys) ([]xmap.PublicKey, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.user(user); err != nil {
		return nil, err
	}
	var keys []xmap.PublicKey
	for _, addr := range req.Addresses {
		if a := b.users[key(addr)]; a != nil && len(a.publicKey) > 0 {
			keys = append(keys, xmap.PublicKey{Address: a.address, Key: a.publicKey})
		}
	}
	return keys, nil
}

// ListFolders implements xmapserver.Backend.
func (b *Backend) ListFolders(ctx context.Context, user string) ([]xmap.Folder, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, err := b.user(user)
	if err != nil {
		return nil, err
	}
	var out []xmap.Folder
	for _, f := range a.sortedFolders() {
		out = append(out, a.folderInfo(f))
	}
	return out, nil
}

// CreateFolder implements xmapserver.Backend.
func (b *Backend) CreateFolder(ctx context.Context, user string, req *xmap.CreateFolder) (xmap.Folder, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, err := b.user(user)
	if err != nil {
		return xmap.Folder{}, err
	}
	if err := a.nameFree(req.FolderName); err != nil {
		return xmap.Folder{}, err
	}
	if len(a.folders) >= b.opts.MaxFolders {
		return xmap.Folder{}, xmap.Errorf(xmap.CodeOverQuota, "at most %d folders", b.opts.MaxFolders)
	}
	f := a.addFolder(b.newID(), req.FolderName, "")
	return a.folderInfo(f), nil
}

// RenameFolder implements xmapserver.Backend.
func (b *Backend) RenameFolder(ctx context.Context, user string, req *xmap.RenameFolder) (xmap.Folder, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, err := b.user(user)
	if err != nil {
		return xmap.Folder{}, err
	}
	f, err := a.resolve(req.Folder)
	if err != nil {
		return xmap.Folder{}, err
	}
	if f.role != "" {
		return xmap.Folder{}, xmap.Errorf(xmap.CodeDenied, "system folders cannot be renamed")
	}
	if f.name != req.NewName {
		if err := a.nameFree(req.NewName); err != nil {
			return xmap.Folder{}, err
		}
		f.name = req.NewName
		f.modseq = a.bump()
	}
	return a.folderInfo(f), nil
}

// DeleteFolder implements xmapserver.Backend.
func (b *Backend) DeleteFolder(ctx context.Context, user string, req *xmap.DeleteFolder) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, err := b.user(user)
	if err != nil {
		return err
	}
	f, err := a.resolve(req.Folder)
	if err != nil {
		return err
	}
	if f.role != "" {
		return xmap.Errorf(xmap.CodeDenied, "system folders cannot be deleted")
	}
	trash := a.role(xmap.RoleTrash)
	for _, m := range a.sortedMessages() {
		if m.folder == f.id {
			m.folder = trash.id
			m.modseq = a.bump()
		}
	}
	delete(a.folders, f.id)
	a.tombstone(xmap.KindFolder, f.id, f.created)
	return nil
}

// ListMessages implements xmapserver.Backend.
func (b *Backend) ListMessages(ctx context.Context, user string, req *xmap.ListMessages, w *xmapserver.MessageWriter) error {
	b.mu.Lock()
	a, err := b.user(user)
	if err != nil {
		b.mu.Unlock()
		return err
	}
	f, err := a.resolve(req.Folder)
	if err != nil {
		b.mu.Unlock()
		return err
	}
	desc := req.Sort != xmap.SortReceivedAsc
	var in []*message
	for _, m := range a.messages {
		if m.folder == f.id {
			in = append(in, m)
		}
	}
	slices.SortFunc(in, func(x, y *message) int {
		c := x.received.Compare(y.received)
		if c == 0 {
			c = cmpUint(x.id, y.id)
		}
		if desc {
			c = -c
		}
		return c
	})
	start := 0
	if req.Cursor != "" {
		at, id, ok := parseCursor(req.Cursor, desc, f.id)
		if !ok {
			b.mu.Unlock()
			return xmap.Errorf(xmap.CodeBadRequest, "invalid cursor")
		}
		start = len(in)
		for i, m := range in {
			c := m.received.Compare(at)
			if c == 0 {
				c = cmpUint(m.id, id)
			}
			if desc {
				c = -c
			}
			if c > 0 {
				start = i
				break
			}
		}
	}
	end := min(start+req.Limit, len(in))
	page := make([]xmap.Message, 0, end-start)
	for _, m := range in[start:end] {
		page = append(page, m.info(true, false))
	}
	w.SetFolderID(fmtID(f.id))
	w.SetTotal(len(in))
	w.SetState(a.state())
	if end < len(in) {
		last := in[end-1]
		w.SetNextCursor(makeCursor(desc, f.id, last.received, last.id))
	}
	b.mu.Unlock()
	for i := range page {
		if err := w.WriteMessage(&page[i]); err != nil {
			return err
		}
	}
	return nil
}

// A cursor is the sort key of the last message of a page: direction, folder, received
// time and id. Keyed rather than positional, so messages arriving between pages neither
// repeat nor vanish.
func makeCursor(desc bool, folder uint64, at time.Time, id uint64) string {
	dir := "a"
	if desc {
		dir = "d"
	}
	return fmt.Sprintf("%s.%d.%d.%d", dir, folder, at.Unix(), id)
}

func parseCursor(s string, desc bool, folder uint64) (time.Time, uint64, bool) {
	p := strings.Split(s, ".")
	if len(p) != 4 || (p[0] == "d") != desc || (p[0] != "a" && p[0] != "d") {
		return time.Time{}, 0, false
	}
	f, err1 := strconv.ParseUint(p[1], 10, 64)
	sec, err2 := strconv.ParseInt(p[2], 10, 64)
	id, err3 := strconv.ParseUint(p[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || f != folder {
		return time.Time{}, 0, false
	}
	return time.Unix(sec, 0).UTC(), id, true
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Fetch implements xmapserver.Backend.
func (b *Backend) Fetch(ctx context.Context, user string, req *xmap.Fetch, w *xmapserver.FetchWriter) error {
	b.mu.Lock()
	a, err := b.user(user)
	if err != nil {
		b.mu.Unlock()
		return err
	}
	// Stored blobs are never modified, so the snapshot can be written without the lock.
	var found []xmap.Message
	for _, s := range req.IDs {
		if id, ok := parseID(s); ok {
			if m := a.messages[id]; m != nil {
				found = append(found, m.info(w.Parts().Has(xmap.PartSummary), w.Parts().Has(xmap.PartBody)))
			}
		}
	}
	b.mu.Unlock()
	for i := range found {
		m := &found[i]
		if !w.Fits(int64(len(m.Summary) + len(m.Body))) {
			if err := w.Defer(m.ID); err != nil {
				return err
			}
			continue
		}
		if err := w.WriteMessage(m); err != nil {
			return err
		}
	}
	return nil
}

// UpdateFlags implements xmapserver.Backend.
func (b *Backend) UpdateFlags(ctx context.Context, user string, req *xmap.UpdateFlags) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, err := b.user(user)
	if err != nil {
		return err
	}
	msgs, err := a.lookup(req.IDs)
	if err != nil {
		return err
	}
	next := make([][]xmap.Flag, len(msgs))
	for i, m := range msgs {
		var fs []xmap.Flag
		switch req.Action {
		case xmap.FlagsAdd:
			fs = append(slices.Clone(m.flags), req.Flags...)
		case xmap.FlagsRemove:
			fs = slices.DeleteFunc(slices.Clone(m.flags), func(f xmap.Flag) bool { return slices.Contains(req.Flags, f) })
		case xmap.FlagsReplace:
			fs = slices.Clone(req.Flags)
			if slices.Contains(m.flags, xmap.FlagDeleted) {
				fs = append(fs, xmap.FlagDeleted)
			}
		}
		fs = canonicalFlags(fs)
		if len(fs) > xmap.MaxFlags {
			return xmap.Errorf(xmap.CodeLimitExceeded, "message %s would have more than %d flags", fmtID(m.id), xmap.MaxFlags)
		}
		next[i] = fs
	}
	for i, m := range msgs {
		if !slices.Equal(m.flags, next[i]) {
			m.flags = next[i]
			m.modseq = a.bump()
		}
	}
	return nil
}

// Move implements xmapserver.Backend.
func (b *Backend) Move(ctx context.Context, user string, req *xmap.Move) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, err := b.user(user)
	if err != nil {
		return err
	}
	to, err := a.resolve(req.Folder)
	if err != nil {
		return err
	}
	msgs, err := a.lookup(req.IDs)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if m.folder != to.id {
			m.folder = to.id
			m.flags = slices.DeleteFunc(m.flags, func(f xmap.Flag) bool { return f == xmap.FlagDeleted })
			m.modseq = a.bump()
		}
	}
	return nil
}

// Copy implements xmapserver.Backend.
func (b *Backend) Copy(ctx context.Context, user string, req *xmap.Copy) ([]xmap.Copied, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, err := b.user(user)
	if err != nil {
		return nil, err
	}
	to, err := a.resolve(req.Folder)
	if err != nil {
		return nil, err
	}
	msgs, err := a.lookup(req.IDs)
	if err != nil {
		return nil, err
	}
	// A copy shares the original's body, as in the shards: it stores its summary and a
	// row, which MaxCopyBytes bounds per request, and only the summary counts to the quota.
	var size int64
	for i, m := range msgs {
		size += int64(len(m.summary))
		if size+int64(i+1)*copyRowBytes > xmap.MaxCopyBytes {
			return nil, xmap.Errorf(xmap.CodeLimitExceeded, "copy would store more than %d bytes; copy fewer messages at a time", xmap.MaxCopyBytes)
		}
	}
	if err := a.reserve(b.opts.Quota, size); err != nil {
		return nil, err
	}
	out := make([]xmap.Copied, 0, len(msgs))
	for _, m := range msgs {
		flags := slices.DeleteFunc(slices.Clone(m.flags), func(f xmap.Flag) bool { return f == xmap.FlagDeleted })
		c := a.addMessage(b.newID(), to.id, flags, m.received, m.summary, m.body, m.summaryBy) // a copy keeps the origin
		out = append(out, xmap.Copied{From: fmtID(m.id), ID: fmtID(c.id)})
	}
	return out, nil
}

// copyRowBytes is what a copy's row costs against MaxCopyBytes, on top of its summary:
// shard.CopyRowBytes, which the real backend counts.
const copyRowBytes = 128

// Delete implements xmapserver.Backend.
func (b *Backend) Delete(ctx context.Context, user string, req *xmap.Delete) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, err := b.user(user)
	if err != nil {
		return err
	}
	msgs, err := a.lookup(req.IDs)
	if err != nil {
		return err
	}
	trash := a.role(xmap.RoleTrash)
	for _, m := range msgs {
		switch {
		case m.folder != trash.id:
			m.folder = trash.id
			m.modseq = a.bump()
		case !slices.Contains(m.flags, xmap.FlagDeleted):
			m.flags = canonicalFlags(append(m.flags, xmap.FlagDeleted))
			m.modseq = a.bump()
		}
	}
	return nil
}

// Expunge implements xmapserver.Backend.
func (b *Backend) Expunge(ctx context.Context, user string, req *xmap.Expunge) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, err := b.user(user)
	if err != nil {
		return 0, err
	}
	f, err := a.resolve(req.Folder)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range a.sortedMessages() {
		if m.folder == f.id && slices.Contains(m.flags, xmap.FlagDeleted) {
			delete(a.messages, m.id)
			a.used -= int64(len(m.summary))
			if !a.hasBody(m.body) {
				a.used -= int64(len(m.body))
			}
			a.tombstone(xmap.KindMessage, m.id, m.created)
			n++
		}
	}
	return n, nil
}

// Append implements xmapserver.Backend.
func (b *Backend) Append(ctx context.Context, user string, req *xmap.Append) (xmap.Message, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, err := b.user(user)
	if err != nil {
		return xmap.Message{}, err
	}
	f, err := a.resolve(req.Folder)
	if err != nil {
		return xmap.Message{}, err
	}
	if err := a.reserve(b.opts.Quota, int64(len(req.Body)+len(req.Summary))); err != nil {
		return xmap.Message{}, err
	}
	received := req.Received.Truncate(time.Second)
	if received.IsZero() {
		received = b.now()
	}
	m := a.addMessage(b.newID(), f.id, canonicalFlags(slices.Clone(req.Flags)), received, bytes.Clone(req.Summary), bytes.Clone(req.Body), xmap.SummaryByOwner)
	return m.info(false, false), nil
}

// Send implements xmapserver.Backend. Local recipients get the message in their INBOX,
// remote ones go to the outbox, the sender keeps a \Seen copy in Sent; all or nothing.
func (b *Backend) Send(ctx context.Context, user string, req *xmap.Send) (*xmap.SendResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, err := b.user(user)
	if err != nil {
		return nil, err
	}
	// What the real server (server/internal/outbound) requires of what it stores and relays: a
	// PGP/MIME body around a real OpenPGP message, and OpenPGP summaries.
	if cmcrypto.CheckPGPMIME(req.Body) != nil {
		return nil, xmap.Errorf(xmap.CodeBadRequest, "body is not a PGP/MIME encrypted message (multipart/encrypted around an OpenPGP message)")
	}
	for _, r := range req.Recipients {
		if len(r.Summary) > 0 && cmcrypto.CheckEncrypted(r.Summary) != nil {
			return nil, xmap.Errorf(xmap.CodeBadRequest, "summary for %s is not an OpenPGP encrypted message", r.Address)
		}
	}
	if len(req.SentSummary) > 0 && cmcrypto.CheckEncrypted(req.SentSummary) != nil {
		return nil, xmap.Errorf(xmap.CodeBadRequest, "sent-summary is not an OpenPGP encrypted message")
	}
	type local struct {
		acct    *account
		summary []byte
	}
	var (
		locals         []local
		remoteEnc      []string
		remotePlain    []string
		statuses       []xmap.RecipientStatus
		reserveByLocal = map[*account]int64{}
	)
	for _, r := range req.Recipients {
		if to := b.users[key(r.Address)]; to != nil {
			if !r.Encrypted {
				return nil, xmap.Errorf(xmap.CodePlaintextRefused, "%s is a local recipient and must be encrypted to", r.Address)
			}
			locals = append(locals, local{to, r.Summary})
			reserveByLocal[to] += int64(len(req.Body) + len(r.Summary))
			statuses = append(statuses, xmap.RecipientStatus{Address: r.Address, Status: xmap.StatusDelivered})
			continue
		}
		if b.localDomain(r.Address) {
			return nil, xmap.Errorf(xmap.CodeInvalidRecipient, "%s: no such local recipient", r.Address)
		}
		if r.Encrypted {
			remoteEnc = append(remoteEnc, r.Address)
		} else {
			remotePlain = append(remotePlain, r.Address)
		}
		statuses = append(statuses, xmap.RecipientStatus{Address: r.Address, Status: xmap.StatusQueued})
	}
	reserveByLocal[a] += int64(len(req.Body) + len(req.SentSummary))
	for acct, n := range reserveByLocal {
		if b.opts.Quota > 0 && acct.used+n > b.opts.Quota {
			if acct == a {
				return nil, xmap.Errorf(xmap.CodeOverQuota, "your mailbox is full")
			}
			return nil, xmap.Errorf(xmap.CodeOverQuota, "mailbox of %s is full", acct.address)
		}
	}
	now := b.now()
	body := bytes.Clone(req.Body)
	for _, l := range locals {
		l.acct.used += int64(len(body) + len(l.summary))
		// The sender wrote this summary (or the headers a server-made one would
		// come from); mail to oneself is the owner's. Each message stored by send
		// has a body of its own (the shards store it once per message), so
		// expunge frees it with the message.
		by := xmap.SummaryBySender
		if l.acct == a {
			by = xmap.SummaryByOwner
		}
		l.acct.addMessage(b.newID(), l.acct.role(xmap.RoleInbox).id, nil, now, bytes.Clone(l.summary), bytes.Clone(body), by)
	}
	if len(remoteEnc) > 0 {
		b.outbox = append(b.outbox, Outgoing{From: a.address, To: remoteEnc, Body: body})
	}
	if len(remotePlain) > 0 {
		b.outbox = append(b.outbox, Outgoing{From: a.address, To: remotePlain, Body: bytes.Clone(req.PlaintextBody)})
	}
	a.used += int64(len(body) + len(req.SentSummary))
	sentBy := xmap.SummaryByOwner
	if len(req.SentSummary) == 0 {
		sentBy = xmap.SummaryByServer
	}
	sent := a.addMessage(b.newID(), a.role(xmap.RoleSent).id, []xmap.Flag{xmap.FlagSeen}, now, bytes.Clone(req.SentSummary), bytes.Clone(body), sentBy)
	return &xmap.SendResult{Sent: sent.info(false, false), Recipients: statuses}, nil
}

func (b *Backend) localDomain(address string) bool {
	domain := key(address[strings.LastIndexByte(address, '@')+1:])
	if slices.Contains(b.opts.LocalDomains, domain) {
		return true
	}
	for k := range b.users {
		if strings.HasSuffix(k, "@"+domain) {
			return true
		}
	}
	return false
}

// ListContacts implements xmapserver.Backend.
func (b *Backend) ListContacts(ctx context.Context, user string, req *xmap.ListContacts, w *xmapserver.ContactWriter) error {
	b.mu.Lock()
	a, err := b.user(user)
	if err != nil {
		b.mu.Unlock()
		return err
	}
	var after uint64
	if req.Cursor != "" {
		s, ok := strings.CutPrefix(req.Cursor, "c.")
		id, good := parseID(s)
		if !ok || !good {
			b.mu.Unlock()
			return xmap.Errorf(xmap.CodeBadRequest, "invalid cursor")
		}
		after = id
	}
	ids := make([]uint64, 0, len(a.contacts))
	for id := range a.contacts {
		if id > after {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	var page []xmap.Contact
	for _, id := range ids[:min(req.Limit, len(ids))] {
		page = append(page, xmap.Contact{ID: fmtID(id), Data: a.contacts[id].data})
	}
	w.SetState(a.state())
	if len(ids) > req.Limit {
		w.SetNextCursor("c." + fmtID(ids[req.Limit-1]))
	}
	b.mu.Unlock()
	for i := range page {
		if err := w.WriteContact(&page[i]); err != nil {
			return err
		}
	}
	return nil
}

// PutContact implements xmapserver.Backend.
func (b *Backend) PutContact(ctx context.Context, user string, req *xmap.PutContact) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, err := b.user(user)
	if err != nil {
		return "", err
	}
	data := bytes.Clone(req.Contact.Data)
	if req.Contact.ID == "" {
		if err := a.reserve(b.opts.Quota, int64(len(data))); err != nil {
			return "", err
		}
		c := &contact{id: b.newID(), data: data, modseq: a.bump()}
		c.created = c.modseq
		a.contacts[c.id] = c
		return fmtID(c.id), nil
	}
	id, ok := parseID(req.Contact.ID)
	c := a.contacts[id]
	if !ok || c == nil {
		return "", xmap.Errorf(xmap.CodeNotFound, "no such contact")
	}
	if err := a.reserve(b.opts.Quota, int64(len(data)-len(c.data))); err != nil {
		return "", err
	}
	c.data = data
	c.modseq = a.bump()
	return fmtID(c.id), nil
}

// DeleteContact implements xmapserver.Backend.
func (b *Backend) DeleteContact(ctx context.Context, user string, req *xmap.DeleteContact) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, err := b.user(user)
	if err != nil {
		return err
	}
	id, ok := parseID(req.ID)
	c := a.contacts[id]
	if !ok || c == nil {
		return xmap.Errorf(xmap.CodeNotFound, "no such contact")
	}
	delete(a.contacts, id)
	a.used -= int64(len(c.data))
	a.tombstone(xmap.KindContact, id, c.created)
	return nil
}

// Changes implements xmapserver.Backend.
func (b *Backend) Changes(ctx context.Context, user string, req *xmap.Changes) (*xmap.ChangesResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, err := b.user(user)
	if err != nil {
		return nil, err
	}
	since, err := strconv.ParseUint(req.Since, 10, 64)
	if err != nil || since > a.modseq {
		return nil, xmap.ErrResyncRequired
	}
	type change struct {
		kind            xmap.Kind
		id              uint64
		created, modseq uint64
		destroyed       bool
	}
	var all []change
	for _, f := range a.folders {
		if f.modseq > since {
			all = append(all, change{xmap.KindFolder, f.id, f.created, f.modseq, false})
		}
	}
	for _, m := range a.messages {
		if m.modseq > since {
			all = append(all, change{xmap.KindMessage, m.id, m.created, m.modseq, false})
		}
	}
	for _, c := range a.contacts {
		if c.modseq > since {
			all = append(all, change{xmap.KindContact, c.id, c.created, c.modseq, false})
		}
	}
	for _, t := range a.tombstones {
		// Created and destroyed since: the client never saw it.
		if t.modseq > since && t.created <= since {
			all = append(all, change{t.kind, t.id, t.created, t.modseq, true})
		}
	}
	slices.SortFunc(all, func(x, y change) int { return cmpUint(x.modseq, y.modseq) })
	res := &xmap.ChangesResult{State: a.state()}
	if len(all) > req.MaxChanges {
		all = all[:req.MaxChanges]
		res.HasMore = true
		res.State = fmtID(all[len(all)-1].modseq)
	}
	for _, c := range all {
		ref := xmap.ObjectRef{Kind: c.kind, ID: fmtID(c.id)}
		switch {
		case c.destroyed:
			res.Destroyed = append(res.Destroyed, ref)
		case c.created > since:
			res.Created = append(res.Created, ref)
		default:
			res.Updated = append(res.Updated, ref)
		}
	}
	return res, nil
}

// Wait implements xmapserver.Backend.
func (b *Backend) Wait(ctx context.Context, user string, since string) (string, error) {
	b.mu.Lock()
	a, err := b.user(user)
	if err != nil {
		b.mu.Unlock()
		return "", err
	}
	state, changed := a.state(), a.changed
	b.mu.Unlock()
	if state != since {
		return state, nil
	}
	select {
	case <-changed:
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return a.state(), nil
}
