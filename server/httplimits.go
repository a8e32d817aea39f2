package server

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"cryptomail/xmap/sexmap"
)

// limitListener accepts at most max connections at once: Accept waits for
// one to close before taking the next from the kernel's queue, so a crowd of
// idle or slow connections costs the kernel's backlog, not the server's
// memory. Closing the listener wakes a waiting Accept.
type limitListener struct {
	net.Listener
	slots chan struct{}
	done  chan struct{}
	once  sync.Once
}

func newLimitListener(l net.Listener, max int) *limitListener {
	return &limitListener{Listener: l, slots: make(chan struct{}, max), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// limitInFlight answers 503 busy at once to a request that would exceed max
// requests being handled (XMAP wait holds one for up to two minutes). The
// refusals are logged once per minute with a count.
func limitInFlight(h http.Handler, max int, refusals *sexmap.RefusalLog) http.Handler {
	slots := make(chan struct{}, max)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			h.ServeHTTP(w, r)
		default:
			refusals.Note("http: too many requests in flight", time.Now(), "max", max)
			hd := w.Header()
			hd.Set("Content-Type", "text/plain; charset=utf-8")
			hd.Set("Cache-Control", "no-store")
			hd.Set("X-Content-Type-Options", "nosniff")
			hd.Set("Retry-After", "1")
			hd.Set("Connection", "close")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "busy\n")
		}
	})
}

// isLoopback reports whether a bound address is on loopback only; the
// unspecified address (0.0.0.0, ::) listens everywhere, so it is not.
func isLoopback(addr net.Addr) bool {
	ap, err := netip.ParseAddrPort(addr.String())
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// insecureWebPage is what the web client's paths answer when it would come
// over plain HTTP off loopback.
const insecureWebPage = `<!doctype html>
<meta charset="utf-8">
<title>CryptoMail: web client disabled</title>
<h1>The web client is not served over plain HTTP</h1>
<p>This server listens on a network address without TLS. The web client's code, the server key
it pins on first use and the passphrase form would all come over this unencrypted connection,
so anyone on the path could replace them and read your passphrase.</p>
<p>Administrators: set <code>http.tls_cert</code> and <code>http.tls_key</code> (or put a TLS
proxy in front and listen on loopback). <code>http.allow_insecure_web = true</code> serves the
page anyway, on a network you trust completely.</p>
<p>The <code>cmail</code> command-line client is not affected: its code is not downloaded, and
SeXMAP stays available on this address.</p>
`

func insecureWebRefusal() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Type", "text/html; charset=utf-8")
		hd.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusForbidden)
		if r.Method != http.MethodHead {
			io.WriteString(w, insecureWebPage)
		}
	})
}

// hsts adds Strict-Transport-Security to every answer of a TLS listener.
func hsts(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		h.ServeHTTP(w, r)
	})
}
