package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	cmcrypto "cryptomail/crypto"
	"cryptomail/xmap"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// DefaultWaitTimeout is how long Watch's long polls last: below common proxy idle limits.
const DefaultWaitTimeout = 60 * time.Second

// Watch reports each message that arrives in INBOX after the state since ("" means now),
// with its decrypted summary, until ctx ends or fn returns an error (which Watch
// returns). It keeps one wait request outstanding and, when the state moves, asks for the
// changes since the last state it saw (docs/XMAP.md, "Delta sync and push"). timeout 0
// means DefaultWaitTimeout. Expired sessions are renewed transparently, as for every
// request.
func (s *Session) Watch(ctx context.Context, since string, timeout time.Duration, fn func(Listed) error) error {
	if _, err := s.privateKey(); err != nil {
		return err
	}
	if timeout <= 0 {
		timeout = DefaultWaitTimeout
	}
	folders, err := s.ListFolders(ctx)
	if err != nil {
		return err
	}
	inbox := ""
	for _, f := range folders {
		if f.Role == xmap.RoleInbox {
			inbox = f.ID
		}
	}
	if inbox == "" {
		return fmt.Errorf("%w: no INBOX among the folders", ErrBadResponse)
	}
	state := since
	if state == "" {
		if state, err = s.State(ctx); err != nil {
			return err
		}
	}
	for {
		w, err := s.Wait(ctx, state, timeout)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if !w.Changed {
			continue
		}
		created, next, err := s.createdSince(ctx, state, w.State)
		if err != nil {
			return err
		}
		state = next
		for start := 0; start < len(created); start += xmap.MaxIDs {
			ids := created[start:min(start+xmap.MaxIDs, len(created))]
			for len(ids) > 0 {
				r, err := s.Fetch(ctx, &xmap.Fetch{IDs: ids, Parts: xmap.PartSummary})
				if err != nil {
					return err
				}
				for _, m := range r.Messages {
					if m.FolderID != inbox {
						continue
					}
					if err := fn(s.listed(m)); err != nil {
						return err
					}
				}
				ids = r.Deferred
			}
		}
	}
}

// State returns the account's current state, for Changes and Watch.
func (s *Session) State(ctx context.Context) (string, error) {
	// A wait with timeout 0 answers the current state at once (XMAP.md); "0" is merely
	// a syntactically valid state to compare with.
	w, err := s.Wait(ctx, "0", 0)
	if err != nil {
		return "", err
	}
	return w.State, nil
}

// createdSince collects the messages created since a state, following has-more, and
// returns the state reached. If the server cannot tell (resync-required), nothing is
// reported and the watch continues from current.
func (s *Session) createdSince(ctx context.Context, since, current string) ([]string, string, error) {
	var created []string
	for {
		ch, err := s.Changes(ctx, since, 0)
		if errors.Is(err, xmap.ErrResyncRequired) {
			return nil, current, nil
		}
		if err != nil {
			return nil, "", err
		}
		for _, o := range ch.Created {
			if o.Kind == xmap.KindMessage {
				created = append(created, o.ID)
			}
		}
		since = ch.State
		if !ch.HasMore {
			return created, since, nil
		}
	}
}

// Contact is an address-book entry as the Go client stores it: JSON encrypted to the
// user's own key (docs/CLIENT.md).
type Contact struct {
	ID     string   `json:"-"`
	Name   string   `json:"name"`
	Emails []string `json:"emails"`
	Note   string   `json:"note,omitempty"`
}

// Contacts lists and decrypts the whole address book.
func (s *Session) Contacts(ctx context.Context) ([]Contact, error) {
	me, err := s.privateKey()
	if err != nil {
		return nil, err
	}
	var out []Contact
	cursor := ""
	for {
		r, err := s.ListContacts(ctx, &xmap.ListContacts{Limit: xmap.MaxPageSize, Cursor: cursor})
		if err != nil {
			return nil, err
		}
		for _, c := range r.Contacts {
			js, err := cmcrypto.Decrypt(openpgp.EntityList{me}, c.Data)
			if err != nil {
				return nil, fmt.Errorf("contact %s: %w", c.ID, err)
			}
			var ct Contact
			err = json.Unmarshal(js, &ct)
			clear(js)
			if err != nil {
				return nil, fmt.Errorf("contact %s: %w", c.ID, err)
			}
			ct.ID = c.ID
			out = append(out, ct)
		}
		if r.NextCursor == "" {
			return out, nil
		}
		cursor = r.NextCursor
	}
}

// SaveContact encrypts a contact to the user's key and stores it: a new one when c.ID is
// empty, else replacing c.ID. It returns the contact's id.
func (s *Session) SaveContact(ctx context.Context, c Contact) (string, error) {
	me, err := s.privateKey()
	if err != nil {
		return "", err
	}
	myKey, err := cmcrypto.NewPublicKey(me, s.c.opts.Now())
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	js, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	blob, err := (&cmcrypto.Sealer{Rand: s.c.opts.Rand, Now: s.c.opts.Now}).Encrypt(myKey, js)
	clear(js)
	if err != nil {
		return "", err
	}
	if len(blob) > xmap.MaxContactSize {
		return "", fmt.Errorf("%w: contact of %d bytes encrypted (limit %d)", ErrTooLarge, len(blob), xmap.MaxContactSize)
	}
	return s.PutContact(ctx, xmap.Contact{ID: c.ID, Data: blob})
}
