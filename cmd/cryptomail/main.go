// Command cryptomail is the CryptoMail server and its admin tool.
//
//	cryptomail serve  [-config FILE]
//	cryptomail init   [-config FILE]
//	cryptomail user add  [-config FILE] --public-key KEY.asc ADDRESS
//	cryptomail user list [-config FILE] [--json]
//	cryptomail user del  [-config FILE] --yes ADDRESS
//	cryptomail user invite [-config FILE] [--expires 72h] ADDRESS
//	cryptomail server-key [-config FILE]
//	cryptomail export    [-config FILE] --out FILE ADDRESS
//	cryptomail check-config [-config FILE]
//	cryptomail cluster certs -out DIR [--ca-days N] [--days N] [--san NAME]... NODE...
//
// Flags may come before or after the positional arguments. Without -config
// every command reads $CRYPTOMAIL_CONFIG, then /etc/cryptomail/cryptomail.toml;
// only serve falls back to the built-in config.example.toml. Only serve and
// init create a data dir, a metabase or a server key.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"cryptomail"
	"cryptomail/server"
	"cryptomail/shard"
	"cryptomail/xmap/sexmap"
)

// usageError makes the command exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

const usage = `usage: cryptomail COMMAND [flags] [args]

commands:
  serve                              run every listener (LMTP, SMTP, HTTP); creates
                                     the data dir, metabase and server key if missing
  init                               create the data dir, homes, metabase and server
                                     key without serving, and print the server key
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
                                     clients to pin
  export --out FILE ADDRESS          write the user's mail as an mbox of OpenPGP messages
  check-config                       validate the configuration, and the homes
                                     against the metabase (read only), and exit
  cluster certs -out DIR [--ca-days N] [--days N] [--san NAME]... NODE...
                                     make a cluster CA in DIR (or reuse the one
                                     there) and a certificate and key per node
                                     for [cluster] tls_ca, tls_cert, tls_key

every command takes -config FILE; without it the config is $CRYPTOMAIL_CONFIG,
then /etc/cryptomail/cryptomail.toml. Admin commands (user, export, server-key,
check-config) fail if there is none, or if its data_dir has no metabase yet:
they never create a server. Only serve falls back to the built-in
config.example.toml (paths relative to the current directory).

exit status: 0 done, 1 failed, 2 usage error
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
	case "init":
		return cmdInit(rest, stdout, stderr)
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
	case "cluster":
		if len(rest) == 0 || rest[0] != "certs" {
			return usagef("cluster: want certs")
		}
		return cmdClusterCerts(rest[1:], stdout, stderr)
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
	c.fs.StringVar(&c.config, "config", "", "configuration file (default: $"+configEnv+", then "+systemConfig+")")
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

// noArgsConfig is noArgs followed by loadConfig, for an admin command that
// takes no positional argument.
func (c *command) noArgsConfig(args []string) (*server.Config, error) {
	if err := c.noArgs(args); err != nil {
		return nil, err
	}
	return c.loadConfig()
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

// configEnv names the config file when -config is not given.
const configEnv = "CRYPTOMAIL_CONFIG"

// systemConfig is the config file read when neither -config nor
// $CRYPTOMAIL_CONFIG names one. A variable so that tests never touch /etc.
var systemConfig = "/etc/cryptomail/cryptomail.toml"

// errNoConfig: none of the places a config is looked for has one.
var errNoConfig = errors.New("no configuration")

// adminStore is what the admin commands (user add|list|del|invite|export,
// bulk add) need of the store; shard.Store implements it, and so must a
// cluster's.
type adminStore interface {
	CreateUser(ctx context.Context, address string, publicKey []byte) (shard.User, error)
	User(ctx context.Context, address string) (shard.User, error)
	Users(ctx context.Context, fn func(shard.User) error) error
	DeleteUser(ctx context.Context, address string) error
	server.Inviter
	server.MessageLister
	Close() error
}

var _ adminStore = (*shard.Store)(nil)

// openStore opens cfg's existing store for an admin command, which logs only
// warnings and errors. It creates nothing.
func (c *command) openStore(ctx context.Context, cfg *server.Config) (adminStore, error) {
	st, err := server.OpenExistingStore(ctx, cfg, adminLogger(c.stderr))
	if errors.Is(err, shard.ErrNoStore) {
		return nil, noServerError(cfg, err)
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}

// requireServer fails, with the same hint as openStore, when cfg's data dir
// has no metabase: for admin commands that do not open the store.
func requireServer(cfg *server.Config) error {
	meta := filepath.Join(cfg.Server.DataDir, shard.MetaFile)
	_, err := os.Stat(meta)
	if errors.Is(err, fs.ErrNotExist) {
		return noServerError(cfg, fmt.Errorf("%w: %s does not exist", shard.ErrNoStore, meta))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", cfg.Path, err)
	}
	return nil
}

func noServerError(cfg *server.Config, err error) error {
	return fmt.Errorf("%s: %w; run `cryptomail serve -config %s` once, or `cryptomail init -config %s`",
		cfg.Path, err, cfg.Path, cfg.Path)
}

// loadConfig reads the config of an admin command: -config, else
// $CRYPTOMAIL_CONFIG, else systemConfig. Finding none is an error naming
// each place, never a default that would start a new, empty server.
func (c *command) loadConfig() (*server.Config, error) {
	cfg, err := c.findConfig()
	if errors.Is(err, errNoConfig) {
		return nil, fmt.Errorf("%w: no -config FILE given, $%s is not set, and %s does not exist; name the server's config with -config FILE or $%s",
			err, configEnv, systemConfig, configEnv)
	}
	return cfg, err
}

func (c *command) findConfig() (*server.Config, error) {
	if c.config != "" {
		return server.LoadConfig(c.config)
	}
	if p := os.Getenv(configEnv); p != "" {
		cfg, err := server.LoadConfig(p)
		if err != nil {
			return nil, fmt.Errorf("%w (named by $%s)", err, configEnv)
		}
		return cfg, nil
	}
	if _, err := os.Stat(systemConfig); err == nil {
		return server.LoadConfig(systemConfig)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("config: %w", err)
	}
	return nil, errNoConfig
}

// loadServeConfig is loadConfig for serve, which falls back to the built-in
// config.example.toml (paths relative to the current directory) and says so.
func (c *command) loadServeConfig() (*server.Config, error) {
	cfg, err := c.findConfig()
	if !errors.Is(err, errNoConfig) {
		return cfg, err
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c.stderr, "cryptomail: no -config, $%s unset and no %s: serving the built-in config.example.toml from %s\n",
		configEnv, systemConfig, wd)
	return server.ParseConfig(cryptomail.DefaultConfig, "config.example.toml (built in)", wd)
}

func cmdServe(args []string, stderr io.Writer) error {
	c := newCommand("serve", stderr)
	if err := c.noArgs(args); err != nil {
		return err
	}
	cfg, err := c.loadServeConfig()
	if err != nil {
		return err
	}
	logger := server.NewLogger(cfg.Log, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return server.Run(ctx, cfg, logger)
}

// cmdInit creates what serve would on its first start (data dir, homes,
// metabase, server key) and prints the server key. Run again it changes
// nothing and prints the same key.
func cmdInit(args []string, stdout, stderr io.Writer) error {
	c := newCommand("init", stderr)
	cfg, err := c.noArgsConfig(args)
	if err != nil {
		return err
	}
	keyPath := server.ServerKeyPath(cfg.Server.DataDir)
	fresh := false
	for _, p := range []string{filepath.Join(cfg.Server.DataDir, shard.MetaFile), keyPath} {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			fresh = true
		}
	}
	st, err := server.OpenStore(context.Background(), cfg, adminLogger(stderr))
	if err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	key, err := sexmap.LoadOrCreateServerKey(keyPath)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	what := "initialized"
	if !fresh {
		what = "already initialized"
	}
	fmt.Fprintf(stdout, "%s %s: data_dir %s; homes %s\n", cfg.Path, what, cfg.Server.DataDir, strings.Join(cfg.Storage.Homes, ", "))
	fmt.Fprintf(stdout, "server key (clients pin it; `cryptomail server-key` prints it again):\n%s\n", sexmap.EncodePublicKey(key.Public))
	return nil
}

func cmdCheckConfig(args []string, stdout, stderr io.Writer) error {
	c := newCommand("check-config", stderr)
	cfg, err := c.noArgsConfig(args)
	if err != nil {
		return err
	}
	if err := requireServer(cfg); err != nil {
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
