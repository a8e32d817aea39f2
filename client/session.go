package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	cmcrypto "cryptomail/crypto"
	"cryptomail/xmap"
	"cryptomail/xmap/sexmap"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// Session is a logged-in session. Its methods are safe for concurrent use. It keeps the
// login key and the private OpenPGP key in memory only, until Logout.
type Session struct {
	c       *Client
	address string

	mu        sync.Mutex
	cs        *sexmap.ClientSession
	loginPriv [32]byte
	entity    *openpgp.Entity // nil once logged out
	closed    bool

	keysMu sync.Mutex
	keys   map[string]*cmcrypto.PublicKey // public-key lookups, by lower-cased address; nil: none

	summaries *summaryCache // decrypted summaries by message id, emptied by forget
}

// Address returns the address the session logged in as.
func (s *Session) Address() string { return s.address }

// ID returns the current SeXMAP session id (it changes when the session is renewed).
func (s *Session) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cs.ID()
}

// Fingerprint returns the fingerprint of the session's private key ("" after Logout).
func (s *Session) Fingerprint() string {
	if e, err := s.privateKey(); err == nil {
		return fingerprint(e)
	}
	return ""
}

func (s *Session) privateKey() (*openpgp.Entity, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entity == nil {
		return nil, ErrSessionClosed
	}
	return s.entity, nil
}

// forget drops the secrets the session holds.
func (s *Session) forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	clear(s.loginPriv[:])
	s.entity = nil
	s.summaries.close()
}

// A Result is the outcome of one request of a batch: Result on success, else Err (an
// *xmap.Error, which errors.Is matches against the xmap sentinels).
type Result struct {
	Result xmap.Result
	Err    error
}

// Do sends the commands as one XMAP document, run by the server in order, and returns one
// Result per command. The error is for the document as a whole: transport failures, a
// document-level *xmap.ProtocolError, a malformed response. A successful logout in the
// batch ends the session.
func (s *Session) Do(ctx context.Context, cmds ...xmap.Command) ([]Result, error) {
	rs, err := exchange(ctx, s.roundTrip, cmds)
	if err != nil {
		return nil, err
	}
	for i, c := range cmds {
		if _, ok := c.(*xmap.Logout); ok && rs[i].Err == nil {
			s.forget()
		}
	}
	return rs, nil
}

// exchange encodes a batch, sends it with rt and matches the response to it.
func exchange(ctx context.Context, rt func(context.Context, []byte) ([]byte, error), cmds []xmap.Command) ([]Result, error) {
	if len(cmds) == 0 || len(cmds) > xmap.MaxBatchSize {
		return nil, fmt.Errorf("client: a batch holds 1 to %d requests, not %d", xmap.MaxBatchSize, len(cmds))
	}
	b := &xmap.Batch{Requests: make([]xmap.Request, len(cmds))}
	for i, c := range cmds {
		b.Requests[i] = xmap.Request{ID: "r" + strconv.Itoa(i+1), Command: c}
	}
	var doc bytes.Buffer
	if err := xmap.EncodeRequest(&doc, b); err != nil {
		return nil, fmt.Errorf("client: encoding request: %w", err)
	}
	if doc.Len() > xmap.MaxDocumentSize {
		return nil, fmt.Errorf("%w: request document of %d bytes (limit %d)", ErrTooLarge, doc.Len(), xmap.MaxDocumentSize)
	}
	raw, err := rt(ctx, doc.Bytes())
	if err != nil {
		return nil, err
	}
	resp, err := xmap.DecodeResponseBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadResponse, err)
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	if len(resp.Responses) != len(cmds) {
		return nil, fmt.Errorf("%w: %d results for %d requests", ErrBadResponse, len(resp.Responses), len(cmds))
	}
	out := make([]Result, len(cmds))
	for i, r := range resp.Responses {
		req := b.Requests[i]
		if r.ID != req.ID || r.Name != req.Command.Name() {
			return nil, fmt.Errorf("%w: result %d is <%s id=%q>, want <%s id=%q>", ErrBadResponse, i+1, r.Name, r.ID, req.Command.Name(), req.ID)
		}
		if r.Err != nil {
			out[i].Err = r.Err
		} else {
			out[i].Result = r.Result
		}
	}
	return out, nil
}

