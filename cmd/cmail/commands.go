package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"cryptomail/client"
	"cryptomail/xmap"
)

func init() {
	commands = []*command{
		{name: "signup", args: "--invite CODE ADDRESS [--key FILE]", help: "create your account with an invite code (--key: activate with your existing private key)", flags: signupCmd},
		{name: "login", args: "ADDRESS", help: "check your passphrase and make ADDRESS the account of the other commands", flags: loginCmd},
		{name: "logout", args: "", help: "forget the current account", flags: logoutCmd},
		{name: "folders", args: "[--json]", help: "list folders with total and unseen counts", flags: foldersCmd},
		{name: "list", args: "[FOLDER] [--limit N] [--json]", help: "list the newest messages of a folder (default INBOX, 50)", flags: listCmd},
		{name: "read", args: "ID [--raw] [--json]", help: "decrypt and show a message, and mark it seen (--raw: the RFC 5322 message)", flags: readCmd},
		{name: "send", args: "--to A[,B] [--cc A[,B]] [--subject S] [--attach FILE]... [--allow-plaintext]", help: "sign, encrypt and send the text on standard input", flags: sendCmd},
		{name: "mkdir", args: "NAME", help: "create a folder", flags: mkdirCmd},
		{name: "rename", args: "FOLDER NEWNAME", help: "rename a folder", flags: renameCmd},
		{name: "rmdir", args: "FOLDER", help: "delete a folder (its messages go to Trash)", flags: rmdirCmd},
		{name: "mv", args: "ID... FOLDER", help: "move messages to a folder", flags: mvCmd},
		{name: "cp", args: "ID... FOLDER", help: "copy messages to a folder", flags: cpCmd},
		{name: "flag", args: "ID... +FLAG|-FLAG...", help: "set or clear flags: seen, flagged, answered, draft, or a keyword", flags: flagCmd, positional: flagPositional},
		{name: "rm", args: "ID...", help: "delete messages (to Trash; in Trash, for the next expunge)", flags: rmCmd},
		{name: "expunge", args: "FOLDER", help: "destroy the deleted messages of a folder", flags: expungeCmd},
		{name: "watch", args: "[--json]", help: "print new mail as it arrives, until interrupted", flags: watchCmd},
		{name: "passwd", args: "", help: "change your passphrase", flags: passwdCmd},
	}
}

type runFunc = func(ctx context.Context, c *cli, pos []string) error

func wantArgs(pos []string, min, max int) error {
	switch {
	case len(pos) < min:
		return usagef("missing arguments")
	case max >= 0 && len(pos) > max:
		return usagef("unexpected argument %q", clip(pos[max], 40))
	}
	return nil
}

func folder(name string) xmap.FolderRef { return xmap.FolderRef{Name: name} }

func signupCmd(fs *flag.FlagSet) runFunc {
	invite := fs.String("invite", "", "")
	keyFile := fs.String("key", "", "")
	return func(ctx context.Context, c *cli, pos []string) error {
		if err := wantArgs(pos, 1, 1); err != nil {
			return err
		}
		if *invite == "" {
			return usagef("--invite CODE is required")
		}
		address := pos[0]
		cl, err := c.client()
		if err != nil {
			return err
		}
		p := client.SignupParams{Invite: *invite, Address: address}
		if *keyFile != "" {
			data, err := os.ReadFile(*keyFile)
			if err != nil {
				return err
			}
			p.PrivateKey = data
			p.KeyPassphrase = func() ([]byte, error) {
				return c.passphrase(envKeyPassphrase, "Passphrase of the key file: ", false, false)
			}
		}
		if p.Passphrase, err = c.passphrase(envPassphrase, "New passphrase for "+address+": ", true, false); err != nil {
			return err
		}
		fp, err := cl.Signup(ctx, p)
		clear(p.Passphrase)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "signed up %s\nkey fingerprint %s\n", address, fp)
		return nil
	}
}

func loginCmd(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, c *cli, pos []string) error {
		if err := wantArgs(pos, 1, 1); err != nil {
			return err
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		pw, err := c.passphrase(envPassphrase, "Passphrase for "+pos[0]+": ", false, false)
		if err != nil {
			return err
		}
		s, err := cl.Login(ctx, pos[0], pw)
		clear(pw)
		if err != nil {
			return err
		}
		defer s.Logout(context.WithoutCancel(ctx))
		if err := cl.SetCurrentAddress(pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "logged in as %s\nkey fingerprint %s\n", pos[0], s.Fingerprint())
		return nil
	}
}

