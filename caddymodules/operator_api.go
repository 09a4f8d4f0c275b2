package caddymodules

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/backup"
	"github.com/cairn-chat/cairn-caddy/internal/operator"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/version"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

func init() {
	caddy.RegisterModule(new(OperatorAPI))
	httpcaddyfile.RegisterHandlerDirective("cairn_operator_api", parseOperatorAPI)
}

// OperatorAPI serves the operator API (/operator/v1/…: status, the audit
// log, bans) on the internal site. It must sit behind cairn_operator_auth:
// a request without an authenticated operator is refused, and every call
// is written to the audit log before it runs. Requests outside
// /operator/v1/ pass to the next handler.
//
// Caddyfile (no options):
//
//	route /operator/v1/* {
//	    cairn_operator_auth { … }
//	    cairn_operator_api
//	}
type OperatorAPI struct {
	app    *App
	logger *zap.Logger

	mu    sync.Mutex
	built atomic.Pointer[operator.API]
}

// CaddyModule returns the Caddy module information.
func (*OperatorAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cairn_operator_api",
		New: func() caddy.Module { return new(OperatorAPI) },
	}
}

// Provision tells the cairn app that the API needs the store (and with it
// the audit log and bans); the API is built on the first request, once the
// app has started.
func (o *OperatorAPI) Provision(ctx caddy.Context) error {
	app, err := cairnApp(ctx)
	if err != nil {
		return err
	}
	app.UseStore()
	app.UseServiceIdentity()
	o.app, o.logger = app, app.ModuleLogger(ctx)
	return nil
}

// api returns the API, building it once the app is running.
func (o *OperatorAPI) api(ctx context.Context) (*operator.API, error) {
	if a := o.built.Load(); a != nil {
		return a, nil
	}
	run, err := o.app.Ready(ctx)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if a := o.built.Load(); a != nil {
		return a, nil
	}
	// Routes whose parts the app holds (backups, service identity) are
	// mounted after New, recording their own events through
	// run.operator.audit (see internal/operator's package doc).
	app, logger := o.app, o.logger
	a, err := operator.New(operator.Config{
		Recorder: run.operator.audit,
		Status:   func(ctx context.Context) (operator.Status, error) { return app.status(ctx, run), nil },
		Audit:    run.Store.(store.AuditLog),
		Bans:     run.operator.bans,
		ClientIP: func(r *http.Request) string {
			ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
			return ip
		},
		OnServerError: serverErrorLogger(logger),
	})
	if err != nil {
		return nil, fmt.Errorf("cairn_operator_api: %w", err)
	}
	a.Handle("GET "+operator.Prefix+"moderation/stats", operator.ModerationStatsRoute(run.Store))
	a.MountBackups(app.backupRunner)
	a.MountIdentity(app.ServiceKeys, run.operator.audit)
	o.built.Store(a)
	return a, nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (o *OperatorAPI) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !strings.HasPrefix(r.URL.Path, operator.Prefix) {
		return next.ServeHTTP(w, r)
	}
	a, err := o.api(r.Context())
	if err != nil {
		if r.Context().Err() != nil {
			return nil
		}
		respondError(o.logger, w, r, &xrpc.Error{Status: http.StatusServiceUnavailable, Name: "ServiceUnavailable",
			Message: "the operator API is not available", Header: http.Header{"Retry-After": {"1"}}, Err: err})
		return nil
	}
	a.ServeHTTP(w, r)
	return nil
}

// status reports the node's state. Each check has its own short timeout
// within ctx; a failing one marks its part unhealthy.
func (a *App) status(ctx context.Context, run *Running) operator.Status {
	st := operator.Status{
		Version:     version.Version(),
		Store:       operator.Health{Backend: string(a.storeCfg.Kind())},
		OpenStreams: run.Realtime.Hub.Open(),
		Retention: operator.RetentionStatus{
			Runs:     a.retention.runs.Load(),
			Failures: a.retention.failures.Load(),
			LastRun:  a.retention.lastRun.Load(),
		},
	}
	if m, ok := run.Store.(interface {
		MigrationStatus(context.Context) (store.MigrationStatus, error)
	}); ok {
		ms, err := m.MigrationStatus(ctx)
		if err != nil {
			st.Store.Error = "unreachable"
		} else {
			st.Store.Healthy = true
			st.Schema = operator.SchemaStatus{Current: ms.Current, Latest: ms.Latest}
		}
	}
	if at, ok := a.lastBackup(ctx); ok {
		age := int64(time.Since(at).Seconds())
		st.LastBackup, st.LastBackupAgeSeconds = &at, &age
	}
	if a.redis != nil {
		h := &operator.Health{Backend: "redis", Healthy: true}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := a.redis.Ping(rctx).Err(); err != nil {
			h.Healthy, h.Error = false, "unreachable"
		}
		cancel()
		st.Redis = h
	}
	return st
}

// lastBackup is when the newest archive of the scheduled backup's target
// was written (any node's, or the CLI's), or, when the target cannot be
// listed now, when this node last finished one. ok is false without a
// backup block or any archive.
func (a *App) lastBackup(ctx context.Context) (time.Time, bool) {
	r := a.backupRunner
	if r == nil {
		return time.Time{}, false
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	arch, ok, err := backup.Last(lctx, r.Target)
	if err == nil {
		return arch.Created.UTC(), ok
	}
	if last := r.State().Last; last != nil && last.Error == "" {
		return last.FinishedAt, true
	}
	return time.Time{}, false
}

func parseOperatorAPI(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(OperatorAPI)
	return m, m.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile accepts the bare directive.
func (o *OperatorAPI) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("cairn_operator_api takes no options")
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*OperatorAPI)(nil)
	_ caddyhttp.MiddlewareHandler = (*OperatorAPI)(nil)
	_ caddyfile.Unmarshaler       = (*OperatorAPI)(nil)
)
