package outbound

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"cryptomail/server/internal/deliver"
)

// STARTTLS modes for Config.StartTLS.
const (
	// StartTLSRequired: relay only over TLS with a verified certificate; a
	// relay without STARTTLS, or a failed handshake, is a temporary failure.
	StartTLSRequired = "required"
	// StartTLSOpportunistic: use STARTTLS when it works, else go on in clear.
	StartTLSOpportunistic = "opportunistic"
	// StartTLSOff: never STARTTLS.
	StartTLSOff = "off"
)

// Defaults for Config.
const (
	DefaultQueueLifetime = 5 * 24 * time.Hour
	DefaultMinRetry      = time.Minute
	DefaultMaxRetry      = time.Hour
	DefaultConcurrency   = 4
	DefaultTimeout       = 5 * time.Minute // RFC 5321, section 4.5.3.2
	DefaultHostname      = "localhost"
)

// dialTimeout bounds connecting to the relay; the SMTP timeouts start after.
const dialTimeout = 30 * time.Second

// Config configures a Sender. The zero value is valid: no relay (sends to
// remote recipients are refused), defaults for the rest.
type Config struct {
	// Smarthost is the relay, host:port. Empty: no relay; a send with a
	// remote recipient fails with xmap denied, and anything still queued
	// from an earlier configuration bounces when its lifetime runs out.
	Smarthost string
	// StartTLS is StartTLSRequired (the default when empty),
	// StartTLSOpportunistic or StartTLSOff.
	StartTLS string
	// TLSConfig verifies the relay's certificate. nil: the system roots,
	// with the smarthost's host as server name. A given config is cloned;
	// its ServerName is set to the smarthost's host when empty.
	TLSConfig *tls.Config
	// Username and Password enable AUTH PLAIN. It is never sent over a
	// connection without TLS unless AllowInsecureAuth is set.
	Username, Password string
	AllowInsecureAuth  bool
	// Hostname is our HELO name and the Reporting-MTA of bounces.
	// Empty: DefaultHostname.
	Hostname string
	// QueueLifetime is how long a message may wait for its relay before it
	// bounces. <=0: DefaultQueueLifetime.
	QueueLifetime time.Duration
	// MinRetry is the wait after the first failed attempt; each further one
	// waits four times longer, up to MaxRetry. <=0: the defaults.
	MinRetry, MaxRetry time.Duration
	// Concurrency is how many messages are relayed at once. <=0: DefaultConcurrency.
	Concurrency int
	// Timeout bounds each SMTP command; the end of DATA gets twice as long.
	// <=0: DefaultTimeout.
	Timeout time.Duration
	// MaxRecipientsPerHour bounds what one user may send: every recipient
	// of every send counts, local or remote; a send that would go over
	// fails with xmap rate-limited and sends nothing. The allowance refills
	// continuously (a token bucket of this size), in memory. <=0: no limit.
	MaxRecipientsPerHour int
	// OnStored is called with a user's address after a message was stored
	// in that user's shard (a local recipient's copy, the Sent copy, a
	// bounce), e.g. to wake the user's long polls. nil: nothing is called.
	// It must not block.
	OnStored func(user string)
	// Deliverer is the delivery path every copy is stored through (the
	// local copies, the Sent copy, bounces); its Notify replaces OnStored.
	// nil: one on the store, notifying OnStored.
	Deliverer *deliver.Deliverer
	// Now is the clock. nil: time.Now.
	Now func() time.Time
	// Logger gets delivery and error logs; never message content or
	// credentials. nil: slog.Default().
	Logger *slog.Logger
}

// withDefaults validates c and fills in defaults.
func (c Config) withDefaults() (Config, error) {
	if c.StartTLS == "" {
		c.StartTLS = StartTLSRequired
	}
	switch c.StartTLS {
	case StartTLSRequired, StartTLSOpportunistic, StartTLSOff:
	default:
		return c, fmt.Errorf("starttls: %q is not one of required, opportunistic, off", c.StartTLS)
	}
	if c.Smarthost != "" {
		host, port, err := net.SplitHostPort(c.Smarthost)
		if err != nil || host == "" {
			return c, fmt.Errorf("smarthost: %q is not host:port", c.Smarthost)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return c, fmt.Errorf("smarthost: %q: bad port", c.Smarthost)
		}
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.TLSConfig != nil {
			tc = c.TLSConfig.Clone()
		}
		if tc.ServerName == "" {
			tc.ServerName = host
		}
		c.TLSConfig = tc
	}
	if (c.Username == "") != (c.Password == "") {
		return c, errors.New("username and password: give both or neither")
	}
	if strings.ContainsAny(c.Username, "\x00\r\n") || strings.ContainsRune(c.Password, 0) {
		return c, errors.New("username or password: control characters")
	}
	if c.Hostname == "" {
		c.Hostname = DefaultHostname
	}
	if strings.ContainsFunc(c.Hostname, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return c, fmt.Errorf("hostname: %q is not a host name", c.Hostname)
	}
	if c.QueueLifetime <= 0 {
		c.QueueLifetime = DefaultQueueLifetime
	}
	if c.MinRetry <= 0 {
		c.MinRetry = DefaultMinRetry
	}
	if c.MaxRetry <= 0 {
		c.MaxRetry = DefaultMaxRetry
	}
	if c.MaxRetry < c.MinRetry {
		return c, fmt.Errorf("max retry %s is below min retry %s", c.MaxRetry, c.MinRetry)
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// backoff is the wait after the n-th failed attempt (n >= 1): MinRetry,
// then four times longer each time, capped at MaxRetry.
func (c *Config) backoff(n int) time.Duration {
	d := c.MinRetry
	for i := 1; i < n && d < c.MaxRetry && d <= math.MaxInt64/4; i++ {
		d *= 4
	}
	return min(d, c.MaxRetry)
}
