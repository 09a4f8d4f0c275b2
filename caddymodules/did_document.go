package caddymodules

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/servicekey"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

func init() {
	caddy.RegisterModule(new(DIDDocument))
	httpcaddyfile.RegisterHandlerDirective("cairn_did_document", parseDIDDocument)
}

// didDocumentPath is where a did:web document is served.
const didDocumentPath = "/.well-known/did.json"

// DIDDocument serves the service's did:web document at
// /.well-known/did.json on the public site, so that a PDS resolves
// did:web:<host>#atproto_mls to proxy clients here. The document holds
// the service entry {"id":"#atproto_mls","type":"AtprotoMlsService",
// "serviceEndpoint":"https://<host>"} and the service's signing keys from
// the cairn app's keyring (the current one as #atproto, a rotated-out one
// as #atproto_<id> during its grace period). Other paths pass to the next
// handler.
//
// Caddyfile:
//
//	cairn_did_document {
//	    service_did did:web:chat.example.com
//	    endpoint    https://chat.example.com   # default: from service_did
//	}
type DIDDocument struct {
	// ServiceDID is this service's did:web DID (a bare host, as
	// cairn_auth's service_did). Placeholders are expanded.
	ServiceDID string `json:"service_did,omitempty"`
	// Endpoint is the service entry's serviceEndpoint. Default
	// https://<host of ServiceDID>.
	Endpoint string `json:"endpoint,omitempty"`

	did, endpoint string
	app           *App
	logger        *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*DIDDocument) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cairn_did_document",
		New: func() caddy.Module { return new(DIDDocument) },
	}
}

// Provision checks the DID and asks the app for the keyring, which Start
// opens (generating the first key there, never here).
func (h *DIDDocument) Provision(ctx caddy.Context) error {
	app, err := cairnApp(ctx)
	if err != nil {
		return err
	}
	repl := caddy.NewReplacer()
	h.did = repl.ReplaceAll(h.ServiceDID, "")
	if h.did == "" {
		return fmt.Errorf("cairn_did_document: service_did is required (this service's DID, e.g. did:web:chat.example.com)")
	}
	implied, err := servicekey.ParseDIDWeb(h.did)
	if err != nil {
		return fmt.Errorf("cairn_did_document service_did: %w", err)
	}
	h.endpoint = repl.ReplaceAll(h.Endpoint, "")
	if h.endpoint == "" {
		h.endpoint = implied
	}
	app.UseServiceIdentity()
	h.app, h.logger = app, app.ModuleLogger(ctx)
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *DIDDocument) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.URL.Path != didDocumentPath {
		return next.ServeHTTP(w, r)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		respondError(h.logger, w, r, xrpc.Errorf(http.StatusMethodNotAllowed, "MethodNotAllowed", "method %s is not allowed here", r.Method))
		return nil
	}
	if _, err := h.app.Ready(r.Context()); err != nil && r.Context().Err() != nil {
		return nil
	}
	keys, ok := h.app.ServiceKeys()
	if !ok {
		respondError(h.logger, w, r, &xrpc.Error{Status: http.StatusServiceUnavailable, Name: "ServiceUnavailable",
			Message: "the service identity is not available", Header: http.Header{"Retry-After": {"1"}}})
		return nil
	}
	body, err := json.Marshal(keys.Document(h.did, h.endpoint))
	if err != nil {
		respondError(h.logger, w, r, &xrpc.Error{Status: http.StatusInternalServerError, Name: "InternalServerError", Message: "internal error", Err: err})
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	// Short, so that resolvers see a rotation soon.
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
	return nil
}

func parseDIDDocument(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(DIDDocument)
	return m, m.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile parses the service_did and endpoint options.
func (h *DIDDocument) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		var v string
		if !d.AllArgs(&v) {
			return d.Errf("%s takes one value", opt)
		}
		switch opt {
		case "service_did":
			h.ServiceDID = v
		case "endpoint":
			h.Endpoint = v
		default:
			return d.Errf("unrecognized cairn_did_document option %q (want service_did or endpoint)", opt)
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*DIDDocument)(nil)
	_ caddyhttp.MiddlewareHandler = (*DIDDocument)(nil)
	_ caddyfile.Unmarshaler       = (*DIDDocument)(nil)
)
