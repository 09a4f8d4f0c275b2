// Package secheaders decides the security headers of every response: the
// defaults (a strict CSP, HSTS, no framing, no sniffing, a tight referrer and
// permissions policy), the operator's overrides and removals, and the headers
// that must never leave the gateway (Server).
package secheaders

import (
	"fmt"
	"net/http"
	"strings"
)

// Defaults are the headers set on every response unless overridden.
func Defaults() map[string]string {
	return map[string]string{
		"Content-Security-Policy":   "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self' wss:",
		"Strict-Transport-Security": "max-age=31536000; includeSubDomains",
		"X-Frame-Options":           "DENY",
		"X-Content-Type-Options":    "nosniff",
		"Referrer-Policy":           "strict-origin-when-cross-origin",
		"Permissions-Policy":        "camera=(), microphone=(), geolocation=()",
	}
}

// XRPCCacheControl is the Cache-Control value of XRPC responses: they carry
// per-user state and must never be stored by a shared cache.
const XRPCCacheControl = "no-store"

// Policy is a resolved set of headers to apply.
type Policy struct {
	set         []header // canonical names with their value slices
	remove      []string // canonical names
	xrpcNoStore []string
	xrpcPrefix  string
}

// header is a canonical header name and a value slice built once, so that
// Apply assigns map entries without allocating.
type header struct {
	name  string
	value []string
}

// Config is an operator's adjustment of the defaults.
type Config struct {
	// Set overrides or adds headers by name.
	Set map[string]string
	// Remove drops default headers by name.
	Remove []string
	// KeepXRPCCacheControl, when true, leaves Cache-Control on XRPC
	// responses to the handlers.
	KeepXRPCCacheControl bool
}

// New resolves cfg against the defaults. It rejects header names or values
// that are not valid HTTP, naming the header.
func New(cfg Config) (*Policy, error) {
	headers := Defaults()
	for name, value := range cfg.Set {
		if err := checkHeader(name, value); err != nil {
			return nil, err
		}
		for k := range headers {
			if strings.EqualFold(k, name) {
				delete(headers, k)
			}
		}
		headers[http.CanonicalHeaderKey(name)] = value
	}
	p := &Policy{xrpcPrefix: "/xrpc/", remove: []string{"Server"}}
	if !cfg.KeepXRPCCacheControl {
		p.xrpcNoStore = []string{XRPCCacheControl}
	}
	for _, name := range cfg.Remove {
		if err := checkHeader(name, ""); err != nil {
			return nil, err
		}
		canon := http.CanonicalHeaderKey(name)
		delete(headers, canon)
		p.remove = append(p.remove, canon)
	}
	for name, value := range headers {
		p.set = append(p.set, header{name, []string{value}})
	}
	return p, nil
}

func checkHeader(name, value string) error {
	if name == "" {
		return fmt.Errorf("empty header name")
	}
	for _, c := range name {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", c) {
			return fmt.Errorf("header name %q is not a valid HTTP token", name)
		}
	}
	if strings.ContainsAny(value, "\r\n\x00") {
		return fmt.Errorf("header %s: the value may not contain line breaks or NUL", name)
	}
	return nil
}

// hsts is the canonical name of the header sent only over HTTPS.
const hsts = "Strict-Transport-Security"

// Apply writes the policy into h for a response to a request for path,
// received over TLS or not. Strict-Transport-Security goes only on
// responses over TLS (RFC 6797 section 7.2: a plain-HTTP response must not
// carry it, and browsers ignore it there). The value slices are shared
// between responses and must not be modified by later handlers; net/http
// only reads them.
func (p *Policy) Apply(h http.Header, path string, overTLS bool) {
	for _, name := range p.remove {
		delete(h, name)
	}
	for _, kv := range p.set {
		if kv.name == hsts && !overTLS {
			delete(h, hsts)
			continue
		}
		h[kv.name] = kv.value
	}
	if p.xrpcNoStore != nil && strings.HasPrefix(path, p.xrpcPrefix) {
		h["Cache-Control"] = p.xrpcNoStore
	}
}