func logoutCmd(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, c *cli, pos []string) error {
		if err := wantArgs(pos, 0, 0); err != nil {
			return err
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		addr, err := cl.CurrentAddress()
		if err != nil {
			return err
		}
		if addr == "" {
			fmt.Fprintln(c.stdout, "not logged in")
			return nil
		}
		if err := cl.SetCurrentAddress(""); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "logged out %s\n", addr)
		return nil
	}
}

func foldersCmd(fs *flag.FlagSet) runFunc {
	asJSON := fs.Bool("json", false, "")
	return func(ctx context.Context, c *cli, pos []string) error {
		if err := wantArgs(pos, 0, 0); err != nil {
			return err
		}
		s, done, err := c.login(ctx, false)
		if err != nil {
			return err
		}
		defer done()
		folders, err := s.ListFolders(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(c.stdout, foldersJSON(folders))
		}
		return printFolders(c.stdout, folders)
	}
}

func listCmd(fs *flag.FlagSet) runFunc {
	asJSON := fs.Bool("json", false, "")
	limit := fs.Int("limit", xmap.DefaultPageSize, "")
	return func(ctx context.Context, c *cli, pos []string) error {
		if err := wantArgs(pos, 0, 1); err != nil {
			return err
		}
		if *limit < 1 {
			return usagef("--limit must be at least 1")
		}
		name := "INBOX"
		if len(pos) == 1 {
			name = pos[0]
		}
		s, done, err := c.login(ctx, false)
		if err != nil {
			return err
		}
		defer done()
		var msgs []client.Listed
		cursor := ""
		for len(msgs) < *limit {
			page, err := s.List(ctx, folder(name), client.ListOptions{Limit: min(*limit-len(msgs), xmap.MaxPageSize), Cursor: cursor})
			if err != nil {
				return err
			}
			msgs = append(msgs, page.Messages...)
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}
		if *asJSON {
			return writeJSON(c.stdout, listedJSON(msgs))
		}
		return printListed(c.stdout, msgs)
	}
}

func readCmd(fs *flag.FlagSet) runFunc {
	raw := fs.Bool("raw", false, "")
	asJSON := fs.Bool("json", false, "")
	return func(ctx context.Context, c *cli, pos []string) error {
		if err := wantArgs(pos, 1, 1); err != nil {
			return err
		}
		if *raw && *asJSON {
			return usagef("--raw and --json exclude each other")
		}
		id := pos[0]
		if !xmap.ValidID(id) {
			return usagef("%q is not a message id", clip(id, 40))
		}
		s, done, err := c.login(ctx, false)
		if err != nil {
			return err
		}
		defer done()
		// One document: fetch the message and mark it seen, as a mail reader does.
		rs, err := s.Do(ctx,
			&xmap.Fetch{IDs: []string{id}, Parts: xmap.PartBody},
			&xmap.UpdateFlags{Action: xmap.FlagsAdd, Flags: []xmap.Flag{xmap.FlagSeen}, IDs: []string{id}})
		if err != nil {
			return err
		}
		if rs[0].Err != nil {
			return rs[0].Err
		}
		fr, ok := rs[0].Result.(*xmap.FetchResult)
		if !ok || len(fr.Messages) != 1 || fr.Messages[0].ID != id {
			return xmap.Errorf(xmap.CodeNotFound, "no message %s", id)
		}
		m, err := s.OpenMessage(ctx, fr.Messages[0])
		if err != nil {
			return err
		}
		if !m.StorageEncrypted {
			fmt.Fprintf(c.stderr, "cmail: warning: the server stored message %s unencrypted\n", id)
		}
		switch {
		case *raw:
			_, err = c.stdout.Write(m.Raw)
			return err
		case *asJSON:
			return writeJSON(c.stdout, messageJSON(m))
		}
		return printMessage(c.stdout, m)
	}
}

