package caddymodules

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/cairn-chat/cairn-caddy/internal/redact"
)

func init() {
	caddy.RegisterModule(new(RedactFilter))
}

// RedactFilter is a log field filter for Caddy's `filter` log encoder that
// replaces identity-bearing values with cairn's keyed hash ("h:" and 16 hex
// characters). Unlike Caddy's built-in `hash` filter, the hash is keyed with
// the cairn app's log-hash key, so it cannot be reversed by hashing a list of
// known DIDs or the IPv4 address space.
//
// What it keeps is an allowlist, so a parameter or header nobody thought of
// is hashed, not logged:
//
//   - `value` (the default) hashes the whole field: a user ID, any string.
//   - `ip` takes the field as a client address (request>remote_ip,
//     request>client_ip) and renders it under `ips`: hash (the default),
//     truncate (IPv4 /24, IPv6 /48) or keep.
//   - `uri` takes the field as a request URI and keeps its path; it hashes
//     every query value except those of the parameters in keep (default
//     limit, cipherSuite, includeRevoked, status) that are a short run of
//     letters, digits and underscores. A query string that cannot be parsed
//     is replaced whole, keeping the path.
//   - `headers` takes the field as a header map (request>headers,
//     resp_headers) and hashes the value of every header not in keep
//     (default: framing, negotiation, request ID, rate-limit and caching
//     headers), among them User-Agent and X-Device-ID; the headers that
//     carry client addresses (X-Forwarded-For, X-Real-IP, Forwarded, …)
//     follow `ips` instead.
//
// Caddyfile (inside `format filter { fields { … } }`):
//
//	request>uri       cairn_redact uri
//	request>headers   cairn_redact headers {
//	    keep Content-Type X-Request-ID
//	}
//	request>remote_ip cairn_redact ip {
//	    ips {$CAIRN_LOG_CLIENT_IPS:hash}
//	}
type RedactFilter struct {
	// Kind says what the field holds: "value" (hash it whole; the
	// default), "uri" (a request URI), "headers" (a header map) or "ip" (a
	// client address).
	Kind string `json:"kind,omitempty"`

	// Keep lists the query parameters (kind uri) or headers (kind headers)
	// that are logged as sent. When empty, redact.DefaultKeepQuery or
	// redact.DefaultKeepHeaders applies. Listing names replaces the
	// default, it does not add to it.
	Keep []string `json:"keep,omitempty"`

	// IPs says how client addresses are logged (kinds ip and headers):
	// "hash" (the default: the keyed hash), "truncate" (the IPv4 /24 or
	// IPv6 /48 network) or "keep" (as sent). An empty value is the
	// default, so an unset placeholder keeps addresses out of the log.
	IPs string `json:"ips,omitempty"`

	box  *hasherBox
	keep []string
	ips  redact.IPPolicy
}

// The kinds of field RedactFilter knows.
const (
	RedactValue   = "value"
	RedactURI     = "uri"
	RedactHeaders = "headers"
	RedactIP      = "ip"
)

// CaddyModule returns the Caddy module information.
func (*RedactFilter) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.encoders.filter.cairn_redact",
		New: func() caddy.Module { return new(RedactFilter) },
	}
}

// Provision takes a reference to the cairn app's keyed hasher, which the
// app fills in when it provisions (after the logs are opened), and applies
// the default allowlists.
func (f *RedactFilter) Provision(caddy.Context) error {
	if err := f.Validate(); err != nil {
		return err
	}
	f.ips, _ = redact.ParseIPPolicy(f.IPs) // checked by Validate
	switch f.Kind {
	case RedactURI:
		f.keep = f.Keep
		if len(f.keep) == 0 {
			f.keep = redact.DefaultKeepQuery()
		}
	case RedactHeaders:
		f.keep = make([]string, 0, len(f.Keep))
		for _, h := range f.Keep {
			f.keep = append(f.keep, http.CanonicalHeaderKey(h))
		}
		if len(f.keep) == 0 {
			f.keep = redact.DefaultKeepHeaders()
		}
	}
	v, _, err := sharedState.LoadOrNew(logHasherPoolKey, func() (caddy.Destructor, error) {
		return destructible[*hasherBox]{new(hasherBox), nil}, nil
	})
	if err != nil {
		return fmt.Errorf("cairn_redact: %w", err)
	}
	f.box = v.(destructible[*hasherBox]).v
	return nil
}

