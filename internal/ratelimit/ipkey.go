package ratelimit

import "net/netip"

// IPKey returns the rate-limit key for a client address. An IPv4 address,
// or an IPv4-mapped IPv6 address, is keyed as the IPv4 address itself
// ("203.0.113.7"). Any other IPv6 address is keyed by its /64
// ("2001:db8:1:2::/64"), because one subscriber is routinely handed a whole
// /64 and could otherwise rotate through 2^64 keys. Zones are ignored. The
// invalid zero Addr yields "".
func IPKey(addr netip.Addr) string {
	return string(AppendIPKey(nil, addr))
}

// AppendIPKey appends IPKey(addr) to dst and returns the extended slice.
func AppendIPKey(dst []byte, addr netip.Addr) []byte {
	if !addr.IsValid() {
		return dst
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is4() {
		return addr.AppendTo(dst)
	}
	return netip.PrefixFrom(addr, 64).Masked().AppendTo(dst)
}
