// Command benchctl holds the Go parts of `make bench` (scripts/bench-run.sh).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchctl keyring|... [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "keyring":
		err = cmdKeyring(ctx, os.Args[2:])
	case "inbox":
		err = cmdInbox(ctx, os.Args[2:])
	case "deliver":
		err = cmdDeliver(ctx, os.Args[2:])
	case "signup":
		err = cmdSignup(ctx, os.Args[2:])
	case "firstpage":
		err = cmdFirstPage(ctx, os.Args[2:])
	case "rps":
		err = cmdRPS(ctx, os.Args[2:])
	case "imapfirst":
		err = cmdIMAPFirstPage(ctx, os.Args[2:])
	case "imaprps":
		err = cmdIMAPRPS(ctx, os.Args[2:])
	case "count":
		err = cmdCount(ctx, os.Args[2:])
	case "sample":
		err = cmdSample(ctx, os.Args[2:])
	case "waitport":
		err = cmdWaitPort(ctx, os.Args[2:])
	case "freeports":
		err = cmdFreePorts(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchctl:", err)
		os.Exit(1)
	}
}
