package ratelimit

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestEveryPresetCompiles(t *testing.T) {
	for _, name := range []string{"public", "edge", "api"} {
		zones, err := PresetZones(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, z := range zones {
			if _, err := z.compile(); err != nil {
				t.Errorf("preset %s: %v", name, err)
			}
		}
	}
	if _, err := PresetZones("nope"); !errors.Is(err, ErrInvalidZone) {
		t.Errorf("unknown preset: %v, want ErrInvalidZone", err)
	}
}

func TestPresetLimitsAreTheDocumentedOnes(t *testing.T) {
	want := map[string]string{
		"public_ip": "60/1m0s burst 6", "login": "5/1m0s burst 5", "registration": "3/1h0m0s burst 3",
		"edge_ip": "600/1m0s burst 60", "send_message": "100/1m0s burst 100", "publish_key_packages": "50/1m0s burst 50",
		"membership": "10/1m0s burst 10", "create_convo": "5/1m0s burst 5", "report_member": "5/1m0s burst 5",
		"block_checks": "30/1m0s burst 30", "rejoin": "60/1h0m0s burst 60",
		"upload": "10/1m0s burst 10", "mls_other": "200/1m0s burst 200", "general": "100/1m0s burst 100",
	}
	got := map[string]string{}
	for _, name := range []string{"public", "edge", "api"} {
		zones, _ := PresetZones(name)
		for _, z := range zones {
			c, err := z.compile()
			if err != nil {
				t.Fatal(err)
			}
			got[c.name] = c.limit.String()
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

// newTestZones builds zones over a memory store with a fixed hasher.
func newTestZones(t *testing.T, presets []string, zones ...*Zone) *Zones {
	t.Helper()
	zs, err := NewZones(ZonesConfig{Presets: presets, Zones: zones, Limiter: NewMemoryStore(MemoryConfig{}), Hasher: testHasher(t)})
	if err != nil {
		t.Fatal(err)
	}
	return zs
}

// TestAPIPresetRoutesEachMethodToOneZone checks which zones of the api
// preset apply to a request, including the "otherwise" resolution.
func TestAPIPresetRoutesEachMethodToOneZone(t *testing.T) {
	zs := newTestZones(t, []string{"api"})
	for _, tc := range []struct{ path, want string }{
		{"/xrpc/blue.catbird.mls.sendMessage", "send_message"},
		{"/xrpc/blue.catbird.mls.publishKeyPackages", "publish_key_packages"},
		{"/xrpc/blue.catbird.mls.removeMember", "membership"},
		{"/xrpc/blue.catbird.mls.requestRejoin", "rejoin"},
		{"/xrpc/blue.catbird.mls.rejoin", "rejoin"},
		{"/xrpc/blue.catbird.mls.readdition", "rejoin"},
		{"/xrpc/blue.catbird.mls.getConvos", "mls_other"},
		{"/xrpc/app.bsky.actor.getProfile", "general"},
		{"/xrpc/com.atproto.repo.uploadBlob", "upload"},
		{"/index.html", ""},
	} {
		names := zs.Applicable(testRequest("GET", tc.path))
		if tc.want == "" && len(names) != 0 || tc.want != "" && (len(names) != 1 || names[0] != tc.want) {
			t.Errorf("%s: zones %v, want [%s]", tc.path, names, tc.want)
		}
	}
}

// TestOtherwisePerKeyKind checks that an otherwise zone yields only to
// zones of its own key kind, and that the first matching one wins.
func TestOtherwisePerKeyKind(t *testing.T) {
	zs := newTestZones(t, nil,
		&Zone{Name: "ip_rest", Key: KeyIP, Rate: "1/1s", Otherwise: true},
		&Zone{Name: "send", Key: KeyDID, Rate: "1/1s", MatchNSIDs: []string{"blue.catbird.mls.sendMessage"}},
		&Zone{Name: "mls", Key: KeyDID, Rate: "1/1s", MatchNSIDs: []string{"blue.catbird.mls.*"}, Otherwise: true},
		&Zone{Name: "mls_shadowed", Key: KeyDID, Rate: "1/1s", MatchNSIDs: []string{"blue.catbird.mls.*"}, Otherwise: true},
		&Zone{Name: "login", Key: KeyIP, Rate: "1/1s", MatchPaths: []string{"/login"}},
	)
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/xrpc/blue.catbird.mls.sendMessage", []string{"send", "ip_rest"}},
		{"/xrpc/blue.catbird.mls.getConvos", []string{"ip_rest", "mls"}},
		{"/login", []string{"login"}},
		{"/other", []string{"ip_rest"}},
	} {
		if got := zs.Applicable(testRequest("POST", tc.path)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: zones %v, want %v", tc.path, got, tc.want)
		}
	}
}

func TestZoneMatchConditions(t *testing.T) {
	zs := newTestZones(t, nil, &Zone{Name: "z", Key: KeyIP, Rate: "1/1s", MatchNSIDs: []string{"blue.catbird.mls.*"}, MatchMethods: []string{"post"}, MatchPaths: []string{"/xrpc/*"}})
	for _, tc := range []struct {
		method, path string
		want         bool
	}{
		{"POST", "/xrpc/blue.catbird.mls.sendMessage", true},
		{"GET", "/xrpc/blue.catbird.mls.sendMessage", false}, // method fails
		{"POST", "/xrpc/com.atproto.x", false},               // nsid fails
		{"POST", "/other", false},                            // not XRPC
	} {
		got := len(zs.Applicable(testRequest(tc.method, tc.path))) == 1
		if got != tc.want {
			t.Errorf("%s %s: matched %v, want %v", tc.method, tc.path, got, tc.want)
		}
	}
}

func TestNewZonesRefusesBadConfig(t *testing.T) {
	lim, h := NewMemoryStore(MemoryConfig{}), testHasher(t)
	for _, tc := range []struct {
		name    string
		cfg     ZonesConfig
		mention string
	}{
		{"no zones", ZonesConfig{}, "no zones"},
		{"unknown preset", ZonesConfig{Presets: []string{"strict"}}, `unknown preset "strict"`},
		{"bad name", ZonesConfig{Zones: []*Zone{{Name: "a b", Key: KeyIP, Rate: "1/1s"}}}, `zone name "a b"`},
		{"bad key", ZonesConfig{Zones: []*Zone{{Name: "z", Key: "device", Rate: "1/1s"}}}, `key "device"`},
		{"bad rate", ZonesConfig{Zones: []*Zone{{Name: "z", Key: KeyIP, Rate: "3.5/1s"}}}, `rate "3.5/1s"`},
		{"bad burst", ZonesConfig{Zones: []*Zone{{Name: "z", Key: KeyIP, Rate: "1/1s", Burst: -1}}}, "burst -1"},
		{"twice", ZonesConfig{Presets: []string{"public"}, Zones: []*Zone{{Name: "public_ip", Key: KeyIP, Rate: "1/1s"}}}, `"public_ip" is defined twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Limiter, cfg.Hasher = lim, h
			_, err := NewZones(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("NewZones: %v, want an error mentioning %s", err, tc.mention)
			}
		})
	}
	if _, err := NewZones(ZonesConfig{Zones: []*Zone{{Name: "z", Key: KeyIP, Rate: "1/1s"}}}); err == nil {
		t.Error("NewZones without a limiter and hasher succeeded")
	}
}
