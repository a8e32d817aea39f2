package lmtp_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"cryptomail/lmtp"
)

// TestShutdownWaitsForDelivery: Shutdown lets a DATA in flight finish and its
// client get the 250, ends idle connections with 421, refuses a new MAIL and
// new connections, and returns only after all that.
func TestShutdownWaitsForDelivery(t *testing.T) {
	be := newBackend()
	be.Started = make(chan string, 1)
	be.Block = make(chan struct{})
	ts := start(t, modeLMTP, lmtp.Config{}, be)

	// busy: a transaction whose Deliver blocks, with a MAIL pipelined
	// behind the message.
	busy := dialRaw(t, ts.Addr)
	busy.greet(modeLMTP)
	busy.send("MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
	busy.expect("250 ")
	busy.expect("250 ")
	busy.expect("354 ")
	busy.send("Subject: in flight\r\n\r\nx\r\n.\r\nMAIL FROM:<late@remote.test>\r\n")

	// A second one, through go-smtp's client, likewise in flight.
	conn, err := net.Dial("tcp", ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("mta.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("s@remote.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("bob@example.org", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: also in flight\r\n\r\ny\r\n"))
	clientDone := make(chan error, 1)
	go func() {
		_, err := w.CloseWithLMTPResponse()
		clientDone <- err
	}()

	idle := dialRaw(t, ts.Addr)
	idle.greet(modeLMTP)

	<-be.Started
	<-be.Started

	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shutdown <- ts.Shutdown(ctx)
	}()

	// The idle connection is told and closed while the deliveries wait.
	idle.expect("421 ")
	idle.expectEOF()
	// Serve returns once the listener is closed: no new connections.
	if err := <-ts.Serve; !errors.Is(err, lmtp.ErrServerClosed) {
		t.Errorf("Serve = %v, want ErrServerClosed", err)
	}
	if c, err := net.Dial("tcp", ts.Addr); err == nil {
		c.Close()
		t.Error("a new connection was accepted after Shutdown")
	}
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned (%v) while deliveries were in flight", err)
	default:
	}

	close(be.Block)
	busy.expect("250 2.0.0 <alice@example.org> OK")
	// The pipelined MAIL is refused (or the connection ends).
	if lines, err := busy.reply(); err == nil && !strings.HasPrefix(lines[len(lines)-1], "421 ") {
		t.Errorf("MAIL during shutdown got %q, want 421", lines)
	}
	busy.expectEOF()
	if err := <-clientDone; err != nil {
		t.Errorf("in-flight DATA over go-smtp's client: %v", err)
	}
	if err := <-shutdown; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	if n := len(be.Delivered()); n != 2 {
		t.Errorf("delivered %d, want 2", n)
	}
	ctx := context.Background()
	if err := ts.Shutdown(ctx); !errors.Is(err, lmtp.ErrServerClosed) {
		t.Errorf("second Shutdown = %v, want ErrServerClosed", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.Server.Serve(l); !errors.Is(err, lmtp.ErrServerClosed) {
		t.Errorf("Serve after Shutdown = %v, want ErrServerClosed", err)
	}
}

// TestShutdownDeadline: when Shutdown's context ends first, Backend calls in
// flight see their context cancelled, no 250 is given, and Shutdown returns
// the context's error.
func TestShutdownDeadline(t *testing.T) {
	be := newBackend()
	be.Started = make(chan string, 1)
	be.Block = make(chan struct{}) // never closed before Shutdown gives up
	be.Cancelled = make(chan error, 1)
	ts := start(t, modeLMTP, lmtp.Config{}, be)

	rc := dialRaw(t, ts.Addr)
	rc.greet(modeLMTP)
	rc.send("MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
	rc.expect("250 ")
	rc.expect("250 ")
	rc.expect("354 ")
	rc.send("x\r\n.\r\n")
	<-be.Started

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if err := <-be.Cancelled; !errors.Is(err, context.Canceled) {
		t.Errorf("Deliver's context ended with %v, want Canceled", err)
	}
	if rest := rc.expectEOF(); strings.Contains(rest, "250 ") {
		t.Errorf("client got %q after an abandoned delivery", rest)
	}
	if n := len(be.Delivered()); n != 0 {
		t.Errorf("delivered %d", n)
	}
}
