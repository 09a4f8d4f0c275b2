package tracing

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestScrubKeepsOnlyAllowedAttributes exports a span carrying otelhttp's
// identity-bearing attributes and an event, and checks that only the
// allowed attributes, and no event, reach the exporter behind Scrub.
func TestScrubKeepsOnlyAllowedAttributes(t *testing.T) {
	mem := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(Scrub(mem)))
	defer tp.Shutdown(context.Background())

	_, span := tp.Tracer("test").Start(context.Background(), "request", trace.WithAttributes(
		attribute.String("client.address", "203.0.113.77"),
		attribute.String("network.peer.address", "127.0.0.1"),
		attribute.String("url.path", "/xrpc/did:plc:ewvi7nxzyoun6zhxrhs64oiz"),
		attribute.String("user_agent.original", "app/1.0"),
		attribute.String("http.request.method", "GET"),
		attribute.Int("http.response.status_code", 200),
		attribute.String(RequestIDKey, "rid-1"),
	))
	span.AddEvent("error", trace.WithAttributes(attribute.String("message", "convo c0ffee not found")))
	span.End()

	got := mem.GetSpans()
	if len(got) != 1 {
		t.Fatalf("%d spans exported", len(got))
	}
	keys := map[attribute.Key]bool{}
	for _, a := range got[0].Attributes {
		keys[a.Key] = true
		if !Allowed(a.Key) {
			t.Errorf("attribute %s=%v exported", a.Key, a.Value.String())
		}
	}
	for _, want := range []attribute.Key{"http.request.method", "http.response.status_code", RequestIDKey} {
		if !keys[want] {
			t.Errorf("allowed attribute %s dropped", want)
		}
	}
	if len(got[0].Events) != 0 {
		t.Errorf("events exported: %v", got[0].Events)
	}
}
