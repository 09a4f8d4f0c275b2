package caddymodules

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
)

// checkOnDemandTLS refuses on-demand TLS without an `ask` endpoint (or
// another permission module) in production. On-demand TLS obtains a
// certificate for whatever name a client sends in its handshake; without a
// permission check anyone can make the node order certificates until the
// CA's rate limits lock the operator out. Caddy itself refuses this only for
// catch-all policies; cairn refuses it for every policy.
//
// The cairn app cannot see the tls app's raw configuration, so it asks for
// the tls app (provisioning it, which Caddy would do anyway) and inspects
// the result.
func (a *App) checkOnDemandTLS(ctx caddy.Context) error {
	if a.Mode != ModeProduction {
		return nil
	}
	v, err := ctx.AppIfConfigured("tls")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cairn: inspecting the tls app: %w", err)
	}
	tlsApp, ok := v.(*caddytls.TLS)
	if !ok || tlsApp.Automation == nil {
		return nil
	}
	onDemand := false
	for _, ap := range tlsApp.Automation.Policies {
		if ap.OnDemand {
			onDemand = true
			break
		}
	}
	if !onDemand {
		return nil
	}
	permitted, err := onDemandPermitted(tlsApp.Automation.OnDemand)
	if err != nil {
		return err
	}
	if !permitted {
		return errors.New("on-demand TLS (`tls { on_demand }`) needs an `ask` endpoint in production: add the global option `on_demand_tls { ask <url> }` naming an endpoint that approves only your domains, or remove on_demand (docs/tls.md)")
	}
	return nil
}

// onDemandPermitted reports whether the on-demand configuration has an ask
// endpoint or a permission module. After provisioning, Caddy keeps the
// module only in an unexported field; reading whether it is nil is all
// this does with it. If a Caddy upgrade renames the field, the check fails
// closed (and TestOnDemandPermittedSeesCaddysField fails).
func onDemandPermitted(od *caddytls.OnDemandConfig) (bool, error) {
	if od == nil {
		return false, nil
	}
	if od.Ask != "" || od.PermissionRaw != nil {
		return true, nil
	}
	f := reflect.ValueOf(od).Elem().FieldByName("permission")
	if !f.IsValid() || f.Kind() != reflect.Interface {
		return false, errors.New("cairn: cannot tell whether on-demand TLS has a permission module with this Caddy version; refusing on-demand TLS in production")
	}
	return !f.IsNil(), nil
}
