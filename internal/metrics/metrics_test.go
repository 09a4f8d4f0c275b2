package metrics

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

func TestLabelsStayBounded(t *testing.T) {
	m := New()
	m.ObserveXRPC("blue.catbird.mls.sendMessage", 200, time.Millisecond)
	m.ObserveXRPC("did:plc:ewvi7nxzyoun6zhxrhs64oiz", 404, time.Millisecond)
	m.ObserveXRPC("blue.catbird.mls.getMessages?convoId=secret", 400, time.Millisecond)
	m.RateLimitZone("send").Record(false, "shared")
	m.RateLimitModifier("send", "new_account").Record(false, "shared")
	m.PreregisterPoWOutcomes([]string{"ok", "missing"})
	m.PoWCheck("replayed")
	m.BackendError("redis", "ratelimit")
	m.ObserveXRPC("blue.catbird.mls.getConvos", 503, time.Millisecond)
	m.RetentionPurged("messages", 3)
	m.RetentionPurged("did:plc:ewvi7nxzyoun6zhxrhs64oiz", 1)
	calls := m.StoreCalls("sqlite", []string{"append_message"})
	calls.StoreCall("append_message", time.Millisecond, "unavailable")
	// An operation not in the store's fixed list (a statement, say) is
	// not a label value.
	calls.StoreCall("SELECT * FROM convos WHERE id = 'secret'", time.Millisecond, "internal")
	m.KeyPackageStock(store.KeyPackageStock{Devices: 5, Empty: 1, Low: 2})
	for i := range MaxCertificateNames + 5 {
		m.CertificateExpiry(fmt.Sprintf("host%d.example", i), time.Now())
	}

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
	if n := len(seen); n > 200 {
		t.Errorf("%d label values: the certificate names are not bounded", n)
	}
	for _, want := range []string{"blue.catbird.mls.sendMessage", "other", "2xx", "4xx", "5xx", "send", "limited", "redis", "messages", "idempotency",
		"append_message", "unavailable", "internal", "empty", "low", "ok", "host0.example", "new_account", "missing", "replayed"} {
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

// TestOperationsReport checks the values the store, stock, backup and
// certificate collectors report.
func TestOperationsReport(t *testing.T) {
	m := New()
	calls := m.StoreCalls("postgres", []string{"convo", "append_message"})
	calls.StoreCall("convo", 2*time.Millisecond, "")
	calls.StoreCall("convo", 3*time.Millisecond, "unavailable")
	m.KeyPackageStock(store.KeyPackageStock{Devices: 10, Empty: 2, Low: 3})
	taken := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	m.BackupArchive(taken, 4096)
	m.BackupInterval(6 * time.Hour)
	m.CertificateExpiry("chat.example.com", taken.Add(90*24*time.Hour))

	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"cairn_store_operation_errors_total", map[string]string{"backend": "postgres", "operation": "convo", "kind": "unavailable"}, 1},
		{"cairn_store_operation_errors_total", map[string]string{"backend": "postgres", "operation": "convo", "kind": "internal"}, 0},
		{"cairn_store_operation_errors_total", map[string]string{"backend": "postgres", "operation": "append_message", "kind": "unavailable"}, 0},
		{"cairn_keypackage_devices", map[string]string{"stock": "empty"}, 2},
		{"cairn_keypackage_devices", map[string]string{"stock": "low"}, 3},
		{"cairn_keypackage_devices", map[string]string{"stock": "ok"}, 5},
		{"cairn_backup_last_success_timestamp_seconds", nil, float64(taken.Unix())},
		{"cairn_backup_last_size_bytes", nil, 4096},
		{"cairn_backup_interval_seconds", nil, 6 * 3600},
		{"cairn_tls_certificate_expiry_timestamp_seconds", map[string]string{"name": "chat.example.com"}, float64(taken.Add(90 * 24 * time.Hour).Unix())},
	} {
		if got, ok := value(t, m, tc.name, tc.labels); !ok || got != tc.want {
			t.Errorf("%s%v = %v (found %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	if got, ok := value(t, m, "cairn_store_operation_duration_seconds", map[string]string{"backend": "postgres", "operation": "convo"}); !ok || got != 2 {
		t.Errorf("convo latency observations = %v, want 2", got)
	}
	m.BackupArchive(time.Time{}, 0)
	if got, _ := value(t, m, "cairn_backup_last_success_timestamp_seconds", nil); got != 0 {
		t.Errorf("a target without archives reports %v, want 0", got)
	}
}

// value returns the value of the series name{labels} (a histogram's
// sample count).
func value(t *testing.T, m *Metrics, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			switch {
			case s.GetGauge() != nil:
				return s.GetGauge().GetValue(), true
			case s.GetCounter() != nil:
				return s.GetCounter().GetValue(), true
			case s.GetHistogram() != nil:
				return float64(s.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}
