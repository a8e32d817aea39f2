package lmtp_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"cryptomail/lmtp"
)

// nopBackend accepts every address as is and stores nothing, so the
// benchmark measures the protocol and this package alone.
type nopBackend struct{}

func (nopBackend) Resolve(_ context.Context, rcpt string) (string, error) { return rcpt, nil }

func (nopBackend) Deliver(context.Context, *lmtp.Envelope, lmtp.Recipient, []byte) error {
	return nil
}

// BenchmarkLMTPDeliver: one op is one LMTP transaction (MAIL, two RCPT, DATA
// of a 4 KiB message, two replies) on a kept-open connection.
func BenchmarkLMTPDeliver(b *testing.B) {
	msg := []byte("From: a@remote.test\r\nTo: alice@example.org\r\nSubject: bench\r\n\r\n" +
		strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 64))
	for _, sessions := range []int{1, 10} {
		b.Run(fmt.Sprintf("sessions=%d", sessions), func(b *testing.B) {
			srv := lmtp.NewLMTP(nopBackend{}, lmtp.Config{
				Hostname: "mx.example.test",
				Logger:   slog.New(slog.DiscardHandler),
			})
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go srv.Serve(l)
			defer srv.Shutdown(context.Background())

			clients := make([]*smtp.Client, sessions)
			for i := range clients {
				conn, err := net.Dial("tcp", l.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				clients[i] = smtp.NewClientLMTP(conn)
				if err := clients[i].Hello("bench.test"); err != nil {
					b.Fatal(err)
				}
				defer clients[i].Close()
			}

			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			var wg sync.WaitGroup
			errs := make(chan error, sessions)
			for i, c := range clients {
				n := b.N / sessions
				if i < b.N%sessions {
					n++
				}
				wg.Go(func() {
					for range n {
						if err := send(c, msg); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
		})
	}
}

func send(c *smtp.Client, msg []byte) error {
	if err := c.Mail("a@remote.test", nil); err != nil {
		return err
	}
	for _, r := range []string{"alice@example.org", "bob@example.org"} {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	_, err = w.CloseWithLMTPResponse()
	return err
}
