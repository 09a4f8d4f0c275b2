package atpauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// errBlockedAddress is returned by the guarded dialer when the address a
// host name resolved to is not a public unicast address.
var errBlockedAddress = errors.New("destination address is not public")

// nonPublic lists the prefixes a DID document fetch must never reach beyond
// what netip.Addr's own predicates cover: shared address space, IETF
// protocol assignments, documentation and benchmarking ranges, the reserved
// class E block, and NAT64 (which could translate to any IPv4 address).
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("2002::/16"),
}

// publicAddress reports whether a is a public unicast address that a DID
// document fetch may connect to.
func publicAddress(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() ||
		a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() || a.IsMulticast() ||
		a.IsUnspecified() || !a.IsGlobalUnicast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// guardControl is a net.Dialer Control function that refuses to connect to
// anything but a public address. It runs after name resolution, on the
// address actually being dialled, so DNS answers pointing at internal
// addresses (including DNS rebinding between checks) cannot slip through.
func guardControl(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unparseable address", errBlockedAddress)
	}
	if !publicAddress(ap.Addr()) {
		return errBlockedAddress
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
		return nil
	default:
		return fmt.Errorf("%w: network %s", errBlockedAddress, network)
	}
}

// guardedDialer returns a DialContext function that applies guardControl to
// every connection, except to the host names listed in allow (compared
// without port), which are dialled unguarded. allow is for development and
// tests that serve DID documents from a local server.
func guardedDialer(base net.Dialer, allow map[string]bool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	guarded := base
	guarded.Control = guardControl
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err == nil && allow[host] {
			return base.DialContext(ctx, network, addr)
		}
		return guarded.DialContext(ctx, network, addr)
	}
}

// PublicDialer returns a DialContext function that connects only to public
// unicast addresses, checked on the address actually dialled, except to
// the host names in allow (development and tests). Other fetchers of
// client-supplied URLs (push endpoints) use it too.
func PublicDialer(base net.Dialer, allow []string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	m := make(map[string]bool, len(allow))
	for _, h := range allow {
		m[h] = true
	}
	return guardedDialer(base, m)
}
