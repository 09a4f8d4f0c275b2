package caddymodules

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestEveryDirectiveHasOneOrder checks that each cairn handler module is in
// directiveOrder exactly once, so no Caddyfile needs an `order` option.
func TestEveryDirectiveHasOneOrder(t *testing.T) {
	seen := map[string]bool{}
	for _, d := range directiveOrder {
		if seen[d.directive] {
			t.Errorf("%s is ordered twice", d.directive)
		}
		seen[d.directive] = true
	}
	for _, m := range caddy.GetModules("http.handlers") {
		if name := m.ID.Name(); strings.HasPrefix(name, "cairn_") && !seen[name] {
			t.Errorf("handler %s has no directive order", name)
		}
	}
}

// TestDirectiveOrderAdapts adapts a site that lists cairn's directives in
// reverse, without an `order` option, and checks the handlers come out in
// directiveOrder's order.
func TestDirectiveOrderAdapts(t *testing.T) {
	args := map[string]string{"cairn_xrpc_proxy": " http://127.0.0.1:1"}
	var site strings.Builder
	site.WriteString("example.com {\n")
	for _, d := range slices.Backward(directiveOrder) {
		site.WriteString("\t" + d.directive + args[d.directive] + "\n")
	}
	site.WriteString("}\n")
	// Other directives need no options to adapt; their checks run at
	// provisioning.
	raw, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(site.String()), nil)
	if err != nil {
		t.Fatalf("adapt: %v (warnings %v)", err, warnings)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []struct {
							Routes []struct {
								Handle []struct {
									Handler string `json:"handler"`
								} `json:"handle"`
							} `json:"routes"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, srv := range cfg.Apps.HTTP.Servers {
		for _, route := range srv.Routes {
			for _, sub := range route.Handle {
				for _, r := range sub.Routes {
					for _, h := range r.Handle {
						got = append(got, h.Handler)
					}
				}
			}
		}
	}
	var want []string
	for _, d := range directiveOrder {
		want = append(want, d.directive)
	}
	if !slices.Equal(got, want) {
		t.Errorf("adapted handler order\n got %v\nwant %v\n%s", got, want, raw)
	}
}
