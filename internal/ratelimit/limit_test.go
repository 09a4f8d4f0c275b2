package ratelimit

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in         string
		rate       int
		period     time.Duration
		wantErrSub string
	}{
		{in: "60/1m", rate: 60, period: time.Minute},
		{in: "3/1h", rate: 3, period: time.Hour},
		{in: "100/1s", rate: 100, period: time.Second},
		{in: "10/30s", rate: 10, period: 30 * time.Second},
		{in: "5/m", rate: 5, period: time.Minute},
		{in: "1/1m30s", rate: 1, period: 90 * time.Second},
		{in: "1000000/1s", rate: 1000000, period: time.Second},
		{in: "", wantErrSub: "must look like 60/1m"},
		{in: "60", wantErrSub: "must look like 60/1m"},
		{in: "/1m", wantErrSub: "not a whole number"},
		{in: "-1/1m", wantErrSub: "not a whole number"},
		{in: "+1/1m", wantErrSub: "not a whole number"},
		{in: "1.5/1m", wantErrSub: "not a whole number"},
		{in: "0/1m", wantErrSub: "between 1 and"},
		{in: "99999999999999999999/1m", wantErrSub: "between 1 and"},
		{in: "60/", wantErrSub: "not a period"},
		{in: "60/1", wantErrSub: "not a period"},
		{in: "60/minute", wantErrSub: "not a period"},
		{in: "60/-1m", wantErrSub: "not a period"},
		{in: "60/1m/2", wantErrSub: "not a period"},
		{in: "60/0s", wantErrSub: "period 0s must be between"},
		{in: "60/48h", wantErrSub: "period 48h0m0s must be between"},
		{in: "1000000/100ms", wantErrSub: "resolution"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			rate, period, err := ParseRate(tt.in)
			if tt.wantErrSub != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrSub) {
					t.Fatalf("ParseRate(%q) error = %v, want one containing %q", tt.in, err, tt.wantErrSub)
				}
				if !errors.Is(err, ErrInvalidLimit) {
					t.Fatalf("ParseRate(%q) error %v does not wrap ErrInvalidLimit", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRate(%q): %v", tt.in, err)
			}
			if rate != tt.rate || period != tt.period {
				t.Fatalf("ParseRate(%q) = %d, %s; want %d, %s", tt.in, rate, period, tt.rate, tt.period)
			}
		})
	}
}

func TestLimitValidate(t *testing.T) {
	tests := []struct {
		name       string
		l          Limit
		wantErrSub string
	}{
		{name: "preset ip", l: Limit{Rate: 60, Period: time.Minute, Burst: 6}},
		{name: "default burst", l: Limit{Rate: 100, Period: time.Minute}},
		{name: "registration", l: Limit{Rate: 3, Period: time.Hour}},
		{name: "zero", l: Limit{}, wantErrSub: "rate 0 must be between 1"},
		{name: "negative burst", l: Limit{Rate: 1, Period: time.Second, Burst: -1}, wantErrSub: "burst -1 must be between 0"},
		{name: "huge burst", l: Limit{Rate: 1, Period: time.Second, Burst: MaxBurst + 1}, wantErrSub: "burst 1000001"},
		{name: "short period", l: Limit{Rate: 1, Period: time.Microsecond}, wantErrSub: "period 1µs must be between"},
		{name: "slow refill", l: Limit{Rate: 1, Period: time.Hour, Burst: 1000}, wantErrSub: "takes longer than 168h0m0s to refill"},
		{name: "too fine", l: Limit{Rate: MaxRate, Period: 10 * time.Millisecond}, wantErrSub: "resolution is 1µs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.l.Validate()
			if tt.wantErrSub == "" {
				if err != nil {
					t.Fatalf("Validate(%+v): %v", tt.l, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErrSub) || !errors.Is(err, ErrInvalidLimit) {
				t.Fatalf("Validate(%+v) = %v, want ErrInvalidLimit containing %q", tt.l, err, tt.wantErrSub)
			}
		})
	}
}

func TestLimitEffectiveBurst(t *testing.T) {
	if got := (Limit{Rate: 60, Period: time.Minute}).EffectiveBurst(); got != 60 {
		t.Errorf("EffectiveBurst with Burst 0 = %d, want the rate 60", got)
	}
	if got := (Limit{Rate: 60, Period: time.Minute, Burst: 6}).EffectiveBurst(); got != 6 {
		t.Errorf("EffectiveBurst with Burst 6 = %d, want 6", got)
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"60/1m", "3/1h", "100/1s", "10/30s", "5/m", "1/1h30m", "0/1s", "1/0s", "x/y", "1/-1s", "//", "1/1e9h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rate, period, err := ParseRate(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidLimit) {
				t.Fatalf("ParseRate(%q) error %v does not wrap ErrInvalidLimit", s, err)
			}
			return
		}
		l := Limit{Rate: rate, Period: period}
		if err := l.Validate(); err != nil {
			t.Fatalf("ParseRate(%q) accepted %+v, which fails Validate: %v", s, l, err)
		}
		// What ParseRate accepts, it accepts again in canonical form.
		canon := fmt.Sprintf("%d/%s", rate, period)
		r2, p2, err := ParseRate(canon)
		if err != nil || r2 != rate || p2 != period {
			t.Fatalf("ParseRate(%q) = %d, %s but ParseRate(%q) = %d, %s, %v", s, rate, period, canon, r2, p2, err)
		}
	})
}
