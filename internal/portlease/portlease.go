// Package portlease hands out loopback ports that a child process (a
// gateway, Redis, PgBouncer, sshd) can bind a moment later without losing
// them to anyone else on the machine.
//
// The usual "listen on :0, read the port, close" trick races: the kernel
// picks that port from the ephemeral range, the same range it takes the
// local port of every outgoing connection from, so under load a test's own
// client connections (to PostgreSQL, Redis, the gateway next door) or
// another package's test binary can take the port before the child binds
// it, and the child fails with "address already in use".
//
// A lease avoids both: its port lies outside the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range), so no outgoing connection is
// ever given it, and it is held by an flock on a per-port file in the
// temporary directory, so no other process or test using this package is
// given it until the lease is released. Before handing a port out, Take
// binds it on every interface for both TCP and UDP (HTTP/3 listens on UDP)
// to make sure nothing outside this package holds it.
//
// It is for tests and the load generator, never the cairn-caddy binary.
package portlease

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// A Lease is one reserved port. Release it when the process that bound the
// port has stopped.
type Lease struct {
	port int
	lock *os.File
}

// Port returns the leased port number.
func (l *Lease) Port() int { return l.port }

// Release gives the port back. It is safe to call more than once.
func (l *Lease) Release() {
	if l.lock == nil {
		return
	}
	_ = syscall.Flock(int(l.lock.Fd()), syscall.LOCK_UN)
	_ = l.lock.Close()
	l.lock = nil
}

// The ports leases are taken from when the ephemeral range leaves room
// below it: above the registered ports most daemons use, below Linux's
// default ephemeral start (32768).
const (
	lowestPort  = 20000
	highestPort = 65535
)

// Take leases a free port.
func Take() (*Lease, error) {
	lo, hi := leaseRange()
	dir := filepath.Join(os.TempDir(), "cairn-test-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, fmt.Errorf("port lease directory: %w", err)
	}
	// Tests of several users may share the directory.
	_ = os.Chmod(dir, 0o777|os.ModeSticky)
	n := hi - lo + 1
	start := rand.IntN(n)
	for i := range n {
		port := lo + (start+i)%n
		lease, err := tryLease(dir, port)
		if err != nil {
			return nil, err
		}
		if lease != nil {
			return lease, nil
		}
	}
	return nil, fmt.Errorf("no free port in %d-%d: every one is leased or bound", lo, hi)
}

// tryLease leases port, or returns nil when it is taken.
func tryLease(dir string, port int) (*Lease, error) {
	path := filepath.Join(dir, strconv.Itoa(port)+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, nil // another user's stale lock file: try the next port
		}
		return nil, fmt.Errorf("port lease %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("port lease %s: %w", path, err)
	}
	if !bindable(port) {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
		return nil, nil
	}
	return &Lease{port: port, lock: f}, nil
}

// bindable reports whether port can be bound right now on every interface,
// for TCP and UDP. A wildcard bind fails when anything holds the port on
// any address.
func bindable(port int) bool {
	addr := ":" + strconv.Itoa(port)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	defer u.Close()
	return true
}

// leaseRange returns the ports to lease from: the largest stretch outside
// the kernel's ephemeral range, preferring the one below it.
func leaseRange() (lo, hi int) {
	ephLo, ephHi := ephemeralRange()
	if ephLo-1-lowestPort >= 1000 {
		return lowestPort, ephLo - 1
	}
	if highestPort-ephHi >= 1000 {
		return ephHi + 1, highestPort
	}
	// An ephemeral range that covers nearly everything: lease from below
	// anyway; the lock still keeps tests apart.
	return lowestPort, lowestPort + 9999
}

// ephemeralRange reads the kernel's ephemeral port range, or Linux's
// default where it cannot be read.
func ephemeralRange() (lo, hi int) {
	lo, hi = 32768, 60999
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(raw))
	if len(f) != 2 {
		return lo, hi
	}
	a, errA := strconv.Atoi(f[0])
	b, errB := strconv.Atoi(f[1])
	if errA != nil || errB != nil || a < 1 || b < a || b > highestPort {
		return lo, hi
	}
	return a, b
}
