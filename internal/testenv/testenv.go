// Package testenv gives tests real outside programs to work against: a private Postfix instance
// that delivers over LMTP, free loopback ports, and a uniform way to skip when a program is
// missing.
//
// Tests that need a program skip when it is absent, so `go test ./...` passes on a bare developer
// machine. CI sets CRYPTOMAIL_REQUIRE_TOOLS=1 (after scripts/install-test-deps.sh) so that a
// missing program fails the run instead of silently skipping the end-to-end tests.
package testenv

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RequireToolsEnv names the environment variable that turns "skip when a tool is missing" into a
// test failure. Set it to "1" in CI.
const RequireToolsEnv = "CRYPTOMAIL_REQUIRE_TOOLS"

// sbinDirs are searched after PATH: MTA programs live in sbin, which a non-root PATH may lack.
var sbinDirs = []string{"/usr/sbin", "/sbin", "/usr/local/sbin"}

// ToolsRequired reports whether missing tools must fail tests rather than skip them.
func ToolsRequired() bool {
	return os.Getenv(RequireToolsEnv) == "1"
}

// Unavailable skips the test, or fails it when ToolsRequired, with a message saying what is
// missing. It does not return.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if ToolsRequired() {
		t.Fatalf(format+" ("+RequireToolsEnv+"=1)", args...)
	} else {
		t.Skipf(format, args...)
	}
}

// RequireTool returns the absolute path of the program name, looked up in PATH and then in the
// sbin directories. When it is missing the test is skipped (failed under CRYPTOMAIL_REQUIRE_TOOLS=1).
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := lookTool(name)
	if err != nil {
		Unavailable(t, "testenv: %s not installed (scripts/install-test-deps.sh installs it): %v", name, err)
		return ""
	}
	return path
}

func lookTool(name string) (string, error) {
	path, err := exec.LookPath(name)
	if err == nil {
		return filepath.Abs(path)
	}
	if filepath.Base(name) != name {
		return "", err
	}
	for _, dir := range sbinDirs {
		p := filepath.Join(dir, name)
		if fi, statErr := os.Stat(p); statErr == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", err
}

// FreePort returns "127.0.0.1:port" for a loopback TCP port that was free a moment ago. Another
// process can take it before the caller binds it; callers that start a server on it should retry
// with a fresh port when the bind fails (StartPostfix does).
func FreePort(t testing.TB) string {
	t.Helper()
	addr, err := freePort()
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	return addr
}

func freePort() (string, error) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", err
	}
	if addr == "" {
		return "", errors.New("listener has no address")
	}
	return addr, nil
}
