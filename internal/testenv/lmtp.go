package testenv

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/emersion/go-smtp"
)

// LMTPSend delivers msg over one LMTP transaction and returns each
// recipient's outcome: nil for 250, the RCPT error for a recipient refused at
// RCPT, otherwise its reply after DATA.
func LMTPSend(t testing.TB, addr, from string, rcpts []string, msg []byte, utf8 bool) map[string]error {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(from, &smtp.MailOptions{Body: smtp.Body8BitMIME, UTF8: utf8}); err != nil {
		t.Fatal(err)
	}
	res := map[string]error{}
	accepted := 0
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			res[r] = err
			continue
		}
		accepted++
	}
	if accepted == 0 {
		return res
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(msg); err != nil {
		t.Fatal(err)
	}
	ok, err := w.CloseWithLMTPResponse()
	var lerr smtp.LMTPDataError
	if err != nil && !errors.As(err, &lerr) {
		// The whole DATA failed (e.g. 552 for every recipient).
		for _, r := range rcpts {
			if _, refused := res[r]; !refused {
				res[r] = err
			}
		}
		return res
	}
	for r := range ok {
		res[r] = nil
	}
	for r, e := range lerr {
		res[r] = e
	}
	c.Quit()
	return res
}

// SMTPCode renders an outcome of LMTPSend as "250" or "550 5.1.1".
func SMTPCode(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return fmt.Sprintf("%d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	if err == nil {
		return "250"
	}
	return err.Error()
}
