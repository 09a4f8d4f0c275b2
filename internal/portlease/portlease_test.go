package portlease

import (
	"net"
	"strconv"
	"testing"
)

// TestLeasesAreDistinctBindableAndOutsideTheEphemeralRange takes many
// leases at once: no port is handed out twice, each can be bound, none lies
// in the range the kernel gives outgoing connections, and a released port
// can be leased again.
func TestLeasesAreDistinctBindableAndOutsideTheEphemeralRange(t *testing.T) {
	ephLo, ephHi := ephemeralRange()
	seen := map[int]bool{}
	var leases []*Lease
	for range 50 {
		l, err := Take()
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
		p := l.Port()
		if seen[p] {
			t.Fatalf("port %d leased twice", p)
		}
		seen[p] = true
		if p >= ephLo && p <= ephHi {
			t.Fatalf("port %d is in the ephemeral range %d-%d", p, ephLo, ephHi)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("leased port %d: %v", p, err)
		}
		ln.Close()
	}
	first := leases[0]
	first.Release()
	first.Release() // twice is harmless
	for _, l := range leases[1:] {
		l.Release()
	}
}

// TestALeasedPortIsNotLeasedAgain checks the lock: while a lease is held,
// trying its port fails; once released, it succeeds.
func TestALeasedPortIsNotLeasedAgain(t *testing.T) {
	dir := t.TempDir()
	l, err := tryLease(dir, mustTake(t))
	if err != nil || l == nil {
		t.Fatalf("tryLease: %v, %v", l, err)
	}
	again, err := tryLease(dir, l.Port())
	if err != nil || again != nil {
		t.Fatalf("second lease of %d: %v, %v; want none", l.Port(), again, err)
	}
	l.Release()
	again, err = tryLease(dir, l.Port())
	if err != nil || again == nil {
		t.Fatalf("lease after release: %v, %v", again, err)
	}
	again.Release()
}

// TestABoundPortIsNotLeased: a port something else listens on is skipped.
func TestABoundPortIsNotLeased(t *testing.T) {
	p := mustTake(t)
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	l, err := tryLease(t.TempDir(), p)
	if err != nil || l != nil {
		t.Fatalf("lease of bound port %d: %v, %v; want none", p, l, err)
	}
}

// mustTake returns a port that was leasable, releasing its lease.
func mustTake(t *testing.T) int {
	t.Helper()
	l, err := Take()
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	return l.Port()
}
