package operator

import (
	"fmt"
	"net/http"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/operatorauth"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// ModerationStats is the response of GET /operator/v1/moderation/stats:
// server-wide report counts, aggregates only. The XRPC getAdminStats
// gives these per conversation to its admins; server-wide they are for
// operators alone.
type ModerationStats struct {
	Since           time.Time      `json:"since,omitzero"`
	TotalReports    int            `json:"total_reports"`
	PendingReports  int            `json:"pending_reports"`
	ResolvedReports int            `json:"resolved_reports"`
	Removals        int            `json:"removals"`
	ByCategory      map[string]int `json:"by_category"`
	// MeanResolutionSeconds is the mean time from filing to resolution.
	MeanResolutionSeconds int64 `json:"mean_resolution_seconds"`
}

// ModerationStatsRoute serves GET /operator/v1/moderation/stats over the
// store's reports; since (RFC 3339) limits it to reports filed from then.
func ModerationStatsRoute(reports store.Reports) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, _ *operatorauth.Operator) error {
		var since time.Time
		q := r.URL.Query()
		for k, vs := range q {
			if k != "since" || len(vs) != 1 {
				return xrpc.Errorf(http.StatusBadRequest, "InvalidRequest", "the only parameter is since, given once")
			}
			t, err := time.Parse(time.RFC3339, vs[0])
			if err != nil {
				return xrpc.Errorf(http.StatusBadRequest, "InvalidRequest", "since: want an RFC 3339 time such as 2026-11-30T04:00:00Z")
			}
			since = t.UTC()
		}
		st, err := reports.ReportStats(r.Context(), "", since)
		if err != nil {
			return fmt.Errorf("report stats: %w", err)
		}
		xrpc.WriteJSON(w, http.StatusOK, ModerationStats{
			Since: since, TotalReports: st.Total, PendingReports: st.Pending, ResolvedReports: st.Resolved,
			Removals: st.Removals, ByCategory: st.ByCategory, MeanResolutionSeconds: int64(st.ResolutionTime / time.Second),
		})
		return nil
	}
}
