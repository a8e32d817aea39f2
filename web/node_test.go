package web_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"cryptomail/internal/testenv"
)

// The JavaScript side of the web client is tested by Node's test runner and by Playwright.
// Both need the npm packages of web/package-lock.json, which `npm ci` installs from the
// npm registry into a copy of web/ (so a test run never touches the checkout's own
// node_modules). Without node or npm these tests skip, and fail under
// CRYPTOMAIL_REQUIRE_TOOLS=1, as the other tests do for their outside programs.

var (
	nodeOnce sync.Once
	nodeWork string // the copy of web/ with node_modules installed
	nodeErr  error
)

// webSources are the files of web/ that a build and the JavaScript tests need.
var webSources = []string{"package.json", "package-lock.json", "build.mjs", "src", "test"}

func TestMain(m *testing.M) {
	code := m.Run()
	if nodeWork != "" {
		os.RemoveAll(nodeWork)
	}
	os.Exit(code)
}

// nodeDir returns a directory holding a copy of web/'s sources with the locked npm packages
// installed, preparing it once per test binary.
func nodeDir(t *testing.T) string {
	t.Helper()
	node := testenv.RequireTool(t, "node")
	npm := testenv.RequireTool(t, "npm")
	nodeOnce.Do(func() {
		out, err := exec.Command(node, "-e", "process.stdout.write(process.versions.node)").Output()
		if err != nil {
			nodeErr = fmt.Errorf("node --version: %w", err)
			return
		}
		var major, minor int
		fmt.Sscanf(string(out), "%d.%d", &major, &minor)
		if major < 20 || major == 20 && minor < 19 {
			nodeErr = fmt.Errorf("node %s is too old: the web client's packages need Node.js 20.19 or later", out)
			return
		}
		dir, err := os.MkdirTemp("", "cryptomail-web-")
		if err != nil {
			nodeErr = err
			return
		}
		nodeWork = dir
		for _, name := range webSources {
			if err := copyTree(name, filepath.Join(dir, name)); err != nil {
				nodeErr = err
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		// --ignore-scripts: no package runs code at install time (esbuild's binary comes
		// from its platform package and needs no post-install step).
		cmd := exec.CommandContext(ctx, npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			nodeErr = fmt.Errorf("npm ci (needs the npm registry): %w\n%s", err, out)
		}
	})
	if nodeErr != nil {
		if strings.Contains(nodeErr.Error(), "too old") {
			testenv.Unavailable(t, "%v", nodeErr)
		}
		t.Fatal(nodeErr)
	}
	return nodeWork
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			if d.Name() == "node_modules" || d.Name() == "screenshots" {
				return filepath.SkipDir
			}
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// runNode runs node with args in dir and fails the test with its output if it fails.
func runNode(t *testing.T, dir string, timeout time.Duration, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// TestJavaScriptUnits runs web/test/*.test.mjs: the SeXMAP test vectors, the sealed-key
// vector, the XMAP examples round trip, MIME, OpenPGP and the client's mail path.
func TestJavaScriptUnits(t *testing.T) {
	dir := nodeDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "test", "*.test.mjs"))
	if err != nil || len(files) < 5 {
		t.Fatalf("JavaScript tests: %v %v", files, err)
	}
	sort.Strings(files)
	args := []string{"--test", "--test-reporter=tap"}
	for _, f := range files {
		args = append(args, filepath.Join("test", filepath.Base(f)))
	}
	out := runNode(t, dir, 3*time.Minute, []string{"CRYPTOMAIL_ROOT=" + repoRoot(t)}, args...)
	if !strings.Contains(out, "\n# fail 0\n") || strings.Contains(out, "\n# pass 0\n") {
		t.Fatalf("JavaScript tests:\n%s", out)
	}
	if testing.Verbose() {
		t.Log(out)
	}
}

// TestBundleMatchesSources rebuilds the bundle from the sources with the locked packages
// and requires web/dist to be byte-for-byte what it gives: the committed bundle is what
// the sources say, and `go build` needs no npm.
func TestBundleMatchesSources(t *testing.T) {
	dir := nodeDir(t)
	out := filepath.Join(t.TempDir(), "dist")
	runNode(t, dir, 2*time.Minute, nil, "build.mjs", "--out", out)
	want := listTree(t, out)
	got := listTree(t, "dist")
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("web/dist lacks %s: run `make web` and commit web/dist", name)
		case !bytes.Equal(g, w):
			t.Errorf("web/dist/%s differs from a build of the sources: run `make web` and commit web/dist", name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("web/dist/%s is not built from the sources: run `make web`", name)
		}
	}
}

func listTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		data, err := os.ReadFile(p)
		out[filepath.ToSlash(rel)] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
