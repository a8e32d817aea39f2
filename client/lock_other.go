//go:build !unix

package client

import "os"

// lockPath has no advisory locks to take here: it only makes sure the home is writable.
// Concurrent processes sharing a home may then lose an update of the state file.
func lockPath(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}
