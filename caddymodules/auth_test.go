package caddymodules

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestAuthCaddyfile(t *testing.T) {
	var a Auth
	src := "cairn_auth {\n service_did did:web:chat.example\n plc_url https://plc.directory\n leeway 3s\n max_token_lifetime 2m\n replay memory\n lxm_optional\n}"
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src)); err != nil {
		t.Fatal(err)
	}
	if a.ServiceDID != "did:web:chat.example" || time.Duration(a.Leeway) != 3*time.Second || time.Duration(a.MaxTokenLifetime) != 2*time.Minute || a.Replay != "memory" || !a.LXMOptional {
		t.Fatalf("parsed service_did %q leeway %v lifetime %v replay %q lxm_optional %v", a.ServiceDID, a.Leeway, a.MaxTokenLifetime, a.Replay, a.LXMOptional)
	}
	for _, bad := range []string{"cairn_auth {\n leeway soon\n}", "cairn_auth {\n leeway -1s\n}", "cairn_auth {\n bogus\n}", "cairn_auth arg"} {
		var a Auth
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestOperatorAuthCaddyfile(t *testing.T) {
	var o OperatorAuth
	src := "cairn_operator_auth {\n oidc {\n  issuer https://sso.example/realms/ops\n  audience cairn\n  role_claim realm_access.roles\n  required_role admin\n }\n static_token_hash sha256:00\n}"
	if err := o.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src)); err != nil {
		t.Fatal(err)
	}
	if o.OIDC == nil || o.OIDC.Issuer != "https://sso.example/realms/ops" || o.OIDC.RoleClaim != "realm_access.roles" || o.OIDC.RequiredRole != "admin" || o.StaticTokenHash != "sha256:00" {
		t.Fatalf("parsed %+v %+v", o, o.OIDC)
	}
	if err := new(OperatorAuth).UnmarshalCaddyfile(caddyfile.NewTestDispenser("cairn_operator_auth {\n oidc {\n  colour red\n }\n}")); err == nil {
		t.Error("accepted an unknown oidc option")
	}
}
