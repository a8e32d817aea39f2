// Package mailback answers XMAP's folder, message (all but send), contact
// and sync requests from the users' shards: it translates between xmap's
// types and the shard package's, maps storage errors to XMAP codes, and
// runs the long-poll wait on a Notifier.
//
// Every request acts on the session user's own shard, so another user's
// data cannot even be named: ids are numbers within one shard, and an id
// that is not one of the user's (another user's, or not a number at all)
// is not found, exactly like one that never existed.
package mailback

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"cryptomail/server/internal/deliver"
	"cryptomail/shard"
	"cryptomail/xmap"
	"cryptomail/xmap/xmapserver"
)

// DefaultMaxFolders is Options.MaxFolders' default, the reference backend's.
const DefaultMaxFolders = 1000

// Options configure Mailboxes. The zero value works.
type Options struct {
	// Notifier is woken by every write the Mailboxes makes and wakes its
	// waits; give the same one to everything else that stores mail for
	// users. nil: the Mailboxes makes its own (see Mailboxes.Notifier).
	Notifier *Notifier
	// Deliverer is the delivery path append stores through; its quota
	// hook bounds copy and put-contact too, so quotas live in one place.
	// nil: one on the store, with Quota as its hook and the Notifier.
	Deliverer *deliver.Deliverer
	// Quota, without a Deliverer, bounds each user's stored ciphertext
	// (message summaries and bodies, contacts) for every write that grows
	// a mailbox; 0: no limit. Ignored with a Deliverer.
	Quota int64
	// MaxFolders bounds each user's folders, system ones included;
	// 0: DefaultMaxFolders.
	MaxFolders int
	// Now is the clock for append's default received time; nil: time.Now.
	Now func() time.Time
	// Logger gets storage conditions worth an operator's eye (a busy
	// shard); nil: slog.Default(). Nothing of a message goes to it.
	Logger *slog.Logger
}

// Mailboxes implements xmapserver.FolderBackend, ContactBackend, SyncBackend
// and every MessageBackend method but Send, on a shard.Store. Its methods
// are safe for concurrent use.
type Mailboxes struct {
	store   *shard.Store
	opts    Options
	notify  *Notifier
	deliver *deliver.Deliverer
}

var (
	_ xmapserver.FolderBackend  = (*Mailboxes)(nil)
	_ xmapserver.ContactBackend = (*Mailboxes)(nil)
	_ xmapserver.SyncBackend    = (*Mailboxes)(nil)
)

