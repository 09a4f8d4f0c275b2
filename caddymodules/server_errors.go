package caddymodules

import (
	"net/http"

	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// respondError is the adapters' one error path (see the package doc): it
// writes err as the XRPC error response and logs a server fault once, at
// error level, with the request ID and fields.
func respondError(logger *zap.Logger, w http.ResponseWriter, r *http.Request, err error, fields ...zap.Field) {
	xrpc.RespondError(w, r, err, func(r *http.Request, e *xrpc.Error) {
		logServerError(logger, r, e, fields...)
	})
}

// serverErrorLogger returns the xrpc.ServerErrorFunc a domain handler
// (the delivery service, the realtime server) reports its server faults to.
func serverErrorLogger(logger *zap.Logger) xrpc.ServerErrorFunc {
	return func(r *http.Request, e *xrpc.Error) { logServerError(logger, r, e) }
}

// logServerError writes the one log line of a server fault: the request ID,
// the status, the XRPC error name and the cause, which holds no identity
// (xrpc.Error.Err never does).
func logServerError(logger *zap.Logger, r *http.Request, e *xrpc.Error, fields ...zap.Field) {
	l := requestLogger(logger, r)
	if c := l.Check(zap.ErrorLevel, "answered with a server error"); c != nil {
		c.Write(append([]zap.Field{zap.Int("status", e.Status), zap.String("xrpc_error", e.Name), zap.NamedError("cause", e.Err)}, fields...)...)
	}
}
