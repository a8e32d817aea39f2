// Package xmapserver runs XMAP request documents against a Backend: it decodes, checks what
// the session may do, runs the batch in order, maps backend errors to XMAP error codes and
// encodes the response. The transport (SeXMAP) hands it the decrypted document and the
// session's user; the Backend is the storage (shards) or, in tests, memback.
package xmapserver

import (
	"context"

	"cryptomail/xmap"
)

// Backend is what a server needs to answer XMAP requests: one method per request.
//
// Every method of a logged-in session gets the session's user address as user and must act
// on that user's data only: an id or folder name that is not the user's is not found
// (xmap.ErrNotFound), exactly like one that does not exist. Requests arrive already
// validated (syntax, limits) and with defaults applied.
//
// Errors: return (or wrap) an xmap sentinel such as xmap.ErrNotFound, or an *xmap.Error
// whose Message is fit for the client. Anything else is reported as internal, with no text,
// and logged.
type Backend interface {
	AccountBackend
	FolderBackend
	MessageBackend
	ContactBackend
	SyncBackend
}

// AccountBackend answers the account requests.
type AccountBackend interface {
	// LookupSalt returns the KDF parameters of an address. An unknown address gets a
	// stable made-up salt and the default parameters, never not-found. Anonymous.
	LookupSalt(ctx context.Context, req *xmap.SaltLookup) (xmap.KDF, error)
	// Signup creates or activates an account: ErrInvalidInvite, ErrExpired, ErrConflict
	// (address taken, or a pre-created account's key differs). Anonymous.
	Signup(ctx context.Context, req *xmap.Signup) error
	// ChangePassphrase replaces login key, KDF parameters and sealed key in one transaction.
	// The server runs it only with proof of the current login key (WithLoginProof); the
	// backend must also forget the account's device tokens.
	ChangePassphrase(ctx context.Context, user string, req *xmap.ChangePassphrase) error
	// IssueDeviceToken returns current when it is a valid device token of the session
	// user's account (storing nothing); otherwise it makes a new random one, keeps only its
	// hash (and a bounded number of them per account) and returns it.
	IssueDeviceToken(ctx context.Context, user string, current []byte) ([]byte, error)
	// Account returns the session user's own account: address, public key (binary), KDF
	// parameters and sealed private key, as signup or the last change-passphrase stored
	// them. It takes no address: user is the only account it may return.
	Account(ctx context.Context, user string) (xmap.Account, error)
	// Logout is called for a logout request, for whatever the backend keeps per login
	// (last seen, audit). Sessions belong to the transport: Server.Serve reports the
	// logout so the transport ends the session.
	Logout(ctx context.Context, user string) error
	// PublicKeys returns the keys of the addresses that are local accounts; the others are
	// reported not found.
	PublicKeys(ctx context.Context, user string, req *xmap.PublicKeys) ([]xmap.PublicKey, error)
}

// FolderBackend answers the folder requests.
type FolderBackend interface {
	// ListFolders lists the user's folders: system folders first, in xmap.SystemFolders
	// order, then the others by name.
	ListFolders(ctx context.Context, user string) ([]xmap.Folder, error)
	// CreateFolder: ErrConflict if the name is taken or reserved (xmap.ReservedFolderName).
	CreateFolder(ctx context.Context, user string, req *xmap.CreateFolder) (xmap.Folder, error)
	// RenameFolder: ErrDenied for a system folder, ErrConflict if the new name is taken.
	RenameFolder(ctx context.Context, user string, req *xmap.RenameFolder) (xmap.Folder, error)
	// DeleteFolder moves the folder's messages to Trash and deletes it; ErrDenied for a
	// system folder.
	DeleteFolder(ctx context.Context, user string, req *xmap.DeleteFolder) error
}

// MessageBackend answers the message requests. Those naming several ids are atomic: one id
// not found fails the request and changes nothing.
type MessageBackend interface {
	// ListMessages writes one page (req.Limit and req.Sort are set) and the page's
	// folder id, total, state and next cursor. A cursor it cannot use is ErrBadRequest.
	ListMessages(ctx context.Context, user string, req *xmap.ListMessages, w *MessageWriter) error
	// Fetch writes the messages found. It should ask w.Fits before loading a body and
	// w.Defer the ids that do not fit; ids it never mentions are reported not found.
	Fetch(ctx context.Context, user string, req *xmap.Fetch, w *FetchWriter) error
	UpdateFlags(ctx context.Context, user string, req *xmap.UpdateFlags) error
	Move(ctx context.Context, user string, req *xmap.Move) error
	// Copy returns one Copied per id, in request order.
	Copy(ctx context.Context, user string, req *xmap.Copy) ([]xmap.Copied, error)
	Delete(ctx context.Context, user string, req *xmap.Delete) error
	// Expunge returns how many messages it removed.
	Expunge(ctx context.Context, user string, req *xmap.Expunge) (int, error)
	// Append stores the message and returns its metadata (no summary, no body).
	Append(ctx context.Context, user string, req *xmap.Append) (xmap.Message, error)
	// Send delivers to local recipients, queues for remote ones and stores the Sent copy,
	// all or nothing; the envelope sender is user. The server has already refused a
	// recipient not encrypted to without AllowPlaintext; the backend refuses a local
	// recipient not encrypted to (ErrPlaintextRefused) and an unknown local address
	// (ErrInvalidRecipient).
	Send(ctx context.Context, user string, req *xmap.Send) (*xmap.SendResult, error)
}

// ContactBackend answers the contact requests.
type ContactBackend interface {
	// ListContacts writes one page in id order, the state and the next cursor.
	ListContacts(ctx context.Context, user string, req *xmap.ListContacts, w *ContactWriter) error
	// PutContact creates (no id) or replaces a contact and returns its id.
	PutContact(ctx context.Context, user string, req *xmap.PutContact) (string, error)
	DeleteContact(ctx context.Context, user string, req *xmap.DeleteContact) error
}

// SyncBackend answers changes and wait.
type SyncBackend interface {
	// Changes lists what changed since req.Since (req.MaxChanges is set), or returns
	// ErrResyncRequired when it cannot tell.
	Changes(ctx context.Context, user string, req *xmap.Changes) (*xmap.ChangesResult, error)
	// Wait returns the user's current state as soon as it differs from since, or when ctx
	// is done (the server sets its deadline from the request's timeout), in both cases with
	// a nil error. It returns at once when since is not the current state.
	Wait(ctx context.Context, user string, since string) (string, error)
}