func sendCmd(fs *flag.FlagSet) runFunc {
	to := &stringList{split: true}
	cc := &stringList{split: true}
	attach := &stringList{}
	fs.Var(to, "to", "")
	fs.Var(cc, "cc", "")
	fs.Var(attach, "attach", "")
	subject := fs.String("subject", "", "")
	allowPlain := fs.Bool("allow-plaintext", false, "")
	return func(ctx context.Context, c *cli, pos []string) error {
		if err := wantArgs(pos, 0, 0); err != nil {
			return err
		}
		if len(to.vals)+len(cc.vals) == 0 {
			return usagef("give at least one recipient with --to")
		}
		d := &client.Draft{To: to.vals, Cc: cc.vals, Subject: *subject}
		for _, name := range attach.vals {
			data, err := os.ReadFile(name)
			if err != nil {
				return err
			}
			d.Attachments = append(d.Attachments, client.Attachment{Filename: name, Data: data})
		}
		if *allowPlain {
			d.AllowPlaintext = append(append([]string(nil), to.vals...), cc.vals...)
		}
		s, done, err := c.login(ctx, true)
		if err != nil {
			return err
		}
		defer done()
		body, err := io.ReadAll(io.LimitReader(c.stdin, xmap.MaxMessageSize+1))
		if err != nil {
			return fmt.Errorf("reading the message from standard input: %w", err)
		}
		if len(body) > xmap.MaxMessageSize {
			return fmt.Errorf("%w: the message text is over %d bytes", client.ErrTooLarge, xmap.MaxMessageSize)
		}
		d.Text = string(body)
		rep, err := s.SendMail(ctx, d)
		if err != nil {
			return err
		}
		plain := map[string]bool{}
		for _, a := range rep.Plaintext {
			plain[strings.ToLower(a)] = true
		}
		fmt.Fprintf(c.stdout, "sent %s\n", rep.Sent.ID)
		for _, r := range rep.Recipients {
			note := ""
			if plain[strings.ToLower(r.Address)] {
				note = " (readable: no key)"
			}
			fmt.Fprintf(c.stdout, "  %s: %s%s\n", r.Address, r.Status, note)
		}
		return nil
	}
}

// session runs fn in a logged-in session, for the commands that need nothing else.
func session(ctx context.Context, c *cli, fn func(s *client.Session) error) error {
	s, done, err := c.login(ctx, false)
	if err != nil {
		return err
	}
	defer done()
	return fn(s)
}

func mkdirCmd(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, c *cli, pos []string) error {
		if err := wantArgs(pos, 1, 1); err != nil {
			return err
		}
		return session(ctx, c, func(s *client.Session) error {
			f, err := s.CreateFolder(ctx, pos[0])
			if err == nil {
				fmt.Fprintf(c.stdout, "created %s\n", f.Name)
			}
			return err
		})
	}
}

func renameCmd(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, c *cli, pos []string) error {
		if err := wantArgs(pos, 2, 2); err != nil {
			return err
		}
		return session(ctx, c, func(s *client.Session) error {
			f, err := s.RenameFolder(ctx, folder(pos[0]), pos[1])
			if err == nil {
				fmt.Fprintf(c.stdout, "renamed %s to %s\n", pos[0], f.Name)
			}
			return err
		})
	}
}

func rmdirCmd(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, c *cli, pos []string) error {
		if err := wantArgs(pos, 1, 1); err != nil {
			return err
		}
		return session(ctx, c, func(s *client.Session) error {
			err := s.DeleteFolder(ctx, folder(pos[0]))
			if err == nil {
				fmt.Fprintf(c.stdout, "deleted %s\n", pos[0])
			}
			return err
		})
	}
}

func checkIDs(ids []string) error {
	for _, id := range ids {
		if !xmap.ValidID(id) {
			return usagef("%q is not a message id", clip(id, 40))
		}
	}
	if len(ids) > xmap.MaxIDs {
		return usagef("at most %d ids at once", xmap.MaxIDs)
	}
	return nil
}

func mvCmd(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, c *cli, pos []string) error {
		if err := wantArgs(pos, 2, -1); err != nil {
			return err
		}
		ids, dest := pos[:len(pos)-1], pos[len(pos)-1]
		if err := checkIDs(ids); err != nil {
			return err
		}
		return session(ctx, c, func(s *client.Session) error {
			err := s.Move(ctx, folder(dest), ids...)
			if err == nil {
				fmt.Fprintf(c.stdout, "moved %d to %s\n", len(ids), dest)
			}
			return err
		})
	}
}

func cpCmd(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, c *cli, pos []string) error {
		if err := wantArgs(pos, 2, -1); err != nil {
			return err
		}
		ids, dest := pos[:len(pos)-1], pos[len(pos)-1]
		if err := checkIDs(ids); err != nil {
			return err
		}
		return session(ctx, c, func(s *client.Session) error {
			copies, err := s.Copy(ctx, folder(dest), ids...)
			for _, cp := range copies {
				fmt.Fprintf(c.stdout, "copied %s to %s as %s\n", cp.From, dest, cp.ID)
			}
			return err
		})
	}
}