// New returns a Mailboxes on store.
func New(store *shard.Store, opts Options) *Mailboxes {
	if opts.Notifier == nil {
		opts.Notifier = new(Notifier)
	}
	if opts.MaxFolders <= 0 {
		opts.MaxFolders = DefaultMaxFolders
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	dl := opts.Deliverer
	if dl == nil {
		var quota deliver.Quota
		if q := opts.Quota; q > 0 {
			quota = func(context.Context, string) (int64, error) { return q, nil }
		}
		dl = deliver.New(store, deliver.Options{Quota: quota, Notify: opts.Notifier.Notify, Now: opts.Now})
	}
	return &Mailboxes{store: store, opts: opts, notify: opts.Notifier, deliver: dl}
}

// Notifier returns the Notifier the Mailboxes waits on: the delivery path
// and the sender call its Notify(user) after storing mail for user.
func (b *Mailboxes) Notifier() *Notifier { return b.notify }

// parseID reads an XMAP id of this backend: a decimal number in canonical
// form (no sign, no leading zero), so each object has exactly one id
// string. Anything else names nothing.
func parseID(s string) (int64, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || strconv.FormatInt(n, 10) != s {
		return 0, false
	}
	return n, true
}

func fmtID(n int64) string { return strconv.FormatInt(n, 10) }

func parseIDs(ids []string) ([]int64, error) {
	out := make([]int64, len(ids))
	for i, s := range ids {
		n, ok := parseID(s)
		if !ok {
			return nil, xmap.Errorf(xmap.CodeNotFound, "no message %s", s)
		}
		out[i] = n
	}
	return out, nil
}

var errNoFolder = xmap.Errorf(xmap.CodeNotFound, "no such folder")

func folderRef(ref xmap.FolderRef) (shard.FolderRef, error) {
	if ref.ID == "" {
		return shard.FolderRef{Name: ref.Name}, nil
	}
	id, ok := parseID(ref.ID)
	if !ok {
		return shard.FolderRef{}, errNoFolder
	}
	return shard.FolderRef{ID: id}, nil
}

// fail maps a storage error to what the client may see. Errors that are
// the server's own (I/O, corruption, bugs) come back as they are: the
// server reports them as internal, with no text, and logs them.
func (b *Mailboxes) fail(ctx context.Context, op string, err error) error {
	var ide *shard.IDError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, shard.ErrNoSuchFolder):
		return errNoFolder
	case errors.Is(err, shard.ErrNoSuchMessage) && errors.As(err, &ide):
		return xmap.Errorf(xmap.CodeNotFound, "no message %d", ide.ID)
	case errors.Is(err, shard.ErrNoSuchMessage):
		return xmap.Errorf(xmap.CodeNotFound, "no such message")
	case errors.Is(err, shard.ErrNoSuchContact):
		return xmap.Errorf(xmap.CodeNotFound, "no such contact")
	case errors.Is(err, shard.ErrNotFound), errors.Is(err, deliver.ErrUnknownUser):
		// The session's account is gone (deleted since login).
		return xmap.Errorf(xmap.CodeDenied, "no such account")
	case errors.Is(err, shard.ErrTooManyFlags) && errors.As(err, &ide):
		return xmap.Errorf(xmap.CodeLimitExceeded, "message %d would have more than %d flags", ide.ID, xmap.MaxFlags)
	case errors.Is(err, shard.ErrTooManyFlags):
		return xmap.Errorf(xmap.CodeLimitExceeded, "more than %d flags", xmap.MaxFlags)
	case errors.Is(err, shard.ErrQuota), errors.Is(err, deliver.ErrOverQuota):
		return xmap.Errorf(xmap.CodeOverQuota, "mailbox full")
	case errors.Is(err, deliver.ErrTooLarge):
		return xmap.Errorf(xmap.CodeTooLarge, "message over %d bytes", xmap.MaxMessageSize)
	case errors.Is(err, shard.ErrLimit):
		return xmap.Errorf(xmap.CodeLimitExceeded, "copy would store more than %d bytes; copy fewer messages at a time", xmap.MaxCopyBytes)
	case errors.Is(err, shard.ErrBadCursor):
		return xmap.Errorf(xmap.CodeBadRequest, "invalid cursor")
	case errors.Is(err, shard.ErrUnknownState):
		return xmap.ErrResyncRequired
	case errors.Is(err, shard.ErrBusy), errors.Is(err, deliver.ErrBusy):
		// Another writer holds the user's shard (another process, or a
		// long write): temporary, so the client is told to retry.
		b.opts.Logger.WarnContext(ctx, "xmap: shard busy", "op", op, "err", err)
		return xmap.Errorf(xmap.CodeRateLimited, "storage busy; retry later")
	}
	return fmt.Errorf("mailback: %s: %w", op, err)
}

// done notifies the user's waits after a successful write.
func (b *Mailboxes) done(ctx context.Context, user, op string, err error) error {
	if err != nil {
		return b.fail(ctx, op, err)
	}
	b.notify.Notify(user)
	return nil
}

func folderInfo(f shard.Folder) xmap.Folder {
	return xmap.Folder{ID: fmtID(f.ID), Name: f.Name, Role: xmap.Role(f.Role), Total: f.Total, Unseen: f.Unseen}
}

func roleRank(r xmap.Role) int {
	for i, sf := range xmap.SystemFolders {
		if sf.Role == r {
			return i
		}
	}
	return len(xmap.SystemFolders)
}

// ListFolders implements xmapserver.FolderBackend.
func (b *Mailboxes) ListFolders(ctx context.Context, user string) ([]xmap.Folder, error) {
	fs, err := b.store.Folders(ctx, user)
	if err != nil {
		return nil, b.fail(ctx, "list folders", err)
	}
	out := make([]xmap.Folder, len(fs))
	for i, f := range fs {
		out[i] = folderInfo(f)
	}
	slices.SortFunc(out, func(x, y xmap.Folder) int {
		if c := roleRank(x.Role) - roleRank(y.Role); c != 0 {
			return c
		}
		return cmp.Compare(x.Name, y.Name)
	})
	return out, nil
}

func nameTaken(name string) error {
	if xmap.ReservedFolderName(name) {
		return xmap.Errorf(xmap.CodeConflict, "%q is reserved for a system folder", name)
	}
	return xmap.Errorf(xmap.CodeConflict, "a folder named %q exists", name)
}

