package caddymodules_test

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
)

// otlpCollector is an in-process OTLP/HTTP trace receiver.
type otlpCollector struct {
	*httptest.Server
	mu    sync.Mutex
	spans []*tracepb.Span
}

func newOTLPCollector(t *testing.T) *otlpCollector {
	c := &otlpCollector{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		req := new(coltracepb.ExportTraceServiceRequest)
		if err != nil || r.URL.Path != "/v1/traces" || proto.Unmarshal(body, req) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				c.spans = append(c.spans, ss.GetSpans()...)
			}
		}
		c.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *otlpCollector) collected() []*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*tracepb.Span(nil), c.spans...)
}

const tracingCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	cairn {
		mode development
		plc_url %s
	}
}
http://127.0.0.1:{PORT} {
	tracing {
		span cairn
		span_attributes {
			cairn.request_id {http.vars.request_id}
		}
	}
	cairn_request_id
	route /xrpc/* {
		cairn_auth {
			service_did did:web:gateway.test
			replay memory
			leeway 1s
		}
		cairn_delivery
		error 501
	}
}
`

// TestTracesCarryTheRequestIDAndNoIdentity runs the gateway with Caddy's
// tracing handler and the "cairn" exporter, sending to an in-process OTLP
// collector, and checks the spans: Caddy's server span carries the request
// ID, cairn's auth and delivery spans are its children, and no attribute
// of any span holds the DID, conversation ID, cursor, token or client
// address the requests carried.
func TestTracesCarryTheRequestIDAndNoIdentity(t *testing.T) {
	plc := atprototest.NewPLC(t)
	collector := newOTLPCollector(t)
	g := startPlain(t, fmt.Sprintf(tracingCaddyfile, plc.URL), gatewaytest.Options{Env: []string{
		"OTEL_TRACES_EXPORTER=cairn",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + collector.URL + "/v1/traces",
		"OTEL_BSP_SCHEDULE_DELAY=50",
	}})
	// Tokens issued before the replay memory began are refused.
	now := freshIat(t, testLeeway, g)
	minted := atprototest.Mint(t, []atprototest.Key{{Name: "alice", Type: "k256"}},
		[]atprototest.Token{{Key: "alice", Iss: aliceDID, Aud: "did:web:gateway.test", Lxm: getConvo, Iat: now, Exp: now + 60}})
	plc.Publish(aliceDID, minted.Keys["alice"])

	const (
		convo  = "c0ffee4242c0ffee"
		cursor = "cursor-77aa31"
		rid    = "trace-test-request-0001"
	)
	header := bearer(minted.Tokens[0])
	header.Set("X-Request-ID", rid)
	header.Set("X-Forwarded-For", "203.0.113.77")
	header.Set("Last-Event-Id", cursor)
	resp, body := do(t, http.MethodGet, g.url("/xrpc/"+getConvo+"?convoId="+convo), header)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("getConvos: %d %s", resp.StatusCode, body)
	}
	// A refused request, and a path that is an identity.
	do(t, http.MethodGet, g.url("/xrpc/"+aliceDID), http.Header{"Authorization": {"Bearer " + minted.Tokens[0]}})

	// Spans are exported in batches; wait for cairn's auth span of the
	// second request, the last one to end.
	var spans []*tracepb.Span
	deadline := time.Now().Add(20 * time.Second)
	for {
		spans = collector.collected()
		auth := 0
		for _, s := range spans {
			if s.GetName() == "cairn.auth" {
				auth++
			}
		}
		if auth >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	byID := map[string]*tracepb.Span{}
	for _, s := range spans {
		byID[hex.EncodeToString(s.GetSpanId())] = s
	}
	var server, auth, deliverySpan *tracepb.Span
	for _, s := range spans {
		for _, a := range s.GetAttributes() {
			v := a.GetValue().GetStringValue()
			for _, secret := range []string{"did:", convo, cursor, minted.Tokens[0][:20], "203.0.113.77", "127.0.0.1"} {
				if strings.Contains(v, secret) {
					t.Errorf("span %q attribute %s=%q carries %q", s.GetName(), a.GetKey(), v, secret)
				}
			}
			if a.GetKey() == "cairn.request_id" && v == rid {
				server = s
			}
		}
		if strings.Contains(s.GetName(), "did:") {
			t.Errorf("span name %q carries a DID", s.GetName())
		}
	}
	if server == nil {
		t.Fatalf("no span carries cairn.request_id=%s among %d spans", rid, len(spans))
	}
	for _, s := range spans {
		if hex.EncodeToString(s.GetParentSpanId()) != hex.EncodeToString(server.GetSpanId()) {
			continue
		}
		switch s.GetName() {
		case "cairn.auth":
			auth = s
		case "cairn.delivery":
			deliverySpan = s
		}
	}
	if auth == nil || deliverySpan == nil {
		t.Fatalf("the request's span %q has children auth %v, delivery %v; want both", server.GetName(), auth, deliverySpan)
	}
	attr := func(s *tracepb.Span, key string) string {
		for _, a := range s.GetAttributes() {
			if a.GetKey() == key {
				return a.GetValue().GetStringValue()
			}
		}
		return ""
	}
	if attr(auth, "cairn.auth.reason") != "ok" || attr(auth, "cairn.nsid") != getConvo || attr(deliverySpan, "cairn.nsid") != getConvo {
		t.Errorf("auth span %v, delivery span %v: want reason ok and the method's NSID", auth.GetAttributes(), deliverySpan.GetAttributes())
	}
}
