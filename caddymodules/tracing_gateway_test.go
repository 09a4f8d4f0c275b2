package caddymodules_test

import (
	"encoding/hex"
	"encoding/json"
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
	log {
		output stderr
		format filter {
			wrap json
			fields {
				request>uri cairn_redact uri
				request>headers cairn_redact headers
			}
		}
	}
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
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(g.Logs())
		}
	})
	// Tokens issued before the replay memory began are refused.
	now := freshIat(t, testLeeway, g)
	const create = "blue.catbird.mls.createConvo"
	minted := atprototest.Mint(t, []atprototest.Key{{Name: "alice", Type: "k256"}},
		[]atprototest.Token{{Key: "alice", Iss: aliceDID, Aud: "did:web:gateway.test", Lxm: getConvo, Iat: now, Exp: now + 60},
			{Key: "alice", Iss: aliceDID, Aud: "did:web:gateway.test", Lxm: create, Iat: now, Exp: now + 60}})
	plc.Publish(aliceDID, minted.Keys["alice"])

	const (
		convo     = "c0ffee4242c0ffee"
		cursor    = "cursor-77aa31"
		rid       = "trace-test-request-0001"
		createRID = "trace-test-request-0002"
		groupID   = "77665544332211007766554433221100"
		device    = "device-5e5e5e"
	)
	header := bearer(minted.Tokens[0])
	header.Set("X-Request-ID", rid)
	header.Set("X-Forwarded-For", "203.0.113.77")
	header.Set("Last-Event-Id", cursor)
	resp, body := do(t, http.MethodGet, g.url("/xrpc/"+getConvo+"?convoId="+convo), header)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("getConvos: %d %s", resp.StatusCode, body)
	}
	// A write, whose events fan out, from a device.
	header = bearer(minted.Tokens[1])
	header.Set("X-Request-ID", createRID)
	header.Set("Content-Type", "application/json")
	header.Set("X-Device-Id", device)
	req, _ := http.NewRequest(http.MethodPost, g.url("/xrpc/"+create),
		strings.NewReader(`{"groupId":"`+groupID+`","cipherSuite":"MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519","idempotencyKey":"trace-1"}`))
	req.Header = header
	cresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, cresp.Body)
	cresp.Body.Close()
	if cresp.StatusCode != http.StatusOK {
		t.Fatalf("createConvo: %d", cresp.StatusCode)
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
		if auth >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	byID := map[string]*tracepb.Span{}
	for _, s := range spans {
		byID[hex.EncodeToString(s.GetSpanId())] = s
	}
	var server, createServer, auth, deliverySpan *tracepb.Span
	secrets := []string{"did:", convo, groupID, cursor, device, minted.Tokens[0][:20], minted.Tokens[1][:20], "203.0.113.77", "127.0.0.1"}
	for _, s := range spans {
		for _, a := range s.GetAttributes() {
			v := a.GetValue().GetStringValue()
			for _, secret := range secrets {
				if strings.Contains(v, secret) {
					t.Errorf("span %q attribute %s=%q carries %q", s.GetName(), a.GetKey(), v, secret)
				}
			}
			switch {
			case a.GetKey() == "cairn.request_id" && v == rid:
				server = s
			case a.GetKey() == "cairn.request_id" && v == createRID:
				createServer = s
			}
		}
		for _, secret := range secrets {
			if strings.Contains(s.GetName(), secret) || strings.Contains(s.GetStatus().GetMessage(), secret) {
				t.Errorf("span %q (status %q) carries %q", s.GetName(), s.GetStatus().GetMessage(), secret)
			}
		}
		if len(s.GetEvents()) != 0 {
			t.Errorf("span %q exports events %v", s.GetName(), s.GetEvents())
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
	// The read's store calls are spans of their own under the method's,
	// each named by its operation; so are the write's, and its fan-out.
	reads := childrenOf(spans, deliverySpan, "cairn.store.operation")
	if reads["cairn.store.convos_for_user"] != "convos_for_user" {
		t.Errorf("getConvos' delivery span has children %v; want cairn.store.convos_for_user", reads)
	}
	if createServer == nil {
		t.Fatalf("no span carries cairn.request_id=%s", createRID)
	}
	var createDelivery *tracepb.Span
	for _, s := range spans {
		if s.GetName() == "cairn.delivery" && hex.EncodeToString(s.GetParentSpanId()) == hex.EncodeToString(createServer.GetSpanId()) {
			createDelivery = s
		}
	}
	if createDelivery == nil {
		t.Fatal("createConvo has no cairn.delivery span")
	}
	writes := childrenOf(spans, createDelivery, "cairn.notifier")
	if _, ok := writes["cairn.store.idempotent"]; !ok || writes["cairn.fanout"] != "local" {
		t.Errorf("createConvo's delivery span has children %v; want cairn.store.idempotent and cairn.fanout (notifier local)", writes)
	}
	// The access log line of the request carries its request ID and the
	// trace's ID: either finds the other.
	traceID := ""
	for line := range strings.Lines(g.Logs()) {
		var entry struct {
			Msg       string `json:"msg"`
			RequestID string `json:"request_id"`
			TraceID   string `json:"traceID"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "handled request" && entry.RequestID == rid {
			traceID = entry.TraceID
		}
	}
	if want := hex.EncodeToString(server.GetTraceId()); traceID != want {
		t.Errorf("the access log line of request %s has traceID %q, want the trace's %s", rid, traceID, want)
	}
	if attr(auth, "cairn.auth.reason") != "ok" || attr(auth, "cairn.nsid") != getConvo || attr(deliverySpan, "cairn.nsid") != getConvo {
		t.Errorf("auth span %v, delivery span %v: want reason ok and the method's NSID", auth.GetAttributes(), deliverySpan.GetAttributes())
	}
}

// childrenOf returns the names of parent's children among spans, each with
// the value of attribute key.
func childrenOf(spans []*tracepb.Span, parent *tracepb.Span, key string) map[string]string {
	out := map[string]string{}
	for _, s := range spans {
		if hex.EncodeToString(s.GetParentSpanId()) != hex.EncodeToString(parent.GetSpanId()) {
			continue
		}
		v := ""
		for _, a := range s.GetAttributes() {
			if a.GetKey() == key {
				v = a.GetValue().GetStringValue()
			}
		}
		out[s.GetName()] = v
	}
	return out
}
