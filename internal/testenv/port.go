package testenv

import (
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/portlease"
)

// Port returns a loopback port for a process the test starts (a gateway,
// Redis, PgBouncer, sshd) to bind. The port is leased (package portlease):
// outside the kernel's ephemeral range, so no outgoing connection takes it,
// and locked across test processes until the test ends, so no other test
// is given it. Cleanups run last-in first-out, so a process started after
// Port is stopped before its port is released.
func Port(t testing.TB) int {
	t.Helper()
	l, err := portlease.Take()
	if err != nil {
		t.Fatalf("leasing a port: %v", err)
	}
	t.Cleanup(l.Release)
	return l.Port()
}
