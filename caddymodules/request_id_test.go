package caddymodules

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cairn-chat/cairn-caddy/internal/requestid"
)

func TestRequestIDReachesContextVarsAccessLogAndModuleLogs(t *testing.T) {
	r := httptest.NewRequest("GET", "/xrpc/x", nil)
	r.Header.Set("X-Request-ID", "trace-abcdef12")
	extra := new(caddyhttp.ExtraLogFields)
	ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{})
	ctx = context.WithValue(ctx, caddyhttp.ExtraLogFieldsCtxKey, extra)
	r = r.WithContext(ctx)
	w := httptest.NewRecorder()

	core, logs := observer.New(zap.DebugLevel)
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if got := requestid.From(r.Context()); got != "trace-abcdef12" {
			t.Errorf("context ID = %q", got)
		}
		if got := caddyhttp.GetVar(r.Context(), "request_id"); got != "trace-abcdef12" {
			t.Errorf("{http.vars.request_id} = %v", got)
		}
		requestLogger(zap.New(core), r).Warn("something")
		return nil
	})
	if err := new(RequestID).ServeHTTP(w, r, next); err != nil {
		t.Fatal(err)
	}
	if w.Header().Get("X-Request-ID") != "trace-abcdef12" {
		t.Errorf("response ID = %q", w.Header().Get("X-Request-ID"))
	}
	if len(logs.All()) != 1 || logs.All()[0].ContextMap()["request_id"] != "trace-abcdef12" {
		t.Errorf("module log line lacks request_id: %+v", logs.All())
	}
	// The access log's request_id field is asserted on every access log
	// line by TestExampleLogsNoIdentity, through the real server.
}

func TestRequestIDCaddyfile(t *testing.T) {
	if err := new(RequestID).UnmarshalCaddyfile(caddyfile.NewTestDispenser("cairn_request_id")); err != nil {
		t.Fatal(err)
	}
	if err := new(RequestID).UnmarshalCaddyfile(caddyfile.NewTestDispenser("cairn_request_id foo")); err == nil {
		t.Error("accepted an argument")
	}
}
