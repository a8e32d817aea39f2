package xmap_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"cryptomail/xmap"
)

func addSeeds(f *testing.F, pattern string, extra ...string) {
	files, _ := filepath.Glob(filepath.Join(examplesDir, pattern))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range extra {
		f.Add([]byte(s))
	}
}

// FuzzDecodeRequest: the decoder never panics, and whatever it accepts encodes to a
// document that decodes to the same batch and encodes to the same bytes.
func FuzzDecodeRequest(f *testing.F) {
	addSeeds(f, "*.request.xml",
		doc(`<create-folder id="a" name="R&amp;D &#x263A;"/>`),
		doc("<append id=\"a\" folder-id=\"3\" received=\"2025-03-01T10:30:00.5+01:00\"><body><![CDATA[AQ\r\n  ID]]></body></append>"),
		doc(`<update-flags id="a" action="replace" flags="$Work \Seen"><id>7</id></update-flags>`),
		doc(`<fetch id="a" parts="body summary"><id>1</id></fetch><wait id="b" since="1" timeout="0"/>`),
		`<x:xmap xmlns:x="urn:cryptomail:xmap:1" version="1"><x:list-folders id="a"/></x:xmap>`,
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := xmap.DecodeRequest(bytes.NewReader(data))
		if err != nil {
			if _, ok := err.(*xmap.ProtocolError); !ok {
				t.Fatalf("error %T, want *ProtocolError", err)
			}
			return
		}
		var first bytes.Buffer
		if err := xmap.EncodeRequest(&first, b); err != nil {
			t.Fatal(err)
		}
		b2, err := xmap.DecodeRequest(bytes.NewReader(first.Bytes()))
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v\n%s", err, first.Bytes())
		}
		if !reflect.DeepEqual(b, b2) {
			t.Fatalf("round trip changed the batch\nbefore: %#v\nafter:  %#v", b, b2)
		}
		var second bytes.Buffer
		if err := xmap.EncodeRequest(&second, b2); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first.Bytes(), second.Bytes()) {
			t.Fatalf("encoding is not canonical\n%s\n%s", first.Bytes(), second.Bytes())
		}
	})
}

// FuzzDecodeResponse is the same property for the client's side.
func FuzzDecodeResponse(f *testing.F) {
	addSeeds(f, "*.response.xml",
		doc(`<logout id="a"><error code="try-later">x &amp; y</error></logout>`),
		doc(`<fetch id="a"><deferred>2</deferred><message id="1" folder-id="2" flags="\Deleted $x" size="3" received="2025-01-01T00:00:00Z"><body>AQID</body></message></fetch>`),
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := xmap.DecodeResponse(bytes.NewReader(data))
		if err != nil {
			if _, ok := err.(*xmap.ProtocolError); !ok {
				t.Fatalf("error %T, want *ProtocolError", err)
			}
			return
		}
		var first bytes.Buffer
		if err := xmap.EncodeResponse(&first, r); err != nil {
			t.Fatal(err)
		}
		r2, err := xmap.DecodeResponse(bytes.NewReader(first.Bytes()))
		if err != nil {
			t.Fatalf("re-encoded response does not decode: %v\n%s", err, first.Bytes())
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip changed the response\nbefore: %#v\nafter:  %#v", r, r2)
		}
		var second bytes.Buffer
		if err := xmap.EncodeResponse(&second, r2); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first.Bytes(), second.Bytes()) {
			t.Fatalf("encoding is not canonical\n%s\n%s", first.Bytes(), second.Bytes())
		}
	})
}
