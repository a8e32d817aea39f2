//go:build !unix

package shard

import (
	"errors"
	"syscall"
)

// isNoSpace reports an OS error that means the disk is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC)
}
