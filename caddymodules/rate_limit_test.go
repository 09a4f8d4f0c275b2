package caddymodules

import (
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestRateLimitCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`cairn_rate_limit {
		preset edge api
		backend memory
		on_backend_error deny
		admitted_headers off
		zone search {
			key ip
			rate 30/1m
			burst 3
			match nsid app.bsky.actor.searchActors
			match method GET
			otherwise
		}
	}`)
	var rl RateLimit
	if err := rl.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if len(rl.Presets) != 2 || rl.Backend != "memory" || rl.OnBackendError != "deny" || !rl.OmitAdmittedHeaders || len(rl.Zones) != 1 {
		t.Fatalf("parsed %+v", rl)
	}
	z := rl.Zones[0]
	if z.Name != "search" || z.Key != "ip" || z.Rate != "30/1m" || z.Burst != 3 || z.MatchNSIDs[0] != "app.bsky.actor.searchActors" || z.MatchMethods[0] != "GET" || !z.Otherwise {
		t.Fatalf("zone parsed as %+v", z)
	}
	for _, bad := range []string{
		"cairn_rate_limit {\n zone\n}",
		"cairn_rate_limit {\n zone z {\n burst 0\n }\n}",
		"cairn_rate_limit {\n zone z {\n match colour red\n }\n}",
		"cairn_rate_limit {\n zone z {\n frobnicate\n }\n}",
		"cairn_rate_limit {\n preset\n}",
		"cairn_rate_limit {\n admitted_headers maybe\n}",
		"cairn_rate_limit extra",
	} {
		var rl RateLimit
		if err := rl.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
