package faulttest

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var reportFile = flag.String("report", "", "also write TestBadInput's Markdown report to this `file` (a relative path is relative to internal/faulttest)")

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the cryptomail command once per test run, so every test
// drives the real server process.
func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cryptomail-faulttest-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "cryptomail")
		out, err := exec.Command("go", "build", "-o", binPath, "cryptomail/cmd/cryptomail").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build cryptomail/cmd/cryptomail: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}
