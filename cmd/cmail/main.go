// Command cmail is the command-line client of CryptoMail: it signs up, logs in, lists,
// reads, sends and organises mail over XMAP/SeXMAP, and does all message cryptography
// itself (see package client). Run "cmail help" for the commands.
//
// The passphrase comes from the terminal (echo off), from CMAIL_PASSPHRASE for scripts,
// or, when standard input is not a terminal, from its first line. cmail keeps no secret
// on disk: each command logs in, does its work and logs out.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"cryptomail/client"
	"cryptomail/xmap"
	"cryptomail/xmap/sexmap"
)

// Environment variables cmail reads.
const (
	envPassphrase    = "CMAIL_PASSPHRASE"     // the account's passphrase (new one for signup)
	envNewPassphrase = "CMAIL_NEW_PASSPHRASE" // passwd: the new passphrase
	envKeyPassphrase = "CMAIL_KEY_PASSPHRASE" // signup --key: the key file's passphrase
)

const defaultServer = "http://127.0.0.1:8080"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runContext(ctx, newCLI(os.Stdin, os.Stdout, os.Stderr, os.Environ()), os.Args[1:])
	stop()
	os.Exit(code)
}

// run runs cmail with the given arguments (without the program name) and environment
// ("KEY=value" entries) and returns the exit status: 0 success, 1 failure (one line on
// stderr), 2 usage error.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, env []string) int {
	return runContext(context.Background(), newCLI(stdin, stdout, stderr, env), args)
}

// cli is one invocation's surroundings.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	env            map[string]string
	// kdf are the Argon2id parameters for signup and passwd; zero means
	// sexmap.DefaultKDFParams. Only tests lower them.
	kdf        sexmap.KDFParams
	httpClient *http.Client

	server, home string
	lines        *bufio.Reader // standard input, when it supplies passphrases
}

func newCLI(stdin io.Reader, stdout, stderr io.Writer, env []string) *cli {
	m := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return &cli{stdin: stdin, stdout: stdout, stderr: stderr, env: m}
}

// A command of cmail.
type command struct {
	name, args, help string
	// flags registers the command's own flags; run gets the positional arguments.
	flags func(fs *flag.FlagSet) func(ctx context.Context, c *cli, pos []string) error
	// positional, if set, says which dash-arguments are positional (flag's -seen).
	positional func(fs *flag.FlagSet) func(string) bool
}

var commands []*command

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func runContext(ctx context.Context, c *cli, args []string) int {
	global := newFlagSet("cmail")
	global.StringVar(&c.server, "server", defaultServer, "")
	global.StringVar(&c.home, "home", "", "")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.usage(c.stdout)
			return 0
		}
		fmt.Fprintf(c.stderr, "cmail: %v\n", err)
		c.usage(c.stderr)
		return 2
	}
	args = global.Args()
	if len(args) == 0 {
		c.usage(c.stderr)
		return 2
	}
	name, args := args[0], args[1:]
	if name == "help" {
		if len(args) == 1 && lookup(args[0]) != nil {
			lookup(args[0]).usage(c.stdout)
		} else {
			c.usage(c.stdout)
		}
		return 0
	}
	cmd := lookup(name)
	if cmd == nil {
		fmt.Fprintf(c.stderr, "cmail: unknown command %q\n", clip(name, 40))
		c.usage(c.stderr)
		return 2
	}
	fs := newFlagSet(name)
	// The global flags are accepted after the command too.
	fs.StringVar(&c.server, "server", c.server, "")
	fs.StringVar(&c.home, "home", c.home, "")
	runCmd := cmd.flags(fs)
	var positional func(string) bool
	if cmd.positional != nil {
		positional = cmd.positional(fs)
	}
	pos, err := parseArgs(fs, args, positional)
	if err == nil {
		err = runCmd(ctx, c, pos)
	}
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errHelp):
		cmd.usage(c.stdout)
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(c.stderr, "cmail %s: %s\n", name, ue.msg)
		cmd.usage(c.stderr)
		return 2
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return 130
	default:
		fmt.Fprintf(c.stderr, "cmail %s: %s\n", name, describe(err))
		return 1
	}
}

func (c *cli) usage(w io.Writer) {
	fmt.Fprintf(w, `usage: cmail [-server URL] [-home DIR] COMMAND [ARGS]

Global flags (also accepted after the command):
  -server URL   the CryptoMail server (default %s)
  -home DIR     client state: pinned server keys and the current account
                (default: cmail in the user's config directory)

Commands:
`, defaultServer)
	for _, cmd := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", cmd.name, cmd.help)
	}
	fmt.Fprintf(w, `
Flags may come before or after the arguments. Listing commands take --json.
The passphrase is read from the terminal, from $%s, or from the first line
of standard input when it is not a terminal. Run "cmail help COMMAND" for details.
`, envPassphrase)
}