// roundTrip sends one document, logging in again when the server no longer knows the
// session. A 401 means the request was refused before it ran, so resending is safe.
func (s *Session) roundTrip(ctx context.Context, doc []byte) ([]byte, error) {
	s.mu.Lock()
	cs, closed := s.cs, s.closed
	s.mu.Unlock()
	if closed {
		return nil, ErrSessionClosed
	}
	resp, err := cs.RoundTrip(ctx, doc)
	if !errors.Is(err, sexmap.ErrUnknownSession) {
		return resp, err
	}
	cs, err = s.renew(ctx, cs)
	if err != nil {
		return nil, fmt.Errorf("the session expired and logging in again failed: %w", err)
	}
	return cs.RoundTrip(ctx, doc)
}

// renew replaces an expired session with a new login, once for all the requests that
// found it expired at the same time.
func (s *Session) renew(ctx context.Context, expired *sexmap.ClientSession) (*sexmap.ClientSession, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrSessionClosed
	}
	if s.cs != expired {
		return s.cs, nil
	}
	cs, err := s.c.dialXK(ctx, s.loginPriv, s.address)
	if err != nil {
		return nil, err
	}
	s.cs = cs
	return cs, nil
}

// one runs a single request and returns its typed result.
func one[R xmap.Result](ctx context.Context, s *Session, cmd xmap.Command) (R, error) {
	var zero R
	rs, err := s.Do(ctx, cmd)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", cmd.Name(), err)
	}
	if rs[0].Err != nil {
		return zero, fmt.Errorf("%s: %w", cmd.Name(), rs[0].Err)
	}
	r, ok := rs[0].Result.(R)
	if !ok {
		return zero, fmt.Errorf("%s: %w", cmd.Name(), ErrBadResponse)
	}
	return r, nil
}

// Logout ends the session on the server and forgets its keys. Logging out a session
// already closed does nothing; a session the server already forgot is not renewed just to
// be ended.
func (s *Session) Logout(ctx context.Context) error {
	s.mu.Lock()
	cs, closed := s.cs, s.closed
	s.mu.Unlock()
	if closed {
		return nil
	}
	defer s.forget()
	rs, err := exchange(ctx, cs.RoundTrip, []xmap.Command{&xmap.Logout{}})
	switch {
	case errors.Is(err, sexmap.ErrUnknownSession):
		return nil
	case err != nil:
		return fmt.Errorf("logout: %w", err)
	case rs[0].Err != nil:
		return fmt.Errorf("logout: %w", rs[0].Err)
	}
	return nil
}

// ChangePassphrase re-derives the login and sealing keys from a new passphrase with a new
// salt, re-seals the same private key, and replaces all three on the server in one
// request. The server wants proof of the current login key: the request goes as the first
// one of a new login made with it just for this (docs/XMAP.md, change-passphrase). The
// change ends every session of the account, so the session then logs in again with the
// new login key and stays usable; its device token is replaced too.
func (s *Session) ChangePassphrase(ctx context.Context, newPassphrase []byte) error {
	e, err := s.privateKey()
	if err != nil {
		return err
	}
	loginPriv, kdf, sealed, err := s.c.newLogin(s.address, newPassphrase, e)
	if err != nil {
		return err
	}
	s.mu.Lock()
	current := s.loginPriv
	s.mu.Unlock()
	proof, err := s.c.dialXK(ctx, current, s.address)
	clear(current[:])
	if err != nil {
		clear(loginPriv[:])
		return fmt.Errorf("change-passphrase: logging in with the current passphrase: %w", err)
	}
	rs, err := exchange(ctx, proof.RoundTrip, []xmap.Command{&xmap.ChangePassphrase{
		LoginKey:  sexmap.LoginPublicKey(loginPriv),
		KDF:       kdf,
		SealedKey: sealed,
	}})
	if err == nil && rs[0].Err != nil {
		err = rs[0].Err
	}
	if err != nil {
		clear(loginPriv[:])
		return fmt.Errorf("change-passphrase: %w", err)
	}
	// The server forgot the device tokens with the old passphrase.
	_ = s.c.store.setDeviceToken(s.c.server, s.address, nil)
	s.mu.Lock()
	s.loginPriv = loginPriv
	old := s.cs
	s.mu.Unlock()
	// Every session of the account has ended: log in again now with the new key (should
	// this fail, the next request does it).
	if _, err := s.renew(ctx, old); err == nil {
		s.keepDeviceToken(ctx)
	}
	return nil
}

