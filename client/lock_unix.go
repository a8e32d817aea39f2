//go:build unix

package client

import (
	"os"

	"golang.org/x/sys/unix"
)

// lockPath takes an exclusive advisory lock on path (created 0600 if missing) and returns
// its release. The lock serializes read-modify-write cycles of processes sharing a home.
func lockPath(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}
