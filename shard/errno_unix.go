//go:build unix

package shard

import (
	"errors"
	"syscall"
)

// isNoSpace reports an OS error that means the disk or the quota is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