func (cmd *command) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: cmail %s %s\n  %s\n", cmd.name, cmd.args, cmd.help)
}

// client opens the client for -server and -home.
func (c *cli) client() (*client.Client, error) {
	home := c.home
	if home == "" {
		dir, err := os.UserConfigDir()
		if err != nil {
			return nil, fmt.Errorf("no config directory for the client state (%v): use -home DIR", err)
		}
		home = filepath.Join(dir, "cmail")
	}
	return client.New(client.Options{
		Server:     c.server,
		Home:       home,
		HTTPClient: c.httpClient,
		KDFParams:  c.kdf,
		OnPin: func(server, key string) {
			fmt.Fprintf(c.stderr, "cmail: pinned the key of %s on first use: %s\n"+
				"cmail: compare it with the key your administrator published (cryptomail server-key)\n", server, key)
		},
	})
}

// login logs in as the current address, for the commands that need a session, and
// returns the session and its logout.
func (c *cli) login(ctx context.Context, stdinBusy bool) (*client.Session, func(), error) {
	cl, err := c.client()
	if err != nil {
		return nil, nil, err
	}
	addr, err := cl.CurrentAddress()
	if err != nil {
		return nil, nil, err
	}
	if addr == "" {
		return nil, nil, errors.New("not logged in: run cmail login ADDRESS")
	}
	pw, err := c.passphrase(envPassphrase, "Passphrase for "+addr+": ", false, stdinBusy)
	if err != nil {
		return nil, nil, err
	}
	s, err := cl.Login(ctx, addr, pw)
	clear(pw)
	if err != nil {
		return nil, nil, err
	}
	// Every command ends its session: nothing is left for someone else to use.
	return s, func() { _ = s.Logout(context.WithoutCancel(ctx)) }, nil
}

// passphrase gets a passphrase: from the environment variable, else from the terminal
// (twice if confirm), else from a line of standard input unless stdin carries data.
func (c *cli) passphrase(envVar, prompt string, confirm, stdinBusy bool) ([]byte, error) {
	if v := c.env[envVar]; v != "" {
		return []byte(v), nil
	}
	if f, ok := c.stdin.(*os.File); ok && isTerminal(f) {
		fmt.Fprint(c.stderr, prompt)
		pw, err := readNoEcho(f)
		fmt.Fprintln(c.stderr)
		if err != nil {
			return nil, err
		}
		if len(pw) == 0 {
			return nil, errors.New("empty passphrase")
		}
		if confirm {
			fmt.Fprint(c.stderr, "Again: ")
			again, err := readNoEcho(f)
			fmt.Fprintln(c.stderr)
			if err != nil {
				return nil, err
			}
			same := string(again) == string(pw)
			clear(again)
			if !same {
				clear(pw)
				return nil, errors.New("the passphrases differ")
			}
		}
		return pw, nil
	}
	if stdinBusy {
		return nil, fmt.Errorf("no passphrase: standard input holds the message, so set %s", envVar)
	}
	if c.lines == nil {
		c.lines = bufio.NewReader(c.stdin)
	}
	line, err := c.lines.ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return nil, fmt.Errorf("no passphrase: set %s, or give it on standard input", envVar)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty passphrase")
	}
	return []byte(line), nil
}

// describe renders an error as the one line cmail prints.
func describe(err error) string {
	var (
		xe *xmap.Error
		pe *xmap.ProtocolError
		se *sexmap.StatusError
		kc *client.KeyChangedError
		mk *client.MissingKeysError
	)
	var s string
	switch {
	case errors.As(err, &kc):
		s = kc.Error()
	case errors.As(err, &mk):
		s = mk.Error() + " (cmail send --allow-plaintext)"
	case errors.Is(err, sexmap.ErrLoginFailed):
		s = "login failed: wrong address or passphrase"
	case errors.As(err, &se) && errors.Is(err, sexmap.ErrLockedOut):
		s = fmt.Sprintf("too many failed logins: try again in %s", se.RetryAfter)
	case errors.As(err, &se) && errors.Is(err, sexmap.ErrRateLimited):
		s = fmt.Sprintf("too many connections from this address: try again in %s", se.RetryAfter)
	case errors.As(err, &xe):
		s = fmt.Sprintf("%s (%s)", xe.Message, xe.Code)
	case errors.As(err, &pe):
		s = fmt.Sprintf("the server refused the request: %s (%s)", pe.Message, pe.Code)
	default:
		s = err.Error()
	}
	return strings.Join(strings.Fields(s), " ")
}
