package main

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-message/mail"
)

// fakeIMAP answers each command line with the canned response for its verb.
func fakeIMAP(t *testing.T, replies map[string]string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("* OK ready\r\n"))
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			f := strings.Fields(line)
			if len(f) < 2 {
				return
			}
			tag, verb := f[0], f[1]
			c.Write([]byte(strings.ReplaceAll(replies[verb], "TAG", tag)))
		}
	}()
	return l.Addr().String()
}

func TestIMAPSelectFetch(t *testing.T) {
	envelope := func(i int, subject string) string {
		return "* " + string(rune('0'+i)) + " FETCH (FLAGS () ENVELOPE (\"date\" " + subject + " NIL NIL NIL NIL NIL NIL NIL NIL))\r\n"
	}
	tests := []struct {
		name    string
		fetch   string
		exists  int
		wantErr string
	}{
		{"quoted subjects", envelope(1, `"a"`) + envelope(2, `"b"`) + "TAG OK done\r\n", 2, ""},
		// A literal may hold CRLF and text that looks like a tagged reply.
		{"literal subject", envelope(1, "{12}\r\na3 OK fake\r\n") + envelope(2, `"b"`) + "TAG OK done\r\n", 2, ""},
		{"missing message", envelope(1, `"a"`) + "TAG OK done\r\n", 0, "FETCH returned 1 messages, want 2"},
		{"NO", "TAG NO nope\r\n", 0, "imap FETCH: NO nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeIMAP(t, map[string]string{
				"LOGIN":  "TAG OK logged in\r\n",
				"SELECT": "* 2 EXISTS\r\n* FLAGS (\\Seen)\r\nTAG OK [READ-WRITE] selected\r\n",
				"FETCH":  tc.fetch,
				"LOGOUT": "* BYE\r\nTAG OK bye\r\n",
			})
			ic, err := dialIMAP(context.Background(), addr)
			if err != nil {
				t.Fatal(err)
			}
			defer ic.close()
			if err := ic.login("u", []byte(`p"w\`)); err != nil {
				t.Fatal(err)
			}
			exists, err := ic.selectFetch(50)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || exists != tc.exists {
				t.Fatalf("exists %d, err %v; want %d", exists, err, tc.exists)
			}
		})
	}
}

func TestInbox(t *testing.T) {
	dir := t.TempDir()
	if err := cmdInbox(context.Background(), []string{"-n", "40", "-total", "4000000", "-to", "x@example.test", "-out", dir}); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "msgs", "*.eml"))
	if len(files) != 40 {
		t.Fatalf("%d messages, want 40", len(files))
	}
	var total int64
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		total += int64(len(b))
		r, err := mail.CreateReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if s, _ := r.Header.Subject(); s == "" {
			t.Errorf("%s: no subject", f)
		}
		for {
			if _, err := r.NextPart(); err != nil {
				break
			}
		}
	}
	if total < 3_000_000 || total > 5_000_000 {
		t.Errorf("total %d bytes, want about 4 MB", total)
	}
	mbox, err := os.ReadFile(filepath.Join(dir, "inbox.mbox"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(mbox, []byte("\nFrom ")) + 1; !bytes.HasPrefix(mbox, []byte("From ")) || n != 40 {
		t.Errorf("mbox has %d From_ lines, want 40", n)
	}
	if bytes.Contains(mbox, []byte("\r\n")) {
		t.Error("mbox has CRLF line ends")
	}
}
