package main

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// sourceDialer dials the gateway from several loopback source addresses in
// turn (127.0.0.1, 127.0.0.2, …), so that more streams can be open than one
// source address has ephemeral ports (net.ipv4.ip_local_port_range, about
// 28,000 by default). Every address of 127.0.0.0/8 is local on Linux
// without any configuration.
type sourceDialer struct {
	addrs []*net.TCPAddr
	next  atomic.Uint64
}

// maxSourceAddrs bounds -source-addrs: 127.0.0.1 to 127.0.0.254.
const maxSourceAddrs = 254

// newSourceDialer returns a dialer over n (1 to maxSourceAddrs) source
// addresses; with n = 1 the kernel picks the source as usual.
func newSourceDialer(n int) *sourceDialer {
	d := &sourceDialer{}
	if n > 1 {
		for i := range n {
			d.addrs = append(d.addrs, &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))})
		}
	}
	return d
}

// DialContext dials addr from the next source address.
func (d *sourceDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := net.Dialer{Timeout: 10 * time.Second}
	if len(d.addrs) > 0 {
		nd.LocalAddr = d.addrs[(d.next.Add(1)-1)%uint64(len(d.addrs))]
	}
	return nd.DialContext(ctx, network, addr)
}

// httpClient returns a client whose connections come from the dialer's
// source addresses, for WebSocket upgrades (each takes its connection with
// it, so none is kept idle).
func (d *sourceDialer) httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}
