package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// imapConn is the small part of an IMAP4rev1 client (RFC 3501) the benchmark
// needs: tagged commands, untagged responses, server literals.
type imapConn struct {
	conn net.Conn
	r    *bufio.Reader
	tag  int
}

func dialIMAP(ctx context.Context, addr string) (*imapConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	ic := &imapConn{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	greeting, err := ic.line()
	if err != nil {
		conn.Close()
		return nil, err
	}
	if !bytes.HasPrefix(greeting, []byte("* OK")) {
		conn.Close()
		return nil, fmt.Errorf("imap greeting: %.100q", greeting)
	}
	return ic, nil
}

// line reads one response line including any literals it carries.
func (ic *imapConn) line() ([]byte, error) {
	var out []byte
	for {
		l, err := ic.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			out = append(out, l...)
			continue
		}
		if err != nil {
			return nil, err
		}
		l = bytes.TrimRight(l, "\r\n")
		out = append(out, l...)
		// A literal: "{n}" at the end, then n bytes, then the line goes on.
		if i := bytes.LastIndexByte(l, '{'); i >= 0 && bytes.HasSuffix(l, []byte("}")) {
			if n, err := strconv.Atoi(string(l[i+1 : len(l)-1])); err == nil {
				lit := make([]byte, n)
				if _, err := io.ReadFull(ic.r, lit); err != nil {
					return nil, err
				}
				out = append(out, lit...)
				continue
			}
		}
		return out, nil
	}
}

// cmd sends a command and returns the untagged responses; a tagged NO or BAD is
// an error.
func (ic *imapConn) cmd(command string) ([][]byte, error) {
	ic.tag++
	tag := "a" + strconv.Itoa(ic.tag)
	if _, err := io.WriteString(ic.conn, tag+" "+command+"\r\n"); err != nil {
		return nil, err
	}
	var untagged [][]byte
	for {
		l, err := ic.line()
		if err != nil {
			return nil, err
		}
		if rest, ok := bytes.CutPrefix(l, []byte(tag+" ")); ok {
			if !bytes.HasPrefix(rest, []byte("OK")) {
				return nil, fmt.Errorf("imap %s: %.200s", strings.Fields(command)[0], rest)
			}
			return untagged, nil
		}
		untagged = append(untagged, l)
	}
}

func (ic *imapConn) login(user string, pass []byte) error {
	_, err := ic.cmd("LOGIN " + imapQuote(user) + " " + imapQuote(string(pass)))
	return err
}

func (ic *imapConn) close() {
	ic.cmd("LOGOUT")
	ic.conn.Close()
}

func imapQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

var (
	existsRE = regexp.MustCompile(`^\* (\d+) EXISTS`)
	fetchRE  = regexp.MustCompile(`^\* \d+ FETCH `)
)

// selectFetch runs SELECT INBOX then FETCH 1:n (ENVELOPE FLAGS) and checks
// that every message of the range came back.
func (ic *imapConn) selectFetch(n int) (exists int, err error) {
	resp, err := ic.cmd("SELECT INBOX")
	if err != nil {
		return 0, err
	}
	for _, l := range resp {
		if m := existsRE.FindSubmatch(l); m != nil {
			exists, _ = strconv.Atoi(string(m[1]))
		}
	}
	if exists == 0 {
		return 0, errors.New("imap: INBOX is empty")
	}
	resp, err = ic.cmd(fmt.Sprintf("FETCH 1:%d (ENVELOPE FLAGS)", n))
	if err != nil {
		return 0, err
	}
	got := 0
	for _, l := range resp {
		if fetchRE.Match(l) {
			got++
		}
	}
	if want := min(n, exists); got != want {
		return 0, fmt.Errorf("imap: FETCH returned %d messages, want %d", got, want)
	}
	return exists, nil
}

type imapFlags struct {
	addr, user, passFile string
}

func (f *imapFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "imap", "", "IMAP server host:port")
	fs.StringVar(&f.user, "user", "", "login name")
	fs.StringVar(&f.passFile, "pass-file", "", "file holding the password")
}

// cmdIMAPFirstPage is firstpage's counterpart: LOGIN (timed apart), then
// SELECT INBOX + FETCH 1:50 (ENVELOPE FLAGS) once (cold when the server has no
// index yet) and -repeat more times in the same connection (warm).
func cmdIMAPFirstPage(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("imapfirst", flag.ContinueOnError)
	var f imapFlags
	f.register(fs)
	repeat := fs.Int("repeat", 20, "warm repetitions")
	limit := fs.Int("limit", 50, "messages to fetch")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pass, err := readSecret(f.passFile)
	if err != nil {
		return err
	}
	ic, err := dialIMAP(ctx, f.addr)
	if err != nil {
		return err
	}
	defer ic.close()
	t0 := time.Now()
	if err := ic.login(f.user, pass); err != nil {
		return err
	}
	login := time.Since(t0)
	t1 := time.Now()
	exists, err := ic.selectFetch(*limit)
	if err != nil {
		return err
	}
	first := time.Since(t1)
	warm := make([]time.Duration, 0, *repeat)
	for range *repeat {
		t := time.Now()
		if _, err := ic.selectFetch(*limit); err != nil {
			return err
		}
		warm = append(warm, time.Since(t))
	}
	fmt.Printf("login_ms=%.2f first_ms=%.2f warm_ms=%.2f warm_min_ms=%.2f messages=%d page=%d\n",
		ms(login), ms(first), ms(median(warm)), ms(slices.Min(append(warm, first))), exists, *limit)
	return nil
}

// cmdIMAPRPS is rps's counterpart: -sessions logged-in connections with INBOX
// selected each loop FETCH 1:limit (ENVELOPE FLAGS).
func cmdIMAPRPS(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("imaprps", flag.ContinueOnError)
	var f imapFlags
	f.register(fs)
	sessionsFlag := fs.String("sessions", "1,10,100", "comma-separated concurrent connection counts")
	duration := fs.Duration("duration", 10*time.Second, "measured time per row")
	limit := fs.Int("limit", 10, "messages per FETCH")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rows, err := ints(*sessionsFlag)
	if err != nil {
		return err
	}
	pass, err := readSecret(f.passFile)
	if err != nil {
		return err
	}
	conns := make([]*imapConn, slices.Max(rows))
	defer func() {
		for _, ic := range conns {
			if ic != nil {
				ic.close()
			}
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var setupErr error
	sem := make(chan struct{}, 8)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ic, err := dialIMAP(ctx, f.addr)
			if err == nil {
				if err = ic.login(f.user, pass); err == nil {
					_, err = ic.cmd("SELECT INBOX")
				}
				if err != nil {
					ic.conn.Close()
					ic = nil
				}
			}
			mu.Lock()
			defer mu.Unlock()
			conns[i], setupErr = ic, errors.Join(setupErr, err)
		}()
	}
	wg.Wait()
	if setupErr != nil {
		return setupErr
	}
	fetch := fmt.Sprintf("FETCH 1:%d (ENVELOPE FLAGS)", *limit)
	for _, k := range rows {
		rate, err := loadRow(ctx, k, *duration, func(i int) error {
			resp, err := conns[i].cmd(fetch)
			if err == nil && len(resp) == 0 {
				err = errors.New("imap: empty FETCH")
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("%d sessions: %w", k, err)
		}
		fmt.Printf("sessions=%d rps=%.1f\n", k, rate)
	}
	return nil
}
