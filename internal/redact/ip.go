package redact

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// IPPolicy says how client addresses appear in logs.
type IPPolicy int

// The policies, from most to least private.
const (
	// IPHash replaces an address by its keyed hash: one client's lines can
	// still be correlated, but its address is not there. The default.
	IPHash IPPolicy = iota
	// IPTruncate keeps the network and drops the host: an IPv4 address
	// becomes its /24 (203.0.113.0), an IPv6 address its /48
	// (2001:db8:1::).
	IPTruncate
	// IPKeep logs the address as it is.
	IPKeep
)

// ParseIPPolicy reads "hash", "truncate" or "keep"; the empty string is
// the default, hash.
func ParseIPPolicy(s string) (IPPolicy, error) {
	switch s {
	case "", "hash":
		return IPHash, nil
	case "truncate":
		return IPTruncate, nil
	case "keep":
		return IPKeep, nil
	}
	return IPHash, fmt.Errorf("client IP policy %q: want hash, truncate or keep", s)
}

// String returns the policy's name, as ParseIPPolicy reads it.
func (p IPPolicy) String() string {
	switch p {
	case IPTruncate:
		return "truncate"
	case IPKeep:
		return "keep"
	}
	return "hash"
}

// IsIPHeader reports whether the header named name (in canonical form)
// carries client addresses: the ones proxies and CDNs add.
func IsIPHeader(name string) bool {
	switch name {
	case "X-Forwarded-For", "X-Real-Ip", "Forwarded", "True-Client-Ip",
		"Cf-Connecting-Ip", "X-Client-Ip", "X-Cluster-Client-Ip", "Fastly-Client-Ip":
		return true
	}
	return false
}

// IP renders a client address under policy p. The value may be an address,
// an address with a port, or a comma-separated list of them (as in
// X-Forwarded-For). Under IPTruncate, an element that is not an address is
// hashed rather than kept, since it could be anything.
func (h *Hasher) IP(value string, p IPPolicy) string {
	switch p {
	case IPKeep:
		return value
	case IPTruncate:
		parts := strings.Split(value, ",")
		for i, part := range parts {
			parts[i] = h.truncate(strings.TrimSpace(part))
		}
		return strings.Join(parts, ", ")
	}
	return h.Hash(value)
}

func (h *Hasher) truncate(s string) string {
	host := s
	if hp, _, err := net.SplitHostPort(s); err == nil {
		host = hp
	}
	addr, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return h.Hash(s)
	}
	addr = addr.Unmap().WithZone("")
	bits := 48
	if addr.Is4() {
		bits = 24
	}
	return netip.PrefixFrom(addr, bits).Masked().Addr().String()
}
