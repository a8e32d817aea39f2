// Package xmap defines XMAP, CryptoMail's XML mail-access protocol: the request and result
// types, their XML codec, the error codes and the protocol limits.
//
// An XMAP exchange is one request document and one response document. The request document
// holds a batch of requests, run in order; the response holds one result (or error) per
// request, each echoing the request's client-chosen id. The specification is docs/XMAP.md;
// every example in it is a golden file under testdata/examples.
//
// Types follow the go-imap v2 layout: one file per request family, each request a Command
// type with a matching Result type. The server side (dispatch, backend interface) is in
// xmapserver; the transport (SeXMAP) is in sexmap.
package xmap

import (
	"fmt"
	"maps"
	"slices"
)

const (
	// Namespace is the XML namespace of every XMAP element. Its last segment is the major
	// protocol version, so a future incompatible version uses a new namespace.
	Namespace = "urn:cryptomail:xmap:1"
	// Version is the value of the root element's version attribute.
	Version = "1"

	// namespacePrefix is shared by every version's namespace; a document in a sibling
	// namespace is answered with unsupported-version rather than bad-request.
	namespacePrefix = "urn:cryptomail:xmap:"
)

// A Batch is a request document: requests run in order, each with its own result.
type Batch struct {
	Requests []Request
}

// A Request is one request of a batch.
type Request struct {
	// ID is chosen by the client, unique within the batch, and echoed in the result.
	ID      string
	Command Command
}

// A Command is the body of one request: one of the pointer types of this package named
// after a request element (*ListFolders, *Fetch, *Send, ...).
type Command interface {
	// Name is the request's element name, e.g. "list-folders".
	Name() string
	decode(e *elem)
	encode(e *enc)
}

// A Result is the successful outcome of one request: one of the *XxxResult types.
type Result interface {
	// Name is the element name of the request this result answers.
	Name() string
	decode(e *elem)
	encode(e *enc)
}

// A BatchResponse is a response document. Either Error is set (the whole document was
// refused and nothing ran) or Responses holds one entry per request, in request order.
type BatchResponse struct {
	Error     *ProtocolError
	Responses []Response
}

// A Response is the outcome of one request: exactly one of Result and Err is set.
type Response struct {
	ID     string
	Name   string // the request's element name
	Result Result
	Err    *Error
}

// commands maps request element names to constructors. Results use the same names.
var commands = map[string]func() Command{}
var results = map[string]func() Result{}

func register(newCommand func() Command, newResult func() Result) {
	name := newCommand().Name()
	if newResult().Name() != name {
		panic(fmt.Sprintf("xmap: result name %q for command %q", newResult().Name(), name))
	}
	commands[name] = newCommand
	results[name] = newResult
}

func init() {
	register(func() Command { return new(SaltLookup) }, func() Result { return new(SaltLookupResult) })
	register(func() Command { return new(Signup) }, func() Result { return new(SignupResult) })
	register(func() Command { return new(ChangePassphrase) }, func() Result { return new(ChangePassphraseResult) })
	register(func() Command { return new(Logout) }, func() Result { return new(LogoutResult) })
	register(func() Command { return new(GetAccount) }, func() Result { return new(GetAccountResult) })
	register(func() Command { return new(DeviceToken) }, func() Result { return new(DeviceTokenResult) })
	register(func() Command { return new(PublicKeys) }, func() Result { return new(PublicKeysResult) })
	register(func() Command { return new(ListFolders) }, func() Result { return new(ListFoldersResult) })
	register(func() Command { return new(CreateFolder) }, func() Result { return new(CreateFolderResult) })
	register(func() Command { return new(RenameFolder) }, func() Result { return new(RenameFolderResult) })
	register(func() Command { return new(DeleteFolder) }, func() Result { return new(DeleteFolderResult) })
	register(func() Command { return new(ListMessages) }, func() Result { return new(ListMessagesResult) })
	register(func() Command { return new(Fetch) }, func() Result { return new(FetchResult) })
	register(func() Command { return new(UpdateFlags) }, func() Result { return new(UpdateFlagsResult) })
	register(func() Command { return new(Move) }, func() Result { return new(MoveResult) })
	register(func() Command { return new(Copy) }, func() Result { return new(CopyResult) })
	register(func() Command { return new(Delete) }, func() Result { return new(DeleteResult) })
	register(func() Command { return new(Expunge) }, func() Result { return new(ExpungeResult) })
	register(func() Command { return new(Append) }, func() Result { return new(AppendResult) })
	register(func() Command { return new(Send) }, func() Result { return new(SendResult) })
	register(func() Command { return new(ListContacts) }, func() Result { return new(ListContactsResult) })
	register(func() Command { return new(PutContact) }, func() Result { return new(PutContactResult) })
	register(func() Command { return new(DeleteContact) }, func() Result { return new(DeleteContactResult) })
	register(func() Command { return new(Changes) }, func() Result { return new(ChangesResult) })
	register(func() Command { return new(Wait) }, func() Result { return new(WaitResult) })
}

// CommandNames returns the element names of every request, sorted.
func CommandNames() []string {
	return slices.Sorted(maps.Keys(commands))
}

// Anonymous reports whether a request of this kind is allowed in an anonymous session.
// Everything else needs a logged-in user.
func Anonymous(c Command) bool {
	switch c.(type) {
	case *SaltLookup, *Signup:
		return true
	}
	return false
}
