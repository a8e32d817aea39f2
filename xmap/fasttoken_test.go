package xmap

import (
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

type posToken struct {
	tok  xml.Token
	line int
}

// tokens reads ts to its end or first error.
func tokens(ts tokenSource) ([]posToken, error) {
	var out []posToken
	for {
		tok, err := ts.Token()
		if err != nil {
			return out, err
		}
		line, _ := ts.InputPos()
		if se, ok := tok.(xml.StartElement); ok && len(se.Attr) == 0 {
			se.Attr = nil // encoding/xml gives an empty slice
			tok = se
		}
		out = append(out, posToken{xml.CopyToken(tok), line})
	}
}

func sameTokens(a, b []posToken) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}

func stdTokens(doc []byte) ([]posToken, error) {
	d := xml.NewDecoder(bytes.NewReader(doc))
	d.Strict = true
	return tokens(d)
}

// checkFast checks fastTokens against encoding/xml on doc and reports whether fastTokens
// read all of it.
func checkFast(t *testing.T, doc []byte) (plain bool) {
	t.Helper()
	fast, ferr := tokens(newFastTokens(doc))
	std, serr := stdTokens(doc)
	switch {
	case ferr == io.EOF:
		// All of it: exactly encoding/xml's tokens, at the same lines, and no error.
		if serr != io.EOF || !sameTokens(fast, std) {
			t.Fatalf("fast tokens differ for %q\nfast: %v\nstd:  %v (%v)", doc, fast, std, serr)
		}
	case errors.Is(ferr, errNotPlain):
		// Given up: what it gave so far is what encoding/xml gives first.
		if len(std) < len(fast) || !sameTokens(fast, std[:len(fast)]) {
			t.Fatalf("fast tokens before giving up differ for %q\nfast: %v\nstd:  %v (%v)", doc, fast, std, serr)
		}
	default:
		t.Fatalf("fast tokens of %q: unexpected error %v", doc, ferr)
	}
	// And the tree (or error) is always readTree's.
	root1, perr1 := readTreeBytes(doc, MaxResponseSize)
	root2, perr2 := readTree(bytes.NewReader(doc), MaxResponseSize)
	if !reflect.DeepEqual(root1, root2) || !reflect.DeepEqual(perr1, perr2) {
		t.Fatalf("readTreeBytes(%q) = %+v, %v; readTree = %+v, %v", doc, root1, perr1, root2, perr2)
	}
	return ferr == io.EOF
}

func exampleDocs(t testing.TB) [][]byte {
	files, err := filepath.Glob(filepath.Join("testdata", "examples", "*.xml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("examples: %v %v", files, err)
	}
	var docs [][]byte
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, b)
	}
	return docs
}

const testOpen = `<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<xmap xmlns="urn:cryptomail:xmap:1" version="1">`

func TestFastTokens(t *testing.T) {
	// Everything our encoder writes takes the fast path (some examples show refused
	// documents, with a DTD or entities).
	for _, d := range exampleDocs(t) {
		if !checkFast(t, d) && !bytes.Contains(d, []byte("<!")) && !bytes.Contains(d, []byte("&")) {
			t.Errorf("example not read by fastTokens:\n%s", d)
		}
	}
	tests := []struct {
		doc   string
		plain bool
	}{
		{testOpen + `<list-folders id="a"/></xmap>`, true},
		{`<xmap xmlns="urn:cryptomail:xmap:1" version="1"><list-folders   id = 'a'  /></xmap  >`, true},
		{"<?xml version=\"1.0\"?>\n\n<xmap\n xmlns=\"urn:cryptomail:xmap:1\"\tversion=\"1\">\n<x>\n</x></xmap>\n", true},
		{testOpen + `<fetch id="a"><message id="1"><summary>QUJD` + "\n" + `REVG</summary></message></fetch></xmap>`, true},
		{testOpen + `text</xmap>`, true},                                   // a tree error, same either way
		{`<xmap version="1"><a/></xmap>`, true},                            // no namespace
		{`<xmap xmlns="urn:other" version="1"><a xmlns=""/></xmap>`, true}, // namespaces in scope
		{testOpen + `</xmap><xmap/>`, true},
		{testOpen + `<a x="1" x="2"/></xmap>`, true},
		{" \n" + testOpen + `</xmap>`, false},
		{testOpen + `<error code="x">a &amp; b</error></xmap>`, false},
		{testOpen + `<error code="x">a > b</error></xmap>`, false},
		{testOpen + `<error code="x">Grüße</error></xmap>`, false},
		{testOpen + "<a>\r\n</a></xmap>", false},
		{testOpen + `<a><![CDATA[x]]></a></xmap>`, false},
		{testOpen + `<!-- c --></xmap>`, false},
		{`<!DOCTYPE x []><xmap/>`, false},
		{testOpen + `<?pi x?></xmap>`, false},
		{`<?xml version="1.1"?><xmap/>`, false},
		{`<?xml version="1.0" encoding="ISO-8859-1"?><xmap/>`, false},
		{`<x:xmap xmlns:x="urn:cryptomail:xmap:1" version="1"/>`, false},
		{testOpen + `<a b:c="1"/></xmap>`, false},
		{testOpen + `<a x="1"y="2"/></xmap>`, false},
		{testOpen + `<a x=1/></xmap>`, false},
		{testOpen + `<a x/></xmap>`, false},
		{testOpen + `<a x="a` + "\n" + `b"/></xmap>`, false},
		{testOpen + `<a></b></xmap>`, false},
		{testOpen + `<a>`, false},
		{testOpen + `<a/`, false},
		{testOpen + `<a x="1`, false},
		{testOpen + `</xmap></xmap>`, false},
		{testOpen + `<1a/></xmap>`, false},
		{testOpen + `<a/ ></xmap>`, false},
		{`<`, false},
		{``, true},
		{"\x00", false},
	}
	for _, tt := range tests {
		if got := checkFast(t, []byte(tt.doc)); got != tt.plain {
			t.Errorf("fastTokens read all of %q: %v, want %v", tt.doc, got, tt.plain)
		}
	}
}

