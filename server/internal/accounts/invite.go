package accounts

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"io"
	"strings"
	"time"
)

// Invite codes are 28 symbols of Crockford's base32 (140 random bits), shown
// in groups of four: "7Q2K-MX4P-9RTA-…". The alphabet has no I, L, O or U, so
// a code read aloud or retyped is hard to get wrong; reading is forgiving
// (case, dashes, O for 0, I and L for 1).
const (
	inviteSymbols = 28
	inviteGroup   = 4
	crockford     = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)

var inviteEncoding = base32.NewEncoding(crockford).WithPadding(base32.NoPadding)

// NewInviteCode returns a fresh invite code drawn from rng (crypto/rand in
// production). Every symbol is uniform: the code carries 140 random bits.
func NewInviteCode(rng io.Reader) (string, error) {
	raw := make([]byte, (inviteSymbols*5+7)/8)
	if _, err := io.ReadFull(rng, raw); err != nil {
		return "", fmt.Errorf("accounts: invite code: %w", err)
	}
	sym := inviteEncoding.EncodeToString(raw)[:inviteSymbols]
	var b strings.Builder
	for i := 0; i < len(sym); i += inviteGroup {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(sym[i:min(i+inviteGroup, len(sym))])
	}
	return b.String(), nil
}

// NormalizeInviteCode returns the canonical form of a code as typed: upper
// case, without dashes, O read as 0 and I, L as 1. It reports false for
// anything that cannot be a code.
func NormalizeInviteCode(code string) (string, bool) {
	if len(code) > 2*inviteSymbols {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(code); i++ {
		c := code[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		switch c {
		case '-':
			continue
		case 'O':
			c = '0'
		case 'I', 'L':
			c = '1'
		}
		if !strings.ContainsRune(crockford, rune(c)) {
			return "", false
		}
		b.WriteByte(c)
	}
	if b.Len() != inviteSymbols {
		return "", false
	}
	return b.String(), true
}

// InviteHash is what the store keeps of a code: the SHA-256 of its
// canonical form. It reports false for a malformed code.
func InviteHash(code string) ([]byte, bool) {
	norm, ok := NormalizeInviteCode(code)
	if !ok {
		return nil, false
	}
	sum := sha256.Sum256([]byte(norm))
	return sum[:], true
}

// Inviter stores an invite's code hash (shard.Store implements it): ErrExists
// for an address that has signed up already.
type Inviter interface {
	CreateInvite(ctx context.Context, address string, codeHash []byte, expires time.Time) error
}

// CreateInvite makes a one-time invite code for address (canonical, in a
// served domain: the caller checks) valid until expires, stores its hash and
// returns the code, which exists nowhere else: give it to the user.
func CreateInvite(ctx context.Context, st Inviter, rng io.Reader, address string, expires time.Time) (string, error) {
	code, err := NewInviteCode(rng)
	if err != nil {
		return "", err
	}
	hash, _ := InviteHash(code)
	if err := st.CreateInvite(ctx, address, hash, expires); err != nil {
		return "", fmt.Errorf("accounts: %w", err)
	}
	return code, nil
}
