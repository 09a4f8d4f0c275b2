package caddymodules

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap/zapcore"
)

func init() {
	caddy.RegisterModule(new(RedactFilter))
}

// RedactFilter is a log field filter for Caddy's `filter` log encoder that
// replaces identity-bearing values with cairn's keyed hash ("h:" and 16 hex
// characters). Unlike Caddy's built-in `hash` filter, the hash is keyed with
// the cairn app's log-hash key, so it cannot be reversed by hashing a list of
// known DIDs.
//
// Without options it hashes the whole field. With `query`, the field is taken
// as a request URI and only the named query parameters are hashed; a query
// string that cannot be parsed is replaced whole, keeping the path.
//
// Caddyfile (inside `format filter { … }`):
//
//	request>uri cairn_redact {
//	    query convoId dids did cursor ticket
//	}
//	user_id cairn_redact
type RedactFilter struct {
	// Query lists the query parameters to hash. When empty, the whole field
	// value is hashed.
	Query []string `json:"query,omitempty"`

	box *hasherBox
}

// CaddyModule returns the Caddy module information.
func (*RedactFilter) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.encoders.filter.cairn_redact",
		New: func() caddy.Module { return new(RedactFilter) },
	}
}

// Provision takes a reference to the cairn app's keyed hasher, which the
// app fills in when it provisions (after the logs are opened).
func (f *RedactFilter) Provision(caddy.Context) error {
	v, _, err := sharedState.LoadOrNew(logHasherPoolKey, func() (caddy.Destructor, error) {
		return destructible[*hasherBox]{new(hasherBox), nil}, nil
	})
	if err != nil {
		return fmt.Errorf("cairn_redact: %w", err)
	}
	f.box = v.(destructible[*hasherBox]).v
	return nil
}

// Cleanup releases the reference to the hasher.
func (f *RedactFilter) Cleanup() error {
	_, err := sharedState.Delete(logHasherPoolKey)
	return err
}

// Filter implements logging.LogFieldFilter.
func (f *RedactFilter) Filter(in zapcore.Field) zapcore.Field {
	if array, ok := in.Interface.(caddyhttp.LoggableStringArray); ok {
		out := make(caddyhttp.LoggableStringArray, len(array))
		for i, s := range array {
			out[i] = f.apply(s)
		}
		in.Interface = out
		return in
	}
	if in.Type != zapcore.StringType {
		// Only strings can carry an identity here; anything else is dropped
		// rather than passed through unfiltered.
		return zapcore.Field{Key: in.Key, Type: zapcore.SkipType}
	}
	in.String = f.apply(in.String)
	return in
}

func (f *RedactFilter) apply(s string) string {
	h := f.box.hasher.Load()
	if h == nil {
		// No cairn app has provisioned yet (a line logged during start-up,
		// or a config without any cairn handler): there is no key, so the
		// value cannot be hashed and is dropped whole.
		if s == "" {
			return ""
		}
		return redactedWhole
	}
	if len(f.Query) == 0 {
		return h.Hash(s)
	}
	return h.URI(s, f.Query)
}

// redactedWhole replaces a value the filter could not hash.
const redactedWhole = "[redacted]"

// UnmarshalCaddyfile sets up the filter from Caddyfile tokens.
func (f *RedactFilter) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // filter name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "query":
			params := d.RemainingArgs()
			if len(params) == 0 {
				return d.Errf("query needs at least one parameter name")
			}
			f.Query = append(f.Query, params...)
		default:
			return d.Errf("unrecognized cairn_redact option %q", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner      = (*RedactFilter)(nil)
	_ caddy.CleanerUpper     = (*RedactFilter)(nil)
	_ logging.LogFieldFilter = (*RedactFilter)(nil)
	_ caddyfile.Unmarshaler  = (*RedactFilter)(nil)
)
