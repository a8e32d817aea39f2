package sexmap_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cryptomail/xmap/sexmap"
)

func TestLoadOrCreateServerKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "sexmap.key")
	k1, err := sexmap.LoadOrCreateServerKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(k1.Private) != 32 || len(k1.Public) != 32 {
		t.Fatalf("key sizes %d/%d", len(k1.Private), len(k1.Public))
	}
	for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s has mode %04o, want %04o", p, st.Mode().Perm(), want)
		}
	}
	k2, err := sexmap.LoadOrCreateServerKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1.Private, k2.Private) || !bytes.Equal(k1.Public, k2.Public) {
		t.Fatal("a second start got another key")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("left files behind: %v", entries)
	}
	content, _ := os.ReadFile(path)

	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := sexmap.LoadOrCreateServerKey(path)
		if !errors.Is(err, sexmap.ErrKeyFilePermissions) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: %v, want ErrKeyFilePermissions", mode, err)
		}
	}
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := sexmap.LoadOrCreateServerKey(path); err != nil {
		t.Errorf("mode 0400: %v", err)
	}

	secretLine := strings.Split(strings.TrimSpace(string(content)), "\n")[1]
	for name, data := range map[string]string{
		"empty":     "",
		"short key": "# c\nAAAA\n",
		"two keys":  secretLine + "\n" + secretLine + "\n",
		"padded":    secretLine + "=\n",
	} {
		bad := filepath.Join(dir, name+".key")
		if err := os.WriteFile(bad, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := sexmap.LoadOrCreateServerKey(bad)
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), secretLine) {
			t.Errorf("%s: the error quotes the key", name)
		}
	}
}

func TestPublicKeyEncoding(t *testing.T) {
	pub := bytes.Repeat([]byte{0xfb}, 32)
	s := sexmap.EncodePublicKey(pub)
	if len(s) != 43 || strings.ContainsAny(s, "+/=") {
		t.Fatalf("EncodePublicKey = %q", s)
	}
	got, err := sexmap.DecodePublicKey(" " + s + "\n")
	if err != nil || !bytes.Equal(got, pub) {
		t.Fatalf("DecodePublicKey = %x, %v", got, err)
	}
	for _, bad := range []string{"", s[:42], s + "A", s + "=", strings.ReplaceAll(s, "_", "/")} {
		if _, err := sexmap.DecodePublicKey(bad); !errors.Is(err, sexmap.ErrBadPublicKey) {
			t.Errorf("DecodePublicKey(%q): %v", bad, err)
		}
	}
}

func TestPin(t *testing.T) {
	a := bytes.Repeat([]byte{1}, 32)
	b := bytes.Repeat([]byte{1}, 32)
	b[31] = 2
	if err := sexmap.Pin(a, bytes.Clone(a)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range [][2][]byte{{a, b}, {a, a[:31]}, {nil, nil}, {a[:31], a[:31]}} {
		if err := sexmap.Pin(tc[0], tc[1]); !errors.Is(err, sexmap.ErrServerKeyChanged) {
			t.Errorf("Pin(%x, %x) = %v", tc[0], tc[1], err)
		}
	}
}

func TestFakeSalt(t *testing.T) {
	s1 := sexmap.ServerSecret(bytes.Repeat([]byte{1}, 32))
	s2 := sexmap.ServerSecret(bytes.Repeat([]byte{2}, 32))
	a := sexmap.FakeSalt(s1, "nobody@example.org")
	if len(a) != sexmap.SaltSize || !bytes.Equal(a, sexmap.FakeSalt(s1, "nobody@example.org")) {
		t.Fatalf("fake salt %x is not stable or not %d bytes", a, sexmap.SaltSize)
	}
	if bytes.Equal(a, sexmap.FakeSalt(s1, "other@example.org")) || bytes.Equal(a, sexmap.FakeSalt(s2, "nobody@example.org")) {
		t.Fatal("fake salt ignores its inputs")
	}
	e := newEnv(t, nil)
	if !bytes.Equal(e.srv.FakeSalt("x@y"), e.srv.FakeSalt("x@y")) || len(e.srv.FakeSalt("x@y")) != sexmap.SaltSize {
		t.Fatal("Server.FakeSalt")
	}
}

func TestLoadServerKeyNeverCreates(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "data", "sexmap.key")
	if _, err := sexmap.LoadServerKey(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadServerKey(missing) = %v, want os.ErrNotExist", err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Fatalf("LoadServerKey created %v", entries)
	}
	k1, err := sexmap.LoadOrCreateServerKey(path)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := sexmap.LoadServerKey(path)
	if err != nil || !bytes.Equal(k1.Public, k2.Public) {
		t.Fatalf("LoadServerKey = %v; same key %v", err, bytes.Equal(k1.Public, k2.Public))
	}
}