// CreateFolder implements xmapserver.FolderBackend.
func (b *Mailboxes) CreateFolder(ctx context.Context, user string, req *xmap.CreateFolder) (xmap.Folder, error) {
	f, err := b.store.CreateFolder(ctx, user, req.FolderName, b.opts.MaxFolders)
	switch {
	case errors.Is(err, shard.ErrFolderExists):
		return xmap.Folder{}, nameTaken(req.FolderName)
	case errors.Is(err, shard.ErrQuota):
		return xmap.Folder{}, xmap.Errorf(xmap.CodeOverQuota, "at most %d folders", b.opts.MaxFolders)
	}
	if err := b.done(ctx, user, "create folder", err); err != nil {
		return xmap.Folder{}, err
	}
	return folderInfo(f), nil
}

// RenameFolder implements xmapserver.FolderBackend.
func (b *Mailboxes) RenameFolder(ctx context.Context, user string, req *xmap.RenameFolder) (xmap.Folder, error) {
	ref, err := folderRef(req.Folder)
	if err != nil {
		return xmap.Folder{}, err
	}
	f, err := b.store.RenameFolder(ctx, user, ref, req.NewName)
	switch {
	case errors.Is(err, shard.ErrSystemFolder):
		return xmap.Folder{}, xmap.Errorf(xmap.CodeDenied, "system folders cannot be renamed")
	case errors.Is(err, shard.ErrFolderExists):
		return xmap.Folder{}, nameTaken(req.NewName)
	}
	if err := b.done(ctx, user, "rename folder", err); err != nil {
		return xmap.Folder{}, err
	}
	return folderInfo(f), nil
}

// DeleteFolder implements xmapserver.FolderBackend.
func (b *Mailboxes) DeleteFolder(ctx context.Context, user string, req *xmap.DeleteFolder) error {
	ref, err := folderRef(req.Folder)
	if err != nil {
		return err
	}
	err = b.store.DeleteFolder(ctx, user, ref)
	if errors.Is(err, shard.ErrSystemFolder) {
		return xmap.Errorf(xmap.CodeDenied, "system folders cannot be deleted")
	}
	return b.done(ctx, user, "delete folder", err)
}

func flagsOf(fs []string) []xmap.Flag {
	if len(fs) == 0 {
		return nil
	}
	out := make([]xmap.Flag, len(fs))
	for i, f := range fs {
		out[i] = xmap.Flag(f)
	}
	return out
}

func flagStrings(fs []xmap.Flag) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = string(f)
	}
	return out
}

func message(m *shard.MessageInfo) xmap.Message {
	return xmap.Message{
		ID:       fmtID(m.ID),
		FolderID: fmtID(m.FolderID),
		Flags:    flagsOf(m.Flags),
		Size:     m.BodySize,
		Received: m.Received,
		Summary:  m.Summary,
		Body:     m.Body,
		// The shard's origins are XMAP's words.
		SummaryBy: xmap.SummaryOrigin(m.SummaryBy),
	}
}

// ListMessages implements xmapserver.MessageBackend.
func (b *Mailboxes) ListMessages(ctx context.Context, user string, req *xmap.ListMessages, w *xmapserver.MessageWriter) error {
	ref, err := folderRef(req.Folder)
	if err != nil {
		return err
	}
	q := shard.ListQuery{Folder: ref, Desc: req.Sort != xmap.SortReceivedAsc, Limit: req.Limit, Cursor: req.Cursor}
	page, err := b.store.ListMessages(ctx, user, q, func(m shard.MessageInfo) error {
		x := message(&m)
		return w.WriteMessage(&x)
	})
	if err != nil {
		return b.fail(ctx, "list messages", err)
	}
	w.SetFolderID(fmtID(page.FolderID))
	w.SetTotal(page.Total)
	w.SetState(fmtID(page.ModSeq))
	w.SetNextCursor(page.NextCursor)
	return nil
}

