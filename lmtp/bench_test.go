package lmtp_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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
			runSessions(b, len(clients), func(i int) error { return send(clients[i], msg) })
		})
	}
}

// runSessions makes b.N calls of send spread over sessions goroutines, the
// i-th using connection i, stops the timer when all are done, and fails b on
// the first error.
func runSessions(b *testing.B, sessions int, send func(i int) error) {
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for i := range sessions {
		n := b.N / sessions
		if i < b.N%sessions {
			n++
		}
		wg.Go(func() {
			for range n {
				if err := send(i); err != nil {
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

// BenchmarkLMTPDeliverLarge: one op is one LMTP transaction (MAIL, RCPT,
// DATA of a large message, one reply) on one of 10 kept-open connections.
// The client writes the message already dot-stuffed, in one Write, so that
// the time is the server's: go-smtp's DATA reader and this package's.
func BenchmarkLMTPDeliverLarge(b *testing.B) {
	for _, size := range []int{100 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("size=%dKB", size>>10), func(b *testing.B) {
			msg := largeMessage(size)
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

			const sessions = 10
			clients := make([]*rawClient, sessions)
			for i := range clients {
				c, err := dialRawClient(l.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				defer c.conn.Close()
				clients[i] = c
			}
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			cpu0 := processCPU()
			runSessions(b, len(clients), func(i int) error { return clients[i].send(msg) })
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			// CPU time (user and system, client included) is steadier than
			// wall time on a shared machine.
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the user and system CPU time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// largeMessage is a text message of about size bytes in 76-character lines,
// the shape of a base64 attachment, followed by the end-of-data line.
func largeMessage(size int) []byte {
	var buf bytes.Buffer
	buf.WriteString("From: a@remote.test\r\nTo: alice@example.org\r\nSubject: bench\r\n\r\n")
	line := strings.Repeat("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 2)[:76] + "\r\n"
	for buf.Len() < size {
		buf.WriteString(line)
	}
	buf.WriteString(".\r\n")
	return buf.Bytes()
}

// rawClient speaks LMTP over a bare connection.
type rawClient struct {
	conn net.Conn
	r    *textproto.Reader
}

func dialRawClient(addr string) (*rawClient, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &rawClient{conn: conn, r: textproto.NewReader(bufio.NewReader(conn))}
	if _, _, err := c.r.ReadResponse(220); err != nil {
		conn.Close()
		return nil, err
	}
	if _, err := conn.Write([]byte("LHLO bench.test\r\n")); err != nil {
		conn.Close()
		return nil, err
	}
	if _, _, err := c.r.ReadResponse(250); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// send runs one transaction; data ends with the end-of-data line.
func (c *rawClient) send(data []byte) error {
	if _, err := c.conn.Write([]byte("MAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")); err != nil {
		return err
	}
	for _, code := range []int{250, 250, 354} {
		if _, _, err := c.r.ReadResponse(code); err != nil {
			return err
		}
	}
	if _, err := c.conn.Write(data); err != nil {
		return err
	}
	_, _, err := c.r.ReadResponse(250)
	return err
}
