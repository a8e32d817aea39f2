package shard

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/mattn/go-sqlite3"
)

// Sentinel errors. Every error this package returns that falls in one of
// these classes matches it with errors.Is, and still wraps the underlying
// driver or OS error.
var (
	// ErrNotFound: no such user (or no public key for the user).
	ErrNotFound = errors.New("not found")
	// ErrExists: the user already exists.
	ErrExists = errors.New("already exists")
	// ErrBusy: SQLITE_BUSY or SQLITE_LOCKED; a temporary condition, worth a retry later.
	ErrBusy = errors.New("storage busy")
	// ErrNoSpace: SQLITE_FULL, ENOSPC or EDQUOT.
	ErrNoSpace = errors.New("no space left on storage")
	// ErrNoSuchFolder: the named folder does not exist in the shard.
	ErrNoSuchFolder = errors.New("no such folder")
	// ErrInvalid: an argument the store refuses (empty address, bad flag, ...).
	ErrInvalid = errors.New("invalid argument")
	// ErrCorrupt: SQLITE_CORRUPT, SQLITE_NOTADB, or a failed integrity check.
	ErrCorrupt = errors.New("storage corrupt")
	// ErrClosed: the Store has been closed.
	ErrClosed = errors.New("store closed")
	// ErrNoStore: Open with Options.NoCreate found no metabase (or a home
	// missing); nothing was created.
	ErrNoStore = errors.New("not initialized")

	// Errors of the mail operations (mail.go, contact.go, changes.go).

	// ErrNoSuchMessage: a message id that does not exist in the shard. The
	// error is an *IDError naming the first such id.
	ErrNoSuchMessage = errors.New("no such message")
	// ErrNoSuchContact: a contact id that does not exist in the shard.
	ErrNoSuchContact = errors.New("no such contact")
	// ErrSystemFolder: system folders cannot be renamed or deleted.
	ErrSystemFolder = errors.New("system folder")
	// ErrFolderExists: the folder name is taken, or is a system folder's
	// name in another case.
	ErrFolderExists = errors.New("folder name taken")
	// ErrQuota: the write would take the user over a limit the caller set
	// (stored bytes, number of folders).
	ErrQuota = errors.New("over quota")
	// ErrLimit: the write would add more than the caller's limit for one
	// request (CopyMessages).
	ErrLimit = errors.New("over the limit of one request")
	// ErrTooManyFlags: a message would have more than MaxFlags flags.
	ErrTooManyFlags = errors.New("too many flags")
	// ErrBadCursor: a page cursor this shard did not make for this query.
	ErrBadCursor = errors.New("invalid cursor")
	// ErrUnknownState: changes asked since a modseq the shard cannot answer
	// from (ahead of its own, or negative).
	ErrUnknownState = errors.New("unknown state")
	// ErrKeyChanged: DeliverSealed's message was sealed to a key that is
	// no longer the user's current public key; seal again to the key
	// DeliveryKey now returns.
	ErrKeyChanged = errors.New("public key changed")

	// ErrHome: the configured homes and the metabase disagree (a home with
	// an id the metabase does not know, users on a home that is not
	// configured, a home that lost its HOME file); see homes.go. The error
	// names the directory, id or user concerned.
	ErrHome = errors.New("homes do not match the metabase")
)

var sentinels = []error{ErrNotFound, ErrExists, ErrBusy, ErrNoSpace, ErrNoSuchFolder, ErrInvalid, ErrCorrupt, ErrClosed,
	ErrNoSuchMessage, ErrNoSuchContact, ErrSystemFolder, ErrFolderExists, ErrQuota, ErrLimit, ErrTooManyFlags, ErrBadCursor, ErrUnknownState, ErrKeyChanged, ErrHome}

// An IDError names the id an operation on several ids failed on.
type IDError struct {
	ID  int64
	Err error // ErrNoSuchMessage, ErrTooManyFlags, ...
}

func (e *IDError) Error() string { return fmt.Sprintf("id %d: %v", e.ID, e.Err) }
func (e *IDError) Unwrap() error { return e.Err }

// classify attaches the matching sentinel to err, keeping err in the chain,
// so callers can test errors.Is(err, ErrBusy) and still errors.As the
// sqlite3.Error. Errors already carrying a sentinel are returned unchanged.
func classify(err error) error {
	if err == nil {
		return nil
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return err
		}
	}
	if k := kindOf(err); k != nil {
		return fmt.Errorf("%w: %w", k, err)
	}
	return err
}

func kindOf(err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) {
		if k := kindOfCode(se.Code, se.SystemErrno); k != nil {
			return k
		}
	}
	var en sqlite3.ErrNo
	if errors.As(err, &en) {
		if k := kindOfCode(en, 0); k != nil {
			return k
		}
	}
	var ex sqlite3.ErrNoExtended
	if errors.As(err, &ex) {
		if k := kindOfCode(sqlite3.ErrNo(int(ex)&0xff), 0); k != nil {
			return k
		}
	}
	if isNoSpace(err) {
		return ErrNoSpace
	}
	return nil
}

func kindOfCode(code sqlite3.ErrNo, errno syscall.Errno) error {
	switch code {
	case sqlite3.ErrBusy, sqlite3.ErrLocked:
		return ErrBusy
	case sqlite3.ErrFull:
		return ErrNoSpace
	case sqlite3.ErrCorrupt, sqlite3.ErrNotADB:
		return ErrCorrupt
	case sqlite3.ErrIoErr, sqlite3.ErrCantOpen:
		// SQLite reports most write failures as SQLITE_FULL, but some
		// (ftruncate, mmap, open) surface as I/O errors with the errno kept.
		if errno != 0 && isNoSpace(errno) {
			return ErrNoSpace
		}
	}
	return nil
}
