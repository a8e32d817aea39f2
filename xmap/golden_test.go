package xmap_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"cryptomail/xmap"
)

var update = flag.Bool("update", false, "rewrite golden files (and the examples in docs/XMAP.md)")

const examplesDir = "testdata/examples"
const specPath = "../docs/XMAP.md"

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(name, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if want := readFile(t, name); !bytes.Equal(got, want) {
		t.Errorf("%s: re-encoding differs\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

// TestGoldenRequests decodes every example request and encodes it again: the examples are
// valid and in canonical form. A request the decoder refuses must come with the
// document-level error response the server gives for it.
func TestGoldenRequests(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(examplesDir, "*.request.xml"))
	if len(files) == 0 {
		t.Fatal("no example requests")
	}
	used := map[string]bool{}
	for _, f := range files {
		doc := readFile(t, f)
		b, err := xmap.DecodeRequest(bytes.NewReader(doc))
		if err != nil {
			var pe *xmap.ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("%s: error is not a *ProtocolError: %v", f, err)
			}
			var buf bytes.Buffer
			if err := xmap.EncodeResponse(&buf, &xmap.BatchResponse{Error: pe}); err != nil {
				t.Fatal(err)
			}
			resp := strings.TrimSuffix(f, ".request.xml") + ".response.xml"
			if want := readFile(t, resp); !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("%s: refused with %v, but %s says\n%s", f, err, resp, want)
			}
			continue
		}
		for _, r := range b.Requests {
			used[r.Command.Name()] = true
		}
		var buf bytes.Buffer
		if err := xmap.EncodeRequest(&buf, b); err != nil {
			t.Fatal(err)
		}
		checkGolden(t, f, buf.Bytes())
	}
	for _, name := range xmap.CommandNames() {
		if !used[name] {
			t.Errorf("no example uses <%s>", name)
		}
	}
}

// TestGoldenResponses decodes every example response, as a client does, and encodes it
// again.
func TestGoldenResponses(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(examplesDir, "*.response.xml"))
	if len(files) == 0 {
		t.Fatal("no example responses")
	}
	codes := map[xmap.ErrorCode]bool{}
	for _, f := range files {
		resp, err := xmap.DecodeResponse(bytes.NewReader(readFile(t, f)))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if resp.Error != nil {
			codes[resp.Error.Code] = true
		}
		for _, r := range resp.Responses {
			if r.Err != nil {
				codes[r.Err.Code] = true
			}
		}
		var buf bytes.Buffer
		if err := xmap.EncodeResponse(&buf, resp); err != nil {
			t.Fatal(err)
		}
		checkGolden(t, f, buf.Bytes())
	}
	if len(codes) < 6 {
		t.Errorf("examples show only %d error codes", len(codes))
	}
}

// exampleBlock is how docs/XMAP.md embeds a golden file.
var exampleBlock = regexp.MustCompile("(?s)<!-- example: ([^ ]+) -->\n```xml\n(.*?)```\n")

// TestSpecExamples checks that docs/XMAP.md shows every example file exactly once,
// byte for byte, so the spec cannot drift from what the code does. -update rewrites the
// spec's blocks from the files.
func TestSpecExamples(t *testing.T) {
	spec := readFile(t, specPath)
	files, _ := filepath.Glob(filepath.Join(examplesDir, "*.xml"))
	seen := map[string]int{}
	out := exampleBlock.ReplaceAllFunc(spec, func(m []byte) []byte {
		sub := exampleBlock.FindSubmatch(m)
		name := string(sub[1])
		seen[name]++
		data, err := os.ReadFile(filepath.Join(examplesDir, name))
		if err != nil {
			t.Errorf("docs/XMAP.md shows %s, which is not in %s", name, examplesDir)
			return m
		}
		if !bytes.Equal(sub[2], data) {
			if !*update {
				t.Errorf("docs/XMAP.md: example %s differs from the file\nspec:\n%s\nfile:\n%s", name, sub[2], data)
			}
			return []byte("<!-- example: " + name + " -->\n```xml\n" + string(data) + "```\n")
		}
		return m
	})
	for _, f := range files {
		name := filepath.Base(f)
		if n := seen[name]; n != 1 {
			t.Errorf("docs/XMAP.md shows %s %d times, want once", name, n)
		}
	}
	if *update && !bytes.Equal(out, spec) {
		if err := os.WriteFile(specPath, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSpecCovers checks that the spec documents every request and every error code.
func TestSpecCovers(t *testing.T) {
	spec := string(readFile(t, specPath))
	for _, name := range xmap.CommandNames() {
		if !strings.Contains(spec, "### `"+name+"`") {
			t.Errorf("docs/XMAP.md has no section \"### `%s`\"", name)
		}
	}
	codes := []xmap.ErrorCode{
		xmap.CodeBadRequest, xmap.CodeNotFound, xmap.CodeDenied, xmap.CodeConflict, xmap.CodeOverQuota,
		xmap.CodeTooLarge, xmap.CodeLimitExceeded, xmap.CodeRateLimited, xmap.CodeUnsupportedVersion,
		xmap.CodeInvalidInvite, xmap.CodeExpired, xmap.CodeResyncRequired, xmap.CodePlaintextRefused,
		xmap.CodeInvalidRecipient, xmap.CodeInternal,
	}
	for _, c := range codes {
		if !strings.Contains(spec, "| `"+string(c)+"` |") {
			t.Errorf("docs/XMAP.md has no table row for error code %s", c)
		}
	}
	if !slices.IsSorted(xmap.CommandNames()) {
		t.Error("CommandNames not sorted")
	}
}
