package ratelimit

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

// suiteHarness is one fresh Limiter under test and a bound on how much time
// has passed on its clock since it was created.
type suiteHarness struct {
	lim Limiter
	// elapsed returns an upper bound on the time its clock has advanced
	// since the harness was made: zero for a frozen fake clock, wall time
	// for Redis, whose clock cannot be injected.
	elapsed func() time.Duration
	// wait lets at least d pass on the store's clock: advancing a fake
	// clock, or sleeping.
	wait func(d time.Duration)
}

// runLimiterSuite is the behaviour every Limiter backend must show. Most of
// its limits have periods of a minute or more, so no refill happens while
// it runs even on Redis's real clock; durations are checked within
// [want-elapsed, want], which is exact for a frozen clock. The refill case
// waits for the durations the store itself announced, so its assertions
// hold however slowly the test runs. Finer refill arithmetic is tested with
// MemoryStore's fake clock, and RedisStore's is compared with redis_rate's.
func runLimiterSuite(t *testing.T, newHarness func(t *testing.T) suiteHarness) {
	ctx := context.Background()

	t.Run("burst then refusal", func(t *testing.T) {
		h := newHarness(t)
		l := Limit{Rate: 60, Period: time.Hour, Burst: 6} // one per minute, six at once
		for i := 1; i <= 6; i++ {
			res := mustAllow(t, h.lim, "ip:192.0.2.1", l)
			if !res.Allowed || res.Remaining != 6-i || res.RetryAfter != 0 {
				t.Fatalf("request %d = %+v, want allowed with %d remaining", i, res, 6-i)
			}
			checkWithin(t, h, "ResetAfter", res.ResetAfter, time.Duration(i)*time.Minute)
			if res.Limit != (Limit{Rate: 60, Period: time.Hour, Burst: 6}) {
				t.Fatalf("request %d Limit = %+v", i, res.Limit)
			}
		}
		for i := 0; i < 2; i++ { // a refusal consumes nothing
			res := mustAllow(t, h.lim, "ip:192.0.2.1", l)
			if res.Allowed || res.Remaining != 0 {
				t.Fatalf("request past the burst = %+v, want refused", res)
			}
			checkWithin(t, h, "RetryAfter", res.RetryAfter, time.Minute)
			checkWithin(t, h, "ResetAfter", res.ResetAfter, 6*time.Minute)
			hdr := http.Header{}
			res.SetHeaders(hdr)
			want := map[string]string{"Retry-After": "60", "RateLimit-Limit": "6", "RateLimit-Remaining": "0", "RateLimit-Reset": "360"}
			for k, v := range want {
				if got := hdr.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
		}
	})

	t.Run("burst zero means rate", func(t *testing.T) {
		h := newHarness(t)
		l := Limit{Rate: 3, Period: time.Hour} // registration preset
		for i := 1; i <= 3; i++ {
			if res := mustAllow(t, h.lim, "reg:192.0.2.1", l); !res.Allowed || res.Remaining != 3-i || res.Limit.Burst != 3 {
				t.Fatalf("request %d = %+v, want allowed, %d remaining, burst 3", i, res, 3-i)
			}
		}
		res := mustAllow(t, h.lim, "reg:192.0.2.1", l)
		if res.Allowed {
			t.Fatalf("fourth request = %+v, want refused", res)
		}
		checkWithin(t, h, "RetryAfter", res.RetryAfter, 20*time.Minute)
		if got := res.RetryAfterSeconds(); got != 1200 {
			t.Errorf("RetryAfterSeconds = %d, want 1200", got)
		}
	})

	t.Run("remaining is exact when the interval is not a binary fraction", func(t *testing.T) {
		// 7/1m is one every 8.571428s; float seconds (as in redis_rate)
		// report one request fewer than remain.
		h := newHarness(t)
		l := Limit{Rate: 7, Period: time.Minute}
		for i := 1; i <= 7; i++ {
			if res := mustAllow(t, h.lim, "k", l); !res.Allowed || res.Remaining != 7-i {
				t.Fatalf("request %d = %+v, want allowed with %d remaining", i, res, 7-i)
			}
		}
		res := mustAllow(t, h.lim, "k", l)
		if res.Allowed {
			t.Fatalf("request past the burst = %+v, want refused", res)
		}
		checkWithin(t, h, "RetryAfter", res.RetryAfter, 8571428*time.Microsecond)
	})

	t.Run("refill after the announced waits", func(t *testing.T) {
		h := newHarness(t)
		l := Limit{Rate: 20, Period: time.Second, Burst: 2} // one every 50ms
		mustAllow(t, h.lim, "k", l)
		mustAllow(t, h.lim, "k", l)
		res := mustAllow(t, h.lim, "k", l)
		if res.Allowed || res.RetryAfter <= 0 || res.RetryAfter > 50*time.Millisecond {
			t.Fatalf("request past the burst = %+v, want refused for at most 50ms", res)
		}
		h.wait(res.RetryAfter)
		res = mustAllow(t, h.lim, "k", l)
		if !res.Allowed {
			t.Fatalf("after waiting RetryAfter: %+v, want allowed", res)
		}
		h.wait(res.ResetAfter)
		if res = mustAllow(t, h.lim, "k", l); !res.Allowed || res.Remaining != 1 {
			t.Fatalf("after waiting ResetAfter: %+v, want allowed with the whole burst but this one left", res)
		}
	})

	t.Run("independent keys", func(t *testing.T) {
		h := newHarness(t)
		l := Limit{Rate: 1, Period: time.Hour}
		if res := mustAllow(t, h.lim, "did:a", l); !res.Allowed {
			t.Fatalf("first request for did:a = %+v, want allowed", res)
		}
		if res := mustAllow(t, h.lim, "did:a", l); res.Allowed {
			t.Fatalf("second request for did:a = %+v, want refused", res)
		}
		for _, k := range []string{"did:b", "did:a ", "DID:A", "did:"} {
			if res := mustAllow(t, h.lim, k, l); !res.Allowed || res.Remaining != 0 {
				t.Fatalf("first request for %q = %+v, want allowed", k, res)
			}
		}
	})

	t.Run("zones keep separate state for one subject", func(t *testing.T) {
		h := newHarness(t)
		login := Limit{Rate: 5, Period: time.Hour, Burst: 2}
		api := Limit{Rate: 100, Period: time.Hour}
		const subject = "192.0.2.7"
		for i := 0; i < 2; i++ {
			mustAllow(t, h.lim, "login|"+subject, login)
		}
		if res := mustAllow(t, h.lim, "login|"+subject, login); res.Allowed {
			t.Fatalf("login past its burst = %+v, want refused", res)
		}
		res := mustAllow(t, h.lim, "api|"+subject, api)
		if !res.Allowed || res.Remaining != 99 || res.Limit.Burst != 100 {
			t.Fatalf("api zone for the same subject = %+v, want allowed with 99 remaining", res)
		}
	})

	runZoneCases(t, newHarness)

	t.Run("invalid limit", func(t *testing.T) {
		h := newHarness(t)
		for _, l := range []Limit{{}, {Rate: 1, Period: -time.Second}, {Rate: 1, Period: time.Second, Burst: -1}} {
			if _, err := h.lim.Allow(ctx, "k", l); !errors.Is(err, ErrInvalidLimit) {
				t.Errorf("Allow with %+v: error %v, want ErrInvalidLimit", l, err)
			}
		}
	})
}

func mustAllow(t *testing.T, lim Limiter, key string, l Limit) Result {
	t.Helper()
	res, err := lim.Allow(context.Background(), key, l)
	if err != nil {
		t.Fatalf("Allow(%q, %s): %v", key, l, err)
	}
	return res
}

// checkWithin checks that got is want less at most the time elapsed on the
// harness's clock (and a microsecond for Redis's float arithmetic).
func checkWithin(t *testing.T, h suiteHarness, what string, got, want time.Duration) {
	t.Helper()
	slack := h.elapsed() + time.Microsecond
	if got > want+time.Microsecond || got < want-slack {
		t.Fatalf("%s = %s, want %s (less at most %s elapsed)", what, got, want, slack)
	}
}
