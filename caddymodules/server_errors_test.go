package caddymodules

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cairn-chat/cairn-caddy/internal/requestid"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// TestRespondErrorLogsServerFaultsOnce checks the adapters' error path: a
// refusal is written and not logged; a server fault is written and logged
// once, at error level, with the request ID, the status, the XRPC name, the
// cause and the caller's fields.
func TestRespondErrorLogsServerFaultsOnce(t *testing.T) {
	cause := errors.New("redis: connection refused")
	for _, tc := range []struct {
		err      error
		status   int
		wantLogs int
	}{
		{xrpc.Errorf(http.StatusUnauthorized, "AuthMissing", "authentication required"), 401, 0},
		{xrpc.Errorf(http.StatusTooManyRequests, "RateLimitExceeded", "slow down"), 429, 0},
		{xrpc.Errorf(http.StatusNotImplemented, "MethodNotImplemented", "no such method"), 501, 0},
		{&xrpc.Error{Status: http.StatusServiceUnavailable, Name: "AuthUnavailable", Message: "later", Err: cause}, 503, 1},
		{cause, 500, 1},
	} {
		core, logs := observer.New(zapcore.DebugLevel)
		r := httptest.NewRequest(http.MethodGet, "/xrpc/blue.catbird.mls.getConvos", nil)
		r = r.WithContext(requestid.With(r.Context(), "req-123456"))
		w := httptest.NewRecorder()
		respondError(zap.New(core), w, r, tc.err, zap.String("reason", "replay_unavailable"))
		if w.Code != tc.status {
			t.Errorf("%v: status %d, want %d", tc.err, w.Code, tc.status)
		}
		if logs.Len() != tc.wantLogs {
			t.Errorf("%v: %d log lines, want %d: %v", tc.err, logs.Len(), tc.wantLogs, logs.All())
			continue
		}
		if tc.wantLogs == 0 {
			continue
		}
		e := logs.All()[0]
		f := e.ContextMap()
		if e.Level != zapcore.ErrorLevel || f["request_id"] != "req-123456" || f["status"] != int64(tc.status) || f["cause"] != cause.Error() || f["reason"] != "replay_unavailable" {
			t.Errorf("%v: logged %s %q %v", tc.err, e.Level, e.Message, f)
		}
	}
}
