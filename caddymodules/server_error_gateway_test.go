package caddymodules_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// TestServerErrorsAreLoggedOnce runs the real binary (deliveryCaddyfile) on
// PostgreSQL, drops its database under it, and checks that the 5xx a store
// call then answers is logged exactly once, at error level, with the
// request ID and no identity; and the same for a 500 raised by Caddy's own
// error directive and rendered by cairn_xrpc_errors.
func TestServerErrorsAreLoggedOnce(t *testing.T) {
	dbURL := testenv.Postgres(t)
	plc := atprototest.NewPLC(t)
	g := startPlain(t, fmt.Sprintf(deliveryCaddyfile, plc.URL, "database "+dbURL), gatewaytest.Options{})
	now := freshIat(t, testLeeway, g)
	tok := func(lxm string) atprototest.Token {
		return atprototest.Token{Key: "alice", Iss: aliceDID, Aud: "did:web:gateway.test", Lxm: lxm, Iat: now, Exp: now + 60}
	}
	const create = "blue.catbird.mls.createConvo"
	minted := atprototest.Mint(t, []atprototest.Key{{Name: "alice", Type: "k256"}}, []atprototest.Token{tok(create), tok(getConvo)})
	plc.Publish(aliceDID, minted.Keys["alice"])
	const groupID = "5e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e"
	resp, out := postXRPC(t, g, create, minted.Tokens[0], `{"groupId":"`+groupID+`","cipherSuite":"MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519","idempotencyKey":"srv-err-1"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("createConvo: %d %s", resp.StatusCode, out)
	}

	dropDatabase(t, dbURL)

	storeID := "srverr-" + testenv.RandomName("store")
	h := bearer(minted.Tokens[1])
	h.Set("X-Request-ID", storeID)
	resp, out = do(t, http.MethodGet, g.url("/xrpc/"+getConvo), h)
	if resp.StatusCode < 500 || resp.StatusCode == http.StatusNotImplemented {
		t.Fatalf("getConvos with the database dropped: %d %s, want a 5xx", resp.StatusCode, out)
	}
	if resp.Header.Get("X-Request-ID") != storeID {
		t.Fatalf("response request ID %q, want %q", resp.Header.Get("X-Request-ID"), storeID)
	}

	caddyID := "srverr-" + testenv.RandomName("caddy")
	resp, out = do(t, http.MethodGet, g.url("/boom"), http.Header{"X-Request-ID": {caddyID}})
	if resp.StatusCode != http.StatusInternalServerError || errorName(t, out) != "InternalServerError" {
		t.Fatalf("GET /boom: %d %s, want 500 InternalServerError", resp.StatusCode, out)
	}

	// The client's address: the test's client and the database are both on
	// 127.0.0.1, so the address itself cannot be searched for (a cause may
	// rightly name the database server); the fields and the request object
	// Caddy would log it in must be absent.
	identities := []string{aliceDID, groupID, minted.Tokens[1], `"remote_ip"`, `"client_ip"`, `"remote_port"`, `"request":`}
	for _, id := range []string{storeID, caddyID} {
		lines := waitLogLines(t, g, id)
		errorLines := 0
		for _, l := range lines {
			if l.level == "error" {
				errorLines++
			}
			for _, ident := range identities {
				if strings.Contains(l.raw, ident) {
					t.Errorf("log line of request %s holds %q: %s", id, ident, l.raw)
				}
			}
		}
		if errorLines != 1 {
			t.Errorf("request %s: %d error lines, want exactly 1; its lines:\n%v", id, errorLines, lines)
		}
	}
}

// logLine is one JSON log line of the gateway.
type logLine struct {
	level, raw string
}

// waitLogLines returns the gateway's log lines that carry request ID id,
// once an error line for it has appeared (or after five seconds), and after
// a further half second for any duplicate to follow.
func waitLogLines(t *testing.T, g *plainGateway, id string) []logLine {
	t.Helper()
	read := func() (lines []logLine, sawError bool) {
		sc := bufio.NewScanner(strings.NewReader(g.Logs()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			raw := sc.Text()
			if !strings.Contains(raw, id) {
				continue
			}
			var entry struct {
				Level     string `json:"level"`
				RequestID string `json:"request_id"`
			}
			if err := json.Unmarshal([]byte(raw), &entry); err != nil {
				t.Fatalf("log line is not JSON: %s", raw)
			}
			if entry.Level == "error" {
				sawError = true
				if entry.RequestID != id {
					t.Errorf("error line names the request outside its request_id field: %s", raw)
				}
			}
			lines = append(lines, logLine{level: entry.Level, raw: raw})
		}
		return lines, sawError
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, ok := read(); ok {
			break
		}
	}
	time.Sleep(500 * time.Millisecond)
	lines, _ := read()
	return lines
}

// dropDatabase drops the database of dbURL under the running gateway,
// terminating its connections, as an operator's mistake or a failover to an
// empty server would.
func dropDatabase(t *testing.T, dbURL string) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, testenv.DatabaseURL())
	testenv.Must(t, err, "connect as admin")
	defer admin.Close(context.Background())
	_, err = admin.Exec(ctx, "DROP DATABASE "+pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()+" WITH (FORCE)")
	testenv.Must(t, err, "drop the gateway's database")
}
