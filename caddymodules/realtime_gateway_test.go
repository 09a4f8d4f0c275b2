package caddymodules_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
)

const realtimeCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	cairn {
		mode development
		plc_url %s
	}
}
http://127.0.0.1:{PORT} {
	cairn_request_id
	cairn_security_headers
	# The WebSocket stream authenticates by its ticket, not a bearer token.
	handle /xrpc/blue.catbird.mls.subscribeConvoEvents {
		cairn_delivery
	}
	route /xrpc/* {
		cairn_auth {
			service_did did:web:gateway.test
			replay memory
		}
		cairn_delivery
		error 501
	}
}
`

// TestEventStreamsThroughTheGateway opens both event streams through the
// real gateway: SSE behind cairn_auth, and WebSocket by a single-use ticket
// on a route without cairn_auth, with the security-header writer (which
// must let the upgrade hijack the connection) in the chain.
func TestEventStreamsThroughTheGateway(t *testing.T) {
	plc := atprototest.NewPLC(t)
	now := time.Now().Unix()
	tok := func(lxm string) atprototest.Token {
		return atprototest.Token{Key: "alice", Iss: aliceDID, Aud: "did:web:gateway.test", Lxm: lxm, Iat: now, Exp: now + 60}
	}
	const (
		stream = "blue.catbird.mls.streamConvoEvents"
		ticket = "blue.catbird.mls.getSubscriptionTicket"
	)
	minted := atprototest.Mint(t, []atprototest.Key{{Name: "alice", Type: "k256"}}, []atprototest.Token{tok(stream), tok(ticket)})
	plc.Publish(aliceDID, minted.Keys["alice"])
	g := startPlain(t, fmt.Sprintf(realtimeCaddyfile, plc.URL), gatewaytest.Options{})

	// SSE: an all-conversations stream opens with the streaming headers.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.url("/xrpc/"+stream), nil)
	req.Header.Set("Authorization", "Bearer "+minted.Tokens[0])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") || resp.Header.Get("X-Accel-Buffering") != "no" {
		t.Fatalf("SSE: %d %v", resp.StatusCode, resp.Header)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("SSE response lacks the security headers: %v", resp.Header)
	}
	// Comment lines (": ok", heartbeats) may come first; then the stream's
	// starting position.
	br := bufio.NewReader(resp.Body)
	var line string
	for range 5 {
		if line, err = br.ReadString('\n'); err != nil || !strings.HasPrefix(line, ":") {
			break
		}
	}
	if err != nil || !strings.HasPrefix(line, "id:") {
		t.Fatalf("SSE line %q (%v), want the stream's starting id", line, err)
	}
	cancel()
	resp.Body.Close()

	// WebSocket: a ticket from getSubscriptionTicket opens the stream once.
	treq, _ := http.NewRequest(http.MethodPost, g.url("/xrpc/"+ticket), strings.NewReader(`{}`))
	treq.Header.Set("Authorization", "Bearer "+minted.Tokens[1])
	treq.Header.Set("Content-Type", "application/json")
	tresp, err := http.DefaultClient.Do(treq)
	if err != nil {
		t.Fatal(err)
	}
	var issued struct{ Ticket, Endpoint, ExpiresAt string }
	err = json.NewDecoder(tresp.Body).Decode(&issued)
	tresp.Body.Close()
	if tresp.StatusCode != http.StatusOK || err != nil || issued.Ticket == "" || !strings.HasSuffix(issued.Endpoint, "/xrpc/blue.catbird.mls.subscribeConvoEvents") {
		t.Fatalf("getSubscriptionTicket: %d %+v (%v)", tresp.StatusCode, issued, err)
	}
	wsURL := strings.Replace(g.url("/xrpc/blue.catbird.mls.subscribeConvoEvents"), "http://", "ws://", 1) + "?ticket=" + issued.Ticket
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	conn, _, err := websocket.Dial(dctx, wsURL, nil)
	if err != nil {
		t.Fatalf("WebSocket with a fresh ticket: %v", err)
	}
	conn.Close(websocket.StatusNormalClosure, "")

	_, again, err := websocket.Dial(dctx, wsURL, nil)
	if err == nil {
		t.Fatal("a used ticket opened a second WebSocket")
	}
	if again == nil || again.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a used ticket: %v %v, want 401", again, err)
	}
	if strings.Contains(g.Logs(), issued.Ticket) {
		t.Error("the ticket reached the logs")
	}
}
