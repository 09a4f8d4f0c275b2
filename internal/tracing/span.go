package tracing

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// TracerName names cairn's spans' instrumentation scope.
const TracerName = "github.com/cairn-chat/cairn-caddy"

// Span attributes cairn sets, each allowed out by Scrub.
const (
	// NSIDKey is the XRPC method, reduced to a known method or "other".
	NSIDKey = "cairn.nsid"
	// AuthReasonKey is the auth outcome: "ok" or a fixed failure reason.
	AuthReasonKey = "cairn.auth.reason"
	// StoreOperationKey is the store operation, a fixed name such as
	// "append_message".
	StoreOperationKey = "cairn.store.operation"
	// DBSystemKey is the store's database, in OpenTelemetry's terms:
	// "sqlite" or "postgresql".
	DBSystemKey = "db.system.name"
	// NotifierKey is how the fan-out announces a write to the node's
	// streams: "local", "postgres" or "redis".
	NotifierKey = "cairn.notifier"
	// ErrorTypeKey classifies a failed span with a fixed value
	// ("unavailable", "internal"), never an error's text.
	ErrorTypeKey = "error.type"
)

// Start starts a child of the span in ctx, from that span's tracer
// provider (Caddy's tracing handler's). Without a recording parent, as
// when no tracing directive is configured or the call runs in the
// background, it starts nothing and returns ctx with a no-op span.
func Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.SpanContext().IsValid() {
		return ctx, parent
	}
	return parent.TracerProvider().Tracer(TracerName).Start(ctx, name, trace.WithAttributes(attrs...))
}
