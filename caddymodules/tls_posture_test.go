package caddymodules

import (
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddytls"
)

// TestOnDemandPermittedSeesCaddysField guards the reflection in
// onDemandPermitted: if a Caddy upgrade renames OnDemandConfig's
// unexported permission field, the check would refuse every on-demand
// config in production, and this test says why.
func TestOnDemandPermittedSeesCaddysField(t *testing.T) {
	if ok, err := onDemandPermitted(nil); ok || err != nil {
		t.Fatalf("no on-demand config: %v, %v; want not permitted", ok, err)
	}
	if ok, err := onDemandPermitted(&caddytls.OnDemandConfig{Ask: "http://127.0.0.1:9/ok"}); !ok || err != nil {
		t.Fatalf("ask: %v, %v; want permitted", ok, err)
	}
	ok, err := onDemandPermitted(&caddytls.OnDemandConfig{})
	if err != nil {
		t.Fatalf("caddytls.OnDemandConfig no longer has the field the check reads: %v", err)
	}
	if ok {
		t.Fatal("an empty on-demand config counts as permitted")
	}
}
