package faulttest

import (
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"

	"cryptomail/internal/testenv"
)

var (
	portsMu sync.Mutex
	given   = map[string]bool{} // never hand out one port twice
)

// serverPort returns "127.0.0.1:port" for a free port below the kernel's
// ephemeral range. The tests restart servers on the same port; an ephemeral
// port could meanwhile be handed to an outgoing connection (even one of our
// own clients, which then connects to itself), and the restart would fail.
func serverPort(t testing.TB) string {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var lo, hi int
		if n, _ := fmt.Sscan(string(b), &lo, &hi); n == 2 {
			low = lo
		}
	}
	const floor = 10000
	for range 100 {
		if low <= floor+100 {
			break
		}
		addr := fmt.Sprintf("127.0.0.1:%d", floor+mrand.IntN(low-floor))
		portsMu.Lock()
		taken := given[addr]
		given[addr] = true
		portsMu.Unlock()
		if taken {
			continue
		}
		if l, err := net.Listen("tcp4", addr); err == nil {
			l.Close()
			return addr
		}
	}
	return testenv.FreePort(t)
}
