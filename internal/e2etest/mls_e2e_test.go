package e2etest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

var builder gatewaytest.Builder

func TestMain(m *testing.M) {
	code := m.Run()
	builder.Cleanup()
	os.Exit(code)
}

// mlsHarnessDir is test/mls, the Node harness of real MLS clients.
func mlsHarnessDir() string { return filepath.Join(gatewaytest.RepoRoot(), "test", "mls") }

// requireMLSHarness makes sure node, npm and the harness's dependencies are
// there (see testenv.RequireNodeHarness).
func requireMLSHarness(t *testing.T) {
	t.Helper()
	testenv.RequireNodeHarness(t, mlsHarnessDir())
}

const serviceDID = "did:web:gateway.test"

const mlsCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	cairn {
		mode development
		plc_url {PLC}
		{STORAGE}
	}
}
http://127.0.0.1:{PORT} {
	# The WebSocket event stream authenticates by its ticket, not a bearer
	# token (as in Caddyfile.example).
	handle /xrpc/blue.catbird.mls.subscribeConvoEvents {
		cairn_delivery
	}
	route /xrpc/* {
		cairn_auth {
			service_did ` + serviceDID + `
			leeway 1s
		}
		cairn_delivery {
			websocket_endpoint ws://127.0.0.1:{PORT}/xrpc/blue.catbird.mls.subscribeConvoEvents
		}
	}
}
`

// harnessLine is one line the harness writes: the members, a step, or the
// end.
type harnessLine struct {
	Members []struct {
		Name      string `json:"name"`
		DID       string `json:"did"`
		Multibase string `json:"multibase"`
	} `json:"members"`
	Step   string          `json:"step"`
	OK     bool            `json:"ok"`
	MS     int64           `json:"ms"`
	Error  string          `json:"error"`
	Detail json.RawMessage `json:"detail"`
	Done   bool            `json:"done"`
}

// mlsSteps are the steps of issue 3's real-client test, with issue 5's
// event streams (from the streams' opening on, bob receives over SSE and
// carol, then dave, over WebSocket), in order. Each step asserts what it
// names inside the harness (decrypted plaintext equals what was sent; the
// removed member's decryption fails and her stream ends; one racing commit
// gets 200 and the other 409 StaleEpoch; a resumed stream carries exactly
// what was missed) and reports ok only if all of it held.
var mlsSteps = []string{
	"publish key packages",
	"create group",
	"add two members with one commit and a Welcome",
	"open event streams: bob over SSE, carol over WebSocket with a ticket",
	"exchange messages that each member decrypts",
	"remove a member, who can no longer decrypt what follows",
	"the removed member's stream stops carrying the conversation",
	"race two commits for the same epoch; exactly one wins",
	"publish group info, which a member fetches",
	"race two adds of one member; only the winning Welcome is delivered",
	"resume each stream from its last cursor; nothing lost, nothing repeated",
}

// TestMLSClientsEndToEnd runs three ts-mls clients against a real gateway
// (cairn_auth with reference atproto tokens, then cairn_delivery), on
// SQLite and on PostgreSQL.
func TestMLSClientsEndToEnd(t *testing.T) {
	backends := []struct {
		name    string
		storage func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return "data_dir " + filepath.Join(t.TempDir(), "data") }},
		{"postgres", func(t *testing.T) string { return "database " + testenv.Postgres(t) }},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			requireMLSHarness(t)
			storage := b.storage(t)
			plc := atprototest.NewPLC(t)
			admin, port := gatewaytest.FreePort(t), gatewaytest.FreePort(t)
			text := strings.NewReplacer(
				"{ADMIN}", strconv.Itoa(admin), "{PORT}", strconv.Itoa(port), "{PLC}", plc.URL, "{STORAGE}", storage,
			).Replace(mlsCaddyfile)
			g := gatewaytest.Start(t, &builder, gatewaytest.Options{
				Caddyfile: text, AdminPort: admin,
				Env: []string{"CAIRN_LOG_HASH_KEY=" + strings.Repeat("e", 40)},
			})
			// The harness mints tokens as it goes; the gateway takes those
			// issued from a second after its replay memory began.
			gatewaytest.FreshIat(time.Now(), time.Second)
			runMLSHarness(t, plc, fmt.Sprintf("http://127.0.0.1:%d", port), g)
		})
	}
}

// runMLSHarness runs e2e.mjs against the gateway at base: it publishes the
// members' DID documents the harness announces, lets it go, and turns each
// step it reports into a subtest.
func runMLSHarness(t *testing.T, plc *atprototest.PLC, base string, g *gatewaytest.Gateway) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "e2e.mjs")
	cmd.Dir = mlsHarnessDir()
	cmd.Env = append(os.Environ(), "CAIRN_GATEWAY="+base, "CAIRN_SERVICE_DID="+serviceDID)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("node e2e.mjs: %v", err)
	}
	waited := false
	wait := func() error {
		if waited {
			return nil
		}
		waited = true
		return cmd.Wait()
	}
	defer func() { _ = wait() }()
	fail := func(format string, args ...any) {
		t.Helper()
		_ = stdin.Close()
		werr := wait()
		t.Fatalf("%s\nharness exit: %v\nharness stderr:\n%s\ngateway log (tail):\n%s",
			fmt.Sprintf(format, args...), werr, stderr.String(), tail(g.Logs(), 4000))
	}

	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 64<<10), 4<<20)
	next := func() (harnessLine, bool) {
		var l harnessLine
		if !lines.Scan() {
			return l, false
		}
		if err := json.Unmarshal(lines.Bytes(), &l); err != nil {
			fail("harness wrote a line that is not JSON: %q", lines.Text())
		}
		return l, true
	}

	first, ok := next()
	if !ok || len(first.Members) != 4 {
		fail("harness did not announce its four members (got %+v)", first)
	}
	for _, m := range first.Members {
		plc.Publish(m.DID, atprototest.MintedKey{Type: "k256", JWTAlg: "ES256K", DID: "did:key:" + m.Multibase, Multibase: m.Multibase})
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		fail("starting the harness: %v", err)
	}

	var done []string
	finished := false
	for {
		l, ok := next()
		if !ok {
			break
		}
		if l.Done {
			finished = true
			break
		}
		done = append(done, l.Step)
		t.Run(l.Step, func(t *testing.T) {
			if !l.OK {
				t.Fatalf("%s", l.Error)
			}
			t.Logf("%d ms: %s", l.MS, l.Detail)
		})
		if !l.OK {
			fail("step %q failed", l.Step)
		}
	}
	_ = stdin.Close()
	if err := wait(); err != nil || !finished {
		fail("harness did not finish cleanly (finished=%v, exit %v)", finished, err)
	}
	if strings.Join(done, "\n") != strings.Join(mlsSteps, "\n") {
		t.Fatalf("harness ran steps\n  %q\nwant\n  %q", done, mlsSteps)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
