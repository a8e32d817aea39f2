package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/emersion/go-smtp"
)

// cmdDeliver sends every *.eml file of a directory, in name order, to one
// recipient over one LMTP session. It stops at the first refusal.
func cmdDeliver(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("deliver", flag.ContinueOnError)
	addr := fs.String("lmtp", "", "LMTP server host:port")
	rcpt := fs.String("rcpt", "", "recipient")
	dir := fs.String("dir", "", "directory of *.eml files")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" || *rcpt == "" || *dir == "" {
		return fmt.Errorf("deliver: want -lmtp, -rcpt and -dir")
	}
	files, err := filepath.Glob(filepath.Join(*dir, "*.eml"))
	if err != nil {
		return err
	}
	slices.Sort(files)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", *addr)
	if err != nil {
		return err
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("bench.example"); err != nil {
		return err
	}
	start := time.Now()
	var bytes int64
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		msg, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := c.Mail("sender@bench.example", nil); err != nil {
			return err
		}
		if err := c.Rcpt(*rcpt, nil); err != nil {
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
			return fmt.Errorf("%s: %w", filepath.Base(f), err)
		}
		bytes += int64(len(msg))
	}
	if err := c.Quit(); err != nil {
		return err
	}
	fmt.Printf("delivered=%d bytes=%d seconds=%.3f\n", len(files), bytes, time.Since(start).Seconds())
	return nil
}
