package gatewaytest

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// reusePortListener listens on 127.0.0.1:port with SO_REUSEPORT, as Caddy
// does on Linux, so that two can share the port across a reload.
func reusePortListener(t *testing.T, port int) net.Listener {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		if err != nil {
			return err
		}
		return serr
	}}
	l, err := lc.Listen(context.Background(), "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestWaitForOldListenersWaitsForTheOutgoingSocket: with a second socket
// on the port (a reload's new one beside the old), the wait does not end
// while both listen, and ends once the old one closes; the counts come
// from /proc/net/tcp.
func TestWaitForOldListenersWaitsForTheOutgoingSocket(t *testing.T) {
	port := FreePort(t)
	old := reusePortListener(t, port)
	before, ok := listeningSockets([]int{port})
	if !ok {
		t.Fatal("/proc/net/tcp cannot be read")
	}
	if before[port] != 1 {
		t.Fatalf("one listener: counted %d", before[port])
	}
	replacement := reusePortListener(t, port)
	defer replacement.Close()
	if now, _ := listeningSockets([]int{port}); now[port] != 2 {
		t.Fatalf("two listeners: counted %d", now[port])
	}
	if err := waitForOldListeners(before, 50*time.Millisecond); err == nil {
		t.Fatal("the wait ended while the old socket still listened")
	}
	done := make(chan error, 1)
	go func() { done <- waitForOldListeners(before, 10*time.Second) }()
	old.Close()
	if err := <-done; err != nil {
		t.Fatalf("after the old socket closed: %v", err)
	}
}
