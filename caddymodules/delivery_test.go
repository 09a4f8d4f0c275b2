package caddymodules

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func TestDeliveryCaddyfile(t *testing.T) {
	var d Delivery
	err := d.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`cairn_delivery {
		max_message_size 1MiB
		max_members 50
		message_ttl 7d
		websocket_endpoint wss://chat.example.com/xrpc/blue.catbird.mls.subscribeConvoEvents
		require_opt_in
		block_checks on
		block_source_unavailable allow
		block_cache_ttl 30s
		block_source both
		block_appview https://api.bsky.app
		chat_request_previews
		chat_request_sender_rate 10/1h
		chat_request_recipient_rate 50/1h
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if d.MaxMessageBytes != 1<<20 || d.MaxMembers != 50 || d.WebSocketEndpoint != "wss://chat.example.com/xrpc/blue.catbird.mls.subscribeConvoEvents" || !d.RequireOptIn ||
		d.DisableBlockChecks || !d.AllowAddsWhenBlocksUnavailable || d.BlockCacheTTL != caddy.Duration(30*time.Second) ||
		d.BlockSource != "both" || d.BlockAppView != "https://api.bsky.app" ||
		!d.ChatRequestPreviews || d.ChatRequestSenderRate != "10/1h" || d.ChatRequestRecipientRate != "50/1h" {
		t.Fatalf("parsed %+v", d)
	}
	for _, bad := range []string{
		"max_message_size 2GiB",
		"max_members 0",
		"message_ttl forever",
		"websocket_endpoint https://chat.example.com/xrpc/x",
		"websocket_endpoint /xrpc/blue.catbird.mls.subscribeConvoEvents",
		"websocket_endpoint wss://chat.example.com/x?ticket=1",
		"websocket_endpoint wss://user:pw@chat.example.com/x",
		"require_opt_in yes",
		"block_checks maybe",
		"block_source_unavailable open",
		"block_cache_ttl 2h",
		"block_source remote",
		"block_appview http://api.bsky.app",
		"block_appview api.bsky.app",
		"chat_request_previews on",
		"chat_request_sender_rate 10",
		"chat_request_recipient_rate 0/1h",
		"unknown 1",
	} {
		err := new(Delivery).UnmarshalCaddyfile(caddyfile.NewTestDispenser("cairn_delivery {\n" + bad + "\n}"))
		if err == nil {
			t.Errorf("accepted %q", bad)
			continue
		}
		if opt := strings.Fields(bad)[0]; !strings.Contains(err.Error(), opt) {
			t.Errorf("%q: error %q does not name the option", bad, err)
		}
	}
}

// TestDeliveryBlockSourceMode: block_source and block_appview agree, or
// the configuration is refused with a message naming what to write.
// TestDeliveryMaxMembersLeavesRoomForTwo: max_members 1 is refused (a
// chat request's acceptance makes two devices at once); 2 and the default
// (0) are accepted.
func TestDeliveryMaxMembersLeavesRoomForTwo(t *testing.T) {
	if err := (&Delivery{MaxMembers: 1}).checkMaxMembers(); err == nil || !strings.Contains(err.Error(), "max_members 1") {
		t.Errorf("max_members 1: %v, want a refusal naming the option", err)
	}
	for _, n := range []int{0, 2, 1000} {
		if err := (&Delivery{MaxMembers: n}).checkMaxMembers(); err != nil {
			t.Errorf("max_members %d: %v", n, err)
		}
	}
}

func TestDeliveryBlockSourceMode(t *testing.T) {
	for _, tc := range []struct {
		source, appView, want, err string
	}{
		{"", "", "pds", ""},
		{"", "https://api.bsky.app", "appview", ""},
		{"pds", "", "pds", ""},
		{"appview", "http://127.0.0.1:2584", "appview", ""},
		{"both", "https://api.bsky.app", "both", ""},
		{"pds", "https://api.bsky.app", "", "block_source pds does not read it"},
		{"appview", "", "", "needs block_appview"},
		{"both", "", "", "needs block_appview"},
		{"both", "http://appview.example.com", "", "block_appview"},
		{"remote", "", "", "want pds, appview or both"},
	} {
		d := &Delivery{BlockSource: tc.source, BlockAppView: tc.appView}
		got, err := d.blockSourceMode()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q/%q: err %v, want one saying %q", tc.source, tc.appView, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q/%q = %q, %v; want %q", tc.source, tc.appView, got, err, tc.want)
		}
	}
}

// TestDeliveryWaitsForTheAppToStart covers a request that arrives before
// the cairn app has started (Caddy may start the http app first): it waits
// for the store instead of meeting a half-open one, and is served once the
// app has started; other paths pass at once; a failed start answers 503.
func TestDeliveryWaitsForTheAppToStart(t *testing.T) {
	t.Setenv("CAIRN_LOG_HASH_KEY", strings.Repeat("d", 40))
	newDelivery := func(t *testing.T) (*App, *Delivery) {
		a := &App{}
		if err := provisionApp(t, a); err != nil {
			t.Fatal(err)
		}
		a.UseStore()
		return a, &Delivery{app: a, lazy: new(lazyHandlers), logger: zap.NewNop()}
	}
	serve := func(d *Delivery, path string) (*httptest.ResponseRecorder, bool) {
		rec := httptest.NewRecorder()
		passed := false
		next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { passed = true; return nil })
		if err := d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil), next); err != nil {
			t.Errorf("ServeHTTP %s: %v", path, err)
		}
		return rec, passed
	}

	a, d := newDelivery(t)
	if _, passed := serve(d, "/xrpc/com.atproto.server.describeServer"); !passed {
		t.Fatal("a path outside blue.catbird.mls did not pass to the next handler before start")
	}
	done := make(chan *httptest.ResponseRecorder)
	go func() {
		rec, _ := serve(d, "/xrpc/blue.catbird.mls.getConvos")
		done <- rec
	}()
	select {
	case <-done:
		t.Fatal("a delivery request was answered before the app started")
	default:
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop() })
	// The service answers: without a verified caller, 401.
	if rec := <-done; rec.Code != http.StatusUnauthorized {
		t.Fatalf("after start: %d %s, want the service's 401", rec.Code, rec.Body)
	}

	failed, fd := newDelivery(t)
	if err := os.WriteFile(filepath.Join(failed.DataDir, "cairn.db"), []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := failed.Start(); err == nil {
		t.Fatal("Start on a corrupt database succeeded")
	}
	rec, _ := serve(fd, "/xrpc/blue.catbird.mls.getConvos")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"error":"ServiceUnavailable"`) {
		t.Fatalf("after a failed start: %d %s, want 503 ServiceUnavailable", rec.Code, rec.Body)
	}
}
