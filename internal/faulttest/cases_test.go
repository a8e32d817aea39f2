package faulttest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"cryptomail/internal/testenv"
	"cryptomail/xmap/sexmap"
)

// Why the known wrong answers are wrong.
const (
	whySequence = "RFC 5321 §4.2.4/§4.3.2: a command out of sequence gets 503; 502 means not implemented (go-smtp's choice)"
	whyLongCmd  = "RFC 3463: X.4.0 is a network/routing status; a too-long command line is a syntax error, X.5.2 (go-smtp's choice)"
	whyMangled  = "RFC 5321 §4.2.4: an unrecognized command gets 500; 501 is for bad parameters of a known one (go-smtp's choice)"
	whyUTF8     = "without SMTPUTF8 on MAIL the envelope is RFC 5321's ASCII-only syntax; RFC 6531 has 553 5.6.7 (non-ASCII address not permitted) for this; go-smtp never checks"
	whyPartial  = "a command line cut off by the idle timeout is run as if complete (bufio.Reader.ReadLine hands go-smtp the partial line without an error); only the 421 should come"
	whyCtlHelo  = "a LHLO name with control characters should be refused at LHLO; go-smtp has no hook there, so lmtp refuses the MAIL that follows (501 5.5.4) and nothing is stored"
	whyBDATLine = "go-smtp applies its 2,000-byte line limit to the BDAT chunk bytes it read ahead together with the BDAT command (the first ~4 KiB), so a long line there closes the connection while the same line later in the chunk passes"
)

