package operator_test

import (
	"strings"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/operator"
	"github.com/cairn-chat/cairn-caddy/internal/store"
)

func TestModerationStatsThroughTheAPI(t *testing.T) {
	f := newFixture(t)
	f.api.Handle("GET "+operator.Prefix+"moderation/stats", operator.ModerationStatsRoute(f.store))
	for _, id := range []string{"c1", "c2"} {
		if _, err := f.store.CreateConvo(t.Context(), store.NewConvo{ID: id, CreatorDID: "did:plc:alice", CipherSuite: "x",
			Members: []store.NewMember{{MemberDID: "did:plc:alice"}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.AddReport(t.Context(), store.Report{ID: "r-" + id, ConvoID: id, TargetDID: "did:plc:bob", Category: "spam", Sealed: []byte("x")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.store.ResolveReport(t.Context(), "r-c1", store.ReportDismissed, "dismissed", nil); err != nil {
		t.Fatal(err)
	}
	code, out := f.call(t, alice, "GET", "/operator/v1/moderation/stats", "")
	if code != 200 || out["total_reports"] != float64(2) || out["pending_reports"] != float64(1) || out["resolved_reports"] != float64(1) ||
		out["by_category"].(map[string]any)["spam"] != float64(2) {
		t.Fatalf("stats = %d %v", code, out)
	}
	if code, out := f.call(t, alice, "GET", "/operator/v1/moderation/stats?since=2999-01-01T00:00:00Z", ""); code != 200 || out["total_reports"] != float64(0) {
		t.Fatalf("since = %d %v", code, out)
	}
	for _, q := range []string{"?since=yesterday", "?convo=c1", "?since=2026-01-01T00:00:00Z&since=2026-01-01T00:00:00Z"} {
		if code, out := f.call(t, alice, "GET", "/operator/v1/moderation/stats"+q, ""); code != 400 || out["error"] != "InvalidRequest" {
			t.Errorf("%s = %d %v", q, code, out)
		}
	}
	for _, r := range f.rows(t) {
		if strings.Contains(string(r.Metadata), "did:") {
			t.Fatalf("audit row names an account: %+v", r)
		}
	}
}