// Fetch implements xmapserver.MessageBackend. It weighs each message by the
// stored sizes of the parts asked for before loading them, and defers what
// would not fit in the response.
func (b *Mailboxes) Fetch(ctx context.Context, user string, req *xmap.Fetch, w *xmapserver.FetchWriter) error {
	ids := make([]int64, 0, len(req.IDs))
	for _, s := range req.IDs {
		// Ids that are no message of this backend are left out, so the
		// server reports them not found.
		if id, ok := parseID(s); ok {
			ids = append(ids, id)
		}
	}
	wantSummary, wantBody := w.Parts().Has(xmap.PartSummary), w.Parts().Has(xmap.PartBody)
	err := b.store.FetchMessages(ctx, user, ids, func(m shard.MessageInfo, load shard.Loader) error {
		var size int64
		if wantSummary {
			size += m.SummarySize
		}
		if wantBody {
			size += m.BodySize
		}
		if !w.Fits(size) {
			return w.Defer(fmtID(m.ID))
		}
		var err error
		if m.Summary, m.Body, err = load(wantSummary, wantBody); err != nil {
			return err
		}
		x := message(&m)
		return w.WriteMessage(&x)
	})
	return b.fail(ctx, "fetch", err)
}

// UpdateFlags implements xmapserver.MessageBackend.
func (b *Mailboxes) UpdateFlags(ctx context.Context, user string, req *xmap.UpdateFlags) error {
	ids, err := parseIDs(req.IDs)
	if err != nil {
		return err
	}
	var op shard.FlagOp
	switch req.Action {
	case xmap.FlagsAdd:
		op = shard.FlagsAdd
	case xmap.FlagsRemove:
		op = shard.FlagsRemove
	case xmap.FlagsReplace:
		op = shard.FlagsReplace
	default:
		return xmap.Errorf(xmap.CodeBadRequest, "unknown flag action")
	}
	return b.done(ctx, user, "update flags", b.store.UpdateFlags(ctx, user, ids, op, flagStrings(req.Flags)))
}

// Move implements xmapserver.MessageBackend.
func (b *Mailboxes) Move(ctx context.Context, user string, req *xmap.Move) error {
	ref, err := folderRef(req.Folder)
	if err != nil {
		return err
	}
	ids, err := parseIDs(req.IDs)
	if err != nil {
		return err
	}
	return b.done(ctx, user, "move", b.store.MoveMessages(ctx, user, ids, ref))
}

// Copy implements xmapserver.MessageBackend.
func (b *Mailboxes) Copy(ctx context.Context, user string, req *xmap.Copy) ([]xmap.Copied, error) {
	ref, err := folderRef(req.Folder)
	if err != nil {
		return nil, err
	}
	ids, err := parseIDs(req.IDs)
	if err != nil {
		return nil, err
	}
	quota, err := b.deliver.Limit(ctx, user)
	if err != nil {
		return nil, b.fail(ctx, "copy", err)
	}
	copies, err := b.store.CopyMessages(ctx, user, ids, ref, quota, xmap.MaxCopyBytes)
	if err := b.done(ctx, user, "copy", err); err != nil {
		return nil, err
	}
	out := make([]xmap.Copied, len(ids))
	for i := range ids {
		out[i] = xmap.Copied{From: req.IDs[i], ID: fmtID(copies[i])}
	}
	return out, nil
}

// Delete implements xmapserver.MessageBackend.
func (b *Mailboxes) Delete(ctx context.Context, user string, req *xmap.Delete) error {
	ids, err := parseIDs(req.IDs)
	if err != nil {
		return err
	}
	return b.done(ctx, user, "delete", b.store.DeleteMessages(ctx, user, ids))
}

// Expunge implements xmapserver.MessageBackend.
func (b *Mailboxes) Expunge(ctx context.Context, user string, req *xmap.Expunge) (int, error) {
	ref, err := folderRef(req.Folder)
	if err != nil {
		return 0, err
	}
	n, err := b.store.Expunge(ctx, user, ref)
	if err := b.done(ctx, user, "expunge", err); err != nil {
		return 0, err
	}
	return n, nil
}

// Append implements xmapserver.MessageBackend.
func (b *Mailboxes) Append(ctx context.Context, user string, req *xmap.Append) (xmap.Message, error) {
	ref, err := folderRef(req.Folder)
	if err != nil {
		return xmap.Message{}, err
	}
	// The delivery path stores it (the account, size and quota rules)
	// and wakes the user's waits.
	m, err := b.deliver.Append(ctx, user, ref, shard.NewMessage{
		Flags:    flagStrings(req.Flags),
		Received: req.Received,
		Size:     int64(len(req.Body)),
		Summary:  req.Summary,
		Body:     req.Body,
	})
	if err != nil {
		return xmap.Message{}, b.fail(ctx, "append", err)
	}
	return message(&m), nil
}

