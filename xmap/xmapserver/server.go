package xmapserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"
	"unicode"

	cmcrypto "cryptomail/crypto"
	"cryptomail/xmap"
)

// A Server runs XMAP documents against a Backend. The zero Logger means slog.Default().
type Server struct {
	Backend Backend
	Logger  *slog.Logger
}

// Handle runs one request document with a Server using the default logger.
func Handle(ctx context.Context, b Backend, user string, anonymous bool, doc []byte) []byte {
	s := &Server{Backend: b}
	return s.Handle(ctx, user, anonymous, doc)
}

// Handle runs one request document for a session and returns the response document. It
// never fails: a document that cannot be decoded gets a document-level error response.
//
// An anonymous session (user empty) may only use salt-lookup and signup; a logged-in
// session may use everything but signup. Requests run in order, each with its own result;
// after a logout, and once the response has reached xmap.ResponseBudget, the remaining
// requests are not run and get denied or too-large.
func (s *Server) Handle(ctx context.Context, user string, anonymous bool, doc []byte) []byte {
	resp, _ := s.Serve(ctx, user, anonymous, doc)
	return resp
}

// Serve is Handle that also reports whether a logout succeeded in the batch, so the
// transport can end the session (sexmap's EndSession) once the response is on its way.
func (s *Server) Serve(ctx context.Context, user string, anonymous bool, doc []byte) (resp []byte, loggedOut bool) {
	re := xmap.NewResponseEncoder()
	batch, err := xmap.DecodeRequestBytes(doc)
	if err != nil {
		var pe *xmap.ProtocolError
		if !errors.As(err, &pe) {
			pe = &xmap.ProtocolError{Code: xmap.CodeInternal, Message: "internal error"}
		}
		re.ProtocolError(pe)
		return re.Finish(), false
	}
	for i := range batch.Requests {
		req := &batch.Requests[i]
		name := req.Command.Name()
		switch {
		case re.Len() >= xmap.ResponseBudget:
			s.writeErr(re, req, xmap.Errorf(xmap.CodeTooLarge, "response size limit reached; request not run, send it again"))
		case loggedOut:
			s.writeErr(re, req, xmap.Errorf(xmap.CodeDenied, "session ended by logout"))
		case anonymous && !xmap.Anonymous(req.Command):
			s.writeErr(re, req, xmap.Errorf(xmap.CodeDenied, "%s needs a logged-in session", name))
		case !anonymous && user == "":
			s.writeErr(re, req, xmap.Errorf(xmap.CodeDenied, "no user in this session"))
		case !anonymous && name == (*xmap.Signup)(nil).Name():
			s.writeErr(re, req, xmap.Errorf(xmap.CodeDenied, "signup needs an anonymous session"))
		default:
			mark := re.Mark()
			res, err := s.run(ctx, re, user, req)
			if err != nil {
				re.Rewind(mark)
				s.writeErr(re, req, s.toError(ctx, req, err))
				continue
			}
			if res != nil {
				re.Response(&xmap.Response{ID: req.ID, Name: name, Result: res})
			}
			if _, ok := req.Command.(*xmap.Logout); ok {
				loggedOut = true
			}
		}
	}
	return re.Finish(), loggedOut
}

