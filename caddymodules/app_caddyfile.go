package caddymodules

import (
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("cairn", parseAppOption)
}

// parseAppOption parses the `cairn` global option:
//
//	cairn {
//	    mode               production|development
//	    data_dir           <path>
//	    log_level          debug|info|warn|error
//	    log_hash_key       <secret>
//	    log_hash_key_file  <path>
//	    redis              <url>
//	    log_identities
//	    plc_url            <url>
//	    did_web_allow_http
//	    resolver_allow_hosts <host...>
//	}
func parseAppOption(d *caddyfile.Dispenser, _ any) (any, error) {
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "cairn", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from Caddyfile tokens.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "mode", "data_dir", "log_level", "log_hash_key", "log_hash_key_file", "plc_url":
			if !d.NextArg() {
				return d.Errf("%s needs a value", opt)
			}
			v := d.Val()
			if d.NextArg() {
				return d.Errf("%s takes one value", opt)
			}
			switch opt {
			case "mode":
				a.Mode = v
			case "data_dir":
				a.DataDir = v
			case "log_level":
				a.LogLevel = v
			case "log_hash_key":
				a.LogHashKey = v
			case "log_hash_key_file":
				a.LogHashKeyFile = v
			case "plc_url":
				a.PLCURL = v
			}
		case "redis":
			// An empty {$CAIRN_REDIS_URL} leaves no argument: no Redis.
			if d.NextArg() {
				a.Redis = d.Val()
			}
			if d.NextArg() {
				return d.Errf("redis takes one URL")
			}
		case "log_identities":
			if d.NextArg() {
				return d.ArgErr()
			}
			a.LogIdentities = true
		case "did_web_allow_http":
			if d.NextArg() {
				return d.ArgErr()
			}
			a.DIDWebAllowHTTP = true
		case "resolver_allow_hosts":
			hosts := d.RemainingArgs()
			if len(hosts) == 0 {
				return d.Errf("resolver_allow_hosts needs at least one host")
			}
			a.ResolverAllowHosts = append(a.ResolverAllowHosts, hosts...)
		default:
			return d.Errf("unrecognized cairn option %q", opt)
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*App)(nil)