// keepDeviceToken makes sure the client state holds a valid device token: it sends the
// one it holds (if any), and the server answers it back while it is valid, or a new one
// (after a passphrase change elsewhere forgot it). It is a convenience for later logins: any
// failure (an older server, a read-only home) is ignored.
func (s *Session) keepDeviceToken(ctx context.Context) {
	if s.c.store.dir == "" {
		// No home to keep it in: a token asked for now would be lost with this process
		// and only push a real device's token out of the server's bounded list.
		return
	}
	current, _ := s.c.store.deviceToken(s.c.server, s.address)
	r, err := one[*xmap.DeviceTokenResult](ctx, s, &xmap.DeviceToken{Current: current})
	if err != nil || bytes.Equal(r.Token, current) {
		return
	}
	_ = s.c.store.setDeviceToken(s.c.server, s.address, r.Token)
}

// Account returns the session user's account as the server stores it (get-account).
func (s *Session) Account(ctx context.Context) (xmap.Account, error) {
	r, err := one[*xmap.GetAccountResult](ctx, s, &xmap.GetAccount{})
	if err != nil {
		return xmap.Account{}, err
	}
	return r.Account, nil
}

// ListFolders lists every folder with its counts.
func (s *Session) ListFolders(ctx context.Context) ([]xmap.Folder, error) {
	r, err := one[*xmap.ListFoldersResult](ctx, s, &xmap.ListFolders{})
	if err != nil {
		return nil, err
	}
	return r.Folders, nil
}

// CreateFolder creates a user folder.
func (s *Session) CreateFolder(ctx context.Context, name string) (xmap.Folder, error) {
	r, err := one[*xmap.CreateFolderResult](ctx, s, &xmap.CreateFolder{FolderName: name})
	if err != nil {
		return xmap.Folder{}, err
	}
	return r.Folder, nil
}

// RenameFolder renames a user folder; its id stays.
func (s *Session) RenameFolder(ctx context.Context, folder xmap.FolderRef, newName string) (xmap.Folder, error) {
	r, err := one[*xmap.RenameFolderResult](ctx, s, &xmap.RenameFolder{Folder: folder, NewName: newName})
	if err != nil {
		return xmap.Folder{}, err
	}
	return r.Folder, nil
}

// DeleteFolder deletes a user folder; its messages move to Trash.
func (s *Session) DeleteFolder(ctx context.Context, folder xmap.FolderRef) error {
	_, err := one[*xmap.DeleteFolderResult](ctx, s, &xmap.DeleteFolder{Folder: folder})
	return err
}

// ListMessages lists one page of a folder, with encrypted summaries (see List for the
// decrypted form).
func (s *Session) ListMessages(ctx context.Context, req *xmap.ListMessages) (*xmap.ListMessagesResult, error) {
	return one[*xmap.ListMessagesResult](ctx, s, req)
}

// Fetch returns messages with the parts asked for, still encrypted (see Read).
func (s *Session) Fetch(ctx context.Context, req *xmap.Fetch) (*xmap.FetchResult, error) {
	return one[*xmap.FetchResult](ctx, s, req)
}