func badCases() []badCase {
	return []badCase{
		// Messages the server must take and keep byte for byte.
		{"LMTP: odd messages", "each of testenv.OddMessages (8-bit and UTF-8 headers, no body, dot lines, malformed MIME, binary junk)", func(c *caseCtx) string {
			var finals []reply
			for _, m := range testenv.OddMessages {
				tok := newToken()
				params := ""
				if m.UTF8 {
					params = " SMTPUTF8"
				}
				tr := c.send(c.e.main, true, params, []string{alice}, tok, msgOf(tok, "\r\n", strings.TrimSuffix(m.Msg, "\r\n")))
				c.expect(m.Name, tr.final[0].last(), "", "", "250 2.0.0 ")
				finals = append(finals, tr.final...)
			}
			return summarize(finals)
		}},
		{"LMTP: malformed MIME nested 1,000 deep", "multipart/mixed inside multipart/mixed, 1,000 levels, each boundary opened and closed", func(c *caseCtx) string {
			tok := newToken()
			var b strings.Builder
			const depth = 1000
			fmt.Fprintf(&b, "%s%s\r\nSubject: deep\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n", tokenHeader, tok)
			for i := 1; i <= depth; i++ {
				fmt.Fprintf(&b, "--b%d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n", i-1, i)
			}
			fmt.Fprintf(&b, "--b%d\r\nContent-Type: text/plain\r\n\r\ndeep inside\r\n", depth)
			for i := depth; i >= 0; i-- {
				fmt.Fprintf(&b, "--b%d--\r\n", i)
			}
			tr := c.send(c.e.main, true, "", []string{alice}, tok, []byte(b.String()))
			c.expect("DATA", tr.final[0].last(), "", "", "250 2.0.0 ")
			return txText(tr)
		}},
		{"LMTP: bare LF line endings", "every line ended by LF alone (one starting with a dot); only the final line ends CRLF", func(c *caseCtx) string {
			tok := newToken()
			tr := c.send(c.e.main, true, "", []string{alice}, tok, msgOf(tok, "\n", "From: a@elsewhere.test", "Subject: bare LF", "", "line one", ".dot after a bare LF", "last"))
			c.expect("DATA", tr.final[0].last(), "", "", "250 2.0.0 ")
			return txText(tr)
		}},
		{"LMTP: bare CR line endings", "every line ended by CR alone; only the final line ends CRLF", func(c *caseCtx) string {
			tok := newToken()
			tr := c.send(c.e.main, true, "", []string{alice}, tok, msgOf(tok, "\r", "Subject: bare CR", "", "line one", ".dot after a bare CR", "last"))
			c.expect("DATA", tr.final[0].last(), "", "", "250 2.0.0 ")
			return txText(tr)
		}},
		{"LMTP: SMTP smuggling with bare-LF end-of-data", "body holding `\\n.\\n`, `\\n.\\r\\n` and `\\r.\\r\\n`, each followed by MAIL/RCPT bob/DATA and a second message, then the real `\\r\\n.\\r\\n` and VRFY", func(c *caseCtx) string {
			tok := newToken()
			smuggled := "MAIL FROM:<smuggler@elsewhere.test>\r\nRCPT TO:<" + bob + ">\r\nDATA\r\n" + tokenHeader + newToken() + "\r\nSubject: smuggled\r\n\r\nsmuggled\r\n"
			msg := []byte(tokenHeader + tok + "\r\nSubject: smuggling\r\n\r\none\n.\n" + smuggled + "two\n.\r\n" + smuggled + "three\r.\r\n" + smuggled)
			w := c.session(c.e.main, true)
			c.write(w, "MAIL FROM:<"+sender+">\r\nRCPT TO:<"+alice+">\r\nDATA\r\n")
			tr := &txResult{mail: c.reply(w), rcpts: []reply{c.reply(w)}, data: c.reply(w)}
			if tr.data.code() != 354 {
				c.Fatalf("DATA: %q", tr.data)
			}
			stuffed, err := dotStuff(msg)
			if err != nil {
				c.Fatal(err)
			}
			c.write(w, string(stuffed)+".\r\nVRFY "+alice+"\r\n")
			tr.final = []reply{c.reply(w)}
			c.note(c.e.main, recordTx(c.e.main.l, tok, msg, []string{alice}, tr, true))
			next := c.reply(w)
			c.expect("DATA", tr.final[0].last(), "", "", "250 2.0.0 ")
			c.expect("the command after the real end of data", next.last(), "", "the smuggled MAIL must not run", "252 ")
			return txText(tr) + ", then the VRFY reply `" + normalize(next.last()) + "`: one message, nothing smuggled"
		}},
		{"LMTP: NUL bytes", "NUL bytes in a header and in the body", func(c *caseCtx) string {
			tok := newToken()
			tr := c.send(c.e.main, true, "", []string{alice}, tok, msgOf(tok, "\r\n", "Subject: nul\x00here", "", "body \x00\x00 nul", "\x00"))
			c.expect("DATA", tr.final[0].last(), "", "", "250 2.0.0 ")
			return txText(tr)
		}},
		{"LMTP: text line of 998 bytes", "a body line of 998 bytes plus CRLF (RFC 5321's limit)", func(c *caseCtx) string {
			tok := newToken()
			tr := c.send(c.e.main, true, "", []string{alice}, tok, msgOf(tok, "\r\n", "Subject: 998", "", strings.Repeat("x", 998)))
			c.expect("DATA", tr.final[0].last(), "", "", "250 2.0.0 ")
			return txText(tr)
		}},
		{"LMTP: text line of 2,100 bytes", "a body line of 2,100 bytes (the server's line limit is 2,000)", longLineCase(true, "Subject: long line\r\n\r\n"+strings.Repeat("y", 2100)+"\r\n")},
		{"LMTP: header line of 3,000 bytes", "one unfolded header line of 3,000 bytes", longLineCase(true, "X-Long: "+strings.Repeat("h", 3000)+"\r\n\r\nbody\r\n")},
		{"LMTP: 1 MB header, folded", "one header of 1 MiB folded into 76-byte lines", func(c *caseCtx) string {
			tok := newToken()
			var b strings.Builder
			fmt.Fprintf(&b, "%s%s\r\nSubject: big header\r\nX-Big: start\r\n", tokenHeader, tok)
			for b.Len() < 1<<20 {
				b.WriteString("\t" + strings.Repeat("f", 73) + "\r\n")
			}
			b.WriteString("\r\nbody\r\n")
			tr := c.send(c.e.main, true, "", []string{alice}, tok, []byte(b.String()))
			c.expect("DATA", tr.final[0].last(), "", "", "250 2.0.0 ")
			return txText(tr)
		}},
		{"LMTP: 1 MB header on one line", "one unfolded header line of 1 MiB", longLineCase(true, "X-Huge: "+strings.Repeat("h", 1<<20)+"\r\n\r\nbody\r\n")},
		{"LMTP: message over max_message_bytes", fmt.Sprintf("a message 1 KiB over max_message_bytes (%d), to alice and bob", badMax), func(c *caseCtx) string {
			tok := newToken()
			msg := msgOf(tok, "\r\n", "Subject: too big", "", strings.TrimSuffix(strings.Repeat(strings.Repeat("z", 1022)+"\r\n", badMax/1024+1), "\r\n"))
			tr := c.send(c.e.main, true, "", []string{alice, bob}, tok, msg)
			for _, r := range tr.final {
				c.expect("DATA", r.last(), "", "", "552 5.3.4 ")
			}
			c.never(c.e.main, tok, msg, alice)
			c.never(c.e.main, tok, msg, bob)
			return txText(tr)
		}},
		{"LMTP: MAIL SIZE= over the limit", "`MAIL FROM:<…> SIZE=104857600`", func(c *caseCtx) string {
			w := c.session(c.e.main, true)
			c.write(w, "MAIL FROM:<"+sender+"> SIZE=104857600\r\n")
			r := c.reply(w)
			c.expect("MAIL", r.last(), "", "", "552 5.3.4 ")
			return summarize([]reply{r})
		}},

		// Commands.
		{"LMTP: command line of 3,000 bytes", "`MAIL FROM:<` + 3,000 bytes + `@elsewhere.test>`", func(c *caseCtx) string {
			w := c.session(c.e.main, true)
			c.write(w, "MAIL FROM:<"+strings.Repeat("a", 3000)+"@elsewhere.test>\r\n")
			ls, closed := w.drain(replyWait)
			first := "(nothing)"
			if len(ls) > 0 {
				first = ls[0]
			}
			c.expect("the long command", first, "500 5.4.0 ", whyLongCmd, "500 5.5.2 ")
			if !closed {
				c.Error("connection left open")
			}
			return closedText(ls, closed)
		}},
		{"LMTP: NUL in the command verb", "`NO\\0P`", func(c *caseCtx) string {
			w := c.session(c.e.main, true)
			c.write(w, "NO\x00P\r\n")
			r := c.reply(w)
			c.expect("NO\\0P", r.last(), "", "", "500 5.5.2 ")
			return strings.ReplaceAll(summarize([]reply{r}), "\x00", `\0`)
		}},
		{"LMTP: NUL in MAIL FROM", "`MAIL FROM:<a\\0b@elsewhere.test>`", func(c *caseCtx) string {
			w := c.session(c.e.main, true)
			c.write(w, "MAIL FROM:<a\x00b@elsewhere.test>\r\n")
			r := c.reply(w)
			c.expect("MAIL", r.last(), "", "", "501 5.1.7 ", "501 5.5.2 ", "553 5.1.7 ")
			return summarize([]reply{r})
		}},
		{"LMTP: CR in MAIL FROM (header injection)", "`MAIL FROM:<\"x\\rX-Injected: yes\"@elsewhere.test>` (a bare CR in a quoted local part), then a message to alice", func(c *caseCtx) string {
			tok := newToken()
			c.e.main.l.keepPlain(tok)
			msg := msgOf(tok, "\r\n", "Subject: injected?", "", "look at the Return-Path")
			tr := c.sendOn(c.session(c.e.main, true), c.e.main, true, "\"x\rX-Injected: yes\"@elsewhere.test", "", []string{alice}, tok, msg)
			c.expect("MAIL", tr.mail.last(), "", "", "501 5.1.7 ", "501 5.5.2 ", "553 5.1.7 ")
			c.row.post = append(c.row.post, injected(slot{tok, alice}, "Return-Path"))
			return "MAIL: " + summarize([]reply{tr.mail}) + "; " + txText(tr)
		}},
		{"LMTP: CR in the LHLO name (header injection)", "`LHLO evil.test\\rX-Injected:yes`, then a message to alice", func(c *caseCtx) string {
			w := c.dial(c.e.main, true)
			c.reply(w)
			c.write(w, "LHLO evil.test\rX-Injected:yes\r\n")
			r := c.reply(w)
			// go-smtp gives no hook at LHLO; the name is refused at MAIL (501 5.5.4).
			c.expect("LHLO", r.last(), "250", whyCtlHelo, "501 5.5.2 ")
			if r.code() != 250 {
				return summarize([]reply{r})
			}
			tok := newToken()
			c.e.main.l.keepPlain(tok)
			tr := c.sendOn(w, c.e.main, true, sender, "", []string{alice}, tok, msgOf(tok, "\r\n", "Subject: injected?", "", "look at the Received header"))
			c.row.post = append(c.row.post, injected(slot{tok, alice}, "Received"))
			return "LHLO: `" + normalize(r.last()) + "`; " + txText(tr)
		}},
		{"LMTP: NUL in RCPT TO", "`RCPT TO:<ali\\0ce@example.test>`", func(c *caseCtx) string {
			w := c.session(c.e.main, true)
			c.write(w, "MAIL FROM:<"+sender+">\r\nRCPT TO:<ali\x00ce@"+domain+">\r\n")
			rs := []reply{c.reply(w), c.reply(w)}
			c.expect("RCPT", rs[1].last(), "", "", "501 5.1.3 ", "501 5.5.2 ", "553 5.1.3 ")
			return summarize(rs[1:])
		}},
		{"LMTP: an HTTP request instead of LHLO", "`GET / HTTP/1.1`, three header lines, a blank line", func(c *caseCtx) string {
			w := c.dial(c.e.main, true)
			if r := c.reply(w); r.code() != 220 {
				c.Fatalf("greeting %q", r)
			}
			c.write(w, "GET / HTTP/1.1\r\nHost: mx\r\nUser-Agent: x\r\nAccept: */*\r\n\r\n")
			ls, closed := w.drain(replyWait)
			first := "(nothing)"
			if len(ls) > 0 {
				first = ls[0]
			}
			c.expect("GET", first, "501 5.5.2 ", whyMangled, "500 5.5.2 ")
			if !closed {
				c.Error("connection left open after repeated errors")
			}
			return closedText(ls, closed)
		}},
		{"LMTP: a TLS ClientHello instead of LHLO", "the first bytes of a TLS 1.2 ClientHello, then CRLF", func(c *caseCtx) string {
			w := c.dial(c.e.main, true)
			if r := c.reply(w); r.code() != 220 {
				c.Fatalf("greeting %q", r)
			}
			hello := []byte{0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03}
			hello = append(hello, bytes.Repeat([]byte{0xa7, 0x3c, 0x00, 0xe1}, 16)...)
			c.write(w, string(hello)+"\r\n")
			r := c.reply(w)
			c.expect("ClientHello", r.last(), "501 5.5.2 ", whyMangled, "500 5.5.2 ")
			return summarize([]reply{r})
		}},
		{"LMTP: MAIL before LHLO", "`MAIL FROM:<…>` right after the greeting", func(c *caseCtx) string {
			w := c.dial(c.e.main, true)
			c.reply(w)
			c.write(w, "MAIL FROM:<"+sender+">\r\n")
			r := c.reply(w)
			c.expect("MAIL", r.last(), "502 5.5.1 ", whySequence, "503 5.5.1 ")
			return summarize([]reply{r})
		}},
		{"LMTP: RCPT before MAIL", "`RCPT TO:<alice@…>` after LHLO", func(c *caseCtx) string {
			w := c.session(c.e.main, true)
			c.write(w, "RCPT TO:<"+alice+">\r\n")
			r := c.reply(w)
			c.expect("RCPT", r.last(), "502 5.5.1 ", whySequence, "503 5.5.1 ")
			return summarize([]reply{r})
		}},
		{"LMTP: DATA with no accepted recipient", "MAIL, `RCPT TO:<nobody@…>`, DATA", func(c *caseCtx) string {
			w := c.session(c.e.main, true)
			c.write(w, "MAIL FROM:<"+sender+">\r\nRCPT TO:<nobody@"+domain+">\r\nDATA\r\n")
			rs := []reply{c.reply(w), c.reply(w), c.reply(w)}
			c.expect("RCPT", rs[1].last(), "", "", "550 5.1.1 ")
			c.expect("DATA", rs[2].last(), "502 5.5.1 ", whySequence+"; RFC 5321 §3.3 allows 503 or 554", "503 5.5.1 ", "554 ")
			return summarize(rs[1:])
		}},
		{"LMTP: EHLO and HELO on the LMTP port", "`EHLO x`, `HELO x`", func(c *caseCtx) string {
			w := c.dial(c.e.main, true)
			c.reply(w)
			c.write(w, "EHLO client.test\r\nHELO client.test\r\n")
			rs := []reply{c.reply(w), c.reply(w)}
			for _, r := range rs {
				c.expect("EHLO/HELO", r.last(), "", "", "500 5.5.1 ")
			}
			return summarize(rs)
		}},
		{"LMTP: LHLO without a name", "`LHLO`", func(c *caseCtx) string {
			w := c.dial(c.e.main, true)
			c.reply(w)
			c.write(w, "LHLO\r\n")
			r := c.reply(w)
			c.expect("LHLO", r.last(), "", "", "501 5.5.2 ")
			return summarize([]reply{r})
		}},
		{"LMTP: MAIL inside a transaction", "MAIL, RCPT, a second MAIL, RSET", func(c *caseCtx) string {
			w := c.session(c.e.main, true)
			c.write(w, "MAIL FROM:<"+sender+">\r\nRCPT TO:<"+alice+">\r\nMAIL FROM:<other@elsewhere.test>\r\nRSET\r\n")
			rs, err := w.readReplies(4)
			if err != nil {
				c.Fatal(err)
			}
			c.expect("second MAIL", rs[2].last(), "", "", "503 5.5.1 ")
			return summarize(rs[2:3])
		}},
		{"LMTP: refused recipients", "`RCPT TO:` an unknown user, another domain, a malformed address, a 100-byte local part", func(c *caseCtx) string {
			w := c.session(c.e.main, true)
			rcpts := []string{"nobody@" + domain, "alice@elsewhere.test", "a..b@" + domain, strings.Repeat("l", 100) + "@" + domain}
			wants := []string{"550 5.1.1 ", "550 5.1.2 ", "501 5.1.3 ", "501 5.1.3 "}
			var cmds strings.Builder
			cmds.WriteString("MAIL FROM:<" + sender + ">\r\n")
			for _, r := range rcpts {
				cmds.WriteString("RCPT TO:<" + r + ">\r\n")
			}
			c.write(w, cmds.String())
			rs, err := w.readReplies(1 + len(rcpts))
			if err != nil {
				c.Fatal(err)
			}
			var parts []string
			for i, r := range rs[1:] {
				c.expect(rcpts[i], r.last(), "", "", wants[i])
				parts = append(parts, summarize([]reply{r}))
			}
			return strings.Join(parts, ", ")
		}},
		{"LMTP: 3,000 recipients", "3,000 `RCPT TO:<alice+N@…>` in one write (max_recipients = 1,000), then DATA", func(c *caseCtx) string {
			rcpts := make([]string, 3000)
			for i := range rcpts {
				rcpts[i] = fmt.Sprintf("alice+%d@%s", i, domain)
			}
			tok := newToken()
			tr := c.send(c.e.main, true, "", rcpts, tok, msgOf(tok, "\r\n", "Subject: many", "", "to many"))
			for i, r := range tr.rcpts {
				want := "250 "
				if i >= 1000 {
					want = "452 4.5.3 "
				}
				if !r.has(want) {
					c.Errorf("RCPT %d: got %q, want %q", i+1, r.last(), want)
					break
				}
			}
			if len(tr.final) != 1000 {
				c.Errorf("%d replies after DATA, want 1000", len(tr.final))
			}
			for _, r := range tr.final {
				c.expect("DATA", r.last(), "", "", "250 2.0.0 ")
			}
			return txText(tr) + " (delivered once: all resolve to alice)"
		}},
		{"LMTP: pipelining abuse", "506 commands and a message in one write, before reading anything: LHLO, 200 NOOP, 100 RSET, 50 VRFY, 50×(MAIL, RCPT, RSET), MAIL, 2 RCPT, DATA, the message, QUIT", func(c *caseCtx) string {
			tok := newToken()
			msg := msgOf(tok, "\r\n", "Subject: pipelined", "", "all at once")
			var b strings.Builder
			var want []string
			add := func(cmd, code string, n int) {
				for range n {
					b.WriteString(cmd + "\r\n")
					want = append(want, code)
				}
			}
			add("LHLO pipeliner.test", "250", 1)
			add("NOOP", "250", 200)
			add("RSET", "250", 100)
			add("VRFY "+alice, "252", 50)
			for range 50 {
				add("MAIL FROM:<"+sender+">", "250", 1)
				add("RCPT TO:<"+alice+">", "250", 1)
				add("RSET", "250", 1)
			}
			add("MAIL FROM:<"+sender+">", "250", 1)
			add("RCPT TO:<"+alice+">", "250", 1)
			add("RCPT TO:<"+bob+">", "250", 1)
			add("DATA", "354", 1)
			stuffed, _ := dotStuff(msg)
			b.Write(stuffed)
			b.WriteString(".\r\n")
			want = append(want, "250", "250") // alice, bob
			add("QUIT", "221", 1)
			w := c.dial(c.e.main, true)
			c.write(w, b.String())
			if r := c.reply(w); r.code() != 220 {
				c.Fatalf("greeting %q", r)
			}
			rs, err := w.readReplies(len(want))
			if err != nil {
				c.Fatalf("after %d of %d replies: %v", len(rs), len(want), err)
			}
			for i, r := range rs {
				if fmt.Sprint(r.code()) != want[i] {
					c.Fatalf("reply %d: %q, want %s", i+1, r.last(), want[i])
				}
			}
			n := len(rs)
			tr := &txResult{data: rs[n-4], rcpts: []reply{rs[n-6], rs[n-5]}, final: rs[n-3 : n-1]}
			c.note(c.e.main, recordTx(c.e.main.l, tok, msg, []string{alice, bob}, tr, true))
			return fmt.Sprintf("%d replies, each in order; the message: %s; QUIT: `%s`", len(rs), summarize(tr.final), normalize(rs[n-1].last()))
		}},
		{"LMTP: disconnect in the middle of DATA", "MAIL, RCPT, DATA, half a message, then close", func(c *caseCtx) string {
			tok := newToken()
			w := c.session(c.e.main, true)
			c.write(w, "MAIL FROM:<"+sender+">\r\nRCPT TO:<"+alice+">\r\nDATA\r\n")
			rs, err := w.readReplies(3)
			if err != nil || rs[2].code() != 354 {
				c.Fatalf("%q %v", rs, err)
			}
			c.write(w, tokenHeader+tok+"\r\nSubject: cut\r\n\r\nhalf of it")
			w.Close()
			c.never(c.e.main, tok, nil, alice)
			return "connection closed by the client; nothing to answer"
		}},
		{"LMTP: disconnect after DATA", "MAIL, RCPT, DATA, then close before any content", func(c *caseCtx) string {
			w := c.session(c.e.main, true)
			c.write(w, "MAIL FROM:<"+sender+">\r\nRCPT TO:<"+alice+">\r\nDATA\r\n")
			rs, err := w.readReplies(3)
			if err != nil || rs[2].code() != 354 {
				c.Fatalf("%q %v", rs, err)
			}
			w.Close()
			return "connection closed by the client after `" + normalize(rs[2].last()) + "`"
		}},
		{"LMTP: disconnect right after the final dot", "a whole message, then close without reading the replies", func(c *caseCtx) string {
			tok := newToken()
			msg := msgOf(tok, "\r\n", "Subject: fire and forget", "", "bye")
			stuffed, err := dotStuff(msg)
			if err != nil {
				c.Fatal(err)
			}
			w := c.session(c.e.main, true)
			c.write(w, "MAIL FROM:<"+sender+">\r\nRCPT TO:<"+alice+">\r\nDATA\r\n"+string(stuffed)+".\r\n")
			w.Close()
			c.e.main.l.record(tok, msg, alice, mayStore)
			c.note(c.e.main, []slot{{tok, alice}})
			return "connection closed by the client; the message may be stored (at most once)"
		}},
		{"LMTP: BDAT cut short", "`BDAT 100000 LAST` followed by 100 bytes, then close", func(c *caseCtx) string {
			tok := newToken()
			w := c.session(c.e.main, true)
			c.write(w, "MAIL FROM:<"+sender+">\r\nRCPT TO:<"+alice+">\r\n")
			rs, err := w.readReplies(2)
			if err != nil {
				c.Fatal(err)
			}
			chunk := tokenHeader + tok + "\r\nSubject: short chunk\r\n\r\n"
			chunk += strings.Repeat("c", 100-len(chunk))
			c.write(w, "BDAT 100000 LAST\r\n"+chunk)
			w.Close()
			// A truncated chunk must never be stored (lmtp refuses a message
			// whose connection failed while it was read).
			c.e.main.l.record(tok, []byte(chunk), alice, mustNotStore)
			c.note(c.e.main, []slot{{tok, alice}})
			return "connection closed by the client after " + summarize(rs)
		}},
		{"LMTP: BDAT with a 1 MB header line", "`BDAT n LAST` carrying a message whose one header line is 1 MiB", func(c *caseCtx) string {
			tok := newToken()
			msg := msgOf(tok, "\r\n", "X-Huge: "+strings.Repeat("h", 1<<20), "", "body")
			w := c.session(c.e.main, true)
			c.write(w, "MAIL FROM:<"+sender+">\r\nRCPT TO:<"+alice+">\r\n")
			tr := &txResult{data: reply{"354 (BDAT)"}}
			tr.mail, tr.rcpts = c.reply(w), []reply{c.reply(w)}
			// The server may refuse and close before reading it all.
			go w.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg), msg))
			tr.final = []reply{c.reply(w)}
			if tr.final[0].code() == 250 {
				c.note(c.e.main, recordTx(c.e.main.l, tok, msg, []string{alice}, tr, true))
			} else {
				c.never(c.e.main, tok, msg, alice)
			}
			c.expect("BDAT", tr.final[0].last(), "500 5.4.0 ", whyBDATLine, "250 2.0.0 ")
			ls, closed := w.drain(replyWait)
			return closedText(append([]string{tr.final[0].last()}, ls...), closed)
		}},
		{"LMTP: BDAT with a 1 MB line after 8 KB", "`BDAT n LAST` carrying 8 KiB of short lines, then a 1 MiB line", func(c *caseCtx) string {
			tok := newToken()
			msg := msgOf(tok, "\r\n", "Subject: long line later", "", strings.TrimSuffix(strings.Repeat(strings.Repeat("s", 62)+"\r\n", 128), "\r\n"), strings.Repeat("l", 1<<20))
			w := c.session(c.e.main, true)
			c.write(w, "MAIL FROM:<"+sender+">\r\nRCPT TO:<"+alice+">\r\n")
			tr := &txResult{data: reply{"354 (BDAT)"}}
			tr.mail, tr.rcpts = c.reply(w), []reply{c.reply(w)}
			c.write(w, fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg), msg))
			tr.final = []reply{c.reply(w)}
			c.note(c.e.main, recordTx(c.e.main.l, tok, msg, []string{alice}, tr, true))
			c.expect("BDAT", tr.final[0].last(), "", "", "250 2.0.0 ")
			return summarize(tr.final) + " (BDAT itself has no line limit)"
		}},

		// SMTPUTF8.
		{"LMTP: SMTPUTF8 sender and recipient", "`MAIL FROM:<jürgen@elsewhere.test> SMTPUTF8`, `RCPT TO:<jörg@example.test>`", func(c *caseCtx) string {
			tok := newToken()
			w := c.session(c.e.main, true)
			msg := msgOf(tok, "\r\n", "From: Jürgen <jürgen@elsewhere.test>", "To: jörg@"+domain, "Subject: Grüße", "", "UTF-8 all the way")
			tr, err := w.transact(true, "jürgen@elsewhere.test", " SMTPUTF8", []string{jorg}, msg)
			c.note(c.e.main, recordTx(c.e.main.l, tok, msg, []string{jorg}, tr, true))
			if err != nil {
				c.Fatal(err)
			}
			c.expect("DATA", tr.final[0].last(), "", "", "250 2.0.0 ")
			return txText(tr)
		}},
		{"LMTP: UTF-8 recipient without SMTPUTF8", "`MAIL FROM:<…>` (no SMTPUTF8), `RCPT TO:<jörg@example.test>`", func(c *caseCtx) string {
			tok := newToken()
			msg := msgOf(tok, "\r\n", "Subject: 7-bit envelope", "", "hi")
			tr := c.send(c.e.main, true, "", []string{jorg}, tok, msg)
			c.expect("RCPT", tr.rcpts[0].last(), "250 ", whyUTF8, "553 5.6.7 ")
			return txText(tr)
		}},
		{"LMTP: invalid UTF-8 in an address", "`RCPT TO:<j\\xF6rg@example.test>` (Latin-1) with SMTPUTF8", func(c *caseCtx) string {
			w := c.session(c.e.main, true)
			c.write(w, "MAIL FROM:<"+sender+"> SMTPUTF8\r\nRCPT TO:<j\xf6rg@"+domain+">\r\n")
			rs := []reply{c.reply(w), c.reply(w)}
			c.expect("RCPT", rs[1].last(), "", "", "501 5.1.3 ", "553 5.6.7 ")
			return summarize(rs[1:])
		}},
		{"LMTP: unknown UTF-8 user", "`RCPT TO:<zoë@example.test>` with SMTPUTF8", func(c *caseCtx) string {
			w := c.session(c.e.main, true)
			c.write(w, "MAIL FROM:<"+sender+"> SMTPUTF8\r\nRCPT TO:<zoë@"+domain+">\r\n")
			rs := []reply{c.reply(w), c.reply(w)}
			c.expect("RCPT", rs[1].last(), "", "", "550 5.1.1 ")
			return summarize(rs[1:])
		}},

		// SMTP listener.
		{"SMTP: LHLO on the SMTP port", "`LHLO x`", func(c *caseCtx) string {
			w := c.dial(c.e.main, false)
			c.reply(w)
			c.write(w, "LHLO client.test\r\n")
			r := c.reply(w)
			c.expect("LHLO", r.last(), "", "", "500 5.5.1 ")
			return summarize([]reply{r})
		}},
		{"SMTP: relaying", "`RCPT TO:<victim@elsewhere.test>`", func(c *caseCtx) string {
			w := c.session(c.e.main, false)
			c.write(w, "MAIL FROM:<"+sender+">\r\nRCPT TO:<victim@elsewhere.test>\r\n")
			rs := []reply{c.reply(w), c.reply(w)}
			c.expect("RCPT", rs[1].last(), "", "", "550 5.7.1 ")
			return summarize(rs[1:])
		}},
		{"SMTP: 300 recipients", "300 `RCPT TO:<alice+N@…>` in one write (max_recipients = 100), then DATA", func(c *caseCtx) string {
			rcpts := make([]string, 300)
			for i := range rcpts {
				rcpts[i] = fmt.Sprintf("alice+%d@%s", i, domain)
			}
			tok := newToken()
			tr := c.send(c.e.main, false, "", rcpts, tok, msgOf(tok, "\r\n", "Subject: many over SMTP", "", "to many"))
			for i, r := range tr.rcpts {
				want := "250 "
				if i >= 100 {
					want = "452 4.5.3 "
				}
				if !r.has(want) {
					c.Errorf("RCPT %d: got %q, want %q", i+1, r.last(), want)
					break
				}
			}
			c.expect("DATA", tr.final[0].last(), "", "", "250 2.0.0 ")
			return txText(tr)
		}},
		{"SMTP: text line of 2,100 bytes", "a body line of 2,100 bytes", longLineCase(false, "Subject: long line\r\n\r\n"+strings.Repeat("y", 2100)+"\r\n")},
		{"SMTP: bare LF and NUL bytes", "LF-only lines and NUL bytes in one message", func(c *caseCtx) string {
			tok := newToken()
			tr := c.send(c.e.main, false, "", []string{alice, bob}, tok, msgOf(tok, "\n", "Subject: lf\x00nul", "", "a\x00b", "last"))
			c.expect("DATA", tr.final[0].last(), "", "", "250 2.0.0 ")
			return txText(tr)
		}},
		{"SMTP: STARTTLS without a certificate", "`STARTTLS` (not offered: no tls_cert)", func(c *caseCtx) string {
			w := c.session(c.e.main, false)
			c.write(w, "STARTTLS\r\n")
			r := c.reply(w)
			c.expect("STARTTLS", r.last(), "", "", "502 5.5.1 ", "454 4.7.0 ")
			return summarize([]reply{r})
		}},
		{"SMTP: AUTH (not offered)", "`AUTH PLAIN AGFsaWNlAHNlY3JldA==`", func(c *caseCtx) string {
			w := c.session(c.e.main, false)
			c.write(w, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n")
			r := c.reply(w)
			c.expect("AUTH", r.last(), "523 5.7.10 ", "AUTH is not offered at all, with or without TLS: a command not implemented gets 502 (RFC 5321 §4.2.4); 523 5.7.10 tells the client that TLS would help (go-smtp's choice)", "502 5.5.1 ", "503 5.5.1 ")
			return summarize([]reply{r})
		}},

		// Slow clients (read_timeout = 1s), started at the beginning.
		{"LMTP: silent client", "nothing after the greeting (read_timeout = " + slowIdl + ")", slowCase("lmtp silent", "", "", "421 4.4.2 ")},
		{"LMTP: half a command, then silence", "`MAIL FROM:<slow@elsewhere` without CRLF", slowCase("lmtp half line", "501 5.5.2 ", whyPartial, "421 4.4.2 ")},
		{"LMTP: silent in the middle of DATA", "half a message, then nothing", slowCase("lmtp silent data", "", "", "451 4.4.2 ")},
		{"SMTP: silent in the middle of DATA", "half a message, then nothing", slowCase("smtp silent data", "", "", "451 4.4.2 ")},

		// HTTP.
		{"HTTP: GET /healthz", "`GET /healthz`", httpCase("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", nil, false, 200)},
		{"HTTP: unknown path", "`GET /no/such/path`", httpCase("GET /no/such/path HTTP/1.1\r\nHost: x\r\n\r\n", nil, false, 404)},
		{"HTTP: POST /healthz", "`POST /healthz` with a small body", httpCase("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", nil, false, 405)},
		{"HTTP: 2 MiB of request headers", "2,048 headers of 1 KiB each", httpCase("GET /healthz HTTP/1.1\r\nHost: x\r\n"+strings.Repeat("X-Pad: "+strings.Repeat("p", 1015)+"\r\n", 2048)+"\r\n", nil, false, 431)},
		{"HTTP: TLS ClientHello on the plain port", "the first bytes of a TLS ClientHello", httpCase("\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03\r\n\r\n", nil, false, 400)},
		{"HTTP: HTTP/1.1 without Host", "`GET /healthz HTTP/1.1` and no Host header", httpCase("GET /healthz HTTP/1.1\r\n\r\n", nil, false, 400)},
		{"HTTP: Content-Length and Transfer-Encoding", "`POST /healthz` with both headers and a chunked body, then a pipelined `GET /healthz`", func(c *caseCtx) string {
			conn, err := net.DialTimeout("tcp", c.e.main.httpAddr, 10*time.Second)
			if err != nil {
				c.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(replyWait))
			io.WriteString(conn, "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				c.Fatalf("no response: %v", err)
			}
			resp.Body.Close()
			c.expect("status", fmt.Sprint(resp.StatusCode), "", "", "400", "405")
			after := "closed"
			if next, err := http.ReadResponse(br, nil); err == nil {
				next.Body.Close()
				after = fmt.Sprintf("answered the pipelined request (%d)", next.StatusCode)
			}
			c.expect("after it", after, "answered", "RFC 9112 §6.1: after a request with both Content-Length and Transfer-Encoding the server MUST close the connection", "closed")
			return fmt.Sprintf("`%d %s`, then the connection is %s", resp.StatusCode, http.StatusText(resp.StatusCode), after)
		}},
		{"HTTP: 64 MiB POST body", "`POST /healthz`, Content-Length 64 MiB, streamed", httpCase("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\n\r\n", io.LimitReader(zeros{}, 64<<20), false, 405, 413)},
		{"HTTP: truncated body", "`POST /no/such/path`, Content-Length 1000, 10 bytes, then half-close", httpCase("POST /no/such/path HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789", nil, true, 404, 405)},
		{"HTTP: request header never finished", "`GET /healthz HTTP/1.1` and one header, then nothing", func(c *caseCtx) string {
			o := c.e.await("http slow header")
			if o.err != nil {
				c.Fatal(o.err)
			}
			if !o.closed {
				c.Errorf("connection still open after %v", replyWait)
			}
			return closedText(o.lines, o.closed) + " (ReadHeaderTimeout)"
		}},

		// SeXMAP, once the HTTP listener serves it.
		{"SeXMAP: GET on the handshake path", "`GET " + sexmap.PathHandshake + "`", needsSexmap(httpCase("GET "+sexmap.PathHandshake+" HTTP/1.1\r\nHost: x\r\n\r\n", nil, false, 405))},
		{"SeXMAP: handshake with the wrong media type", "`POST " + sexmap.PathHandshake + "`, Content-Type text/plain", needsSexmap(httpCase("POST "+sexmap.PathHandshake+" HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", nil, false, 415))},
		{"SeXMAP: garbage handshake", "`POST " + sexmap.PathHandshake + "`, 64 random-looking bytes", needsSexmap(httpCase("POST "+sexmap.PathHandshake+" HTTP/1.1\r\nHost: x\r\nContent-Type: "+sexmap.ContentType+"\r\nContent-Length: 64\r\n\r\n"+strings.Repeat("\xde\xad\xbe\xef", 16), nil, false, 400))},
		{"SeXMAP: huge handshake", "`POST " + sexmap.PathHandshake + "`, 1 MiB", needsSexmap(httpCase("POST "+sexmap.PathHandshake+" HTTP/1.1\r\nHost: x\r\nContent-Type: "+sexmap.ContentType+"\r\nContent-Length: 1048576\r\n\r\n", io.LimitReader(zeros{}, 1<<20), false, 413))},
		{"SeXMAP: truncated handshake", "`POST " + sexmap.PathHandshake + "`, Content-Length 200, 10 bytes, half-close", needsSexmap(httpCase("POST "+sexmap.PathHandshake+" HTTP/1.1\r\nHost: x\r\nContent-Type: "+sexmap.ContentType+"\r\nContent-Length: 200\r\n\r\n0123456789", nil, true, 400))},
		{"SeXMAP: request without a session", "`POST " + sexmap.PathTransport + "`, no " + sexmap.HeaderSession + " header, 64 bytes", needsSexmap(httpCase("POST "+sexmap.PathTransport+" HTTP/1.1\r\nHost: x\r\nContent-Type: "+sexmap.ContentType+"\r\nContent-Length: 64\r\n\r\n"+strings.Repeat("g", 64), nil, false, 400))},
		{"SeXMAP: unknown session, 64 MiB body", "`POST " + sexmap.PathTransport + "`, a made-up session id, 64 MiB streamed", needsSexmap(httpCase("POST "+sexmap.PathTransport+" HTTP/1.1\r\nHost: x\r\nContent-Type: "+sexmap.ContentType+"\r\n"+sexmap.HeaderSession+": AAAAAAAAAAAAAAAAAAAAAA\r\nContent-Length: 67108864\r\n\r\n", io.LimitReader(zeros{}, 64<<20), false, 400, 401, 413))},
	}
}