// Validate checks the kind and that keep is only used where it means
// something.
func (f *RedactFilter) Validate() error {
	switch f.Kind {
	case "", RedactValue, RedactURI, RedactHeaders, RedactIP:
	default:
		return fmt.Errorf("cairn_redact: kind %q: want value, uri, headers or ip", f.Kind)
	}
	if len(f.Keep) > 0 && f.Kind != RedactURI && f.Kind != RedactHeaders {
		return fmt.Errorf("cairn_redact: keep needs kind uri or headers")
	}
	if f.IPs != "" && f.Kind != RedactIP && f.Kind != RedactHeaders {
		return fmt.Errorf("cairn_redact: ips needs kind ip or headers")
	}
	if _, err := redact.ParseIPPolicy(f.IPs); err != nil {
		return fmt.Errorf("cairn_redact: %w", err)
	}
	return nil
}

// Cleanup releases the reference to the hasher.
func (f *RedactFilter) Cleanup() error {
	_, err := sharedState.Delete(logHasherPoolKey)
	return err
}

// Filter implements logging.LogFieldFilter.
func (f *RedactFilter) Filter(in zapcore.Field) zapcore.Field {
	h := f.box.hasher.Load()
	if f.Kind == RedactHeaders {
		hdr, ok := in.Interface.(caddyhttp.LoggableHTTPHeader)
		if in.Type != zapcore.ObjectMarshalerType || !ok {
			return zapcore.Field{Key: in.Key, Type: zapcore.SkipType}
		}
		hdr.Header = f.headers(h, hdr.Header)
		return zap.Object(in.Key, hdr)
	}
	if array, ok := in.Interface.(caddyhttp.LoggableStringArray); ok {
		out := make(caddyhttp.LoggableStringArray, len(array))
		for i, s := range array {
			out[i] = f.apply(h, s)
		}
		in.Interface = out
		return in
	}
	if in.Type != zapcore.StringType {
		// Only strings can carry an identity here; anything else is dropped
		// rather than passed through unfiltered.
		return zapcore.Field{Key: in.Key, Type: zapcore.SkipType}
	}
	in.String = f.apply(h, in.String)
	return in
}

func (f *RedactFilter) apply(h *redact.Hasher, s string) string {
	if h == nil {
		// No cairn app has provisioned yet (a line logged during start-up,
		// or a config without any cairn handler): there is no key, so the
		// value cannot be hashed and is dropped whole.
		if s == "" {
			return ""
		}
		if f.Kind == RedactIP && f.ips == redact.IPKeep {
			return s
		}
		return redactedWhole
	}
	switch f.Kind {
	case RedactURI:
		return h.URI(s, f.keep)
	case RedactIP:
		return h.IP(s, f.ips)
	}
	return h.Hash(s)
}

func (f *RedactFilter) headers(h *redact.Hasher, hdr http.Header) http.Header {
	if h != nil {
		return h.Header(hdr, f.keep, f.ips)
	}
	out := make(http.Header, len(hdr))
	for name, vs := range hdr {
		if slices.Contains(f.keep, name) || (f.ips == redact.IPKeep && redact.IsIPHeader(name)) {
			out[name] = vs
		} else {
			out[name] = []string{redactedWhole}
		}
	}
	return out
}

// redactedWhole replaces a value the filter could not hash.
const redactedWhole = "[redacted]"

// UnmarshalCaddyfile sets up the filter from Caddyfile tokens:
//
//	cairn_redact [value|uri|headers|ip] {
//	    keep <names...>
//	    ips  hash|truncate|keep
//	}
func (f *RedactFilter) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // filter name
	if d.NextArg() {
		f.Kind = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "keep":
			names := d.RemainingArgs()
			if len(names) == 0 {
				return d.Errf("keep needs at least one name")
			}
			f.Keep = append(f.Keep, names...)
		case "ips":
			// An empty placeholder leaves no argument: the default, hash.
			if d.NextArg() {
				f.IPs = d.Val()
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "query":
			return d.Errf("cairn_redact: the query option is gone: write `cairn_redact uri`, which hashes every query parameter except those known to be harmless (see keep)")
		default:
			return d.Errf("unrecognized cairn_redact option %q", d.Val())
		}
	}
	if err := f.Validate(); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner      = (*RedactFilter)(nil)
	_ caddy.Validator        = (*RedactFilter)(nil)
	_ caddy.CleanerUpper     = (*RedactFilter)(nil)
	_ logging.LogFieldFilter = (*RedactFilter)(nil)
	_ caddyfile.Unmarshaler  = (*RedactFilter)(nil)
)
