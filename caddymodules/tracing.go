package caddymodules

import (
	"context"
	"net/http"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/cairn-chat/cairn-caddy/internal/realtime"
	"github.com/cairn-chat/cairn-caddy/internal/tracing"
)

// The "cairn" trace exporter: OTLP over HTTP/protobuf (configured by the
// standard OTEL_EXPORTER_OTLP_* variables) behind tracing.Scrub. Caddy's
// tracing handler picks its exporter by OTEL_TRACES_EXPORTER from
// autoexport's registry, which is process-wide like Caddy's module registry;
// docs/observability.md tells operators to set OTEL_TRACES_EXPORTER=cairn.
func init() {
	autoexport.RegisterSpanExporter("cairn", func(ctx context.Context) (sdktrace.SpanExporter, error) {
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, err
		}
		return tracing.Scrub(exp), nil
	})
}

// startSpan starts a child of the request's span (tracing.Start) and
// returns the request carrying it.
func startSpan(r *http.Request, name string, attrs ...attribute.KeyValue) (*http.Request, trace.Span) {
	ctx, span := tracing.Start(r.Context(), name, attrs...)
	if ctx == r.Context() {
		return r, span
	}
	return r.WithContext(ctx), span
}

// fanOut is the delivery service's OnChange: it announces a committed
// write to the streams following the conversation (Hub.Notify, through
// the node's notifier), inside a cairn.fanout span of the request. The
// streams then read and send the events on their own goroutines, counted
// by cairn_realtime_events_delivered_total.
func fanOut(hub *realtime.Hub, notifier string) func(context.Context, string) {
	return func(ctx context.Context, convoID string) {
		_, span := tracing.Start(ctx, "cairn.fanout", attribute.String(tracing.NotifierKey, notifier))
		hub.Notify(convoID)
		span.End()
	}
}
