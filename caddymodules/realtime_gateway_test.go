package caddymodules_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/mlswire"
	"github.com/cairn-chat/cairn-caddy/internal/realtime"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
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
			leeway 1s
		}
		cairn_delivery {
			websocket_endpoint ws://127.0.0.1:{PORT}/xrpc/blue.catbird.mls.subscribeConvoEvents
		}
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
	g := startPlain(t, fmt.Sprintf(realtimeCaddyfile, plc.URL), gatewaytest.Options{})
	now := freshIat(t, testLeeway, g)
	tok := func(lxm string) atprototest.Token {
		return atprototest.Token{Key: "alice", Iss: aliceDID, Aud: "did:web:gateway.test", Lxm: lxm, Iat: now, Exp: now + 60}
	}
	const (
		stream = "blue.catbird.mls.streamConvoEvents"
		ticket = "blue.catbird.mls.getSubscriptionTicket"
	)
	minted := atprototest.Mint(t, []atprototest.Key{{Name: "alice", Type: "k256"}}, []atprototest.Token{tok(stream), tok(ticket)})
	plc.Publish(aliceDID, minted.Keys["alice"])

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
	// The configured websocket_endpoint is what the ticket advertises.
	want := strings.Replace(g.url("/xrpc/blue.catbird.mls.subscribeConvoEvents"), "http://", "ws://", 1)
	if tresp.StatusCode != http.StatusOK || err != nil || issued.Ticket == "" || issued.Endpoint != want {
		t.Fatalf("getSubscriptionTicket: %d %+v (%v), want endpoint %s", tresp.StatusCode, issued, err, want)
	}
	if strings.Contains(issued.Ticket, strings.TrimPrefix(aliceDID, "did:")) {
		t.Errorf("the ticket %s names the DID", issued.Ticket)
	}
	// A plain GET through the gateway (a link preview, a probe) is refused
	// and leaves the ticket usable.
	if resp, out := do(t, http.MethodGet, g.url("/xrpc/blue.catbird.mls.subscribeConvoEvents?ticket="+issued.Ticket), nil); resp.StatusCode != http.StatusUpgradeRequired || errorName(t, out) != "InvalidRequest" {
		t.Fatalf("a plain GET with the ticket: %d %s", resp.StatusCode, out)
	}
	wsURL := issued.Endpoint + "?ticket=" + issued.Ticket
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

const twoNodeCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	cairn {
		mode development
		plc_url %s
		database %s
	}
}
http://127.0.0.1:{PORT} {
	route /xrpc/* {
		cairn_auth {
			service_did did:web:gateway.test
			replay memory
			leeway 1s
		}
		cairn_delivery
	}
}
http://127.0.0.1:{METRICS} {
	cairn_metrics
}
`

// sseEvent is one messageEvent of a stream: its cursor and message id.
type sseEvent struct{ cursor, msgID string }

// openSSE opens streamConvoEvents on g and returns its message events as
// they arrive.
func openSSE(t *testing.T, g *plainGateway, token, query string) <-chan sseEvent {
	t.Helper()
	resp, err := dialSSE(t, g, token, query)
	if err != nil {
		t.Fatal(err)
	}
	return readSSE(t, resp)
}

// dialSSE sends a streamConvoEvents request; the stream ends when the
// test does.
func dialSSE(t *testing.T, g *plainGateway, token, query string) (*http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.url("/xrpc/blue.catbird.mls.streamConvoEvents?"+query), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	return http.DefaultClient.Do(req)
}

// readSSE checks that resp opened a stream and returns its message events
// as they arrive.
func readSSE(t *testing.T, resp *http.Response) <-chan sseEvent {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("streamConvoEvents: %d", resp.StatusCode)
	}
	out := make(chan sseEvent, 100)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var w struct {
				Event struct {
					Type    string `json:"$type"`
					Cursor  string `json:"cursor"`
					Message struct {
						ID string `json:"id"`
					} `json:"message"`
				} `json:"event"`
			}
			if json.Unmarshal([]byte(data), &w) == nil && strings.HasSuffix(w.Event.Type, "#messageEvent") {
				out <- sseEvent{w.Event.Cursor, w.Event.Message.ID}
			}
		}
	}()
	return out
}

func expectMessages(t *testing.T, events <-chan sseEvent, want ...string) sseEvent {
	t.Helper()
	var last sseEvent
	for _, id := range want {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("stream ended; still expecting %s", id)
			}
			if ev.msgID != id {
				t.Fatalf("stream delivered %s, want %s (in order, once)", ev.msgID, id)
			}
			last = ev
		case <-time.After(20 * time.Second):
			t.Fatalf("no event %s within 20 s", id)
		}
	}
	return last
}

// TestEventStreamAcrossTwoGatewaysAndARestart runs two gateway processes
// on one PostgreSQL: a subscriber on node A receives, in order, what is sent
// through node B; after A restarts, it resumes by cursor without a gap or a
// duplicate and then continues live. The nodes wake each other through
// PostgreSQL LISTEN/NOTIFY, then through Redis pub/sub.
func TestEventStreamAcrossTwoGatewaysAndARestart(t *testing.T) {
	for _, notifier := range []string{"postgres", "redis"} {
		t.Run(notifier, func(t *testing.T) { testEventStreamAcrossTwoGateways(t, notifier) })
	}
}

func testEventStreamAcrossTwoGateways(t *testing.T, notifier string) {
	plc := atprototest.NewPLC(t)
	var now int64
	tok := func(lxm string) atprototest.Token {
		return atprototest.Token{Key: "alice", Iss: aliceDID, Aud: "did:web:gateway.test", Lxm: "blue.catbird.mls." + lxm, Iat: now, Exp: now + 60}
	}
	text := fmt.Sprintf(twoNodeCaddyfile, plc.URL, testenv.Postgres(t))
	var rdb *redis.Client
	if notifier == "redis" {
		rdb, _ = testenv.Redis(t)
		text = strings.Replace(text, "\t}\n}\nhttp://", "\t\tredis "+testenv.RedisURL()+"\n\t\tstreams {\n\t\t\tnotifier redis\n\t\t}\n\t}\n}\nhttp://", 1)
		if !strings.Contains(text, "notifier redis") {
			t.Fatal("could not configure the Redis notifier")
		}
	}
	homeA := t.TempDir()
	// Nodes sharing a database share the audit key (docs/operations.md).
	shared := []string{"CAIRN_AUDIT_KEY=" + strings.Repeat("k", 40)}
	a := startPlain(t, text, gatewaytest.Options{Home: homeA, Env: shared})
	b := startPlain(t, text, gatewaytest.Options{Env: shared})
	now = freshIat(t, testLeeway, a, b)
	// Tokens live 60 s. Each phase mints its own just before it sends them,
	// so a slow machine (a restart under load takes longer than a token
	// lives) cannot expire a token minted phases earlier.
	sendTokens := func(n int) []atprototest.Token {
		out := make([]atprototest.Token, n)
		for i := range out {
			out[i] = tok("sendMessage")
		}
		return out
	}
	minted := atprototest.Mint(t, []atprototest.Key{{Name: "alice", Type: "k256"}},
		append([]atprototest.Token{tok("createConvo"), tok("streamConvoEvents")}, sendTokens(3)...))
	plc.Publish(aliceDID, minted.Keys["alice"])
	tokens := minted.Tokens
	alice := []atprototest.Key{minted.Reuse("alice")}
	if rdb != nil {
		// Both nodes listen on the Redis channel (other tests' gateways
		// may too).
		n, err := rdb.PubSubNumSub(context.Background(), "cairn:realtime").Result()
		if err != nil || n["cairn:realtime"] < 2 {
			t.Fatalf("subscribers of cairn:realtime: %v (%v), want both nodes", n, err)
		}
	}

	const groupID = "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5"
	mustPostXRPC(t, b, "blue.catbird.mls.createConvo", tokens[0], `{"groupId":"`+groupID+`","cipherSuite":"MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519","idempotencyKey":"two-node"}`)
	send := func(g *plainGateway, token string, i int) {
		t.Helper()
		ct := base64.RawStdEncoding.EncodeToString(applicationMessage(t, groupID, 512))
		mustPostXRPC(t, g, "blue.catbird.mls.sendMessage", token, fmt.Sprintf(`{"convoId":%q,"msgId":"m%d","ciphertext":{"$bytes":%q},"epoch":0,"paddedSize":512}`, groupID, i, ct))
	}

	events := openSSE(t, a, tokens[1], "convoId="+groupID)
	for i := 1; i <= 3; i++ {
		send(b, tokens[1+i], i)
	}
	last := expectMessages(t, events, "m1", "m2", "m3")

	// Node A goes down; the conversation goes on through B.
	a.Stop()
	now = time.Now().Unix()
	during := atprototest.Mint(t, alice, sendTokens(3)).Tokens
	for i := 4; i <= 6; i++ {
		send(b, during[i-4], i)
	}
	a2 := startPlain(t, text, gatewaytest.Options{Home: homeA, Env: shared})
	// The restarted node's replay memory is new: it takes tokens issued
	// since.
	now = freshIat(t, testLeeway, a2)
	again := atprototest.Mint(t, alice, append([]atprototest.Token{tok("streamConvoEvents")}, sendTokens(1)...)).Tokens
	resumed := openSSE(t, a2, again[0], "convoId="+groupID+"&cursor="+last.cursor)
	expectMessages(t, resumed, "m4", "m5", "m6")
	send(b, again[1], 7)
	expectMessages(t, resumed, "m7")
}

// applicationMessage is an MLS PrivateMessage (application content) of the
// group, epoch 0, framed to exactly size bytes. The server reads only its
// public framing.
func applicationMessage(t *testing.T, groupHex string, size int) []byte {
	t.Helper()
	gid, err := hex.DecodeString(groupHex)
	if err != nil {
		t.Fatal(err)
	}
	pm := &mlswire.PrivateMessage{GroupID: gid, Epoch: 0, ContentType: mlswire.ContentTypeApplication, EncryptedSenderData: make([]byte, 16)}
	msg := &mlswire.Message{Version: mlswire.ProtocolVersionMLS10, WireFormat: mlswire.WireFormatPrivateMessage, PrivateMessage: pm}
	empty, err := mlswire.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	// The ciphertext's length prefix grows with it: try the few sizes around.
	for extra := 0; extra <= 4; extra++ {
		pm.Ciphertext = make([]byte, size-len(empty)-extra)
		if b, err := mlswire.Marshal(msg); err == nil && len(b) == size {
			return b
		}
	}
	t.Fatalf("cannot frame a %d-byte message", size)
	return nil
}

// TestReloadKeepsOpenStreams reloads the configuration while a stream is
// open: the hub belongs to the cairn app's shared state, so the stream goes
// on and receives what is sent after the reload. The reload also raises
// the configured per-DID stream cap, which applies at once.
func TestReloadKeepsOpenStreams(t *testing.T) {
	plc := atprototest.NewPLC(t)
	// SQLite this time: the in-process notifier must survive the reload
	// too. One stream per DID, for now.
	text := strings.Replace(fmt.Sprintf(twoNodeCaddyfile, plc.URL, ""), "\t\tdatabase \n", "\t\tstreams {\n\t\t\tmax_per_did 1\n\t\t}\n", 1)
	g := startPlain(t, text, gatewaytest.Options{})
	now := freshIat(t, testLeeway, g)
	tok := func(lxm string) atprototest.Token {
		return atprototest.Token{Key: "alice", Iss: aliceDID, Aud: "did:web:gateway.test", Lxm: "blue.catbird.mls." + lxm, Iat: now, Exp: now + 60}
	}
	minted := atprototest.Mint(t, []atprototest.Key{{Name: "alice", Type: "k256"}},
		[]atprototest.Token{tok("createConvo"), tok("streamConvoEvents"), tok("sendMessage"), tok("streamConvoEvents"), tok("streamConvoEvents")})
	plc.Publish(aliceDID, minted.Keys["alice"])
	tokens := minted.Tokens
	const groupID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
	mustPostXRPC(t, g, "blue.catbird.mls.createConvo", tokens[0], `{"groupId":"`+groupID+`","cipherSuite":"MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519","idempotencyKey":"reload"}`)
	events := openSSE(t, g, tokens[1], "convoId="+groupID)
	req, _ := http.NewRequest(http.MethodGet, g.url("/xrpc/blue.catbird.mls.streamConvoEvents"), nil)
	req.Header.Set("Authorization", "Bearer "+tokens[3])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), `"error":"RateLimitExceeded"`) {
		t.Fatalf("a second stream over max_per_did 1: %d %s, want 429 RateLimitExceeded", resp.StatusCode, body)
	}

	g.Reload(t, g.admin, strings.Replace(strings.Replace(g.text, "route /xrpc/* {", "route /xrpc/* {\n\t\theader X-Reloaded yes", 1),
		"max_per_did 1", "max_per_did 2", 1))
	second := openSSE(t, g, tokens[4], "convoId="+groupID)
	ct := base64.RawStdEncoding.EncodeToString(applicationMessage(t, groupID, 512))
	mustPostXRPC(t, g, "blue.catbird.mls.sendMessage", tokens[2], fmt.Sprintf(`{"convoId":%q,"msgId":"after-reload","ciphertext":{"$bytes":%q},"epoch":0,"paddedSize":512}`, groupID, ct))
	expectMessages(t, events, "after-reload")
	expectMessages(t, second, "after-reload")

	m := scrape(t, g)
	if v := metricValue(m, "cairn_realtime_connections", `transport="sse"`); v != 2 {
		t.Errorf("open SSE streams = %v, want 2", v)
	}
	if v := metricValue(m, "cairn_realtime_events_delivered_total", `transport="sse"`); v < 1 {
		t.Errorf("delivered events = %v, want at least 1", v)
	}
}

// TestTicketOnceAcrossTwoGatewaysSharingRedis: two gateways with one Redis
// and one log-hash key. A ticket issued by A opens a WebSocket on A; B,
// which can open it (same key), refuses it as used.
func TestTicketOnceAcrossTwoGatewaysSharingRedis(t *testing.T) {
	rs := testenv.StartRedisServer(t)
	began := beginReplayMemory(t, rs.URL())
	plc := atprototest.NewPLC(t)
	text := strings.Replace(fmt.Sprintf(realtimeCaddyfile, plc.URL), "\t\tplc_url", "\t\tredis "+rs.URL()+"\n\t\tplc_url", 1)
	text = strings.Replace(text, "replay memory", "replay redis", 1)
	env := []string{"CAIRN_LOG_HASH_KEY=" + strings.Repeat("t", 40)}
	a := startPlain(t, text, gatewaytest.Options{Env: env})
	b := startPlain(t, text, gatewaytest.Options{Env: env})
	now := freshIat(t, testLeeway, a, b)
	minted := atprototest.Mint(t, []atprototest.Key{{Name: "alice", Type: "k256"}}, []atprototest.Token{
		{Key: "alice", Iss: aliceDID, Aud: "did:web:gateway.test", Lxm: "blue.catbird.mls.getSubscriptionTicket", Iat: now, Exp: now + 60},
	})
	plc.Publish(aliceDID, minted.Keys["alice"])
	// Tickets issued within the skew of the ticket memory's start are
	// refused (they might predate it); issue one after.
	gatewaytest.FreshIat(began, realtime.DefaultTicketSkew)

	req, _ := http.NewRequest(http.MethodPost, a.url("/xrpc/blue.catbird.mls.getSubscriptionTicket"), strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+minted.Tokens[0])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var issued struct{ Ticket string }
	err = json.NewDecoder(resp.Body).Decode(&issued)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || issued.Ticket == "" {
		t.Fatalf("getSubscriptionTicket on A: %d (%v)", resp.StatusCode, err)
	}
	ws := func(g *plainGateway) string {
		return strings.Replace(g.url("/xrpc/blue.catbird.mls.subscribeConvoEvents?ticket="+issued.Ticket), "http://", "ws://", 1)
	}
	// B opens A's ticket (a plain GET gets past the ticket to the
	// missing upgrade) without using it up.
	if resp, out := do(t, http.MethodGet, b.url("/xrpc/blue.catbird.mls.subscribeConvoEvents?ticket="+issued.Ticket), nil); resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("a plain GET on B with A's ticket: %d %s", resp.StatusCode, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, ws(a), nil)
	if err != nil {
		t.Fatalf("the ticket on A: %v", err)
	}
	conn.Close(websocket.StatusNormalClosure, "")
	_, again, err := websocket.Dial(ctx, ws(b), nil)
	if err == nil || again == nil || again.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the used ticket on B: %v %v, want 401", again, err)
	}
}
