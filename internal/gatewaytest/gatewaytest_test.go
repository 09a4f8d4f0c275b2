package gatewaytest

import (
	"slices"
	"testing"
)

func TestDialAddrs(t *testing.T) {
	for _, c := range []struct {
		listen string
		want   []string
	}{
		{":8443", []string{"127.0.0.1:8443"}},
		{"127.0.0.1:2019", []string{"127.0.0.1:2019"}},
		{"tcp/0.0.0.0:80", []string{"127.0.0.1:80"}},
		{"tcp6/[::]:80", []string{"[::1]:80"}},
		{"localhost:9000-9002", []string{"localhost:9000", "localhost:9001", "localhost:9002"}},
		{"unix//run/caddy.sock", nil},
		{"fd/3", nil},
		{"udp/:443", nil},
	} {
		got, err := dialAddrs(c.listen)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("dialAddrs(%q) = %q, %v; want %q", c.listen, got, err, c.want)
		}
	}
	for _, bad := range []string{"nocolon", ":http", ":90-80"} {
		if got, err := dialAddrs(bad); err == nil {
			t.Errorf("dialAddrs(%q) = %q, want an error", bad, got)
		}
	}
}
