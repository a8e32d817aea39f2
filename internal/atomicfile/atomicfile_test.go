package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// onlyEntry fails unless dir holds exactly name: no temporary file stayed
// behind.
func onlyEntry(t *testing.T, dir, name string) {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Name() != name {
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		t.Errorf("%s holds %q, want only %s", dir, names, name)
	}
}

func checkFile(t *testing.T, path, want string, perm fs.FileMode) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil || string(got) != want {
		t.Fatalf("%s = %q, %v; want %q", path, got, err, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != perm {
		t.Errorf("%s has mode %04o, want %04o", path, fi.Mode().Perm(), perm)
	}
}

func TestWriteFileReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if err := WriteFile(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, "one", 0o600)
	// perm is applied as given, not masked by the umask (022 or 077).
	if err := WriteFile(p, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, "two", 0o644)
	onlyEntry(t, dir, "state.json")
}

func TestCreateRefusesExisting(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key")
	if err := Create(p, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Create(p, []byte("second"), 0o600)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Create = %v, want fs.ErrExist", err)
	}
	checkFile(t, p, "first", 0o600)
	onlyEntry(t, dir, "key")
}

func TestCreateConcurrentOneWins(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = Create(p, []byte{byte('a' + i)}, 0o600) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, fs.ErrExist):
			t.Errorf("Create: %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d Creates succeeded, want 1", won)
	}
	onlyEntry(t, dir, "key")
}

func TestWriteFileErrorLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	// The target is a non-empty directory: the rename fails after the
	// temporary file was written.
	target := filepath.Join(dir, "target")
	if err := os.MkdirAll(filepath.Join(target, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(target, []byte("data"), 0o600); err == nil {
		t.Fatal("WriteFile onto a directory succeeded")
	}
	onlyEntry(t, dir, "target")
	// A missing directory is an error, not a created one.
	if err := WriteFile(filepath.Join(dir, "nope", "f"), []byte("x"), 0o600); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteFile into a missing directory = %v, want fs.ErrNotExist", err)
	}
}

func TestDirSyncErrorReturned(t *testing.T) {
	boom := errors.New("fsync: input/output error")
	syncDir = func(string) error { return boom }
	defer func() { syncDir = SyncDir }()
	dir := t.TempDir()
	if err := WriteFile(filepath.Join(dir, "a"), []byte("x"), 0o600); !errors.Is(err, boom) {
		t.Errorf("WriteFile = %v, want the directory fsync's error", err)
	}
	if err := Create(filepath.Join(dir, "b"), []byte("x"), 0o600); !errors.Is(err, boom) {
		t.Errorf("Create = %v, want the directory fsync's error", err)
	}
}

func TestSyncDirMissing(t *testing.T) {
	if err := SyncDir(filepath.Join(t.TempDir(), "gone")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("SyncDir(missing) = %v, want fs.ErrNotExist", err)
	}
}
