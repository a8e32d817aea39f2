//go:build !linux

package faulttest

import "errors"

var errNoTmpfs = errors.New("size-limited tmpfs mounts are only made on Linux")

func mountTmpfs(dir string, size int64) error  { return errNoTmpfs }
func resizeTmpfs(dir string, size int64) error { return errNoTmpfs }
func unmount(dir string) error                 { return errNoTmpfs }
