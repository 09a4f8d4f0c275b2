package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestLabelsStayBounded(t *testing.T) {
	m := New()
	m.ObserveXRPC("blue.catbird.mls.sendMessage", 200, time.Millisecond)
	m.ObserveXRPC("did:plc:ewvi7nxzyoun6zhxrhs64oiz", 404, time.Millisecond)
	m.ObserveXRPC("blue.catbird.mls.getMessages?convoId=secret", 400, time.Millisecond)
	m.RateLimitZone("send").Record(false, "shared")
	m.BackendError("redis", "ratelimit")
	m.ObserveXRPC("blue.catbird.mls.getConvos", 503, time.Millisecond)
	m.RetentionPurged("messages", 3)
	m.RetentionPurged("did:plc:ewvi7nxzyoun6zhxrhs64oiz", 1)

	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range families {
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				v := l.GetValue()
				if strings.Contains(v, "did:") || strings.Contains(v, "secret") {
					t.Errorf("%s{%s=%q}: identity-bearing label value", f.GetName(), l.GetName(), v)
				}
				seen[v] = true
			}
		}
	}
	for _, want := range []string{"blue.catbird.mls.sendMessage", "other", "2xx", "4xx", "5xx", "send", "limited", "redis", "messages", "idempotency"} {
		if !seen[want] {
			t.Errorf("label value %q not recorded", want)
		}
	}
}

func TestStatusClass(t *testing.T) {
	for status, want := range map[int]string{200: "2xx", 429: "4xx", 503: "5xx", 0: "other", 999: "other"} {
		if got := StatusClass(status); got != want {
			t.Errorf("StatusClass(%d) = %q, want %q", status, got, want)
		}
	}
}

// TestCachedChildrenCountIntoTheVectors checks that the cached series count
// into the same children a label lookup finds, across handlers (a reload
// makes new ZoneDecisions for the same zone) and status classes.
func TestCachedChildrenCountIntoTheVectors(t *testing.T) {
	m := New()
	for range 3 {
		m.ObserveXRPC("blue.catbird.mls.sendMessage", 200, time.Millisecond)
	}
	m.ObserveXRPC("blue.catbird.mls.sendMessage", 429, time.Millisecond)
	m.ObserveXRPC("not.a.Method", 200, time.Millisecond)
	m.RateLimitZone("send").Record(true, "local")
	m.RateLimitZone("send").Record(true, "local") // a reloaded handler
	m.RateLimitZone("send").Record(false, "shared")
	m.RateLimitZone("send").Record(true, "something_new")

	for _, tc := range []struct {
		got  float64
		want float64
	}{
		{counterValue(t, m.xrpcRequests.WithLabelValues("blue.catbird.mls.sendMessage", "2xx")), 3},
		{counterValue(t, m.xrpcRequests.WithLabelValues("blue.catbird.mls.sendMessage", "4xx")), 1},
		{counterValue(t, m.xrpcRequests.WithLabelValues("other", "2xx")), 1},
		{counterValue(t, m.rateDecisions.WithLabelValues("send", "allowed", "local")), 2},
		{counterValue(t, m.rateDecisions.WithLabelValues("send", "limited", "shared")), 1},
		{counterValue(t, m.rateDecisions.WithLabelValues("send", "allowed", "something_new")), 1},
	} {
		if tc.got != tc.want {
			t.Errorf("count %v, want %v", tc.got, tc.want)
		}
	}
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "cairn_xrpc_request_duration_seconds" && len(f.GetMetric()) != 2 {
			t.Errorf("%d duration series, want 2 (sendMessage, other)", len(f.GetMetric()))
		}
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestRealtimeTransportLabelIsBounded(t *testing.T) {
	m := New()
	m.Realtime.ConnOpened("sse")
	m.Realtime.ConnOpened("did:plc:attacker")
	m.Realtime.EventsDelivered("websocket", 3)
	m.Realtime.Replayed("sse", 12)
	m.Realtime.ConnClosed("sse")
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				if v := l.GetValue(); l.GetName() == "transport" && v != "sse" && v != "websocket" && v != "other" {
					t.Errorf("%s{transport=%q}", f.GetName(), v)
				}
			}
		}
	}
}

// TestUnavailableAndPurgesAreCounted checks the 503 counter behind the
// store-unavailable alert and the retention purge counter, whose kinds
// exist at zero before the first pass and refuse any other value.
func TestUnavailableAndPurgesAreCounted(t *testing.T) {
	m := New()
	if got := counterValue(t, m.xrpcUnavail); got != 0 {
		t.Fatalf("unavailable before any request = %v", got)
	}
	m.ObserveXRPC("blue.catbird.mls.getConvos", 503, time.Millisecond)
	m.ObserveXRPC("blue.catbird.mls.getConvos", 500, time.Millisecond)
	if got := counterValue(t, m.xrpcUnavail); got != 1 {
		t.Errorf("unavailable after one 503 and one 500 = %v, want 1", got)
	}
	m.RetentionPurged("welcomes", 4)
	m.RetentionPurged("welcomes", 0)
	m.RetentionPurged("secrets", 9)
	for kind, want := range map[string]float64{"welcomes": 4, "messages": 0, "key_packages": 0} {
		if got := counterValue(t, m.purged.WithLabelValues(kind)); got != want {
			t.Errorf("purged{kind=%q} = %v, want %v", kind, got, want)
		}
	}
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "cairn_retention_purged_total" && len(f.GetMetric()) != len(retentionKinds) {
			t.Errorf("purged has %d series, want one per kind (%d)", len(f.GetMetric()), len(retentionKinds))
		}
	}
}
