package ratelimit

import (
	"net/http"
	"testing"
	"time"
)

func TestResultSeconds(t *testing.T) {
	tests := []struct {
		name      string
		res       Result
		wantRetry int
		wantReset int
	}{
		{name: "allowed", res: Result{Allowed: true, ResetAfter: 1500 * time.Millisecond}, wantRetry: 0, wantReset: 2},
		{name: "refused, whole second", res: Result{RetryAfter: time.Second, ResetAfter: 6 * time.Second}, wantRetry: 1, wantReset: 6},
		{name: "refused, just over", res: Result{RetryAfter: time.Second + time.Microsecond, ResetAfter: 6*time.Second + 1}, wantRetry: 2, wantReset: 7},
		{name: "refused, sub-second", res: Result{RetryAfter: time.Millisecond}, wantRetry: 1, wantReset: 0},
		{name: "refused, zero", res: Result{}, wantRetry: 1, wantReset: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.res.RetryAfterSeconds(); got != tt.wantRetry {
				t.Errorf("RetryAfterSeconds = %d, want %d", got, tt.wantRetry)
			}
			if got := tt.res.ResetSeconds(); got != tt.wantReset {
				t.Errorf("ResetSeconds = %d, want %d", got, tt.wantReset)
			}
		})
	}
}

func TestResultSetHeadersAllowed(t *testing.T) {
	res := Result{Allowed: true, Limit: Limit{Rate: 100, Period: time.Minute, Burst: 100}, Remaining: 42,
		ResetAfter: 34*time.Second + 800*time.Millisecond, Source: SourceShared}
	h := http.Header{}
	res.SetHeaders(h)
	want := http.Header{"Ratelimit-Limit": {"100"}, "Ratelimit-Remaining": {"42"}, "Ratelimit-Reset": {"35"}}
	if len(h) != len(want) {
		t.Fatalf("headers %v, want %v", h, want)
	}
	for k := range want {
		if h.Get(k) != want.Get(k) {
			t.Errorf("%s = %q, want %q", k, h.Get(k), want.Get(k))
		}
	}
}

func TestSourceString(t *testing.T) {
	want := map[Source]string{
		SourceUnknown: "unknown", SourceLocal: "local", SourceShared: "shared",
		SourceFallback: "local_fallback", SourceFailOpen: "fail_open", SourceFailClosed: "fail_closed",
		Source(200): "unknown",
	}
	for s, w := range want {
		if s.String() != w {
			t.Errorf("Source(%d).String() = %q, want %q", uint8(s), s.String(), w)
		}
	}
}
