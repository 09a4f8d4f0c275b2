// Package tracing keeps cairn's OpenTelemetry spans to the same privacy rules
// as its logs: a span leaves the process with only the attributes named
// here, none of which is ever a DID, conversation ID, cursor, token or IP
// address. It does not create spans; Caddy's tracing handler and cairn's
// modules do.
package tracing

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// RequestIDKey is the attribute carrying the request's X-Request-ID, which
// ties a span to the request's log lines.
const RequestIDKey = "cairn.request_id"

// allowed are the span attributes that may leave the process. Everything
// else is dropped: otelhttp's client.address, network.peer.address,
// url.path (a path that is not a known method may hold a DID),
// user_agent.original and server.address among them.
var allowed = map[attribute.Key]bool{
	"http.request.method":       true,
	"http.response.status_code": true,
	"url.scheme":                true,
	"network.protocol.name":     true,
	"network.protocol.version":  true,
	"server.port":               true,
	ErrorTypeKey:                true,
	RequestIDKey:                true,
	NSIDKey:                     true,
	AuthReasonKey:               true,
	StoreOperationKey:           true,
	DBSystemKey:                 true,
	NotifierKey:                 true,
}

// Allowed reports whether a span attribute may be exported.
func Allowed(k attribute.Key) bool { return allowed[k] }

// Scrub returns an exporter that passes spans to next with only the allowed
// attributes, and without span events, whose attributes (an error's
// message) are free text.
func Scrub(next sdktrace.SpanExporter) sdktrace.SpanExporter { return scrubber{next} }

type scrubber struct{ next sdktrace.SpanExporter }

// ExportSpans implements sdktrace.SpanExporter.
func (s scrubber) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := make([]sdktrace.ReadOnlySpan, len(spans))
	for i, span := range spans {
		stub := tracetest.SpanStubFromReadOnlySpan(span)
		kept := stub.Attributes[:0:0]
		for _, a := range stub.Attributes {
			if allowed[a.Key] {
				kept = append(kept, a)
			}
		}
		stub.Attributes = kept
		stub.Events = nil
		stub.DroppedEvents = 0
		out[i] = stub.Snapshot()
	}
	if err := s.next.ExportSpans(ctx, out); err != nil {
		return fmt.Errorf("exporting scrubbed spans: %w", err)
	}
	return nil
}

// Shutdown implements sdktrace.SpanExporter.
func (s scrubber) Shutdown(ctx context.Context) error { return s.next.Shutdown(ctx) }
