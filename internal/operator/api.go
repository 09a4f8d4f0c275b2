package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/cairn-chat/cairn-caddy/internal/audit"
	"github.com/cairn-chat/cairn-caddy/internal/ban"
	"github.com/cairn-chat/cairn-caddy/internal/operatorauth"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// Prefix is where the API is served.
const Prefix = "/operator/v1/"

// HandlerFunc serves one route for an authenticated operator. It writes a
// response and returns nil, or writes nothing and returns an error: an
// *xrpc.Error for a refusal, anything else for a fault.
type HandlerFunc func(w http.ResponseWriter, r *http.Request, op *operatorauth.Operator) error

// Config holds what the API's routes serve from.
type Config struct {
	// Recorder audits every call; required.
	Recorder audit.Recorder
	// Status reports the node's status; required.
	Status func(ctx context.Context) (Status, error)
	// Audit is the audit log the audit route queries; required.
	Audit store.AuditLog
	// Bans is the ban list; required.
	Bans *ban.List
	// ClientIP, if set, returns the request's client address; the audit
	// log keeps it only as its IP policy says (by default not at all).
	ClientIP func(r *http.Request) string
	// OnServerError, if set, is told of every server fault the API
	// answers (5xx), once: the caller logs it. The cause never reaches the
	// response.
	OnServerError xrpc.ServerErrorFunc
}

// API is the operator API's handler.
type API struct {
	mux      *http.ServeMux
	rec      audit.Recorder
	clientIP func(*http.Request) string
	onError  xrpc.ServerErrorFunc
}

// New returns the API with its standard routes mounted.
func New(cfg Config) (*API, error) {
	if cfg.Recorder == nil || cfg.Status == nil || cfg.Audit == nil || cfg.Bans == nil {
		return nil, errors.New("operator API: Recorder, Status, Audit and Bans are required")
	}
	a := &API{mux: http.NewServeMux(), rec: cfg.Recorder, clientIP: cfg.ClientIP, onError: cfg.OnServerError}
	a.Handle("GET "+Prefix+"status", statusRoute(cfg.Status))
	a.Handle("GET "+Prefix+"audit", auditRoute(cfg.Audit))
	a.Handle("GET "+Prefix+"bans", listBansRoute(cfg.Bans))
	a.Handle("POST "+Prefix+"bans", addBanRoute(cfg.Bans, cfg.Recorder))
	a.Handle("POST "+Prefix+"bans/remove", removeBanRoute(cfg.Bans, cfg.Recorder))
	return a, nil
}

// Handle mounts h at pattern (net/http ServeMux syntax, with a method),
// audited and authenticated like every route. Mount routes before the API
// serves.
func (a *API) Handle(pattern string, h HandlerFunc) {
	route := pattern
	if _, path, ok := strings.Cut(pattern, " "); ok {
		route = strings.TrimPrefix(path, Prefix)
	}
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		op, ok := operatorauth.FromContext(r.Context())
		if !ok {
			xrpc.WriteError(w, xrpc.Errorf(http.StatusUnauthorized, "AuthMissing", "operator authentication required"))
			return
		}
		var ip string
		if a.clientIP != nil {
			ip = a.clientIP(r)
		}
		if err := a.rec.Record(r.Context(), audit.Event{Type: audit.TypeOperatorAction, Actor: op.Subject, IP: ip,
			Metadata: map[string]any{"method": r.Method, "route": route, "auth": op.Method}}); err != nil {
			xrpc.RespondError(w, r, &xrpc.Error{Status: http.StatusServiceUnavailable, Name: "AuditUnavailable",
				Message: "the audit log cannot be written, so no operator call is served; try again later",
				Header:  http.Header{"Retry-After": {"5"}}, Err: fmt.Errorf("audit the call: %w", err)}, a.onError)
			return
		}
		if err := h(w, r, op); err != nil {
			xrpc.RespondError(w, r, err, a.onError)
		}
	})
}

// ServeHTTP serves the API. Unknown paths are 404 NotFound and known paths
// with another method 405 MethodNotAllowed, in the XRPC error shape.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := a.mux.Handler(r)
	if pattern == "" {
		// The mux's own 404 and 405 are plain text; answer in the API's
		// shape, keeping the Allow header a 405 computed.
		rec := &statusOnly{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		if rec.status == http.StatusMethodNotAllowed {
			xrpc.WriteError(w, xrpc.Errorf(http.StatusMethodNotAllowed, "MethodNotAllowed", "method %s is not allowed here", r.Method))
			return
		}
		xrpc.WriteError(w, xrpc.Errorf(http.StatusNotFound, "NotFound", "no operator API route %s", r.URL.Path))
		return
	}
	h.ServeHTTP(w, r)
}

// statusOnly captures a status and headers and drops the body.
type statusOnly struct {
	header http.Header
	status int
}

func (s *statusOnly) Header() http.Header         { return s.header }
func (s *statusOnly) WriteHeader(code int)        { s.status = code }
func (s *statusOnly) Write(b []byte) (int, error) { return len(b), nil }

// maxBody bounds a request body.
const maxBody = 64 << 10

// decodeBody decodes a JSON object strictly: unknown fields, trailing
// data and oversize bodies are 400 InvalidRequest.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return xrpc.Errorf(http.StatusBadRequest, "InvalidRequest", "invalid JSON body: %v", err)
	}
	if dec.More() {
		return xrpc.Errorf(http.StatusBadRequest, "InvalidRequest", "invalid JSON body: trailing data")
	}
	return nil
}

func badRequest(format string, args ...any) error {
	return xrpc.Errorf(http.StatusBadRequest, "InvalidRequest", format, args...)
}
