package secheaders

import (
	"net/http"
	"testing"
)

func TestDefaultsAreExact(t *testing.T) {
	p, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Server": {"Caddy"}}
	p.Apply(h, "/xrpc/blue.catbird.mls.getConvos", true)
	want := map[string]string{
		"Content-Security-Policy":   "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self' wss:",
		"Strict-Transport-Security": "max-age=31536000; includeSubDomains",
		"X-Frame-Options":           "DENY",
		"X-Content-Type-Options":    "nosniff",
		"Referrer-Policy":           "strict-origin-when-cross-origin",
		"Permissions-Policy":        "camera=(), microphone=(), geolocation=()",
		"Cache-Control":             "no-store",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if h.Get("Server") != "" {
		t.Error("Server header not removed")
	}
	if len(h) != len(want) {
		t.Errorf("unexpected headers: %v", h)
	}
}

func TestCacheControlOnlyOnXRPC(t *testing.T) {
	p, _ := New(Config{})
	h := http.Header{}
	p.Apply(h, "/index.html", true)
	if h.Get("Cache-Control") != "" {
		t.Errorf("Cache-Control set on a non-XRPC path: %q", h.Get("Cache-Control"))
	}
}

// TestHSTSOnlyOverTLS: a plain-HTTP response carries no
// Strict-Transport-Security, even one an upstream set; the other headers
// stay.
func TestHSTSOnlyOverTLS(t *testing.T) {
	p, _ := New(Config{})
	h := http.Header{"Strict-Transport-Security": {"max-age=1"}}
	p.Apply(h, "/", false)
	if _, ok := h["Strict-Transport-Security"]; ok {
		t.Errorf("HSTS on a plain-HTTP response: %q", h.Get("Strict-Transport-Security"))
	}
	if h.Get("X-Frame-Options") != "DENY" {
		t.Error("the other headers are missing over plain HTTP")
	}
	h = http.Header{}
	p.Apply(h, "/", true)
	if h.Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS over TLS")
	}
}

func TestOverrideAndRemove(t *testing.T) {
	p, err := New(Config{
		Set:    map[string]string{"content-security-policy": "default-src 'none'", "X-Extra": "1"},
		Remove: []string{"x-frame-options"},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"X-Frame-Options": {"SAMEORIGIN"}}
	p.Apply(h, "/", true)
	if got := h.Get("Content-Security-Policy"); got != "default-src 'none'" {
		t.Errorf("CSP = %q", got)
	}
	if h.Get("X-Extra") != "1" {
		t.Error("added header missing")
	}
	if _, ok := h["X-Frame-Options"]; ok {
		t.Error("removed header still present")
	}
}

func TestRejectsBadHeaders(t *testing.T) {
	for _, cfg := range []Config{
		{Set: map[string]string{"Bad Name": "x"}},
		{Set: map[string]string{"X-Ok": "a\r\nInjected: 1"}},
		{Remove: []string{""}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted a bad header", cfg)
		}
	}
}