// ListContacts implements xmapserver.ContactBackend.
func (b *Mailboxes) ListContacts(ctx context.Context, user string, req *xmap.ListContacts, w *xmapserver.ContactWriter) error {
	page, err := b.store.ListContacts(ctx, user, req.Limit, req.Cursor, func(c shard.Contact) error {
		return w.WriteContact(&xmap.Contact{ID: fmtID(c.ID), Data: c.Data})
	})
	if err != nil {
		return b.fail(ctx, "list contacts", err)
	}
	w.SetState(fmtID(page.ModSeq))
	w.SetNextCursor(page.NextCursor)
	return nil
}

var errNoContact = xmap.Errorf(xmap.CodeNotFound, "no such contact")

// PutContact implements xmapserver.ContactBackend.
func (b *Mailboxes) PutContact(ctx context.Context, user string, req *xmap.PutContact) (string, error) {
	var id int64
	if req.Contact.ID != "" {
		var ok bool
		if id, ok = parseID(req.Contact.ID); !ok {
			return "", errNoContact
		}
	}
	quota, err := b.deliver.Limit(ctx, user)
	if err != nil {
		return "", b.fail(ctx, "put contact", err)
	}
	id, err = b.store.PutContact(ctx, user, id, req.Contact.Data, quota)
	if err := b.done(ctx, user, "put contact", err); err != nil {
		return "", err
	}
	return fmtID(id), nil
}

// DeleteContact implements xmapserver.ContactBackend.
func (b *Mailboxes) DeleteContact(ctx context.Context, user string, req *xmap.DeleteContact) error {
	id, ok := parseID(req.ID)
	if !ok {
		return errNoContact
	}
	return b.done(ctx, user, "delete contact", b.store.DeleteContact(ctx, user, id))
}

var kinds = map[shard.Kind]xmap.Kind{
	shard.KindFolder:  xmap.KindFolder,
	shard.KindMessage: xmap.KindMessage,
	shard.KindContact: xmap.KindContact,
}

// Changes implements xmapserver.SyncBackend. The state is the shard's
// modseq; the shard stamps every changed object apart, so pages cut at
// req.MaxChanges lose nothing (see package shard).
func (b *Mailboxes) Changes(ctx context.Context, user string, req *xmap.Changes) (*xmap.ChangesResult, error) {
	since, err := strconv.ParseInt(req.Since, 10, 64)
	if err != nil || strconv.FormatInt(since, 10) != req.Since {
		return nil, xmap.ErrResyncRequired
	}
	cs, err := b.store.Changes(ctx, user, since, req.MaxChanges)
	if err != nil {
		return nil, b.fail(ctx, "changes", err)
	}
	res := &xmap.ChangesResult{State: fmtID(cs.ModSeq), HasMore: cs.HasMore}
	for _, c := range cs.Changes {
		ref := xmap.ObjectRef{Kind: kinds[c.Kind], ID: fmtID(c.ID)}
		switch c.Type {
		case shard.Created:
			res.Created = append(res.Created, ref)
		case shard.Updated:
			res.Updated = append(res.Updated, ref)
		case shard.Destroyed:
			res.Destroyed = append(res.Destroyed, ref)
		}
	}
	return res, nil
}

func (b *Mailboxes) state(ctx context.Context, user string) (string, error) {
	m, err := b.store.ModSeq(ctx, user)
	if err != nil {
		return "", b.fail(ctx, "state", err)
	}
	return fmtID(m), nil
}

// Wait implements xmapserver.SyncBackend: it returns as soon as the user's
// state differs from since, woken by the Notifier, or when ctx is done.
func (b *Mailboxes) Wait(ctx context.Context, user string, since string) (string, error) {
	// The state is read even once ctx is done: a timeout of 0 is how a
	// client reads it, and a read is short.
	rctx := context.WithoutCancel(ctx)
	for {
		changed, release := b.notify.subscribe(user)
		state, err := b.state(rctx, user)
		if err != nil || state != since {
			release()
			return state, err
		}
		select {
		case <-changed:
			release()
			// Woken: read the state again (a write may have changed
			// nothing visible, then wait on).
		case <-ctx.Done():
			release()
			// The request's timeout: answer with the state as it is now.
			if now, err := b.state(rctx, user); err == nil {
				return now, nil
			}
			return state, nil
		}
	}
}
