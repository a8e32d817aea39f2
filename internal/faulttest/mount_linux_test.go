//go:build linux

package faulttest

import (
	"errors"
	"fmt"
	"syscall"
)

// mountTmpfs mounts a tmpfs of size bytes on dir (needs root or
// CAP_SYS_ADMIN). The mount(2) call is what `mount -t tmpfs -o size=N` does.
func mountTmpfs(dir string, size int64) error {
	return syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size))
}

// resizeTmpfs is `mount -o remount,size=N dir`.
func resizeTmpfs(dir string, size int64) error {
	return syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT|syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d", size))
}

// unmount detaches the file system even if something still holds a file on
// it, so a failed test never leaves a mount behind.
func unmount(dir string) error {
	err := syscall.Unmount(dir, 0)
	if errors.Is(err, syscall.EBUSY) {
		if lazy := syscall.Unmount(dir, syscall.MNT_DETACH); lazy != nil {
			return errors.Join(err, lazy)
		}
		return fmt.Errorf("%w (detached lazily)", err)
	}
	return err
}
