package metrics

import (
	"strings"
	"testing"
	"time"
)

func TestLabelsStayBounded(t *testing.T) {
	m := New()
	m.ObserveXRPC("blue.catbird.mls.sendMessage", 200, time.Millisecond)
	m.ObserveXRPC("did:plc:ewvi7nxzyoun6zhxrhs64oiz", 404, time.Millisecond)
	m.ObserveXRPC("blue.catbird.mls.getMessages?convoId=secret", 400, time.Millisecond)
	m.RateLimitDecision("send", false, "shared")
	m.BackendError("redis", "ratelimit")

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
	for _, want := range []string{"blue.catbird.mls.sendMessage", "other", "2xx", "4xx", "send", "limited", "redis"} {
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