// injected reports a stored trace header that carries a bare CR.
func injected(s slot, header string) func(v verification) string {
	return func(v verification) string {
		plain, ok := v.plain[s]
		if !ok {
			return ""
		}
		for line := range strings.Lines(string(plain)) {
			if strings.HasPrefix(line, header+": ") && strings.Contains(strings.TrimSuffix(line, "\r\n"), "\r") {
				return fmt.Sprintf("the stored %s header holds a bare CR (`%s`): a reader that ends lines at CR sees an injected header", header, escapeControls(strings.TrimSuffix(line, "\r\n")))
			}
			if line == "\r\n" {
				break
			}
		}
		return ""
	}
}

// longLineCase sends a message with an over-long line: the recipients get
// 500 5.5.2, the server closes the connection (go-smtp cannot resync after a
// line it did not read to the end) and nothing is stored.
func longLineCase(lmtp bool, rest string) func(c *caseCtx) string {
	return func(c *caseCtx) string {
		tok := newToken()
		msg := []byte(tokenHeader + tok + "\r\n" + rest)
		rcpts := []string{alice}
		w := c.session(c.e.main, lmtp)
		var cmds strings.Builder
		cmds.WriteString("MAIL FROM:<" + sender + ">\r\n")
		for _, r := range rcpts {
			cmds.WriteString("RCPT TO:<" + r + ">\r\n")
		}
		cmds.WriteString("DATA\r\n")
		c.write(w, cmds.String())
		rs, err := w.readReplies(2 + len(rcpts))
		if err != nil || rs[len(rs)-1].code() != 354 {
			c.Fatalf("%q %v", rs, err)
		}
		// The server stops reading at the limit: write from another
		// goroutine, so that its refusal is read while we still write.
		go w.write(string(msg) + ".\r\n")
		ls, closed := w.drain(replyWait)
		first := "(nothing)"
		if len(ls) > 0 {
			first = ls[0]
		}
		c.expect("DATA", first, "", "", "500 5.5.2 ")
		if !closed {
			c.Error("connection left open")
		}
		for _, r := range rcpts {
			c.never(c.e.main, tok, msg, r)
		}
		return closedText(ls, closed)
	}
}

// needsSexmap skips a case while the HTTP listener does not serve SeXMAP.
func needsSexmap(run func(c *caseCtx) string) func(c *caseCtx) string {
	return func(c *caseCtx) string {
		if !c.e.sexmap {
			c.row.skipped = "the HTTP listener does not serve SeXMAP yet"
			c.Skip(c.row.skipped)
		}
		return run(c)
	}
}

// httpCase sends one raw HTTP request and checks the status.
func httpCase(head string, body io.Reader, halfClose bool, wants ...int) func(c *caseCtx) string {
	return func(c *caseCtx) string {
		st, text, err := httpExchange(c.e.main.httpAddr, head, body, halfClose)
		if err != nil {
			c.Fatalf("no response: %v", err)
		}
		got := fmt.Sprintf("%d %s", st, text)
		ws := make([]string, len(wants))
		for i, w := range wants {
			ws[i] = fmt.Sprint(w)
		}
		c.expect("status", got, "", "", ws...)
		return "`" + strings.TrimSpace(got) + "`"
	}
}
