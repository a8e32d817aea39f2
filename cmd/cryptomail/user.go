package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	cmcrypto "cryptomail/crypto"
	"cryptomail/server"
	"cryptomail/shard"
)

// adminLogger keeps admin commands quiet unless something is wrong.
func adminLogger(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func cmdUserAdd(args []string, stdout, stderr io.Writer) error {
	c := newCommand("user add", stderr)
	keyFile := c.fs.String("public-key", "", "ASCII-armored OpenPGP public key file (\"-\" for stdin)")
	raw, err := c.oneAddress(args)
	if err != nil {
		return err
	}
	if *keyFile == "" {
		return usagef("user add: --public-key is required")
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	addr, err := accountAddress(cfg, raw)
	if err != nil {
		return err
	}
	var keyData []byte
	if *keyFile == "-" {
		keyData, err = io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	} else {
		keyData, err = os.ReadFile(*keyFile)
	}
	if err != nil {
		return fmt.Errorf("read public key: %w", err)
	}
	key, err := cmcrypto.ParsePublicKey(keyData, time.Now())
	if err != nil {
		return fmt.Errorf("public key %s refused: %w", *keyFile, err)
	}
	if !slices.Contains(key.Emails(), addr) {
		fmt.Fprintf(stderr, "cryptomail: warning: the key's user IDs (%s) do not name %s\n",
			strings.Join(key.Emails(), ", "), addr)
	}
	armored, err := key.Armored()
	if err != nil {
		return fmt.Errorf("public key: %w", err)
	}
	ctx := context.Background()
	st, err := c.openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	u, err := st.CreateUser(ctx, addr, armored)
	if errors.Is(err, shard.ErrExists) {
		return fmt.Errorf("user %s already exists", addr)
	}
	if err != nil {
		return fmt.Errorf("add user %s: %w", addr, err)
	}
	fmt.Fprintf(stdout, "added %s (key %s) on home %s (%s)\n", u.Address, key.Fingerprint(), u.HomeID, u.Home)
	return nil
}

// accountAddress validates an address an admin names as an account: it must
// be well formed, in a served domain, and not a +subaddress.
func accountAddress(cfg *server.Config, raw string) (string, error) {
	addr, err := cfg.ServedAddress(raw)
	if err != nil {
		return "", fmt.Errorf("address %q refused: %w", raw, err)
	}
	local := raw[:strings.LastIndexByte(raw, '@')]
	if strings.Contains(local, "+") {
		return "", fmt.Errorf("address %q refused: name the account without +subaddress (%s)", raw, addr)
	}
	return addr, nil
}

func cmdUserList(args []string, stdout, stderr io.Writer) error {
	c := newCommand("user list", stderr)
	asJSON := c.fs.Bool("json", false, "print a JSON array")
	cfg, err := c.noArgsConfig(args)
	if err != nil {
		return err
	}
	ctx := context.Background()
	st, err := c.openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	type row struct {
		ID      string    `json:"id"`
		Address string    `json:"address"`
		State   string    `json:"state"`
		HomeID  string    `json:"home_id"`
		Home    string    `json:"home"` // the configured directory of home_id
		Created time.Time `json:"created"`
	}
	rows := []row{}
	err = st.Users(ctx, func(u shard.User) error {
		rows = append(rows, row{u.Address, u.Address, u.State, u.HomeID, u.Home, u.Created.UTC()})
		return nil
	})
	if err != nil {
		return fmt.Errorf("list users: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tSTATE\tCREATED\tHOME ID\tHOME")
	for _, r := range rows {
		dir := r.Home
		if dir == "" {
			dir = "(not configured)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Address, r.State, r.Created.Format(time.RFC3339), r.HomeID, dir)
	}
	return tw.Flush()
}

func cmdUserDel(args []string, stdout, stderr io.Writer) error {
	c := newCommand("user del", stderr)
	yes := c.fs.Bool("yes", false, "confirm: delete the user and all of their mail")
	raw, err := c.oneAddress(args)
	if err != nil {
		return err
	}
	if !*yes {
		return usagef("user del: deleting %s removes all of their mail; add --yes to confirm", raw)
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	addr, err := server.CanonicalAddress(raw)
	if err != nil {
		return fmt.Errorf("address %q refused: %w", raw, err)
	}
	ctx := context.Background()
	st, err := c.openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.DeleteUser(ctx, addr); errors.Is(err, shard.ErrNotFound) {
		return fmt.Errorf("no user %s", addr)
	} else if err != nil {
		return fmt.Errorf("delete %s: %w", addr, err)
	}
	fmt.Fprintf(stdout, "deleted %s\n", addr)
	return nil
}

func cmdExport(args []string, stdout, stderr io.Writer) error {
	c := newCommand("export", stderr)
	out := c.fs.String("out", "", "mbox file to write (\"-\" for standard output)")
	raw, err := c.oneAddress(args)
	if err != nil {
		return err
	}
	if *out == "" {
		return usagef("export: --out is required")
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	addr, err := server.CanonicalAddress(raw)
	if err != nil {
		return fmt.Errorf("address %q refused: %w", raw, err)
	}
	ctx := context.Background()
	st, err := c.openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.User(ctx, addr); errors.Is(err, shard.ErrNotFound) {
		return fmt.Errorf("no user %s", addr)
	} else if err != nil {
		return err
	}
	if *out == "-" {
		n, err := server.ExportMbox(ctx, st, addr, stdout)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "exported %d messages of %s\n", n, addr)
		return nil
	}
	// Write next to the target and rename, so a failed export never leaves a
	// truncated mbox where a good one was. The content is ciphertext only.
	f, err := os.CreateTemp(dirOf(*out), ".cryptomail-export-*")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer os.Remove(f.Name())
	n, err := server.ExportMbox(ctx, st, addr, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), *out)
	}
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	fmt.Fprintf(stdout, "exported %d messages of %s to %s\n", n, addr, absPath(*out))
	return nil
}

func dirOf(p string) string {
	if i := strings.LastIndexByte(p, os.PathSeparator); i >= 0 {
		return p[:i+1]
	}
	return "."
}
