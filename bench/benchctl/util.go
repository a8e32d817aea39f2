package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"cryptomail/server"
)

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

// cmdFreePorts prints n loopback ports that were free a moment ago.
func cmdFreePorts(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("freeports", flag.ContinueOnError)
	n := fs.Int("n", 1, "how many")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Hold all of them open until every one is chosen, so none repeats.
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range *n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ls = append(ls, l)
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

// cmdWaitPort waits until a TCP port accepts connections.
func cmdWaitPort(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("waitport", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 60*time.Second, "give up after")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	for _, addr := range fs.Args() {
		for {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%s: not listening after %s", addr, *timeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// cmdCount prints how many messages CryptoMail holds for the named users:
// -addr, and/or -pattern with %d replaced by 1..-n. It reads the shards the
// way the admin commands do, beside a running server.
func cmdCount(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("count", flag.ContinueOnError)
	config := fs.String("config", "", "cryptomail config file")
	addr := fs.String("addr", "", "one address")
	pattern := fs.String("pattern", "", "address pattern with %d")
	n := fs.Int("n", 0, "pattern range 1..n")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := server.LoadConfig(*config)
	if err != nil {
		return err
	}
	st, err := server.OpenStore(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	defer st.Close()
	var addrs []string
	if *addr != "" {
		addrs = append(addrs, *addr)
	}
	if *pattern != "" {
		for i := 1; i <= *n; i++ {
			addrs = append(addrs, fmt.Sprintf(*pattern, i))
		}
	}
	total := 0
	for _, a := range addrs {
		fl, err := st.Folders(ctx, a)
		if err != nil {
			return fmt.Errorf("%s: %w", a, err)
		}
		for _, f := range fl {
			total += f.Total
		}
	}
	fmt.Println(total)
	return nil
}

// cmdSample samples a process's resident memory and open descriptors every
// -interval until it is stopped (SIGTERM) or the process ends, then prints
// the peaks and the last sample.
func cmdSample(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sample", flag.ContinueOnError)
	pid := fs.Int("pid", 0, "process id")
	interval := fs.Duration("interval", 100*time.Millisecond, "sampling interval")
	out := fs.String("out", "", "file for the result (default stdout)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var peakRSS, peakFDs, rss, fds int
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for stopping := false; ; {
		r, f, err := procStats(*pid)
		if err != nil {
			break // the process ended
		}
		rss, fds = r, f
		peakRSS, peakFDs = max(peakRSS, r), max(peakFDs, f)
		if stopping {
			break
		}
		select {
		case <-ctx.Done():
			stopping = true // one last sample: the state at the end of the load
		case <-tick.C:
		}
	}
	line := fmt.Sprintf("peak_rss_kb=%d peak_fds=%d end_rss_kb=%d end_fds=%d\n", peakRSS, peakFDs, rss, fds)
	if *out == "" {
		_, err := os.Stdout.WriteString(line)
		return err
	}
	return os.WriteFile(*out, []byte(line), 0o644)
}

func procStats(pid int) (rssKB, fds int, err error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			rssKB, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	if err != nil {
		return 0, 0, err
	}
	return rssKB, len(ents), nil
}
