package caddymodules

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func provisionedHeaders(t *testing.T, src string) *SecurityHeaders {
	t.Helper()
	s := new(SecurityHeaders)
	if err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src)); err != nil {
		t.Fatal(err)
	}
	if err := s.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSecurityHeadersCaddyfileOverridesAndRemovals(t *testing.T) {
	s := provisionedHeaders(t, "cairn_security_headers {\n Content-Security-Policy \"default-src 'none'\"\n -X-Frame-Options\n X-Extra yes\n keep_xrpc_cache_control\n}")
	w := httptest.NewRecorder()
	w.Header().Set("Server", "Caddy")
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		_, err := w.Write([]byte("body")) // implicit 200: headers must still be re-applied
		return err
	})
	req := httptest.NewRequest("GET", "https://example.test/xrpc/x", nil)
	req.TLS = &tls.ConnectionState{}
	if err := s.ServeHTTP(w, req, next); err != nil {
		t.Fatal(err)
	}
	h := w.Header()
	if h.Get("Content-Security-Policy") != "default-src 'none'" || h.Get("X-Extra") != "yes" {
		t.Errorf("overrides not applied: %v", h)
	}
	if _, ok := h["X-Frame-Options"]; ok {
		t.Error("removed header present")
	}
	if h.Get("Server") != "" {
		t.Error("Server not removed")
	}
	if h.Get("Cache-Control") != "" {
		t.Error("keep_xrpc_cache_control still forced no-store")
	}
	if h.Get("Strict-Transport-Security") == "" {
		t.Error("untouched default missing")
	}
}

func TestSecurityHeadersReappliedWhenAHandlerReplacesThem(t *testing.T) {
	s := provisionedHeaders(t, "cairn_security_headers")
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		for k := range w.Header() {
			delete(w.Header(), k)
		}
		w.Header().Set("Server", "upstream")
		w.WriteHeader(http.StatusInternalServerError)
		return nil
	})
	if err := s.ServeHTTP(w, httptest.NewRequest("GET", "/", nil), next); err != nil {
		t.Fatal(err)
	}
	if w.Header().Get("X-Content-Type-Options") != "nosniff" || w.Header().Get("Server") != "" {
		t.Errorf("headers after a handler cleared them: %v", w.Header())
	}
}

func TestSecurityHeadersCaddyfileErrors(t *testing.T) {
	for _, bad := range []string{
		"cairn_security_headers arg",
		"cairn_security_headers {\n X-Only-Name\n}",
		"cairn_security_headers {\n -X-Frame-Options extra\n}",
		"cairn_security_headers {\n X-Two a b\n}",
	} {
		if err := new(SecurityHeaders).UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
