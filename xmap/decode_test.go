package xmap_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"cryptomail/xmap"
)

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

const head = `<?xml version="1.0" encoding="UTF-8"?>` + "\n"
const open = `<xmap xmlns="urn:cryptomail:xmap:1" version="1">`

// doc wraps request elements in a version 1 document.
func doc(body string) string { return head + open + body + "</xmap>" }

func ids(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "<id>%d</id>", i)
	}
	return b.String()
}

const loginKey = "sgehSMLe1ga0zMbjezzWs21lYfHXpcAu2mtkyGU+amU="
const kdf = `<kdf alg="argon2id" salt="/iPXVtEeFvSvJMAvsJn8Vw==" time="3" memory="65536" threads="4"/>`

const pubKey = `<public-key>AQID</public-key>`
const sealedKey = `<sealed-key>BAUG</sealed-key>`

func account(address, kids string) string {
	return `<account address="` + address + `">` + kids + `</account>`
}

func passphrase(login, k string) string {
	return doc(`<change-passphrase id="q"><login-key>` + login + `</login-key>` + k + `<sealed-key>AQID</sealed-key></change-passphrase>`)
}

func TestDecodeRequestErrors(t *testing.T) {
	deep := strings.Repeat("<a>", xmap.MaxDepth) + strings.Repeat("</a>", xmap.MaxDepth)
	tests := []struct {
		name string
		doc  string
		code xmap.ErrorCode
		text string // part of the message, if it matters
	}{
		// Not XML, or XML we refuse.
		{"empty", "", xmap.CodeBadRequest, "empty document"},
		{"white space only", "  \n", xmap.CodeBadRequest, "empty document"},
		{"unclosed", head + open + `<list-folders id="a">`, xmap.CodeBadRequest, "malformed XML"},
		{"mismatched end tag", doc(`<list-folders id="a"></fetch>`), xmap.CodeBadRequest, "malformed XML"},
		{"unquoted attribute", doc(`<list-folders id=a/>`), xmap.CodeBadRequest, "malformed XML"},
		{"invalid UTF-8", doc("<create-folder id=\"a\" name=\"\xff\"/>"), xmap.CodeBadRequest, ""},
		{"undefined entity", doc(`<create-folder id="a" name="&lol;"/>`), xmap.CodeBadRequest, ""},
		{"XXE", head + `<!DOCTYPE xmap [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>` + open + `<create-folder id="a" name="&xxe;"/></xmap>`, xmap.CodeBadRequest, "DTDs"},
		{"XXE parameter entity", head + `<!DOCTYPE xmap [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x.dtd"> %p;]>` + open + `</xmap>`, xmap.CodeBadRequest, "DTDs"},
		{"billion laughs", head + `<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>` + open + `<create-folder id="a" name="&lol3;"/></xmap>`, xmap.CodeBadRequest, "DTDs"},
		{"DOCTYPE without subset", head + `<!DOCTYPE xmap>` + open + `</xmap>`, xmap.CodeBadRequest, "DTDs"},
		{"processing instruction", doc(`<?php echo 1; ?>`), xmap.CodeBadRequest, "processing instructions"},
		{"stylesheet PI", head + `<?xml-stylesheet href="x.xsl"?>` + open + `</xmap>`, xmap.CodeBadRequest, "processing instructions"},
		{"declaration not first", "\n" + head + open + `</xmap>`, xmap.CodeBadRequest, "processing instructions"},
		{"XML 1.1", `<?xml version="1.1"?>` + open + `</xmap>`, xmap.CodeBadRequest, "version"},
		{"Latin-1", `<?xml version="1.0" encoding="ISO-8859-1"?>` + open + `</xmap>`, xmap.CodeBadRequest, "encoding"},
		{"text outside root", head + "x" + open + `</xmap>`, xmap.CodeBadRequest, "outside the root"},
		{"two roots", doc("") + open + `</xmap>`, xmap.CodeBadRequest, "more than one root"},
		{"trailing text", doc("") + "x", xmap.CodeBadRequest, "outside the root"},

		// Wrong document.
		{"wrong root", head + `<imap xmlns="urn:cryptomail:xmap:1" version="1"/>`, xmap.CodeBadRequest, "root element"},
		{"no namespace", head + `<xmap version="1"/>`, xmap.CodeBadRequest, "namespace"},
		{"other namespace", head + `<xmap xmlns="urn:example:other" version="1"/>`, xmap.CodeBadRequest, "namespace"},
		{"child in other namespace", doc(`<list-folders xmlns="urn:example:other" id="a"/>`), xmap.CodeBadRequest, "namespace"},
		{"prefixed child", doc(`<p:list-folders xmlns:p="urn:example:other" id="a"/>`), xmap.CodeBadRequest, "namespace"},
		{"namespace version 2", head + `<xmap xmlns="urn:cryptomail:xmap:2" version="2"/>`, xmap.CodeUnsupportedVersion, ""},
		{"version 2", head + `<xmap xmlns="urn:cryptomail:xmap:1" version="2"><future-thing/></xmap>`, xmap.CodeUnsupportedVersion, ""},
		{"version 2 with new root attribute", head + `<xmap xmlns="urn:cryptomail:xmap:1" mode="fast" version="2"/>`, xmap.CodeUnsupportedVersion, ""},
		{"missing version", head + `<xmap xmlns="urn:cryptomail:xmap:1"/>`, xmap.CodeBadRequest, "version"},
		{"root attribute", head + `<xmap xmlns="urn:cryptomail:xmap:1" version="1" mode="x"/>`, xmap.CodeBadRequest, "unknown attribute"},

		// Schema.
		{"unknown request", doc(`<select id="a"/>`), xmap.CodeBadRequest, "unknown request"},
		{"missing id", doc(`<list-folders/>`), xmap.CodeBadRequest, `"id"`},
		{"invalid id", doc(`<list-folders id="a b"/>`), xmap.CodeBadRequest, "invalid id"},
		{"long id", doc(`<list-folders id="` + strings.Repeat("a", xmap.MaxIDLen+1) + `"/>`), xmap.CodeBadRequest, "invalid id"},
		{"duplicate request id", doc(`<list-folders id="a"/><list-folders id="a"/>`), xmap.CodeBadRequest, "twice"},
		{"unknown attribute", doc(`<list-folders id="a" all="true"/>`), xmap.CodeBadRequest, "unknown attribute"},
		{"duplicate attribute", doc(`<list-folders id="a" id="b"/>`), xmap.CodeBadRequest, "duplicate attribute"},
		{"namespaced attribute", doc(`<list-folders id="a" xml:lang="en"/>`), xmap.CodeBadRequest, "namespaced attribute"},
		{"text in a container", doc(`<list-folders id="a">hello</list-folders>`), xmap.CodeBadRequest, "holds no text"},
		{"element in a text element", doc(`<fetch id="a"><id><b/></id></fetch>`), xmap.CodeBadRequest, "holds no elements"},
		{"unknown child", doc(`<list-folders id="a"><folder/></list-folders>`), xmap.CodeBadRequest, "unexpected element"},
		{"ids missing", doc(`<fetch id="a"/>`), xmap.CodeBadRequest, "no <id>"},
		{"id repeated", doc(`<fetch id="a"><id>1</id><id>1</id></fetch>`), xmap.CodeBadRequest, "twice"},
		{"id with spaces", doc(`<fetch id="a"><id> 1</id></fetch>`), xmap.CodeBadRequest, "invalid id"},
		{"fetch parts", doc(`<fetch id="a" parts="headers"><id>1</id></fetch>`), xmap.CodeBadRequest, "parts"},
		{"folder and folder-id", doc(`<expunge id="a" folder="Trash" folder-id="4"/>`), xmap.CodeBadRequest, "exactly one"},
		{"no folder", doc(`<expunge id="a"/>`), xmap.CodeBadRequest, "exactly one"},
		{"folder name with leading space", doc(`<create-folder id="a" name=" x"/>`), xmap.CodeBadRequest, "folder name"},
		{"folder name with control", doc(`<create-folder id="a" name="a&#x9;b"/>`), xmap.CodeBadRequest, "folder name"},
		{"folder name too long", doc(`<create-folder id="a" name="` + strings.Repeat("é", 128) + `"/>`), xmap.CodeBadRequest, "folder name"},
		{"sort", doc(`<list-messages id="a" folder="INBOX" sort="subject"/>`), xmap.CodeBadRequest, "sort"},
		{"limit 0", doc(`<list-messages id="a" folder="INBOX" limit="0"/>`), xmap.CodeBadRequest, "limit"},
		{"limit signed", doc(`<list-messages id="a" folder="INBOX" limit="+5"/>`), xmap.CodeBadRequest, "limit"},
		{"cursor", doc(`<list-messages id="a" folder="INBOX" cursor="a b"/>`), xmap.CodeBadRequest, "cursor"},
		{"flag action", doc(`<update-flags id="a" action="toggle" flags="\Seen"><id>1</id></update-flags>`), xmap.CodeBadRequest, "action"},
		{"unknown system flag", doc(`<update-flags id="a" action="add" flags="\Recent"><id>1</id></update-flags>`), xmap.CodeBadRequest, "invalid flag"},
		{"keyword with bracket", doc(`<update-flags id="a" action="add" flags="a]b"><id>1</id></update-flags>`), xmap.CodeBadRequest, "invalid flag"},
		{"keyword too long", doc(`<update-flags id="a" action="add" flags="` + strings.Repeat("k", xmap.MaxKeywordLen+1) + `"><id>1</id></update-flags>`), xmap.CodeBadRequest, "invalid flag"},
		{"set deleted", doc(`<update-flags id="a" action="add" flags="\Deleted"><id>1</id></update-flags>`), xmap.CodeBadRequest, "delete only"},
		{"append deleted", doc(`<append id="a" folder="INBOX" flags="\Deleted"><body>AQID</body></append>`), xmap.CodeBadRequest, "delete only"},
		{"flag twice, any case", doc(`<update-flags id="a" action="add" flags="$Work $work"><id>1</id></update-flags>`), xmap.CodeBadRequest, "twice"},
		{"append without body", doc(`<append id="a" folder="INBOX"><summary>AQID</summary></append>`), xmap.CodeBadRequest, "missing <body>"},
		{"body twice", doc(`<append id="a" folder="INBOX"><body>AQID</body><body>AQID</body></append>`), xmap.CodeBadRequest, "twice"},
		{"bad base64", doc(`<append id="a" folder="INBOX"><body>AQI!</body></append>`), xmap.CodeBadRequest, "base64"},
		{"empty blob", doc(`<append id="a" folder="INBOX"><body></body></append>`), xmap.CodeBadRequest, "empty"},
		{"bad time", doc(`<append id="a" folder="INBOX" received="yesterday"><body>AQID</body></append>`), xmap.CodeBadRequest, "RFC 3339"},
		{"one-digit hour", doc(`<append id="a" folder="INBOX" received="2025-03-01T9:30:00Z"><body>AQID</body></append>`), xmap.CodeBadRequest, "RFC 3339"},
		{"zero time", doc(`<append id="a" folder="INBOX" received="0001-01-01T00:00:00Z"><body>AQID</body></append>`), xmap.CodeBadRequest, "RFC 3339"},
		{"time with space", doc(`<append id="a" folder="INBOX" received="2025-03-01 09:30:00Z"><body>AQID</body></append>`), xmap.CodeBadRequest, "RFC 3339"},
		{"bad address", doc(`<salt-lookup id="a" address="Alice &lt;a@example.org&gt;"/>`), xmap.CodeBadRequest, "address"},
		{"address without domain", doc(`<salt-lookup id="a" address="alice@"/>`), xmap.CodeBadRequest, "address"},
		{"send without rcpt", doc(`<send id="a"><body>AQID</body></send>`), xmap.CodeBadRequest, "no <rcpt>"},
		{"send without body", doc(`<send id="a"><rcpt address="b@example.org" encrypted="true"/></send>`), xmap.CodeBadRequest, "missing <body>"},
		{"rcpt without encrypted", doc(`<send id="a"><rcpt address="b@example.org"/><body>AQID</body></send>`), xmap.CodeBadRequest, "encrypted"},
		{"plaintext body missing", doc(`<send id="a"><rcpt address="b@example.org" encrypted="false" allow-plaintext="true"/><body>AQID</body></send>`), xmap.CodeBadRequest, "plaintext-body"},
		{"plaintext body unneeded", doc(`<send id="a"><rcpt address="b@example.org" encrypted="true"/><body>AQID</body><plaintext-body>AQID</plaintext-body></send>`), xmap.CodeBadRequest, "plaintext-body"},
		{"rcpt twice", doc(`<send id="a"><rcpt address="b@example.org" encrypted="true"/><rcpt address="B@example.org" encrypted="true"/><body>AQID</body></send>`), xmap.CodeBadRequest, "twice"},
		{"sender given", doc(`<send id="a" from="ceo@example.org"><rcpt address="b@example.org" encrypted="true"/><body>AQID</body></send>`), xmap.CodeBadRequest, "unknown attribute"},
		{"invite with space", doc(`<signup id="a" invite="a b" address="a@example.org"><public-key>AQID</public-key><login-key>` + loginKey + `</login-key>` + kdf + `<sealed-key>AQID</sealed-key></signup>`), xmap.CodeBadRequest, "invite"},
		{"signup without public key", doc(`<signup id="a" invite="x" address="a@example.org"><login-key>` + loginKey + `</login-key>` + kdf + `<sealed-key>AQID</sealed-key></signup>`), xmap.CodeBadRequest, "public-key"},
		{"login key short", passphrase("AQID", kdf), xmap.CodeBadRequest, "32 bytes"},
		{"kdf missing", passphrase(loginKey, ""), xmap.CodeBadRequest, "missing <kdf>"},
		{"kdf alg", passphrase(loginKey, `<kdf alg="scrypt" salt="/iPXVtEeFvSvJMAvsJn8Vw==" time="3" memory="65536" threads="4"/>`), xmap.CodeBadRequest, "argon2id"},
		{"kdf salt short", passphrase(loginKey, `<kdf alg="argon2id" salt="AQID" time="3" memory="65536" threads="4"/>`), xmap.CodeBadRequest, "salt"},
		{"kdf time 0", passphrase(loginKey, `<kdf alg="argon2id" salt="/iPXVtEeFvSvJMAvsJn8Vw==" time="0" memory="65536" threads="4"/>`), xmap.CodeBadRequest, "time"},
		{"kdf memory huge", passphrase(loginKey, `<kdf alg="argon2id" salt="/iPXVtEeFvSvJMAvsJn8Vw==" time="3" memory="99999999" threads="4"/>`), xmap.CodeBadRequest, "memory"},
		{"kdf memory below the floor", passphrase(loginKey, `<kdf alg="argon2id" salt="/iPXVtEeFvSvJMAvsJn8Vw==" time="3" memory="19455" threads="4"/>`), xmap.CodeBadRequest, "memory"},
		{"kdf time below the floor", passphrase(loginKey, `<kdf alg="argon2id" salt="/iPXVtEeFvSvJMAvsJn8Vw==" time="1" memory="65536" threads="4"/>`), xmap.CodeBadRequest, "time"},
		{"kdf threads", passphrase(loginKey, `<kdf alg="argon2id" salt="/iPXVtEeFvSvJMAvsJn8Vw==" time="3" memory="65536" threads="17"/>`), xmap.CodeBadRequest, "threads"},
		{"changes since invalid", doc(`<changes id="a" since=""/>`), xmap.CodeBadRequest, "since"},
		{"wait without timeout", doc(`<wait id="a" since="1"/>`), xmap.CodeBadRequest, "timeout"},
		{"put-contact without contact", doc(`<put-contact id="a"/>`), xmap.CodeBadRequest, "missing <contact>"},
		{"public-keys empty", doc(`<public-keys id="a"/>`), xmap.CodeBadRequest, "no <address>"},
		{"get-account names a user", doc(`<get-account id="a" address="bob@example.org"/>`), xmap.CodeBadRequest, "unknown attribute"},
		{"get-account with child", doc(`<get-account id="a"><address>bob@example.org</address></get-account>`), xmap.CodeBadRequest, "unexpected element"},

		// Limits.
		{"too deep", doc(deep), xmap.CodeLimitExceeded, "deeper"},
		{"too many requests", doc(strings.Repeat(`<logout id="x"/>`, xmap.MaxBatchSize+1)), xmap.CodeLimitExceeded, "requests"},
		{"too many ids", doc(`<fetch id="a">` + ids(xmap.MaxIDs+1) + `</fetch>`), xmap.CodeLimitExceeded, "ids"},
		{"too many attributes", doc(`<list-folders id="a"` + manyAttrs(xmap.MaxAttributes) + `/>`), xmap.CodeLimitExceeded, "attributes"},
		{"too many flags", doc(`<update-flags id="a" action="add" flags="` + manyKeywords(xmap.MaxFlags+1) + `"><id>1</id></update-flags>`), xmap.CodeLimitExceeded, "flags"},
		{"too many recipients", doc(`<send id="a">` + manyRcpts(xmap.MaxRecipients+1) + `<body>AQID</body></send>`), xmap.CodeLimitExceeded, "recipients"},
		{"too many addresses", doc(`<public-keys id="a">` + manyAddresses(xmap.MaxIDs+1) + `</public-keys>`), xmap.CodeLimitExceeded, "addresses"},
		{"page too large", doc(`<list-messages id="a" folder="INBOX" limit="201"/>`), xmap.CodeLimitExceeded, "limit"},
		{"max-changes too large", doc(`<changes id="a" since="1" max-changes="5001"/>`), xmap.CodeLimitExceeded, "max-changes"},
		{"wait too long", doc(`<wait id="a" since="1" timeout="121"/>`), xmap.CodeLimitExceeded, "timeout"},
		{"too many tokens", doc(strings.Repeat("<!---->", xmap.MaxTokens)), xmap.CodeLimitExceeded, "tokens"},
		{"attribute too large", doc(`<create-folder id="a" name="` + strings.Repeat("x", xmap.MaxAttributeSize+1) + `"/>`), xmap.CodeTooLarge, "attribute"},
		{"summary too large", doc(`<append id="a" folder="INBOX"><body>AQID</body><summary>` + strings.Repeat("A", 50000) + `</summary></append>`), xmap.CodeTooLarge, "summary"},
		{"error text too large", head + open + `<error code="x">` + strings.Repeat("x", 2000) + `</error></xmap>`, xmap.CodeTooLarge, "error"},
		{"short text too large", doc(`<fetch id="a"><id>` + strings.Repeat("1", 400) + `</id></fetch>`), xmap.CodeTooLarge, "id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := xmap.DecodeRequest(strings.NewReader(tc.doc))
			if err == nil {
				t.Fatalf("decoded: %+v", b)
			}
			var pe *xmap.ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v, want *ProtocolError", err, err)
			}
			if pe.Code != tc.code {
				t.Fatalf("code %s (%s), want %s", pe.Code, pe.Message, tc.code)
			}
			if !errors.Is(err, &xmap.Error{Code: tc.code}) {
				t.Errorf("errors.Is by code failed")
			}
			if tc.text != "" && !strings.Contains(pe.Message, tc.text) {
				t.Errorf("message %q does not mention %q", pe.Message, tc.text)
			}
			// The message never echoes a value back at length (a secret, a body).
			if len(pe.Message) > 300 {
				t.Errorf("message too long: %d bytes", len(pe.Message))
			}
		})
	}
}

