package memback

import (
	"bytes"
	"slices"
	"strings"
	"time"

	"cryptomail/xmap"
)

// An account is one user's data: what a shard holds. All access is under Backend.mu.
type account struct {
	address   string
	active    bool // signed up; a pre-created account only receives mail
	publicKey []byte
	loginKey  []byte
	kdf       xmap.KDF
	sealedKey []byte
	// generation names this account object: a deleted and re-created address gets a
	// new one. deviceTokens are SHA-256 hashes, oldest first.
	generation   uint64
	deviceTokens [][32]byte

	modseq     uint64 // the state; every change to one object advances it by one
	changed    chan struct{}
	folders    map[uint64]*folder
	messages   map[uint64]*message
	contacts   map[uint64]*contact
	tombstones []tombstone
	used       int64 // bytes of bodies, summaries and contacts, against the quota
}

type folder struct {
	id              uint64
	name            string
	role            xmap.Role
	created, modseq uint64
}

type message struct {
	id, folder      uint64
	flags           []xmap.Flag // canonical order, see canonicalFlags
	received        time.Time
	summary, body   []byte // never modified once stored
	summaryBy       xmap.SummaryOrigin
	created, modseq uint64
}

type contact struct {
	id              uint64
	data            []byte
	created, modseq uint64
}

// A tombstone remembers a destroyed object for changes.
type tombstone struct {
	kind            xmap.Kind
	id              uint64
	created, modseq uint64
}

func (b *Backend) newAccount(address string, publicKey []byte) *account {
	a := &account{
		address:   address,
		publicKey: publicKey,
		changed:   make(chan struct{}),
		folders:   map[uint64]*folder{},
		messages:  map[uint64]*message{},
		contacts:  map[uint64]*contact{},
	}
	b.generations++
	a.generation = b.generations
	for _, sf := range xmap.SystemFolders {
		a.addFolder(b.newID(), sf.Name, sf.Role)
	}
	return a
}

func (a *account) setLogin(loginKey []byte, kdf xmap.KDF, sealed []byte) {
	a.loginKey = bytes.Clone(loginKey)
	kdf.Salt = bytes.Clone(kdf.Salt)
	a.kdf = kdf
	a.sealedKey = bytes.Clone(sealed)
}

// bump advances the state and wakes every wait.
func (a *account) bump() uint64 {
	a.modseq++
	close(a.changed)
	a.changed = make(chan struct{})
	return a.modseq
}

func (a *account) state() string { return fmtID(a.modseq) }

func (a *account) tombstone(kind xmap.Kind, id, created uint64) {
	a.tombstones = append(a.tombstones, tombstone{kind: kind, id: id, created: created, modseq: a.bump()})
}

// reserve accounts for n more stored bytes, or refuses them over the quota.
// hasBody reports whether a message of a holds body itself (not an equal copy): copies
// share their original's body, which is freed with the last message holding it.
func (a *account) hasBody(body []byte) bool {
	if len(body) == 0 {
		return false
	}
	for _, m := range a.messages {
		if len(m.body) > 0 && &m.body[0] == &body[0] {
			return true
		}
	}
	return false
}

func (a *account) reserve(quota, n int64) error {
	if quota > 0 && n > 0 && a.used+n > quota {
		return xmap.Errorf(xmap.CodeOverQuota, "mailbox full")
	}
	a.used += n
	return nil
}

func (a *account) addFolder(id uint64, name string, role xmap.Role) *folder {
	f := &folder{id: id, name: name, role: role, modseq: a.bump()}
	f.created = f.modseq
	a.folders[id] = f
	return f
}

func (a *account) addMessage(id, folder uint64, flags []xmap.Flag, received time.Time, summary, body []byte, by xmap.SummaryOrigin) *message {
	m := &message{id: id, folder: folder, flags: canonicalFlags(flags), received: received, summary: summary, body: body, summaryBy: by, modseq: a.bump()}
	m.created = m.modseq
	a.messages[id] = m
	return m
}

