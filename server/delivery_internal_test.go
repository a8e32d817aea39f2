package server

import (
	"errors"
	"fmt"
	"testing"

	"cryptomail/lmtp"
	"cryptomail/server/internal/deliver"
)

// TestLMTPError: each class of the delivery path maps to the listener's
// class for its reply; anything else stays unclassed (451 4.3.0).
func TestLMTPError(t *testing.T) {
	for _, tt := range []struct {
		in, want error
	}{
		{deliver.ErrUnknownUser, lmtp.ErrUnknownUser},
		{deliver.ErrTooLarge, lmtp.ErrTooLarge},
		{deliver.ErrBusy, lmtp.ErrBusy},
		{deliver.ErrNoSpace, lmtp.ErrNoSpace},
		{deliver.ErrOverQuota, lmtp.ErrMailboxFull},
	} {
		got := lmtpError(fmt.Errorf("x: %w", tt.in))
		if !errors.Is(got, tt.want) || !errors.Is(got, tt.in) {
			t.Errorf("%v → %v, want %v", tt.in, got, tt.want)
		}
	}
	if lmtpError(nil) != nil {
		t.Error("nil mapped to an error")
	}
	for _, e := range []error{deliver.ErrKeyUnusable, errors.New("disk I/O error")} {
		got := lmtpError(e)
		for _, c := range []error{lmtp.ErrUnknownUser, lmtp.ErrTooLarge, lmtp.ErrBusy, lmtp.ErrNoSpace, lmtp.ErrMailboxFull} {
			if errors.Is(got, c) {
				t.Errorf("%v classed as %v", e, c)
			}
		}
	}
}
