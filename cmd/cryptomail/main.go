// Command cryptomail is the CryptoMail server and its admin tool.
//
//	cryptomail serve  [-config FILE]
//	cryptomail user add  [-config FILE] --public-key KEY.asc ADDRESS
//	cryptomail user list [-config FILE] [--json]
//	cryptomail user del  [-config FILE] --yes ADDRESS
//	cryptomail user invite [-config FILE] [--expires 72h] ADDRESS
//	cryptomail server-key [-config FILE]
//	cryptomail export    [-config FILE] --out FILE ADDRESS
//	cryptomail check-config [-config FILE]
//
// Flags may come before or after the positional arguments.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"cryptomail"
	"cryptomail/server"
	"cryptomail/shard"
)

// usageError makes the command exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

const usage = `usage: cryptomail COMMAND [flags] [args]

commands:
  serve                              run every listener (LMTP, SMTP, HTTP)
  user add --public-key KEY ADDRESS  register a user with an OpenPGP public key
  user add --from-file KEYRING [--skip-existing]
                                     register one user per key in a keyring (bulk;
                                     each key names one served address; all or none)
  user list [--json]                 list users
  user del --yes ADDRESS             delete a user and all their mail
  user invite [--expires 72h] ADDRESS
                                     print a one-time sign-up code (alone on the
                                     last line) for a new user, or for one added
                                     with --public-key to activate
  server-key                         print the server's SeXMAP public key, for
                                     clients to pin (created if missing)
  export --out FILE ADDRESS          write the user's mail as an mbox of OpenPGP messages
  check-config                       validate the configuration, and the homes
                                     against the metabase (read only), and exit

every command takes -config FILE (default: the built-in config.example.toml,
with paths relative to the current directory)
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := dispatch(args, stdin, stdout, stderr)
	if err == nil {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "cryptomail: %s\n\n%s", ue.msg, usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "cryptomail: %s\n", err)
	return 1
}

func dispatch(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(rest, stderr)
	case "user":
		if len(rest) == 0 {
			return usagef("user: want add, list, del or invite")
		}
		switch rest[0] {
		case "add":
			return userAdd(rest[1:], stdout, stderr)
		case "list", "ls":
			return cmdUserList(rest[1:], stdout, stderr)
		case "del", "delete", "rm":
			return cmdUserDel(rest[1:], stdout, stderr)
		case "invite":
			return cmdUserInvite(rest[1:], stdout, stderr)
		}
		return usagef("user: unknown subcommand %q", rest[0])
	case "export":
		return cmdExport(rest, stdout, stderr)
	case "server-key":
		return cmdServerKey(rest, stdout, stderr)
	case "check-config":
		return cmdCheckConfig(rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usagef("unknown command %q", cmd)
}

// command is one subcommand's flag set, parsed so that flags may follow
// positional arguments.
type command struct {
	fs     *flag.FlagSet
	config string
	stderr io.Writer
}

func newCommand(name string, stderr io.Writer) *command {
	c := &command{fs: flag.NewFlagSet(name, flag.ContinueOnError), stderr: stderr}
	c.fs.SetOutput(stderr)
	c.fs.StringVar(&c.config, "config", "", "configuration file (default: built-in config.example.toml)")
	return c
}

// parse returns the positional arguments, interleaved with flags or not.
func (c *command) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%s: %v", c.fs.Name(), err)
		}
		args = c.fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// noArgs parses args for a command that takes no positional argument.
func (c *command) noArgs(args []string) error {
	pos, err := c.parse(args)
	if err == nil && len(pos) != 0 {
		err = usagef("%s: unexpected argument %q", c.fs.Name(), pos[0])
	}
	return err
}

// oneAddress parses args for a command that takes exactly one ADDRESS.
func (c *command) oneAddress(args []string) (string, error) {
	pos, err := c.parse(args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usagef("%s: want exactly one ADDRESS", c.fs.Name())
	}
	return pos[0], nil
}

// openStore opens cfg's store for an admin command, which logs only
// warnings and errors.
func (c *command) openStore(ctx context.Context, cfg *server.Config) (*shard.Store, error) {
	return server.OpenStore(ctx, cfg, adminLogger(c.stderr))
}

func (c *command) loadConfig() (*server.Config, error) {
	if c.config == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		return server.ParseConfig(cryptomail.DefaultConfig, "config.example.toml (built in)", wd)
	}
	return server.LoadConfig(c.config)
}

func cmdServe(args []string, stderr io.Writer) error {
	c := newCommand("serve", stderr)
	if err := c.noArgs(args); err != nil {
		return err
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	logger := server.NewLogger(cfg.Log, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return server.Run(ctx, cfg, logger)
}

func cmdCheckConfig(args []string, stdout, stderr io.Writer) error {
	c := newCommand("check-config", stderr)
	if err := c.noArgs(args); err != nil {
		return err
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	if err := server.CheckStorage(context.Background(), cfg); err != nil {
		return fmt.Errorf("%s: %w", cfg.Path, err)
	}
	fmt.Fprintf(stdout, "%s: ok (domains %s; data_dir %s; homes %s)\n", cfg.Path,
		strings.Join(cfg.Server.Domains, ", "), cfg.Server.DataDir, strings.Join(cfg.Storage.Homes, ", "))
	return nil
}

// absPath is used for messages only.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
