// Package atomicfile writes small files so that a crash or power cut leaves
// either the old content or the new, never a torn file, and so that a write
// reported as done is durable: the file is fsynced, moved into place in the
// same directory, and the directory is fsynced. Every error, that last fsync
// included, is returned.
//
// It is for small files written whole (keys, pins, client state); databases
// keep their own journals.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// syncDir is SyncDir; tests replace it to make the directory fsync fail.
var syncDir = SyncDir

// WriteFile replaces path with data, the file having mode perm (umask is
// not applied). The temporary file is in path's directory and has mode perm
// from the start, so a secret is never readable by others, even briefly; it
// is removed whatever happens.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return write(path, data, perm, os.Rename)
}

// Create is WriteFile for a file that must not exist yet: if path exists,
// whether from before or from a concurrent Create, it is left alone and the
// error wraps fs.ErrExist. Two processes creating the same file at once thus
// agree on which content won.
func Create(path string, data []byte, perm fs.FileMode) error {
	return write(path, data, perm, os.Link)
}

func write(path string, data []byte, perm fs.FileMode, place func(tmp, path string) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	name := tmp.Name()
	// After a rename this finds nothing; after a link it drops the second
	// name; after a failure it removes the partial file.
	defer os.Remove(name)
	err = tmp.Chmod(perm)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	if err := place(name, path); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) {
			err = le.Err // the temporary name would only confuse
		}
		return fmt.Errorf("atomicfile: %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("atomicfile: %s: %w", path, err)
	}
	return nil
}

// SyncDir fsyncs a directory, so that the names created, renamed or removed
// in it survive a power cut.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
