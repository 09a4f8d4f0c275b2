package caddymodules

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/cairn-chat/cairn-caddy/internal/metrics"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

func init() {
	caddy.RegisterModule(new(XRPCMetrics))
	httpcaddyfile.RegisterHandlerDirective("cairn_xrpc_metrics", parseXRPCMetrics)
}

// XRPCMetrics counts XRPC requests by method NSID and status class and times
// them. It sits early in the public pipeline so that refusals by the rate
// limiter and the authenticator are counted too. Methods outside the known
// lexicon set are counted as "other", so clients cannot grow the label set.
//
// Caddyfile: `cairn_xrpc_metrics` (no options).
type XRPCMetrics struct {
	metrics *metrics.Metrics
}

// CaddyModule returns the Caddy module information.
func (*XRPCMetrics) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cairn_xrpc_metrics",
		New: func() caddy.Module { return new(XRPCMetrics) },
	}
}

// Provision finds the process-wide collectors.
func (x *XRPCMetrics) Provision(ctx caddy.Context) error {
	app, err := cairnApp(ctx)
	if err != nil {
		return err
	}
	x.metrics = app.Metrics()
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (x *XRPCMetrics) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	nsid, ok := xrpc.NSIDFromPath(r.URL.Path)
	if !ok {
		return next.ServeHTTP(w, r)
	}
	start := time.Now()
	rec := &statusRecorder{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
	err := next.ServeHTTP(rec, r)
	status := rec.status
	if err != nil {
		// Caddy writes the response for a returned error after we return.
		status = http.StatusInternalServerError
		if he, ok := err.(caddyhttp.HandlerError); ok && he.StatusCode != 0 {
			status = he.StatusCode
		}
	} else if status == 0 {
		status = http.StatusOK
	}
	x.metrics.ObserveXRPC(nsid, status, time.Since(start))
	return err
}

// statusRecorder notes the status of the response passing through it. It is
// caddyhttp.NewResponseRecorder reduced to what the metrics need (no size,
// no buffering), in one allocation instead of two. Like Caddy's recorder, it
// keeps the last informational status until a final one is written, so a
// WebSocket upgrade counts as 101, and it drops a second final WriteHeader.
type statusRecorder struct {
	caddyhttp.ResponseWriterWrapper
	status      int
	wroteHeader bool
}

func (sr *statusRecorder) WriteHeader(status int) {
	if sr.wroteHeader {
		return
	}
	sr.status = status
	if status < 100 || status > 199 {
		sr.wroteHeader = true
	}
	sr.ResponseWriterWrapper.WriteHeader(status)
}

func (sr *statusRecorder) Write(b []byte) (int, error) {
	if !sr.wroteHeader {
		sr.WriteHeader(http.StatusOK)
	}
	return sr.ResponseWriterWrapper.Write(b)
}

func (sr *statusRecorder) ReadFrom(r io.Reader) (int64, error) {
	if !sr.wroteHeader {
		sr.WriteHeader(http.StatusOK)
	}
	return sr.ResponseWriterWrapper.ReadFrom(r)
}

// FlushError flushes as Caddy's recorder does: not before a status has been
// written, so that a flush cannot send the header ahead of the handlers
// that still set it (cairn_security_headers re-applies at WriteHeader).
func (sr *statusRecorder) FlushError() error {
	if sr.status == 0 {
		return nil
	}
	return http.NewResponseController(sr.ResponseWriter).Flush()
}

// Hijack is used by WebSocket upgrades.
func (sr *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(sr.ResponseWriter).Hijack()
}

func parseXRPCMetrics(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(XRPCMetrics)
	return m, m.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (*XRPCMetrics) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("cairn_xrpc_metrics takes no options")
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*XRPCMetrics)(nil)
	_ caddyhttp.MiddlewareHandler = (*XRPCMetrics)(nil)
	_ caddyfile.Unmarshaler       = (*XRPCMetrics)(nil)
	_ http.Hijacker               = (*statusRecorder)(nil)
	_ io.ReaderFrom               = (*statusRecorder)(nil)
)
