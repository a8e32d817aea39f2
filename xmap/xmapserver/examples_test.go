package xmapserver_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cryptomail/xmap/xmapserver"
	"cryptomail/xmap/xmapserver/memback"
)

var update = flag.Bool("update", false, "rewrite the example responses in ../testdata/examples")

// exampleNow is the fixed clock of the examples in docs/XMAP.md.
var exampleNow = time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC)

func mustB64(s string) []byte {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// exampleBackend is the world the examples of docs/XMAP.md start from: alice was created
// with her public key (user add --public-key) and has three messages waiting; bob has an
// account; alice holds an invite.
func exampleBackend(t *testing.T) *memback.Backend {
	t.Helper()
	b := memback.New(memback.Options{
		Now:          func() time.Time { return exampleNow },
		LocalDomains: []string{"example.org"},
		FakeSaltKey:  []byte("example fake-salt key"),
		Rand:         bytes.NewReader(bytes.Repeat([]byte("example device token, 32 bytes!!"), 4)),
	})
	if err := b.AddUser("alice@example.org", mustB64("xjMEMOiF3ugiBl6z1+QfnVQOJylY8fa6djDRvCNe6a4Nn9s8tUKPwkbaDunU6eX/")); err != nil {
		t.Fatal(err)
	}
	if err := b.AddUser("bob@example.org", mustB64("xjME154rqNko894hs296tFAyXLRZdLYHMrCi5okGZTkopV4S2h8X1/g37wkp3fWB")); err != nil {
		t.Fatal(err)
	}
	b.AddInvite("7Q2K-MX4P-9RTA", "alice@example.org", exampleNow.Add(7*24*time.Hour))
	// Real OpenPGP messages (pgp_examples_test.go), as the server stores.
	mail := []struct{ body, summary, at string }{
		{"inbox1-body.pgp", "inbox1-summary.pgp", "2025-03-01T08:00:00Z"},
		{"inbox2-body.pgp", "inbox2-summary.pgp", "2025-03-01T08:15:00Z"},
		{"inbox3-body.pgp", "inbox3-summary.pgp", "2025-03-01T09:00:00Z"},
	}
	for _, m := range mail {
		at, _ := time.Parse(time.RFC3339, m.at)
		if _, err := b.Deliver(context.Background(), "alice@example.org", exampleMessage(t, m.body), exampleMessage(t, m.summary), at); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// TestExamples runs every example request of docs/XMAP.md, in order, against the memory
// backend and compares the response with the example response: the spec's examples show
// what the server really does. Examples named NN-anon-* run in an anonymous session, the
// others as alice. -update rewrites the responses.
func TestExamples(t *testing.T) {
	b := exampleBackend(t)
	files, err := filepath.Glob("../testdata/examples/*.request.xml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".request.xml")
		doc, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		anon := strings.Contains(name, "-anon-")
		user := "alice@example.org"
		if anon {
			user = ""
		}
		ctx := context.Background()
		if strings.Contains(name, "change-passphrase") {
			// As the first request of a login made for it (docs/XMAP.md).
			ctx = xmapserver.WithLoginProof(ctx)
		}
		got := xmapserver.Handle(ctx, b, user, anon, doc)
		golden := strings.TrimSuffix(f, ".request.xml") + ".response.xml"
		if *update {
			if err := os.WriteFile(golden, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: response differs from %s\ngot:\n%s\nwant:\n%s", name, golden, got, want)
		}
	}
}
