package realtime

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// Defaults for the zero values of ServerConfig.
const (
	DefaultHeartbeat    = 15 * time.Second
	DefaultPing         = 30 * time.Second
	DefaultWriteTimeout = 10 * time.Second
)

// ServerConfig configures a Server. Only Hub is required.
type ServerConfig struct {
	// Hub is the event hub the streams subscribe to.
	Hub *Hub
	// Tickets issues and redeems WebSocket tickets. Without it
	// getSubscriptionTicket and subscribeConvoEvents answer 501.
	Tickets *Tickets
	// Heartbeat is the interval of SSE heartbeat comments. Default 15 s.
	Heartbeat time.Duration
	// Ping is the interval of WebSocket pings; a peer that does not answer
	// one within WriteTimeout is closed. Default 30 s.
	Ping time.Duration
	// WriteTimeout bounds every write to a client (and a ping's answer);
	// a peer that stalls longer is closed. Default 10 s.
	WriteTimeout time.Duration
	// Endpoint is the WebSocket URL getSubscriptionTicket advertises.
	// Default: wss://<request host>/xrpc/blue.catbird.mls.subscribeConvoEvents.
	Endpoint string
	// OnServerError, if set, is told once of every server fault the Server
	// answers, to log it (see internal/xrpc's error path).
	OnServerError xrpc.ServerErrorFunc
}

// Server serves the realtime XRPC methods over a Hub: streamConvoEvents
// (SSE), getSubscriptionTicket and subscribeConvoEvents (WebSocket). The
// caller must already be authenticated (caller.From) for the first two;
// subscribeConvoEvents authenticates by ticket instead. It implements
// http.Handler.
type Server struct {
	cfg ServerConfig
}

// NewServer returns a Server for cfg.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Hub == nil {
		return nil, errors.New("realtime: ServerConfig.Hub is required")
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Ping <= 0 {
		cfg.Ping = DefaultPing
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	return &Server{cfg: cfg}, nil
}

// Handles reports whether nsid is one of the Server's methods.
func (s *Server) Handles(nsid string) bool {
	return nsid == NSIDStream || nsid == NSIDSubscribe || nsid == NSIDGetTicket
}

// ServeHTTP routes /xrpc/<nsid> to the method's handler; anything else is
// 501 MethodNotImplemented.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	nsid, _ := xrpc.NSIDFromPath(r.URL.Path)
	switch nsid {
	case NSIDStream:
		s.ServeStream(w, r)
	case NSIDGetTicket:
		s.ServeTicket(w, r)
	case NSIDSubscribe:
		s.ServeSubscribe(w, r)
	default:
		s.fail(w, r, xrpc.Errorf(http.StatusNotImplemented, "MethodNotImplemented", "method not implemented"))
	}
}

// fail answers r with err, reporting a server fault; it is the Server's one
// error path.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	xrpc.RespondError(w, r, err, s.cfg.OnServerError)
}

// subscribeError maps Hub.Subscribe's errors to XRPC errors.
func subscribeError(err error) error {
	e := func(status int, name, msg string) *xrpc.Error {
		return &xrpc.Error{Status: status, Name: name, Message: msg, Err: err}
	}
	switch {
	case errors.Is(err, ErrInvalidCursor):
		return e(http.StatusBadRequest, "InvalidRequest", "cursor is not a cursor this server issued")
	case errors.Is(err, store.ErrNotFound):
		return e(http.StatusNotFound, "ConvoNotFound", "conversation not found")
	case errors.Is(err, store.ErrNotMember):
		return e(http.StatusForbidden, "NotMember", "caller is not a member of the conversation")
	case errors.Is(err, ErrTooManyConnections):
		x := e(http.StatusTooManyRequests, "RateLimitExceeded", "too many open event streams; close one and retry")
		x.Header = http.Header{"Retry-After": {"5"}}
		return x
	case errors.Is(err, ErrHubClosed):
		return e(http.StatusServiceUnavailable, "ServiceUnavailable", "server is shutting down")
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		x := e(http.StatusServiceUnavailable, "ServiceUnavailable", "service temporarily unavailable")
		x.Header = http.Header{"Retry-After": {"1"}}
		return x
	}
	return e(http.StatusInternalServerError, "InternalServerError", "internal error")
}

func methodNotAllowed(nsid, want string) *xrpc.Error {
	e := xrpc.Errorf(http.StatusMethodNotAllowed, "InvalidRequest", "%s must be called with HTTP %s", nsid, want)
	e.Header = http.Header{"Allow": {want}}
	return e
}

// maxConvoIDLen bounds the convoId parameter.
const maxConvoIDLen = 256

// checkConvoID refuses, with 400, a convoId no conversation can have:
// longer than maxConvoIDLen, or not UTF-8 text without NUL. PostgreSQL
// refuses such a query argument outright, which would otherwise surface
// as a 500 where SQLite answers "not found".
func checkConvoID(id string) error {
	if len(id) > maxConvoIDLen {
		return xrpc.Errorf(http.StatusBadRequest, "InvalidRequest", "convoId is too long")
	}
	if !utf8.ValidString(id) || strings.ContainsRune(id, 0) {
		return xrpc.Errorf(http.StatusBadRequest, "InvalidRequest", "convoId must be UTF-8 text without NUL")
	}
	return nil
}
