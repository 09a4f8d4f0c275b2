package caddymodules

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// badCounts are values every integer option must refuse.
var badCounts = []string{"3.5", "12abc", "-1", "0", "+3", " 3", "1_000", "0x10", "", "99999999999999999999"}

func TestPositiveInt(t *testing.T) {
	for _, s := range badCounts {
		if n, err := positiveInt(s); err == nil {
			t.Errorf("positiveInt(%q) = %d, want an error", s, n)
		}
	}
	for s, want := range map[string]int{"1": 1, "200": 200, "007": 7, strconv.Itoa(int(^uint(0) >> 1)): int(^uint(0) >> 1)} {
		if n, err := positiveInt(s); err != nil || n != want {
			t.Errorf("positiveInt(%q) = %d, %v, want %d", s, n, err, want)
		}
	}
}

// TestIntegerOptionsAreStrict feeds every integer option of every cairn
// directive and global option (and max_message_size, a size in bytes) the
// values positiveInt refuses, and checks that the Caddyfile is refused.
func TestIntegerOptionsAreStrict(t *testing.T) {
	type unmarshaler interface {
		UnmarshalCaddyfile(*caddyfile.Dispenser) error
	}
	options := []struct {
		format string
		fresh  func() unmarshaler
	}{
		{"cairn_rate_limit {\n zone z {\n burst %s\n }\n}", func() unmarshaler { return new(RateLimit) }},
		{"cairn_delivery {\n max_message_size %s\n}", func() unmarshaler { return new(Delivery) }},
		{"cairn_delivery {\n max_members %s\n}", func() unmarshaler { return new(Delivery) }},
		{"cairn_delivery {\n max_devices %s\n}", func() unmarshaler { return new(Delivery) }},
		{"cairn {\n key_packages_per_device %s\n}", func() unmarshaler { return new(App) }},
		{"cairn {\n streams {\n max_per_did %s\n }\n}", func() unmarshaler { return new(App) }},
		{"cairn {\n streams {\n max %s\n }\n}", func() unmarshaler { return new(App) }},
	}
	for _, opt := range options {
		for _, bad := range badCounts {
			if bad == "" || bad == " 3" {
				continue // the tokenizer drops or splits these before the option sees them
			}
			src := fmt.Sprintf(opt.format, bad)
			if err := opt.fresh().UnmarshalCaddyfile(caddyfile.NewTestDispenser(src)); err == nil {
				t.Errorf("accepted %q", src)
			}
		}
		src := fmt.Sprintf(opt.format, "12")
		if err := opt.fresh().UnmarshalCaddyfile(caddyfile.NewTestDispenser(src)); err != nil {
			t.Errorf("refused %q: %v", src, err)
		}
	}
}

func TestByteSize(t *testing.T) {
	for s, want := range map[string]uint64{
		"10MiB": 10 << 20, "10 MiB": 10 << 20, "1.5MiB": 3 << 19, "512KB": 512000, "1048576": 1 << 20, "1GiB": 1 << 30, "0.5KiB": 512,
	} {
		if n, err := byteSize(s); err != nil || n != want {
			t.Errorf("byteSize(%q) = %d, %v, want %d", s, n, err, want)
		}
	}
	for _, s := range []string{"3.5", "12abc", "-1", "+5", "0", "0MiB", "1.0001KiB", ".5KiB", "5.KiB", "1e3", "0x10", "99999999999999999999", "MiB", ""} {
		if n, err := byteSize(s); err == nil {
			t.Errorf("byteSize(%q) = %d, want an error", s, n)
		}
	}
}
