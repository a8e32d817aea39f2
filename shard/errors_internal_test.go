package shard

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"

	"github.com/mattn/go-sqlite3"

	"cryptomail/internal/sqlitedb"
)

func TestClassify(t *testing.T) {
	plain := errors.New("something else")
	tests := []struct {
		name string
		err  error
		want error // nil: no sentinel
	}{
		{"full", sqlite3.Error{Code: sqlite3.ErrFull}, ErrNoSpace},
		{"busy", sqlite3.Error{Code: sqlite3.ErrBusy, ExtendedCode: sqlite3.ErrBusySnapshot}, ErrBusy},
		{"locked", sqlite3.Error{Code: sqlite3.ErrLocked}, ErrBusy},
		{"corrupt", sqlite3.Error{Code: sqlite3.ErrCorrupt}, ErrCorrupt},
		{"not a db", sqlite3.Error{Code: sqlite3.ErrNotADB}, ErrCorrupt},
		{"ioerr enospc", sqlite3.Error{Code: sqlite3.ErrIoErr, ExtendedCode: sqlite3.ErrIoErrTruncate, SystemErrno: syscall.ENOSPC}, ErrNoSpace},
		{"cantopen edquot", sqlite3.Error{Code: sqlite3.ErrCantOpen, SystemErrno: syscall.EDQUOT}, ErrNoSpace},
		{"ioerr other", sqlite3.Error{Code: sqlite3.ErrIoErr, SystemErrno: syscall.EIO}, nil},
		{"wrapped full", fmt.Errorf("commit: %w", sqlite3.Error{Code: sqlite3.ErrFull}), ErrNoSpace},
		{"errno code", sqlite3.ErrBusy, ErrBusy},
		{"enospc", &fs.PathError{Op: "mkdir", Path: "/h/ab", Err: syscall.ENOSPC}, ErrNoSpace},
		{"edquot", &fs.PathError{Op: "open", Path: "/h/ab/x.db", Err: syscall.EDQUOT}, ErrNoSpace},
		{"constraint", sqlite3.Error{Code: sqlite3.ErrConstraint}, nil},
		{"plain", plain, nil},
		{"already classified", fmt.Errorf("%w: x", ErrNotFound), ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.err)
			if !errors.Is(got, tt.err) {
				t.Errorf("classify lost the original error: %v", got)
			}
			for _, s := range sentinels {
				if is := errors.Is(got, s); is != (s == tt.want) {
					t.Errorf("errors.Is(%v, %v) = %v", got, s, is)
				}
			}
			var se sqlite3.Error
			if errors.As(tt.err, &se) && !errors.As(got, &se) {
				t.Errorf("errors.As(sqlite3.Error) fails after classify: %v", got)
			}
		})
	}
	if classify(nil) != nil {
		t.Error("classify(nil) != nil")
	}
}

func TestLoadMigrations(t *testing.T) {
	for _, dir := range []string{"migrations/meta", "migrations/shard"} {
		ms, err := sqlitedb.LoadMigrations(migrationFS, dir)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range ms {
			if m.Version != i+1 {
				t.Fatalf("%s: migration %d has version %d", dir, i, m.Version)
			}
		}
	}
}
