package caddymodules

import (
	"github.com/caddyserver/caddy/v2"
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
//	    database           <postgres-url>
//	    migrations         auto|manual
//	    key_packages_per_device <n>
//	    retention {
//	        messages | events | consumed_welcomes | unconsumed_welcomes |
//	        consumed_key_packages | idempotency | closed_chat_requests |
//	        interval  <duration>
//	    }
//	    streams {
//	        max_per_did <n>
//	        max         <n>
//	        notifier    postgres|redis
//	    }
//	    audit {
//	        key        <secret>
//	        key_file   <path>
//	        ip         off|hash|truncate
//	        retention  <duration>
//	    }
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
		case "mode", "data_dir", "log_hash_key", "log_hash_key_file", "plc_url", "migrations":
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
			case "log_hash_key":
				a.LogHashKey = v
			case "log_hash_key_file":
				a.LogHashKeyFile = v
			case "plc_url":
				a.PLCURL = v
			case "migrations":
				if v != MigrationsAuto && v != MigrationsManual {
					return d.Errf("migrations %q: want %s or %s", v, MigrationsAuto, MigrationsManual)
				}
				a.Migrations = v
			}
		case "log_level":
			// An empty {$CAIRN_LOG_LEVEL} leaves no argument: the default.
			if d.NextArg() {
				a.LogLevel = d.Val()
			}
			if d.NextArg() {
				return d.Errf("log_level takes one value")
			}
		case "database":
			// An empty {$CAIRN_DATABASE_URL} leaves no argument: SQLite.
			if d.NextArg() {
				a.Database = d.Val()
			}
			if d.NextArg() {
				return d.Errf("database takes one URL")
			}
		case "key_packages_per_device":
			var v string
			if !d.AllArgs(&v) {
				return d.Errf("key_packages_per_device takes one value")
			}
			n, err := positiveInt(v)
			if err != nil {
				return d.Errf("key_packages_per_device %q: %v", v, err)
			}
			a.KeyPackagesPerDevice = n
		case "retention":
			if err := a.unmarshalRetention(d); err != nil {
				return err
			}
		case "audit":
			if err := a.unmarshalAudit(d); err != nil {
				return err
			}
		case "streams":
			if err := a.unmarshalStreams(d); err != nil {
				return err
			}
		case "backup":
			if err := a.unmarshalBackup(d); err != nil {
				return err
			}
		case "identity":
			if err := a.unmarshalIdentity(d); err != nil {
				return err
			}
		case "push":
			if err := a.unmarshalPush(d); err != nil {
				return err
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

func (a *App) unmarshalRetention(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	a.Retention = new(RetentionConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		var v string
		if !d.AllArgs(&v) {
			return d.Errf("retention %s takes one value", opt)
		}
		if opt == "key_packages_per_device" {
			return d.Errf("retention key_packages_per_device has moved: write `key_packages_per_device %s` directly in the cairn global options, where cairn_delivery and retention both read it", v)
		}
		dur, err := caddy.ParseDuration(v)
		if err != nil || dur <= 0 {
			return d.Errf("retention %s %q: want a positive duration such as 30d or 24h", opt, v)
		}
		field := map[string]*caddy.Duration{
			"messages":              &a.Retention.Messages,
			"events":                &a.Retention.Events,
			"consumed_welcomes":     &a.Retention.ConsumedWelcomes,
			"unconsumed_welcomes":   &a.Retention.UnconsumedWelcomes,
			"consumed_key_packages": &a.Retention.ConsumedKeyPackages,
			"closed_chat_requests":  &a.Retention.ClosedChatRequests,
			"idempotency":           &a.Retention.Idempotency,
			"interval":              &a.Retention.Interval,
		}[opt]
		if field == nil {
			return d.Errf("unrecognized retention option %q", opt)
		}
		*field = caddy.Duration(dur)
	}
	return nil
}

func (a *App) unmarshalStreams(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	a.Streams = new(StreamsConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		var v string
		if !d.AllArgs(&v) {
			return d.Errf("streams %s takes one value", opt)
		}
		if opt == "notifier" {
			if v != NotifierPostgres && v != NotifierRedis {
				return d.Errf("streams notifier %q: want %s or %s", v, NotifierPostgres, NotifierRedis)
			}
			a.Streams.Notifier = v
			continue
		}
		n, err := positiveInt(v)
		if err != nil {
			return d.Errf("streams %s %q: %v", opt, v, err)
		}
		switch opt {
		case "max_per_did":
			a.Streams.MaxPerDID = n
		case "max":
			a.Streams.Max = n
		default:
			return d.Errf("unrecognized streams option %q", opt)
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*App)(nil)