func manyAttrs(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, ` a%d="x"`, i)
	}
	return b.String()
}

func manyKeywords(n int) string {
	k := make([]string, n)
	for i := range k {
		k[i] = fmt.Sprintf("k%d", i)
	}
	return strings.Join(k, " ")
}

func manyRcpts(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `<rcpt address="r%d@example.org" encrypted="true"/>`, i)
	}
	return b.String()
}

func manyAddresses(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `<address>r%d@example.org</address>`, i)
	}
	return b.String()
}

var spaces [4096]byte

func init() {
	for i := range spaces {
		spaces[i] = ' '
	}
}

// endless yields a valid-looking document that never ends, counting what was read.
type endless struct {
	prefix []byte
	read   int64
}

func (e *endless) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(e.prefix) > 0 {
			c := copy(p[n:], e.prefix)
			e.prefix = e.prefix[c:]
			n += c
			continue
		}
		n += copy(p[n:], spaces[:])
	}
	e.read += int64(n)
	return n, nil
}

// TestDecodeTooLarge: an endless document is refused once it passes MaxDocumentSize,
// without reading (much) further.
func TestDecodeTooLarge(t *testing.T) {
	for _, prefix := range []string{
		head + open, // white space between requests
		head + open + `<append id="a" folder="x"><body>`, // a body that never ends
	} {
		src := &endless{prefix: []byte(prefix)}
		_, err := xmap.DecodeRequest(src)
		if !errors.Is(err, xmap.ErrTooLarge) {
			t.Fatalf("got %v, want too-large", err)
		}
		if src.read > xmap.MaxDocumentSize+64<<10 {
			t.Errorf("read %d bytes, limit %d", src.read, xmap.MaxDocumentSize)
		}
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestDecodeReadError(t *testing.T) {
	_, err := xmap.DecodeRequest(io.MultiReader(strings.NewReader(head+open), failingReader{}))
	if !errors.Is(err, xmap.ErrInternal) {
		t.Fatalf("got %v, want internal", err)
	}
	if strings.Contains(err.Error(), "connection reset") {
		t.Errorf("error %q shows the reader's error", err)
	}
}

// TestDecodeAccepts covers documents that look odd but are valid.
func TestDecodeAccepts(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want xmap.Command
	}{
		{"no declaration", open + `<list-folders id="a"/></xmap>`, &xmap.ListFolders{}},
		{"prefixed root", `<x:xmap xmlns:x="urn:cryptomail:xmap:1" version="1"><x:list-folders id="a"/></x:xmap>`, &xmap.ListFolders{}},
		{"comments", doc(`<!-- hi --><list-folders id="a"><!-- there --></list-folders>`), &xmap.ListFolders{}},
		{"entities and references", doc(`<create-folder id="a" name="R&amp;D &#x263A;"/>`), &xmap.CreateFolder{FolderName: "R&D ☺"}},
		{"CDATA base64 with line breaks", doc("<append id=\"a\" folder-id=\"3\"><body><![CDATA[AQ\r\n  ID]]></body></append>"), &xmap.Append{Folder: xmap.FolderRef{ID: "3"}, Body: []byte{1, 2, 3}}},
		{"keywords lowered", doc(`<update-flags id="a" action="replace" flags="$Work \Seen"><id>7</id></update-flags>`), &xmap.UpdateFlags{Action: xmap.FlagsReplace, Flags: []xmap.Flag{"$work", xmap.FlagSeen}, IDs: []string{"7"}}},
		{"replace with nothing", doc(`<update-flags id="a" action="replace" flags=""><id>7</id></update-flags>`), &xmap.UpdateFlags{Action: xmap.FlagsReplace, IDs: []string{"7"}}},
		{"time zone normalised", doc(`<append id="a" folder="INBOX" received="2025-03-01T10:30:00+01:00"><body>AQID</body></append>`), &xmap.Append{Folder: xmap.FolderRef{Name: "INBOX"}, Received: mustTime("2025-03-01T09:30:00Z"), Body: []byte{1, 2, 3}}},
		{"non-ASCII address", doc(`<salt-lookup id="a" address="jörg@bücher.example"/>`), &xmap.SaltLookup{Address: "jörg@bücher.example"}},
		{"wait 0", doc(`<wait id="a" since="5" timeout="0"/>`), &xmap.Wait{Since: "5"}},
		{"get-account", doc(`<get-account id="a"></get-account>`), &xmap.GetAccount{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := xmap.DecodeRequest(strings.NewReader(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Requests) != 1 || b.Requests[0].ID != "a" {
				t.Fatalf("requests %+v", b.Requests)
			}
			if got := b.Requests[0].Command; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
	b, err := xmap.DecodeRequest(strings.NewReader(doc("")))
	if err != nil || len(b.Requests) != 0 {
		t.Errorf("empty batch: %v %v", b, err)
	}
}

func TestDecodeResponseErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
	}{
		{"unknown result", doc(`<select id="a"/>`)},
		{"error with result", doc(`<logout id="a"><error code="denied">x</error><folder id="1" name="x" total="0" unseen="0"/></logout>`)},
		{"top-level error not alone", doc(`<error code="internal">x</error><logout id="a"/>`)},
		{"bad error code", doc(`<logout id="a"><error code="Not Found">x</error></logout>`)},
		{"list without state", doc(`<list-messages id="a" folder-id="1" total="0"/>`)},
		{"send without message", doc(`<send id="a"><rcpt address="b@example.org" status="queued"/></send>`)},
		{"bad status", doc(`<send id="a"><message id="1" folder-id="2" size="1" received="2025-01-01T00:00:00Z"/><rcpt address="b@example.org" status="lost"/></send>`)},
		{"changes bad kind", doc(`<changes id="a" state="1" has-more="false"><created kind="user" id="1"/></changes>`)},
		{"get-account without account", doc(`<get-account id="a"/>`)},
		{"get-account account twice", doc(`<get-account id="a">` + account("a@example.org", pubKey+kdf+sealedKey) + account("a@example.org", pubKey+kdf+sealedKey) + `</get-account>`)},
		{"account without address", doc(`<get-account id="a"><account>` + pubKey + kdf + sealedKey + `</account></get-account>`)},
		{"account bad address", doc(`<get-account id="a">` + account("alice", pubKey+kdf+sealedKey) + `</get-account>`)},
		{"account without public key", doc(`<get-account id="a">` + account("a@example.org", kdf+sealedKey) + `</get-account>`)},
		{"account without kdf", doc(`<get-account id="a">` + account("a@example.org", pubKey+sealedKey) + `</get-account>`)},
		{"account without sealed key", doc(`<get-account id="a">` + account("a@example.org", pubKey+kdf) + `</get-account>`)},
		{"account sealed key twice", doc(`<get-account id="a">` + account("a@example.org", pubKey+kdf+sealedKey+sealedKey) + `</get-account>`)},
		{"account with login key", doc(`<get-account id="a">` + account("a@example.org", pubKey+`<login-key>`+loginKey+`</login-key>`+kdf+sealedKey) + `</get-account>`)},
		{"account kdf below the floor", doc(`<get-account id="a">` + account("a@example.org", pubKey+`<kdf alg="argon2id" salt="/iPXVtEeFvSvJMAvsJn8Vw==" time="1" memory="65536" threads="4"/>`+sealedKey) + `</get-account>`)},
		{"account empty sealed key", doc(`<get-account id="a">` + account("a@example.org", pubKey+kdf+`<sealed-key/>`) + `</get-account>`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if r, err := xmap.DecodeResponse(strings.NewReader(tc.doc)); !errors.Is(err, xmap.ErrBadRequest) {
				t.Fatalf("got %+v, %v; want bad-request", r, err)
			}
		})
	}
	// An unknown error code from a newer server is kept, not refused.
	r, err := xmap.DecodeResponse(strings.NewReader(doc(`<logout id="a"><error code="try-later">x</error></logout>`)))
	if err != nil || r.Responses[0].Err.Code != "try-later" {
		t.Fatalf("got %+v, %v", r, err)
	}
}

func TestErrorsIs(t *testing.T) {
	wrapped := fmt.Errorf("shard: %w", xmap.Errorf(xmap.CodeNotFound, "no such folder"))
	if !errors.Is(wrapped, xmap.ErrNotFound) || errors.Is(wrapped, xmap.ErrDenied) {
		t.Error("errors.Is by code")
	}
	if !errors.Is(&xmap.ProtocolError{Code: xmap.CodeTooLarge}, xmap.ErrTooLarge) {
		t.Error("ProtocolError is ErrTooLarge")
	}
	if errors.Is(xmap.ErrNotFound, errors.New("not found")) {
		t.Error("matched a foreign error")
	}
}

func TestEncodeEscapes(t *testing.T) {
	var buf bytes.Buffer
	resp := &xmap.BatchResponse{Responses: []xmap.Response{
		{ID: "a", Name: "create-folder", Result: &xmap.CreateFolderResult{Folder: xmap.Folder{ID: "1", Name: "a\"<&>'b"}}},
		{ID: "b", Name: "logout", Err: &xmap.Error{Code: xmap.CodeDenied, Message: "<script>\r\n\t\x01\xff\"]]>"}},
	}}
	if err := xmap.EncodeResponse(&buf, resp); err != nil {
		t.Fatal(err)
	}
	got, err := xmap.DecodeResponse(&buf)
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if name := got.Responses[0].Result.(*xmap.CreateFolderResult).Folder.Name; name != "a\"<&>'b" {
		t.Errorf("name %q", name)
	}
	if msg := got.Responses[1].Err.Message; msg != "<script>\r\n\t\uFFFD\uFFFD\"]]>" {
		t.Errorf("message %q", msg)
	}
}

// TestGetAccountRoundTrip: a get-account result encodes to the canonical form and decodes
// back to the same account, as a client on a new device reads it.
func TestGetAccountRoundTrip(t *testing.T) {
	acct := xmap.Account{
		Address:   "alice@example.org",
		PublicKey: []byte{0xc6, 0x33, 0x04, 1, 2, 3},
		KDF:       xmap.KDF{Alg: xmap.KDFArgon2id, Salt: bytes.Repeat([]byte{0xfe}, 16), Time: 3, Memory: 65536, Threads: 4},
		SealedKey: []byte("sealed private key"),
	}
	resp := &xmap.BatchResponse{Responses: []xmap.Response{
		{ID: "g1", Name: "get-account", Result: &xmap.GetAccountResult{Account: acct}},
		{ID: "g2", Name: "get-account", Err: &xmap.Error{Code: xmap.CodeDenied, Message: "get-account needs a logged-in session"}},
	}}
	var buf bytes.Buffer
	if err := xmap.EncodeResponse(&buf, resp); err != nil {
		t.Fatal(err)
	}
	want := head + open + "\n" +
		`  <get-account id="g1">` + "\n" +
		`    <account address="alice@example.org">` + "\n" +
		`      <public-key>xjMEAQID</public-key>` + "\n" +
		`      <kdf alg="argon2id" salt="/v7+/v7+/v7+/v7+/v7+/g==" time="3" memory="65536" threads="4"/>` + "\n" +
		`      <sealed-key>c2VhbGVkIHByaXZhdGUga2V5</sealed-key>` + "\n" +
		`    </account>` + "\n" +
		`  </get-account>` + "\n" +
		`  <get-account id="g2">` + "\n" +
		`    <error code="denied">get-account needs a logged-in session</error>` + "\n" +
		`  </get-account>` + "\n" +
		`</xmap>` + "\n"
	if buf.String() != want {
		t.Errorf("encoded\n%s\nwant\n%s", buf.String(), want)
	}
	got, err := xmap.DecodeResponse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, resp) {
		t.Errorf("round trip\ngot  %#v\nwant %#v", got, resp)
	}

	req := &xmap.Batch{Requests: []xmap.Request{{ID: "g1", Command: &xmap.GetAccount{}}}}
	buf.Reset()
	if err := xmap.EncodeRequest(&buf, req); err != nil {
		t.Fatal(err)
	}
	if want := head + open + "\n" + `  <get-account id="g1"/>` + "\n</xmap>\n"; buf.String() != want {
		t.Errorf("request encoded\n%s\nwant\n%s", buf.String(), want)
	}
	if b, err := xmap.DecodeRequest(&buf); err != nil || !reflect.DeepEqual(b, req) {
		t.Errorf("request round trip: %#v, %v", b, err)
	}
}

// summary-by: the three origins read as themselves, an unknown one as the cautious
// "sender" (never an error, so a newer server's listings stay readable), none as "".
func TestDecodeSummaryBy(t *testing.T) {
	for attr, want := range map[string]xmap.SummaryOrigin{
		` summary-by="server"`: xmap.SummaryByServer, ` summary-by="owner"`: xmap.SummaryByOwner,
		` summary-by="sender"`: xmap.SummaryBySender, ` summary-by="checked"`: xmap.SummaryBySender, ``: "",
	} {
		r, err := xmap.DecodeResponse(strings.NewReader(doc(`<fetch id="f"><message id="1" folder-id="1" size="1" received="2025-03-01T09:00:00Z"` + attr + `/></fetch>`)))
		if err != nil || len(r.Responses) != 1 {
			t.Fatalf("%q: %v", attr, err)
		}
		if got := r.Responses[0].Result.(*xmap.FetchResult).Messages[0].SummaryBy; got != want {
			t.Errorf("%q: %q, want %q", attr, got, want)
		}
		if got := xmap.SummaryOrigin(want).Trusted(); got != (want == xmap.SummaryByServer || want == xmap.SummaryByOwner) {
			t.Errorf("%q trusted %v", want, got)
		}
	}
}
