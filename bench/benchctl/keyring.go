package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	cmcrypto "cryptomail/crypto"
)

// cmdKeyring writes one armored keyring of n fresh public keys, one per
// address of the pattern, for `cryptomail user add --from-file`. The private
// halves are thrown away: bench users only receive mail.
func cmdKeyring(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("keyring", flag.ContinueOnError)
	n := fs.Int("n", 1000, "number of keys")
	pattern := fs.String("addr", "%duser@example.test", "address pattern; %d is replaced by 1..n (smtp-source -N numbering)")
	extra := fs.String("extra", "", "comma-separated further addresses to make keys for")
	out := fs.String("out", "", "file to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *n < 1 || !strings.Contains(*pattern, "%d") {
		return fmt.Errorf("keyring: want -out FILE, -n >= 1 and an -addr pattern with %%d")
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := armor.Encode(bw, openpgp.PublicKeyType, nil)
	if err != nil {
		return err
	}
	// Keys are made in parallel and written in order, in batches.
	addrs := make([]string, 0, *n)
	for i := 1; i <= *n; i++ {
		addrs = append(addrs, fmt.Sprintf(*pattern, i))
	}
	if *extra != "" {
		addrs = append(addrs, strings.Split(*extra, ",")...)
	}
	now := time.Now()
	const batch = 256
	workers := runtime.GOMAXPROCS(0)
	for lo := 0; lo < len(addrs); lo += batch {
		if err := ctx.Err(); err != nil {
			return err
		}
		hi := min(lo+batch, len(addrs))
		ents := make([]*openpgp.Entity, hi-lo)
		errs := make([]error, hi-lo)
		var wg sync.WaitGroup
		next := make(chan int)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					ents[i], errs[i] = cmcrypto.GenerateKey("", addrs[lo+i], nil, now)
				}
			}()
		}
		for i := range ents {
			next <- i
		}
		close(next)
		wg.Wait()
		for i, e := range ents {
			if errs[i] != nil {
				return errs[i]
			}
			if err := e.Serialize(w); err != nil {
				return err
			}
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	if _, err := bw.WriteString("\n"); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}