// role returns a system folder; every account has all of them.
func (a *account) role(r xmap.Role) *folder {
	for _, f := range a.folders {
		if f.role == r {
			return f
		}
	}
	panic("memback: account without system folder " + string(r))
}

// resolve finds a folder of this account by id or name.
func (a *account) resolve(ref xmap.FolderRef) (*folder, error) {
	if ref.ID != "" {
		if id, ok := parseID(ref.ID); ok {
			if f := a.folders[id]; f != nil {
				return f, nil
			}
		}
	} else {
		for _, f := range a.folders {
			if f.name == ref.Name {
				return f, nil
			}
		}
	}
	return nil, xmap.Errorf(xmap.CodeNotFound, "no such folder")
}

func (a *account) nameFree(name string) error {
	if xmap.ReservedFolderName(name) {
		return xmap.Errorf(xmap.CodeConflict, "%q is reserved for a system folder", name)
	}
	for _, f := range a.folders {
		if f.name == name {
			return xmap.Errorf(xmap.CodeConflict, "a folder named %q exists", name)
		}
	}
	return nil
}

// lookup finds every message of ids, or fails naming the first one missing.
func (a *account) lookup(ids []string) ([]*message, error) {
	out := make([]*message, 0, len(ids))
	for _, s := range ids {
		id, ok := parseID(s)
		m := a.messages[id]
		if !ok || m == nil {
			return nil, xmap.Errorf(xmap.CodeNotFound, "no message %s", s)
		}
		out = append(out, m)
	}
	return out, nil
}

// sortedFolders lists system folders in xmap.SystemFolders order, then the rest by name.
func (a *account) sortedFolders() []*folder {
	rank := func(f *folder) int {
		for i, sf := range xmap.SystemFolders {
			if sf.Role == f.role {
				return i
			}
		}
		return len(xmap.SystemFolders)
	}
	fs := make([]*folder, 0, len(a.folders))
	for _, f := range a.folders {
		fs = append(fs, f)
	}
	slices.SortFunc(fs, func(x, y *folder) int {
		if c := rank(x) - rank(y); c != 0 {
			return c
		}
		return strings.Compare(x.name, y.name)
	})
	return fs
}

// sortedMessages lists messages by id, so changes are made in a stable order.
func (a *account) sortedMessages() []*message {
	ms := make([]*message, 0, len(a.messages))
	for _, m := range a.messages {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(x, y *message) int { return cmpUint(x.id, y.id) })
	return ms
}

func (a *account) folderInfo(f *folder) xmap.Folder {
	info := xmap.Folder{ID: fmtID(f.id), Name: f.name, Role: f.role}
	for _, m := range a.messages {
		if m.folder == f.id {
			info.Total++
			if !slices.Contains(m.flags, xmap.FlagSeen) {
				info.Unseen++
			}
		}
	}
	return info
}

func (m *message) info(summary, body bool) xmap.Message {
	info := xmap.Message{
		ID:       fmtID(m.id),
		FolderID: fmtID(m.folder),
		Flags:    slices.Clone(m.flags),
		Size:     int64(len(m.body)),
		Received: m.received,
		// Always said, like the real server, whether or not the summary is sent.
		SummaryBy: m.summaryBy,
	}
	if summary {
		info.Summary = m.summary
	}
	if body {
		info.Body = m.body
	}
	return info
}

// canonicalFlags orders flags as system flags in a fixed order, then keywords sorted, and
// drops repeats, so equal flag sets compare equal.
func canonicalFlags(fs []xmap.Flag) []xmap.Flag {
	system := []xmap.Flag{xmap.FlagSeen, xmap.FlagAnswered, xmap.FlagFlagged, xmap.FlagDraft, xmap.FlagDeleted}
	var out, kw []xmap.Flag
	for _, s := range system {
		if slices.Contains(fs, s) {
			out = append(out, s)
		}
	}
	for _, f := range fs {
		if f.IsKeyword() {
			kw = append(kw, f)
		}
	}
	slices.Sort(kw)
	return append(out, slices.Compact(kw)...)
}