// A document over the size limit is refused as before, without the fast path.
func TestReadTreeBytesLimit(t *testing.T) {
	d := []byte(testOpen + `<list-folders id="a"/></xmap>`)
	_, perr := readTreeBytes(d, int64(len(d)-1))
	if perr == nil || perr.Code != CodeTooLarge {
		t.Errorf("over the limit: %v", perr)
	}
	if _, perr := readTreeBytes(d, int64(len(d))); perr != nil {
		t.Errorf("at the limit: %v", perr)
	}
}

// FuzzFastTokens: fastTokens yields encoding/xml's tokens (or gives up), and
// readTreeBytes always returns what readTree returns.
func FuzzFastTokens(f *testing.F) {
	for _, d := range exampleDocs(f) {
		f.Add(d)
	}
	f.Add([]byte(testOpen + `<a x="1"><b>QUJD` + "\n" + `</b></a></xmap>`))
	f.Add([]byte(strings.Repeat("<a>", 40) + strings.Repeat("</a>", 40)))
	f.Fuzz(func(t *testing.T, doc []byte) {
		checkFast(t, doc)
	})
}

// The word tests agree with the byte tables for every byte value in every lane.
func TestPlainWord(t *testing.T) {
	for lane := range 8 {
		for c := range 256 {
			w := []byte("AAAAAAAA")
			w[lane] = byte(c)
			x := binary.LittleEndian.Uint64(w)
			want := textByte[c] != 0 && c != '\t' || c == '<' // '<' never reaches it
			if got := plainWord(x); got != want {
				t.Errorf("plainWord with %#02x in lane %d = %v, want %v", c, lane, got, want)
			}
			if got, want := hasLess(x, ' '+1), c <= ' '; got != want {
				t.Errorf("hasLess(' '+1) with %#02x in lane %d = %v, want %v", c, lane, got, want)
			}
		}
	}
	// Several lanes at once, including borrows from a lane below.
	for _, w := range []string{"\x00\x01AAAAAA", "A\x00\xffAAAAA", "\x80\x7f>&\x1f \x20A", "ZZZZZZZ\x00", "\xff\xff\xff\xff\xff\xff\xff\xff", "+/=09azAZ"} {
		x := binary.LittleEndian.Uint64([]byte(w))
		want := true
		for _, c := range []byte(w) {
			want = want && textByte[c] != 0 && c != '\t'
		}
		if got := plainWord(x); got != want {
			t.Errorf("plainWord(%q) = %v, want %v", w, got, want)
		}
	}
}

func TestStripSpace(t *testing.T) {
	for _, s := range []string{"", "QUJD", "QUJDREVGR0hJSktMTU5P", "QUJD REVG\tR0hJ\r\nSktM", "QUJDREVGR0hJSktM\n", " QUJDREVGR0hJSktMTU5P", "QUJDREVGR0hJSkt\x01TU5P"} {
		want := strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\n' || r == '\r' {
				return -1
			}
			return r
		}, s)
		if got := string(stripSpace([]byte(s))); got != want {
			t.Errorf("stripSpace(%q) = %q, want %q", s, got, want)
		}
	}
}