// UpdateFlags adds, removes or replaces flags of messages, all or none.
func (s *Session) UpdateFlags(ctx context.Context, action xmap.FlagAction, flags []xmap.Flag, ids ...string) error {
	_, err := one[*xmap.UpdateFlagsResult](ctx, s, &xmap.UpdateFlags{Action: action, Flags: flags, IDs: ids})
	return err
}

// Move moves messages to a folder; they keep their ids.
func (s *Session) Move(ctx context.Context, folder xmap.FolderRef, ids ...string) error {
	_, err := one[*xmap.MoveResult](ctx, s, &xmap.Move{Folder: folder, IDs: ids})
	return err
}

// Copy copies messages into a folder and returns the copies' ids.
func (s *Session) Copy(ctx context.Context, folder xmap.FolderRef, ids ...string) ([]xmap.Copied, error) {
	r, err := one[*xmap.CopyResult](ctx, s, &xmap.Copy{Folder: folder, IDs: ids})
	if err != nil {
		return nil, err
	}
	return r.Copies, nil
}

// Delete moves messages to Trash, or marks those already there \Deleted.
func (s *Session) Delete(ctx context.Context, ids ...string) error {
	_, err := one[*xmap.DeleteResult](ctx, s, &xmap.Delete{IDs: ids})
	return err
}

// Expunge destroys the \Deleted messages of a folder and returns how many.
func (s *Session) Expunge(ctx context.Context, folder xmap.FolderRef) (int, error) {
	r, err := one[*xmap.ExpungeResult](ctx, s, &xmap.Expunge{Folder: folder})
	if err != nil {
		return 0, err
	}
	return r.Count, nil
}

// Append stores a message the caller already encrypted (see AppendMessage).
func (s *Session) Append(ctx context.Context, req *xmap.Append) (xmap.Message, error) {
	r, err := one[*xmap.AppendResult](ctx, s, req)
	if err != nil {
		return xmap.Message{}, err
	}
	return r.Message, nil
}

// Send hands the server a message the caller composed and encrypted (see SendMail).
func (s *Session) Send(ctx context.Context, req *xmap.Send) (*xmap.SendResult, error) {
	return one[*xmap.SendResult](ctx, s, req)
}

// PublicKeys looks up the public keys of local addresses.
func (s *Session) PublicKeys(ctx context.Context, addresses ...string) (*xmap.PublicKeysResult, error) {
	return one[*xmap.PublicKeysResult](ctx, s, &xmap.PublicKeys{Addresses: addresses})
}

// ListContacts lists one page of contacts, still encrypted (see Contacts).
func (s *Session) ListContacts(ctx context.Context, req *xmap.ListContacts) (*xmap.ListContactsResult, error) {
	return one[*xmap.ListContactsResult](ctx, s, req)
}

// PutContact creates (empty ID) or replaces a contact whose data the caller encrypted.
func (s *Session) PutContact(ctx context.Context, c xmap.Contact) (string, error) {
	r, err := one[*xmap.PutContactResult](ctx, s, &xmap.PutContact{Contact: c})
	if err != nil {
		return "", err
	}
	return r.ID, nil
}

// DeleteContact deletes a contact.
func (s *Session) DeleteContact(ctx context.Context, id string) error {
	_, err := one[*xmap.DeleteContactResult](ctx, s, &xmap.DeleteContact{ID: id})
	return err
}

// Changes asks what changed since a state (maxChanges 0: the server's default).
func (s *Session) Changes(ctx context.Context, since string, maxChanges int) (*xmap.ChangesResult, error) {
	return one[*xmap.ChangesResult](ctx, s, &xmap.Changes{Since: since, MaxChanges: maxChanges})
}

// Wait long-polls until the account's state differs from since or timeout passes
// (rounded down to whole seconds, at most xmap.MaxWaitSeconds).
func (s *Session) Wait(ctx context.Context, since string, timeout time.Duration) (*xmap.WaitResult, error) {
	secs := min(int(timeout/time.Second), xmap.MaxWaitSeconds)
	return one[*xmap.WaitResult](ctx, s, &xmap.Wait{Since: since, Timeout: max(secs, 0)})
}
