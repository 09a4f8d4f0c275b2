package ratelimit

import (
	"net/netip"
	"testing"
)

func TestIPKey(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{in: "203.0.113.7", want: "203.0.113.7"},
		{in: "0.0.0.0", want: "0.0.0.0"},
		{in: "::ffff:203.0.113.7", want: "203.0.113.7"},
		{in: "2001:db8:1:2:3:4:5:6", want: "2001:db8:1:2::/64"},
		{in: "2001:db8:1:2:ffff:ffff:ffff:ffff", want: "2001:db8:1:2::/64"},
		{in: "2001:db8:1:3::1", want: "2001:db8:1:3::/64"},
		{in: "fe80::1%eth0", want: "fe80::/64"},
		{in: "::1", want: "::/64"},
		{in: "64:ff9b::203.0.113.7", want: "64:ff9b::/64"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := IPKey(netip.MustParseAddr(tt.in)); got != tt.want {
				t.Fatalf("IPKey(%s) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	if got := IPKey(netip.Addr{}); got != "" {
		t.Fatalf("IPKey(zero Addr) = %q, want empty", got)
	}
}

func TestIPKeySameSubscriber(t *testing.T) {
	// Rotating through a /64 does not escape the limit; the next /64 does not
	// share it.
	a := IPKey(netip.MustParseAddr("2001:db8:aa:bb::1"))
	b := IPKey(netip.MustParseAddr("2001:db8:aa:bb:dead:beef:0:1"))
	c := IPKey(netip.MustParseAddr("2001:db8:aa:bc::1"))
	if a != b || a == c {
		t.Fatalf("keys %q, %q, %q: want the first two equal and the third different", a, b, c)
	}
}
