// Command lmtpload measures CryptoMail's LMTP delivery rate end to end:
// a real server (in this process, on loopback) with real users, each message
// encrypted to its recipient's key and committed durably before its 250.
// It prints a Markdown table of msgs/s.
//
//	go run ./bench/lmtpload [-n 2000] [-size 4096] [-sessions 1,10] [-users 1,1000] [-dir DIR]
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	cmcrypto "cryptomail/crypto"
	"cryptomail/server"
)

func main() {
	n := flag.Int("n", 2000, "messages per row")
	size := flag.Int("size", 4096, "message size in bytes")
	sessionsFlag := flag.String("sessions", "1,10", "comma-separated parallel LMTP session counts")
	usersFlag := flag.String("users", "1,1000", "comma-separated user counts (messages spread round-robin)")
	dir := flag.String("dir", "", "data directory (default: a temp dir, removed after); put it on the disk you want to measure")
	flag.Parse()
	sessions, err1 := ints(*sessionsFlag)
	users, err2 := ints(*usersFlag)
	if err := errors.Join(err1, err2); err != nil {
		fmt.Fprintln(os.Stderr, "lmtpload:", err)
		os.Exit(2)
	}
	if err := run(*n, *size, sessions, users, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "lmtpload:", err)
		os.Exit(1)
	}
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("bad count %q", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func run(n, size int, sessions, users []int, dir string) error {
	fmt.Printf("LMTP delivery, %d-byte messages, %d messages per row, GOMAXPROCS=%d, %s\n\n", size, n, runtime.GOMAXPROCS(0), runtime.Version())
	fmt.Println("| users | sessions | messages | seconds | msgs/s |")
	fmt.Println("|---:|---:|---:|---:|---:|")
	msg := makeMessage(size)
	for _, u := range users {
		for _, s := range sessions {
			rate, secs, err := row(n, u, s, msg, dir)
			if err != nil {
				return err
			}
			fmt.Printf("| %d | %d | %d | %.2f | %.0f |\n", u, s, n, secs, rate)
		}
	}
	return nil
}

func makeMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: Load <load@elsewhere.test>\r\nTo: someone@example.test\r\nSubject: load test\r\nMessage-ID: <load@elsewhere.test>\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	raw := make([]byte, size)
	rand.Read(raw)
	enc := base64.StdEncoding.EncodeToString(raw)
	for b.Len() < size {
		line := enc[:min(76, len(enc))]
		enc = enc[len(line):]
		if enc == "" {
			enc = base64.StdEncoding.EncodeToString(raw)
		}
		b.WriteString(line)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

func row(n, nusers, nsessions int, msg []byte, base string) (rate, secs float64, err error) {
	dir, err := os.MkdirTemp(base, "lmtpload-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	conf := fmt.Sprintf("[server]\ndomains = [\"example.test\"]\ndata_dir = \"data\"\n[storage]\nhomes = [\"homes\"]\n[lmtp]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"\"\n")
	cfg, err := server.ParseConfig([]byte(conf), "lmtpload.toml", dir)
	if err != nil {
		return 0, 0, err
	}
	ctx := context.Background()
	srv, err := server.New(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return 0, 0, err
	}
	defer srv.Shutdown(ctx)
	addrs := make([]string, nusers)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("user%05d@example.test", i)
		ent, err := cmcrypto.GenerateKey("Load", addrs[i], nil, time.Now())
		if err != nil {
			return 0, 0, err
		}
		var pub bytes.Buffer
		ent.Serialize(&pub)
		key, err := cmcrypto.ParsePublicKey(pub.Bytes(), time.Now())
		if err != nil {
			return 0, 0, err
		}
		armored, _ := key.Armored()
		if _, err := srv.Store().CreateUser(ctx, addrs[i], armored); err != nil {
			return 0, 0, err
		}
	}
	srv.Start()
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, nsessions)
	start := time.Now()
	for range nsessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := session(srv.Addr("lmtp"), addrs, msg, &next, int64(n)); err != nil {
				errc <- err
			}
		}()
	}
	wg.Wait()
	d := time.Since(start).Seconds()
	close(errc)
	if err := <-errc; err != nil {
		return 0, 0, err
	}
	return float64(n) / d, d, nil
}

// session delivers messages over one LMTP connection until n are taken.
func session(addr string, users []string, msg []byte, next *atomic.Int64, n int64) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("load.test"); err != nil {
		return err
	}
	for {
		i := next.Add(1) - 1
		if i >= n {
			return c.Quit()
		}
		if err := c.Mail("load@elsewhere.test", nil); err != nil {
			return err
		}
		if err := c.Rcpt(users[int(i)%len(users)], nil); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		if _, err := w.Write(msg); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
	}
}
