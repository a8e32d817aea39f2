//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package main

import (
	"errors"
	"os"
)

// isTerminal cannot tell here, so passphrases come from CMAIL_PASSPHRASE or a line of
// standard input.
func isTerminal(*os.File) bool { return false }

func readNoEcho(*os.File) ([]byte, error) {
	return nil, errors.New("reading a passphrase without echo is not supported here: set CMAIL_PASSPHRASE")
}
