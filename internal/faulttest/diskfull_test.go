package faulttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cryptomail/internal/testenv"
	"cryptomail/shard"
)

const (
	smallFSSize  = 2 << 20 // the tmpfs holding one home
	fillerSize   = 1 << 20 // a file on it, deleted to free space
	grownFSSize  = 8 << 20 // after `mount -o remount,size=...`
	diskFullBody = 16 << 10
	maxFillMsgs  = 1000 // more than ever fits: a bound, not an expectation
)

// TestDiskFull puts alice's home on a small tmpfs and bob's on the normal
// disk (the metabase stays there too), then delivers every message to both.
// Once the tmpfs is full alice must get 452 4.3.1 while bob still gets 250
// in the same LMTP transaction; delivery to alice must resume once space is
// freed, both by deleting a file and by growing the file system; afterwards
// every file passes its integrity check and every acknowledged message
// decrypts.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	small := filepath.Join(base, "small")
	if err := os.Mkdir(small, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := mountTmpfs(small, smallFSSize); err != nil {
		testenv.Unavailable(t, "disk-full test cannot run: no size-limited tmpfs on %s (mounting one needs Linux and root or CAP_SYS_ADMIN): %v", small, err)
	}
	// Registered before the server's cleanup, so it runs after it.
	t.Cleanup(func() {
		if err := unmount(small); err != nil {
			t.Errorf("umount %s: %v", small, err)
		}
	})

	fullHome, diskHome := filepath.Join(small, "home"), filepath.Join(base, "disk-home")
	in := newInstance(t, options{homes: []string{fullHome, diskHome}})
	const alice, bob = "alice@" + domain, "bob@" + domain
	in.addUser(alice) // homes tie: the first, the tmpfs
	in.addUser(bob)   // then the least loaded: the disk
	st := in.openStore()
	for addr, want := range map[string]string{alice: fullHome, bob: diskHome} {
		u, err := st.User(context.Background(), addr)
		if err != nil || u.Home != want {
			t.Fatalf("%s lives on %q (%v), want %q", addr, u.Home, err, want)
		}
	}
	st.Close()
	filler := filepath.Join(small, "filler")
	if err := os.WriteFile(filler, bytes.Repeat([]byte{0xa5}, fillerSize), 0o600); err != nil {
		t.Fatal(err)
	}

	in.start()
	in.waitReady()
	var w *wire
	connect := func() {
		t.Helper()
		var err error
		if w, err = dialWire(in.lmtpAddr); err != nil {
			t.Fatal(err)
		}
		if err := w.greet(true); err != nil {
			t.Fatal(err)
		}
	}
	connect()
	defer func() { w.Close() }()

	l := newLedger()
	refused := 0
	// send delivers one message to alice and bob and returns their replies.
	send := func() (a, b reply) {
		t.Helper()
		tok := newToken()
		msg := diskFullMessage(tok)
		tr, err := w.transact(true, "filler@elsewhere.test", "", []string{alice, bob}, msg)
		if err != nil || len(tr.final) != 2 {
			in.alive(t)
			t.Fatalf("transaction: %+v: %v\nserver log:\n%s", tr, err, in.logTail(20))
		}
		for i, rcpt := range []string{alice, bob} {
			o := mayStore
			if tr.final[i].code() == 250 {
				o = mustStore
			} else {
				refused++
			}
			l.record(tok, msg, rcpt, o)
		}
		return tr.final[0], tr.final[1]
	}
	stillFull := func(phase string) {
		t.Helper()
		for range 3 {
			a, b := send()
			if !a.has("452 4.3.1 ") {
				t.Errorf("%s, alice (full home) got %q, want 452 4.3.1", phase, a)
			}
			if b.code() != 250 {
				t.Errorf("%s, bob (other home) got %q, want 250", phase, b)
			}
		}
	}
	fill := func(phase string) {
		t.Helper()
		for i := 1; ; i++ {
			if i > maxFillMsgs {
				t.Fatalf("%s: %d messages of %d KiB and alice's home is still not full", phase, maxFillMsgs, diskFullBody>>10)
			}
			a, b := send()
			if b.code() != 250 {
				t.Errorf("%s: bob (other home) got %q, want 250", phase, b)
			}
			if a.code() == 250 {
				continue
			}
			t.Logf("%s: alice's home full after %d messages: %q", phase, i-1, a)
			if !a.has("452 4.3.1 ") {
				t.Errorf("%s: alice (full home) got %q, want 452 4.3.1\nserver log:\n%s", phase, a, in.logTail(10))
			}
			break
		}
		stillFull(phase)
	}
	resumes := func(phase string) {
		t.Helper()
		for i := range 3 {
			if a, _ := send(); a.code() != 250 {
				t.Errorf("%s, delivery %d to alice got %q, want 250\nserver log:\n%s", phase, i+1, a, in.logTail(10))
			}
		}
	}

	fill("first fill")

	// A crash while full: the server must come back and answer the same.
	in.kill()
	in.start()
	in.waitReady()
	connect()
	stillFull("after a restart while full")

	// An account cannot be created on the full home; the failure leaves
	// no metabase row behind.
	const carol = "carol@" + domain
	if err := in.tryAddUser(carol); err == nil {
		t.Errorf("user add %s on a full home succeeded", carol)
	} else {
		t.Logf("user add on the full home: %v", err)
	}
	st = in.openStore()
	if u, err := st.User(context.Background(), carol); !errors.Is(err, shard.ErrNotFound) {
		t.Errorf("after a failed user add: %+v, %v; want no such user", u, err)
	}
	st.Close()
	left, _ := filepath.Glob(shard.ShardPath(fullHome, carol) + "*")
	if len(left) > 0 {
		t.Errorf("the failed user add left files on the full home: %v", left)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	resumes("after deleting a file")
	fill("second fill")
	if err := resizeTmpfs(small, grownFSSize); err != nil {
		t.Fatalf("remount,size=%d: %v", grownFSSize, err)
	}
	resumes("after growing the file system")

	w.write("QUIT\r\n")
	in.stop()
	v := in.verify(t, l)
	t.Logf("%d messages stored, %d copies acknowledged, %d refused (%d of these stored anyway)", v.stored, v.acked, refused, v.unknownKept)
}

// diskFullMessage is about diskFullBody bytes that do not compress.
func diskFullMessage(tok string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s%s\r\nFrom: filler@elsewhere.test\r\nSubject: fill %s\r\n\r\n", tokenHeader, tok, tok)
	raw := make([]byte, 57)
	for b.Len() < diskFullBody {
		rand.Read(raw)
		b.WriteString(base64.StdEncoding.EncodeToString(raw))
		b.WriteString("\r\n")
	}
	return []byte(b.String())
}
