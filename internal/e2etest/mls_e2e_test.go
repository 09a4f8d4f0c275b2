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
	Pause  string          `json:"pause"`
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

// mlsRestoreSteps are the steps the harness adds when the clients go on
// after a backup restored into a fresh store.
var mlsRestoreSteps = []string{
	"after the restore: the history is intact, sequence numbers included",
	"after the restore: the same clients exchange new messages",
}

// mlsStore is one store a gateway of the test runs on.
type mlsStore struct {
	caddyfile string   // the cairn option naming it
	flags     []string // the same for cairn-caddy backup/restore
}

func sqliteStore(t *testing.T) mlsStore {
	dir := filepath.Join(t.TempDir(), "data")
	return mlsStore{"data_dir " + dir, []string{"--data-dir", dir}}
}

func postgresStore(t *testing.T) mlsStore {
	url := testenv.Postgres(t)
	return mlsStore{"database " + url, []string{"--database", url}}
}

// TestMLSClientsEndToEnd runs three ts-mls clients against a real gateway
// (cairn_auth with reference atproto tokens, then cairn_delivery), on
// SQLite and on PostgreSQL. Then the node is backed up with cairn-caddy
// backup and restored into a fresh store (SQLite→PostgreSQL, the move
// off the embedded database, and PostgreSQL→PostgreSQL), a new gateway
// serves it, and the same clients read their history and go on.
func TestMLSClientsEndToEnd(t *testing.T) {
	backends := []struct {
		name     string
		from, to func(t *testing.T) mlsStore
	}{
		{"sqlite", sqliteStore, postgresStore},
		{"postgres", postgresStore, postgresStore},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			requireMLSHarness(t)
			from := b.from(t)
			plc := atprototest.NewPLC(t)
			// The restored audit log verifies only under the audit key it
			// was written with: the nodes share it, as an operator gives
			// it (or restores the data files with --data-files).
			env := []string{"CAIRN_LOG_HASH_KEY=" + strings.Repeat("e", 40), "CAIRN_AUDIT_KEY=" + strings.Repeat("a", 40)}
			start := func(st mlsStore) (*gatewaytest.Gateway, string) {
				return startMLSGateway(t, mlsCaddyfile, plc, st, env)
			}
			g, base := start(from)
			restore := func() string {
				g.Stop()
				to, archives := b.to(t), t.TempDir()
				keyEnv := "CAIRN_BACKUP_KEY=" + strings.Repeat("b", 64)
				for _, args := range [][]string{
					append([]string{"backup", "--to", archives}, from.flags...),
					append([]string{"restore", "--from", archives}, to.flags...),
				} {
					cmd := exec.Command(builder.Binary(t), args...)
					// The commands run with the node's environment (its
					// audit key audits the backup and the restore).
					cmd.Env = append(append(os.Environ(), env...), keyEnv)
					if out, err := cmd.CombinedOutput(); err != nil {
						t.Fatalf("cairn-caddy %s: %v\n%s", args[0], err, out)
					}
				}
				g2, base2 := start(to)
				g = g2
				// The new gateway refuses tokens issued before its replay
				// memory began plus its leeway (1s): wait until a token
				// minted now is fresh to it.
				gatewaytest.FreshIat(time.Now(), time.Second)
				return base2
			}
			runMLSHarness(t, plc, base, g, restore)
		})
	}
}

// runMLSHarness runs e2e.mjs against the gateway at base: it publishes the
// members' DID documents the harness announces, lets it go, and turns each
// step it reports into a subtest.
//
// With restore set, the harness pauses after its steps; restore backs the
// node up, restores it into a fresh store behind a new gateway and returns
// that gateway's URL, and the harness goes on there (mlsRestoreSteps).
func runMLSHarness(t *testing.T, plc *atprototest.PLC, base string, g *gatewaytest.Gateway, restore func() string) {
	t.Helper()
	want := mlsSteps
	if restore != nil {
		want = append(append([]string(nil), mlsSteps...), mlsRestoreSteps...)
	}
	runHarnessScript(t, harnessScript{name: "e2e.mjs", members: 4, steps: want}, plc, base, g, restore)
}

// harnessScript is one scenario script of test/mls: its file, how many
// members it announces, and the steps it must report, in order.
type harnessScript struct {
	name    string
	members int
	steps   []string
	// pds, if set, is named as every member's PDS in its DID document.
	pds *atprototest.PDS
	// seed, if set, is called with the members' DIDs by name before the
	// go-ahead (to make block records, say).
	seed func(did map[string]string)
}

// runHarnessScript runs script against the gateway at base (see
// runMLSHarness).
func runHarnessScript(t *testing.T, script harnessScript, plc *atprototest.PLC, base string, g *gatewaytest.Gateway, restore func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script.name)
	cmd.Dir = mlsHarnessDir()
	cmd.Env = append(os.Environ(), "CAIRN_GATEWAY="+base, "CAIRN_SERVICE_DID="+serviceDID)
	if restore != nil {
		cmd.Env = append(cmd.Env, "CAIRN_RESTORE_PHASE=1")
	}
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
		t.Fatalf("node %s: %v", script.name, err)
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
	if !ok || len(first.Members) != script.members {
		fail("harness did not announce its %d members (got %+v)", script.members, first)
	}
	dids := map[string]string{}
	for _, m := range first.Members {
		dids[m.Name] = m.DID
		if script.pds != nil {
			plc.PublishDocument(m.DID, atprototest.DIDDocumentWithPDS(m.DID, m.Multibase, script.pds.URL))
			continue
		}
		plc.Publish(m.DID, atprototest.MintedKey{Type: "k256", JWTAlg: "ES256K", DID: "did:key:" + m.Multibase, Multibase: m.Multibase})
	}
	if script.seed != nil {
		script.seed(dids)
	}
	// The gateway refuses tokens issued before its replay memory began
	// plus its leeway (1s); it began before now, so wait until a token
	// minted now is fresh to it.
	gatewaytest.FreshIat(time.Now(), time.Second)
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
		if l.Pause != "" {
			if restore == nil {
				fail("harness paused without a restore phase")
			}
			if _, err := io.WriteString(stdin, restore()+"\n"); err != nil {
				fail("resuming the harness: %v", err)
			}
			continue
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
	if want := script.steps; strings.Join(done, "\n") != strings.Join(want, "\n") {
		t.Fatalf("harness ran steps\n  %q\nwant\n  %q", done, script.steps)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// startMLSGateway starts a gateway on caddyfile (mlsCaddyfile or a variant
// of it) with free admin and site ports, plc as its PLC directory and st as
// its store, and returns it with the site's base URL.
func startMLSGateway(t *testing.T, caddyfile string, plc *atprototest.PLC, st mlsStore, env []string) (*gatewaytest.Gateway, string) {
	t.Helper()
	admin, port := gatewaytest.FreePort(t), gatewaytest.FreePort(t)
	text := strings.NewReplacer(
		"{ADMIN}", strconv.Itoa(admin), "{PORT}", strconv.Itoa(port), "{PLC}", plc.URL, "{STORAGE}", st.caddyfile,
	).Replace(caddyfile)
	g := gatewaytest.Start(t, &builder, gatewaytest.Options{Caddyfile: text, AdminPort: admin, Env: env})
	return g, fmt.Sprintf("http://127.0.0.1:%d", port)
}
