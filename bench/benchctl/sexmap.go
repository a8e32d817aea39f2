package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"cryptomail/client"
	"cryptomail/xmap"
)

// readSecret reads a one-line secret (passphrase, invite code) from a file,
// so that it never appears in a process listing.
func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return b, nil
}

type accountFlags struct {
	server, address, passFile string
}

func (a *accountFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.server, "server", "", "CryptoMail HTTP base URL")
	fs.StringVar(&a.address, "address", "", "account address")
	fs.StringVar(&a.passFile, "pass-file", "", "file holding the passphrase")
}

func (a *accountFlags) check(cmd string) error {
	if a.server == "" || a.address == "" || a.passFile == "" {
		return fmt.Errorf("%s: want -server, -address and -pass-file", cmd)
	}
	return nil
}

// cmdSignup creates an account from an invite with the Go client (a fresh
// key pair, the passphrase-derived login key, the sealed private key).
func cmdSignup(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("signup", flag.ContinueOnError)
	var a accountFlags
	a.register(fs)
	inviteFile := fs.String("invite-file", "", "file holding the invite code")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := a.check("signup"); err != nil {
		return err
	}
	pass, err := readSecret(a.passFile)
	if err != nil {
		return err
	}
	code, err := readSecret(*inviteFile)
	if err != nil {
		return err
	}
	c, err := client.New(client.Options{Server: a.server})
	if err != nil {
		return err
	}
	fp, err := c.Signup(ctx, client.SignupParams{Invite: string(code), Address: a.address, Passphrase: pass})
	if err != nil {
		return err
	}
	fmt.Printf("signed_up=%s key=%s\n", a.address, fp)
	return nil
}

// cmdFirstPage logs in, then times the first page of 50 summaries of INBOX,
// decrypted by the client: once right after the login (cold when the server
// process is fresh), then -repeat more times in the same session (warm).
func cmdFirstPage(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("firstpage", flag.ContinueOnError)
	var a accountFlags
	a.register(fs)
	repeat := fs.Int("repeat", 20, "warm repetitions")
	limit := fs.Int("limit", 50, "page size")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := a.check("firstpage"); err != nil {
		return err
	}
	pass, err := readSecret(a.passFile)
	if err != nil {
		return err
	}
	c, err := client.New(client.Options{Server: a.server})
	if err != nil {
		return err
	}
	t0 := time.Now()
	s, err := c.Login(ctx, a.address, pass)
	if err != nil {
		return err
	}
	login := time.Since(t0)
	defer s.Logout(context.WithoutCancel(ctx))
	page := func() (time.Duration, int, error) {
		t := time.Now()
		p, err := s.List(ctx, xmap.FolderRef{Name: "INBOX"}, client.ListOptions{Limit: *limit})
		d := time.Since(t)
		if err != nil {
			return 0, 0, err
		}
		if want := min(p.Total, *limit); len(p.Messages) != want {
			return 0, 0, fmt.Errorf("page has %d messages, want %d", len(p.Messages), want)
		}
		for _, m := range p.Messages {
			if m.Summary == nil || m.SummaryErr != nil {
				return 0, 0, fmt.Errorf("message %s: summary not decrypted: %v", m.ID, m.SummaryErr)
			}
		}
		return d, p.Total, nil
	}
	first, total, err := page()
	if err != nil {
		return err
	}
	warm := make([]time.Duration, 0, *repeat)
	for range *repeat {
		d, _, err := page()
		if err != nil {
			return err
		}
		warm = append(warm, d)
	}
	fmt.Printf("login_ms=%.2f first_ms=%.2f warm_ms=%.2f warm_min_ms=%.2f messages=%d page=%d\n",
		ms(login), ms(first), ms(median(warm)), ms(slices.Min(append(warm, first))), total, *limit)
	return nil
}

// cmdRPS measures SeXMAP requests per second: -sessions logged-in sessions
// (one goroutine each) send list-messages (a page of -limit, summaries
// included, not decrypted: the server's work) for -duration each row.
func cmdRPS(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("rps", flag.ContinueOnError)
	var a accountFlags
	a.register(fs)
	sessionsFlag := fs.String("sessions", "1,10,100", "comma-separated concurrent session counts")
	duration := fs.Duration("duration", 10*time.Second, "measured time per row")
	limit := fs.Int("limit", 10, "page size of the list")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := a.check("rps"); err != nil {
		return err
	}
	rows, err := ints(*sessionsFlag)
	if err != nil {
		return err
	}
	pass, err := readSecret(a.passFile)
	if err != nil {
		return err
	}
	c, err := client.New(client.Options{Server: a.server})
	if err != nil {
		return err
	}
	// Log in every session first (Argon2id per login is deliberately slow
	// and not what is measured), two at a time to bound memory.
	n := slices.Max(rows)
	sessions := make([]*client.Session, n)
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	var loginErr error
	var mu sync.Mutex
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			s, err := c.Login(ctx, a.address, pass)
			mu.Lock()
			defer mu.Unlock()
			sessions[i], loginErr = s, errors.Join(loginErr, err)
		}()
	}
	wg.Wait()
	defer func() {
		for _, s := range sessions {
			if s != nil {
				s.Logout(context.WithoutCancel(ctx))
			}
		}
	}()
	if loginErr != nil {
		return loginErr
	}
	req := func(s *client.Session) error {
		r, err := s.ListMessages(ctx, &xmap.ListMessages{Folder: xmap.FolderRef{Name: "INBOX"}, Limit: *limit})
		if err == nil && len(r.Messages) == 0 {
			err = errors.New("empty list")
		}
		return err
	}
	for _, k := range rows {
		rate, err := loadRow(ctx, k, *duration, func(i int) error { return req(sessions[i]) })
		if err != nil {
			return fmt.Errorf("%d sessions: %w", k, err)
		}
		fmt.Printf("sessions=%d rps=%.1f\n", k, rate)
	}
	return nil
}

// loadRow runs k workers calling do in a loop: one second of warm-up, then
// duration measured. It returns completed calls per second.
func loadRow(ctx context.Context, k int, duration time.Duration, do func(worker int) error) (float64, error) {
	var done atomic.Int64
	var measuring atomic.Bool
	var stop atomic.Bool
	errc := make(chan error, k)
	var wg sync.WaitGroup
	for i := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() && ctx.Err() == nil {
				if err := do(i); err != nil {
					errc <- err
					stop.Store(true)
					return
				}
				if measuring.Load() {
					done.Add(1)
				}
			}
		}()
	}
	time.Sleep(time.Second)
	measuring.Store(true)
	start := time.Now()
	select {
	case <-time.After(duration):
	case <-ctx.Done():
	}
	measuring.Store(false)
	elapsed := time.Since(start)
	n := done.Load()
	stop.Store(true)
	wg.Wait()
	close(errc)
	if err := errors.Join(ctx.Err(), <-errc); err != nil {
		return 0, err
	}
	return float64(n) / elapsed.Seconds(), nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