// flagNames maps the words of cmail flag to system flags; other words are keywords.
var flagNames = map[string]xmap.Flag{
	"seen": xmap.FlagSeen, "flagged": xmap.FlagFlagged, "answered": xmap.FlagAnswered, "draft": xmap.FlagDraft,
}

// flagPositional makes "-seen" an operation rather than an unknown flag.
func flagPositional(fs *flag.FlagSet) func(string) bool {
	return func(a string) bool {
		if strings.HasPrefix(a, "--") {
			return false
		}
		name := strings.TrimPrefix(a, "-")
		return name != "h" && name != "help" && fs.Lookup(name) == nil
	}
}

func flagCmd(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, c *cli, pos []string) error {
		var ids []string
		var add, remove []xmap.Flag
		for _, p := range pos {
			if p == "" || (p[0] != '+' && p[0] != '-') {
				ids = append(ids, p)
				continue
			}
			word := p[1:]
			f, ok := flagNames[strings.ToLower(word)]
			if !ok {
				if f, ok = xmap.ParseFlag(word); !ok || !f.IsKeyword() {
					return usagef("%q is not a flag: use seen, flagged, answered, draft or a keyword", clip(word, 40))
				}
			}
			if p[0] == '+' {
				add = append(add, f)
			} else {
				remove = append(remove, f)
			}
		}
		if len(ids) == 0 || len(add)+len(remove) == 0 {
			return usagef("give message ids and at least one +FLAG or -FLAG")
		}
		if err := checkIDs(ids); err != nil {
			return err
		}
		return session(ctx, c, func(s *client.Session) error {
			// Both changes in one document; each is all-or-nothing on its own.
			var cmds []xmap.Command
			if len(add) > 0 {
				cmds = append(cmds, &xmap.UpdateFlags{Action: xmap.FlagsAdd, Flags: add, IDs: ids})
			}
			if len(remove) > 0 {
				cmds = append(cmds, &xmap.UpdateFlags{Action: xmap.FlagsRemove, Flags: remove, IDs: ids})
			}
			rs, err := s.Do(ctx, cmds...)
			if err != nil {
				return err
			}
			for _, r := range rs {
				if r.Err != nil {
					return r.Err
				}
			}
			fmt.Fprintf(c.stdout, "flagged %d\n", len(ids))
			return nil
		})
	}
}

func rmCmd(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, c *cli, pos []string) error {
		if err := wantArgs(pos, 1, -1); err != nil {
			return err
		}
		if err := checkIDs(pos); err != nil {
			return err
		}
		return session(ctx, c, func(s *client.Session) error {
			err := s.Delete(ctx, pos...)
			if err == nil {
				fmt.Fprintf(c.stdout, "deleted %d\n", len(pos))
			}
			return err
		})
	}
}

func expungeCmd(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, c *cli, pos []string) error {
		if err := wantArgs(pos, 1, 1); err != nil {
			return err
		}
		return session(ctx, c, func(s *client.Session) error {
			n, err := s.Expunge(ctx, folder(pos[0]))
			if err == nil {
				fmt.Fprintf(c.stdout, "expunged %d from %s\n", n, pos[0])
			}
			return err
		})
	}
}

func watchCmd(fs *flag.FlagSet) runFunc {
	asJSON := fs.Bool("json", false, "")
	return func(ctx context.Context, c *cli, pos []string) error {
		if err := wantArgs(pos, 0, 0); err != nil {
			return err
		}
		return session(ctx, c, func(s *client.Session) error {
			state, err := s.State(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stderr, "cmail: watching %s for new mail (interrupt to stop)\n", s.Address())
			err = s.Watch(ctx, state, 0, func(l client.Listed) error {
				if *asJSON {
					// One object per line: a stream cannot be one array.
					return writeJSONLine(c.stdout, listedJSON([]client.Listed{l})[0])
				}
				return printListedRow(c.stdout, l)
			})
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return nil
			}
			return err
		})
	}
}

func passwdCmd(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, c *cli, pos []string) error {
		if err := wantArgs(pos, 0, 0); err != nil {
			return err
		}
		return session(ctx, c, func(s *client.Session) error {
			pw, err := c.passphrase(envNewPassphrase, "New passphrase: ", true, false)
			if err != nil {
				return err
			}
			err = s.ChangePassphrase(ctx, pw)
			clear(pw)
			if err == nil {
				fmt.Fprintf(c.stdout, "passphrase changed for %s\n", s.Address())
			}
			return err
		})
	}
}
