package redact

import (
	"strings"
	"testing"
)

func TestIPPolicies(t *testing.T) {
	h := testHasher(t, 4)
	for _, tc := range []struct {
		in   string
		p    IPPolicy
		want string
	}{
		{"203.0.113.7", IPHash, h.Hash("203.0.113.7")},
		{"203.0.113.7", IPTruncate, "203.0.113.0"},
		{"203.0.113.7:41234", IPTruncate, "203.0.113.0"},
		{"2001:db8:1:2:3:4:5:6", IPTruncate, "2001:db8:1::"},
		{"[2001:db8:1:2::6]:443", IPTruncate, "2001:db8:1::"},
		{"fe80::1%eth0", IPTruncate, "fe80::"},
		{"::ffff:203.0.113.7", IPTruncate, "203.0.113.0"},
		{"203.0.113.7, 198.51.100.9", IPTruncate, "203.0.113.0, 198.51.100.0"},
		{"unknown", IPTruncate, h.Hash("unknown")},
		{"did:plc:ewvi7nxzyoun6zhxrhs64oiz", IPTruncate, h.Hash("did:plc:ewvi7nxzyoun6zhxrhs64oiz")},
		{"203.0.113.7", IPKeep, "203.0.113.7"},
		{"", IPHash, ""},
	} {
		if got := h.IP(tc.in, tc.p); got != tc.want {
			t.Errorf("IP(%q, %v) = %q, want %q", tc.in, tc.p, got, tc.want)
		}
	}
}

func TestParseIPPolicy(t *testing.T) {
	for in, want := range map[string]IPPolicy{"": IPHash, "hash": IPHash, "truncate": IPTruncate, "keep": IPKeep} {
		got, err := ParseIPPolicy(in)
		if err != nil || got != want {
			t.Errorf("ParseIPPolicy(%q) = %v, %v", in, got, err)
		}
		if in != "" && got.String() != in {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
	if _, err := ParseIPPolicy("mask"); err == nil || !strings.Contains(err.Error(), "hash, truncate or keep") {
		t.Errorf("ParseIPPolicy(mask) = %v", err)
	}
}
