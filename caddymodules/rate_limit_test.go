package caddymodules

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/cairn-chat/cairn-caddy/internal/ratelimit"
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

func TestAdaptiveCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`cairn_rate_limit {
		signals {
			new_account 7d
			forget 60d
			churn 20/1h
			churn_methods blue.catbird.mls.addMembers blue.catbird.mls.leaveConvo
			large_group 500
		}
		zone send {
			key did
			rate 100/1m
			when new_account rate 20/1m burst 5
			when large_group rate 30/1m
		}
	}`)
	var rl RateLimit
	if err := rl.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	s := rl.Signals
	if s == nil || time.Duration(s.NewAccount) != 7*24*time.Hour || time.Duration(s.Forget) != 60*24*time.Hour || s.Churn != "20/1h" || len(s.ChurnMethods) != 2 || s.LargeGroup != 500 {
		t.Fatalf("signals parsed as %+v", s)
	}
	cfg, err := s.config()
	if err != nil || cfg.ChurnCalls != 20 || cfg.ChurnWindow != time.Hour {
		t.Fatalf("signal config %+v, %v", cfg, err)
	}
	mods := rl.Zones[0].Modifiers
	if len(mods) != 2 || mods[0] != (ratelimit.Modifier{When: ratelimit.SignalNewAccount, Rate: "20/1m", Burst: 5}) || mods[1] != (ratelimit.Modifier{When: ratelimit.SignalLargeGroup, Rate: "30/1m"}) {
		t.Fatalf("modifiers parsed as %+v", mods)
	}
	for _, bad := range []string{
		"cairn_rate_limit {\n zone z {\n when\n }\n}",
		"cairn_rate_limit {\n zone z {\n when sunny rate 1/1m\n }\n}",
		"cairn_rate_limit {\n zone z {\n when new_account\n }\n}",
		"cairn_rate_limit {\n zone z {\n when new_account rate\n }\n}",
		"cairn_rate_limit {\n zone z {\n when new_account speed 1/1m\n }\n}",
		"cairn_rate_limit {\n zone z {\n when new_account rate 1/1m burst 0\n }\n}",
		"cairn_rate_limit {\n signals {\n new_account soon\n }\n}",
		"cairn_rate_limit {\n signals {\n large_group 0\n }\n}",
		"cairn_rate_limit {\n signals {\n churn_methods\n }\n}",
		"cairn_rate_limit {\n signals {\n mood\n }\n}",
		"cairn_rate_limit {\n signals {\n }\n signals {\n }\n}",
	} {
		var rl RateLimit
		if err := rl.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	if _, err := (&AdaptiveSignals{Churn: "lots"}).config(); err == nil {
		t.Error("accepted churn lots")
	}
}

func TestProofOfWorkCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`cairn_delivery {
		proof_of_work {
			difficulty 16
			methods blue.catbird.mls.createConvo
			first_key_package off
			new_account +4
			high_churn +6
			max_age 2m
			max_clock_skew 10s
			replay memory
		}
	}`)
	var dl Delivery
	if err := dl.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	w := dl.ProofOfWork
	if w == nil || w.Difficulty != 16 || len(w.Methods) != 1 || !w.SkipFirstKeyPackage || w.NewAccountBits != 4 || w.HighChurnBits != 6 ||
		time.Duration(w.MaxAge) != 2*time.Minute || time.Duration(w.MaxClockSkew) != 10*time.Second || w.Replay != "memory" {
		t.Fatalf("proof_of_work parsed as %+v", w)
	}
	for _, bad := range []string{
		"cairn_delivery {\n proof_of_work {\n }\n}",
		"cairn_delivery {\n proof_of_work {\n difficulty 0\n }\n}",
		"cairn_delivery {\n proof_of_work {\n difficulty 33\n }\n}",
		"cairn_delivery {\n proof_of_work {\n difficulty 8\n new_account 4\n }\n}",
		"cairn_delivery {\n proof_of_work {\n difficulty 8\n first_key_package maybe\n }\n}",
		"cairn_delivery {\n proof_of_work {\n difficulty 8\n max_age 2h\n }\n}",
		"cairn_delivery {\n proof_of_work {\n difficulty 8\n methods\n }\n}",
		"cairn_delivery {\n proof_of_work {\n difficulty 8\n colour blue\n }\n}",
		"cairn_delivery {\n proof_of_work {\n difficulty 8\n }\n proof_of_work {\n difficulty 8\n }\n}",
	} {
		var dl Delivery
		if err := dl.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
