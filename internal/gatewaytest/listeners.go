package gatewaytest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// tcpListenState is the kernel's TCP_LISTEN in /proc/net/tcp's st column.
const tcpListenState = "0A"

// listeningSockets counts the sockets listening on each of ports, from
// /proc/net/tcp and /proc/net/tcp6 (Linux). ok is false where those files
// cannot be read, so a caller can do without the count.
func listeningSockets(ports []int) (counts map[int]int, ok bool) {
	want := make(map[int]bool, len(ports))
	for _, p := range ports {
		want[p] = true
	}
	counts = make(map[int]int, len(ports))
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			return nil, false
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // the header line
		for sc.Scan() {
			// sl local_address rem_address st …; local_address is
			// ADDRESS:PORT in hex.
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != tcpListenState {
				continue
			}
			_, hexPort, found := strings.Cut(fields[1], ":")
			port, err := strconv.ParseUint(hexPort, 16, 16)
			if !found || err != nil || !want[int(port)] {
				continue
			}
			counts[int(port)]++
		}
		f.Close()
	}
	return counts, true
}

// listenerPorts returns the ports of dial addresses (host:port).
func listenerPorts(addrs []string) ([]int, error) {
	ports := make([]int, 0, len(addrs))
	for _, a := range addrs {
		_, p, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("listener %q: %w", a, err)
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("listener %q: port %q: %w", a, p, err)
		}
		ports = append(ports, n)
	}
	return ports, nil
}

// waitForOldListeners waits until no port has more listening sockets than
// before: on Linux a reload binds the new configuration's sockets beside
// the old ones (SO_REUSEPORT), and the kernel spreads new connections over
// both until the old server closes its own. Caddy's /load answers before
// that has surely happened, and a connection the old server takes as it
// shuts down is closed unanswered (EOF or a reset at the client).
func waitForOldListeners(before map[int]int, timeout time.Duration) error {
	ports := make([]int, 0, len(before))
	for p := range before {
		ports = append(ports, p)
	}
	deadline := time.Now().Add(timeout)
	for {
		now, ok := listeningSockets(ports)
		if !ok {
			return nil
		}
		var over []string
		for p, n := range before {
			if now[p] > n {
				over = append(over, fmt.Sprintf("port %d: %d sockets, %d before", p, now[p], n))
			}
		}
		if len(over) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the old configuration's listeners still open after %s (%s)", timeout, strings.Join(over, "; "))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
