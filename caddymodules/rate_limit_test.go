package caddymodules

import (
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestEveryPresetProvisions(t *testing.T) {
	for _, name := range []string{"public", "edge", "api"} {
		zones, err := presetZones(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, z := range zones {
			if err := z.provision(); err != nil {
				t.Errorf("preset %s: %v", name, err)
			}
		}
	}
	if _, err := presetZones("nope"); err == nil {
		t.Error("unknown preset accepted")
	}
}

func TestPresetLimitsAreTheDocumentedOnes(t *testing.T) {
	want := map[string]string{
		"public_ip": "60/1m0s burst 6", "login": "5/1m0s burst 5", "registration": "3/1h0m0s burst 3",
		"edge_ip": "600/1m0s burst 60", "send_message": "100/1m0s burst 100", "publish_key_packages": "50/1m0s burst 50",
		"membership": "10/1m0s burst 10", "create_convo": "5/1m0s burst 5", "report_member": "5/1m0s burst 5",
		"upload": "10/1m0s burst 10", "mls_other": "200/1m0s burst 200", "general": "100/1m0s burst 100",
	}
	got := map[string]string{}
	for _, name := range []string{"public", "edge", "api"} {
		zones, _ := presetZones(name)
		for _, z := range zones {
			if err := z.provision(); err != nil {
				t.Fatal(err)
			}
			got[z.Name] = z.limit.String()
		}
	}
	for zone, limit := range want {
		if got[zone] != limit {
			t.Errorf("zone %s = %q, want %q", zone, got[zone], limit)
		}
	}
	if len(got) != len(want) {
		t.Errorf("presets define %d zones, the docs %d", len(got), len(want))
	}
}

// TestAPIPresetRoutesEachMethodToOneZone checks which zones of the api
// preset apply to a request, including the "otherwise" resolution.
func TestAPIPresetRoutesEachMethodToOneZone(t *testing.T) {
	zones, _ := presetZones("api")
	rl := &RateLimit{zones: zones}
	for _, tc := range []struct{ path, want string }{
		{"/xrpc/blue.catbird.mls.sendMessage", "send_message"},
		{"/xrpc/blue.catbird.mls.publishKeyPackages", "publish_key_packages"},
		{"/xrpc/blue.catbird.mls.removeMember", "membership"},
		{"/xrpc/blue.catbird.mls.getConvos", "mls_other"},
		{"/xrpc/app.bsky.actor.getProfile", "general"},
		{"/xrpc/com.atproto.repo.uploadBlob", "upload"},
		{"/index.html", ""},
	} {
		r := httptest.NewRequest("GET", tc.path, nil)
		got := rl.applicableZones(r, nil)
		var names []string
		for _, z := range got {
			names = append(names, z.Name)
		}
		if tc.want == "" && len(names) != 0 || tc.want != "" && (len(names) != 1 || names[0] != tc.want) {
			t.Errorf("%s: zones %v, want [%s]", tc.path, names, tc.want)
		}
	}
}

func TestZoneMatchConditions(t *testing.T) {
	z := &Zone{Name: "z", Key: KeyIP, Rate: "1/1s", MatchNSIDs: []string{"blue.catbird.mls.*"}, MatchMethods: []string{"post"}, MatchPaths: []string{"/xrpc/*"}}
	if err := z.provision(); err != nil {
		t.Fatal(err)
	}
	rl := &RateLimit{zones: []*Zone{z}}
	for _, tc := range []struct {
		method, path string
		want         bool
	}{
		{"POST", "/xrpc/blue.catbird.mls.sendMessage", true},
		{"GET", "/xrpc/blue.catbird.mls.sendMessage", false}, // method fails
		{"POST", "/xrpc/com.atproto.x", false},               // nsid fails
		{"POST", "/other", false},                            // not XRPC
	} {
		got := len(rl.applicableZones(httptest.NewRequest(tc.method, tc.path, nil), nil)) == 1
		if got != tc.want {
			t.Errorf("%s %s: matched %v, want %v", tc.method, tc.path, got, tc.want)
		}
	}
}

func TestRateLimitCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`cairn_rate_limit {
		preset edge api
		backend memory
		on_backend_error deny
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
	if len(rl.Presets) != 2 || rl.Backend != "memory" || rl.OnBackendError != "deny" || len(rl.Zones) != 1 {
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
		"cairn_rate_limit extra",
	} {
		var rl RateLimit
		if err := rl.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