func (s *Server) writeErr(re *xmap.ResponseEncoder, req *xmap.Request, e *xmap.Error) {
	re.Response(&xmap.Response{ID: req.ID, Name: req.Command.Name(), Err: e})
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// run executes one request. A nil Result with a nil error means the result was already
// streamed into re (fetch).
func (s *Server) run(ctx context.Context, re *xmap.ResponseEncoder, user string, req *xmap.Request) (res xmap.Result, err error) {
	defer func() {
		if v := recover(); v != nil {
			// A backend bug must not take the batch (or the server) down; the panic value
			// goes to the log only, since it may hold anything.
			res, err = nil, fmt.Errorf("xmapserver: panic in backend: %v\n%s", v, debug.Stack())
		}
	}()
	b := s.Backend
	switch c := req.Command.(type) {
	case *xmap.SaltLookup:
		kdf, err := b.LookupSalt(ctx, c)
		if err != nil {
			return nil, err
		}
		return &xmap.SaltLookupResult{KDF: kdf}, nil
	case *xmap.Signup:
		return &xmap.SignupResult{}, b.Signup(ctx, c)
	case *xmap.ChangePassphrase:
		if !LoginProven(ctx) {
			return nil, xmap.Errorf(xmap.CodeDenied, "change-passphrase needs proof of the current passphrase: send it as the first request of a new login")
		}
		return &xmap.ChangePassphraseResult{}, b.ChangePassphrase(ctx, user, c)
	case *xmap.DeviceToken:
		token, err := b.IssueDeviceToken(ctx, user, c.Current)
		if err != nil {
			return nil, err
		}
		if len(token) != xmap.DeviceTokenSize {
			return nil, fmt.Errorf("xmapserver: backend issued a device token of %d bytes", len(token))
		}
		return &xmap.DeviceTokenResult{Token: token}, nil
	case *xmap.Logout:
		return &xmap.LogoutResult{}, b.Logout(ctx, user)
	case *xmap.GetAccount:
		acct, err := b.Account(ctx, user)
		if err != nil {
			return nil, err
		}
		if err := checkAccount(&acct); err != nil {
			return nil, err
		}
		return &xmap.GetAccountResult{Account: acct}, nil
	case *xmap.PublicKeys:
		return s.publicKeys(ctx, user, c)

	case *xmap.ListFolders:
		folders, err := b.ListFolders(ctx, user)
		if err != nil {
			return nil, err
		}
		return &xmap.ListFoldersResult{Folders: folders}, nil
	case *xmap.CreateFolder:
		f, err := b.CreateFolder(ctx, user, c)
		if err != nil {
			return nil, err
		}
		return &xmap.CreateFolderResult{Folder: f}, nil
	case *xmap.RenameFolder:
		f, err := b.RenameFolder(ctx, user, c)
		if err != nil {
			return nil, err
		}
		return &xmap.RenameFolderResult{Folder: f}, nil
	case *xmap.DeleteFolder:
		return &xmap.DeleteFolderResult{}, b.DeleteFolder(ctx, user, c)

	case *xmap.ListMessages:
		q := *c
		if q.Limit == 0 {
			q.Limit = xmap.DefaultPageSize
		}
		if q.Sort == "" {
			q.Sort = xmap.SortReceivedDesc
		}
		w := &MessageWriter{limit: q.Limit}
		if err := b.ListMessages(ctx, user, &q, w); err != nil {
			return nil, err
		}
		return w.result()
	case *xmap.Fetch:
		return nil, s.fetch(ctx, re, user, req.ID, c)
	case *xmap.UpdateFlags:
		return &xmap.UpdateFlagsResult{}, b.UpdateFlags(ctx, user, c)
	case *xmap.Move:
		return &xmap.MoveResult{}, b.Move(ctx, user, c)
	case *xmap.Copy:
		copies, err := b.Copy(ctx, user, c)
		if err != nil {
			return nil, err
		}
		return &xmap.CopyResult{Copies: copies}, nil
	case *xmap.Delete:
		return &xmap.DeleteResult{}, b.Delete(ctx, user, c)
	case *xmap.Expunge:
		n, err := b.Expunge(ctx, user, c)
		if err != nil {
			return nil, err
		}
		return &xmap.ExpungeResult{Count: n}, nil
	case *xmap.Append:
		if err := checkAppend(c); err != nil {
			return nil, err
		}
		m, err := b.Append(ctx, user, c)
		if err != nil {
			return nil, err
		}
		m.Summary, m.Body = nil, nil
		return &xmap.AppendResult{Message: m}, nil
	case *xmap.Send:
		for _, r := range c.Recipients {
			if !r.Encrypted && !r.AllowPlaintext {
				return nil, xmap.Errorf(xmap.CodePlaintextRefused, "%s is not encrypted to and allow-plaintext is not set", r.Address)
			}
		}
		sr, err := b.Send(ctx, user, c)
		if err != nil {
			return nil, err
		}
		sr.Sent.Summary, sr.Sent.Body = nil, nil
		return sr, nil

	case *xmap.ListContacts:
		q := *c
		if q.Limit == 0 {
			q.Limit = xmap.DefaultPageSize
		}
		w := &ContactWriter{limit: q.Limit}
		if err := b.ListContacts(ctx, user, &q, w); err != nil {
			return nil, err
		}
		return w.result()
	case *xmap.PutContact:
		id, err := b.PutContact(ctx, user, c)
		if err != nil {
			return nil, err
		}
		return &xmap.PutContactResult{ID: id}, nil
	case *xmap.DeleteContact:
		return &xmap.DeleteContactResult{}, b.DeleteContact(ctx, user, c)

	case *xmap.Changes:
		q := *c
		if q.MaxChanges == 0 {
			q.MaxChanges = xmap.DefaultMaxChanges
		}
		cr, err := b.Changes(ctx, user, &q)
		if err != nil {
			return nil, err
		}
		if n := len(cr.Created) + len(cr.Updated) + len(cr.Destroyed); n > q.MaxChanges {
			return nil, fmt.Errorf("xmapserver: changes: backend returned %d changes, more than %d", n, q.MaxChanges)
		}
		return cr, nil
	case *xmap.Wait:
		wctx, cancel := context.WithTimeout(ctx, time.Duration(c.Timeout)*time.Second)
		defer cancel()
		state, err := b.Wait(wctx, user, c.Since)
		if err != nil {
			return nil, err
		}
		return &xmap.WaitResult{State: state, Changed: state != c.Since}, nil
	}
	return nil, fmt.Errorf("xmapserver: no handler for %s", req.Command.Name())
}

func (s *Server) publicKeys(ctx context.Context, user string, c *xmap.PublicKeys) (xmap.Result, error) {
	keys, err := s.Backend.PublicKeys(ctx, user, c)
	if err != nil {
		return nil, err
	}
	found := make(map[string]bool, len(keys))
	res := &xmap.PublicKeysResult{}
	for _, k := range keys {
		if err := checkBlob("public key", k.Key, xmap.MaxKeySize); err != nil {
			return nil, err
		}
		found[strings.ToLower(k.Address)] = true
	}
	// Answer in request order and spelling, so a client can match results to its list.
	for _, a := range c.Addresses {
		if !found[strings.ToLower(a)] {
			res.NotFound = append(res.NotFound, a)
			continue
		}
		for _, k := range keys {
			if strings.EqualFold(k.Address, a) {
				res.Keys = append(res.Keys, xmap.PublicKey{Address: a, Key: k.Key})
				break
			}
		}
	}
	return res, nil
}

// checkAccount refuses a stored account a client would reject, so the failure is an
// internal error logged here rather than an unreadable response.
func checkAccount(a *xmap.Account) error {
	if !xmap.ValidAddress(a.Address) {
		return errors.New("xmapserver: backend account without a valid address")
	}
	if err := checkBlob("public key", a.PublicKey, xmap.MaxKeySize); err != nil {
		return err
	}
	if err := checkBlob("sealed key", a.SealedKey, xmap.MaxKeySize); err != nil {
		return err
	}
	k := &a.KDF
	if k.Alg != xmap.KDFArgon2id || len(k.Salt) < xmap.MinSaltSize || len(k.Salt) > xmap.MaxSaltSize ||
		k.Time < xmap.MinKDFTime || k.Time > xmap.MaxKDFTime ||
		k.Memory < xmap.MinKDFMemory || k.Memory > xmap.MaxKDFMemory ||
		k.Threads < xmap.MinKDFThreads || k.Threads > xmap.MaxKDFThreads {
		return errors.New("xmapserver: backend account KDF parameters out of range")
	}
	return nil
}

// fetch streams a fetch result straight into the response.
func (s *Server) fetch(ctx context.Context, re *xmap.ResponseEncoder, user, id string, c *xmap.Fetch) error {
	re.StartFetch(id)
	w := newFetchWriter(re, c)
	if err := s.Backend.Fetch(ctx, user, c, w); err != nil {
		return err
	}
	if w.err != nil {
		return w.err
	}
	re.EndFetch(w.finish(c), w.defers)
	return nil
}

// toError turns a backend error into what the client sees: the code, and the message of an
// *xmap.Error (written for clients); never the text of anything else.
func (s *Server) toError(ctx context.Context, req *xmap.Request, err error) *xmap.Error {
	var xe *xmap.Error
	if errors.As(err, &xe) && xe.Code != xmap.CodeInternal {
		msg := cleanMessage(xe.Message)
		if msg == "" {
			msg = string(xe.Code)
		}
		return &xmap.Error{Code: xe.Code, Message: msg}
	}
	var pe *xmap.ProtocolError
	if errors.As(err, &pe) && pe.Code != xmap.CodeInternal {
		return &xmap.Error{Code: pe.Code, Message: cleanMessage(pe.Message)}
	}
	level := slog.LevelError
	if errors.Is(err, context.Canceled) {
		level = slog.LevelInfo // the client went away or the server is stopping
	}
	s.logger().Log(ctx, level, "xmap request failed", "request", req.Command.Name(), "id", req.ID, "err", err)
	return &xmap.Error{Code: xmap.CodeInternal, Message: "internal error"}
}

// cleanMessage keeps an error message printable and within what a client accepts.
func cleanMessage(s string) string {
	const max = 512
	var b strings.Builder
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			r = ' '
		}
		if b.Len()+len(string(r)) > max {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// checkAppend refuses an append whose body or summary is not an encrypted
// OpenPGP message (cmcrypto.CheckEncrypted, the check send's summaries get
// too), so no backend stores readable mail at rest. An append may have no
// summary; it always has a body.
func checkAppend(c *xmap.Append) error {
	if cmcrypto.CheckEncrypted(c.Body) != nil {
		return xmap.Errorf(xmap.CodeBadRequest, "body is not an encrypted OpenPGP message (binary: session-key packets, then one SEIPD packet)")
	}
	if len(c.Summary) > 0 && cmcrypto.CheckEncrypted(c.Summary) != nil {
		return xmap.Errorf(xmap.CodeBadRequest, "summary is not an encrypted OpenPGP message (binary: session-key packets, then one SEIPD packet)")
	}
	return nil
}

type loginProofKey struct{}

// WithLoginProof marks ctx as carrying a request made with proof of the account's current
// login key: the transport sets it for the first request of a session whose XK handshake
// has just completed (sexmap.Session.Fresh). change-passphrase runs only with it, so a
// stolen or stale session cannot change the passphrase.
func WithLoginProof(ctx context.Context) context.Context {
	return context.WithValue(ctx, loginProofKey{}, true)
}

// LoginProven reports whether ctx was marked by WithLoginProof.
func LoginProven(ctx context.Context) bool {
	v, _ := ctx.Value(loginProofKey{}).(bool)
	return v
}
