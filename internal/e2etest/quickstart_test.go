package e2etest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/cairn-chat/cairn-caddy/internal/atpauth"
	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/secheaders"
)

// The quick-start tests follow README.md as a newcomer would: they take the
// commands and URLs from its code blocks, not from a copy, so that the
// README stays the literal truth. Two things differ from a newcomer's
// terminal, and only these: the gateway is the binary that `go run
// ./cmd/cairn-caddy` builds, started with the README's arguments; and every
// port the README names is moved to a free one (the same move for the
// command's variables, the listeners' defaults and the URLs), because the
// machine running the tests may already use 8443 or 2019.

// readFile returns a file of the repository.
func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(gatewaytest.RepoRoot(), name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// markdownSection returns the part of a Markdown document from the line
// heading up to the next heading of the same or a higher level.
func markdownSection(t *testing.T, doc, heading string) string {
	t.Helper()
	level := strings.Index(heading, " ")
	lines := strings.Split(doc, "\n")
	start := slices.Index(lines, heading)
	if start < 0 {
		t.Fatalf("no heading %q", heading)
	}
	fenced := false
	for i := start + 1; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], "```") {
			fenced = !fenced
		}
		if h := strings.Index(lines[i], " "); !fenced && h > 0 && h <= level && strings.Trim(lines[i][:h], "#") == "" {
			return strings.Join(lines[start:i], "\n")
		}
	}
	return strings.Join(lines[start:], "\n")
}

// shellLines returns the lines of the ```sh blocks in a Markdown text.
func shellLines(text string) []string {
	var out []string
	in := false
	for line := range strings.SplitSeq(text, "\n") {
		switch {
		case line == "```sh":
			in = true
		case line == "```":
			in = false
		case in && strings.TrimSpace(line) != "":
			out = append(out, line)
		}
	}
	return out
}

// shellCommand is one line of a README code block: its leading variable
// assignments, its words and its trailing comment.
type shellCommand struct {
	env     map[string]string
	words   []string
	comment string
}

var commentSep = regexp.MustCompile(`\s+#\s+`)

func parseShellCommand(t *testing.T, line string) shellCommand {
	t.Helper()
	cmd := shellCommand{env: map[string]string{}}
	code := line
	if loc := commentSep.FindStringIndex(line); loc != nil {
		code, cmd.comment = line[:loc[0]], strings.TrimSpace(line[loc[1]:])
	}
	if strings.ContainsAny(code, `"'\$`+"`") {
		t.Fatalf("README line %q uses shell quoting or expansion, which this test does not parse", line)
	}
	words := strings.Fields(code)
	for len(words) > 0 {
		name, value, ok := strings.Cut(words[0], "=")
		if !ok || !regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`).MatchString(name) {
			break
		}
		cmd.env[name] = value
		words = words[1:]
	}
	cmd.words = words
	return cmd
}

// findCommand returns the one line of lines that contains want.
func findCommand(t *testing.T, lines []string, want string) shellCommand {
	t.Helper()
	var found []string
	for _, l := range lines {
		if strings.Contains(l, want) {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one README command with %q, found %q", want, found)
	}
	return parseShellCommand(t, found[0])
}

// caddyfileVars returns the environment placeholders of a Caddyfile:
// {$NAME} and {$NAME:default}, by name, with their defaults.
func caddyfileVars(caddyfile string) map[string]string {
	vars := map[string]string{}
	for _, m := range regexp.MustCompile(`\{\$([A-Z0-9_]+)(?::([^}]*))?\}`).FindAllStringSubmatch(caddyfile, -1) {
		vars[m[1]] = m[2]
	}
	return vars
}

// readmeGateway is a gateway started the way a README command starts it.
type readmeGateway struct {
	*gatewaytest.Gateway
	// ports maps each port the README names to the free port used instead.
	ports map[string]string
}

// portOf returns the port of a host:port default, or the value itself.
func portOf(addr string) string {
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		return addr[i+1:]
	}
	return addr
}

// startAsREADME runs the gateway as cmd does (`go run ./cmd/cairn-caddy run
// --config <file>`), with a clean CAIRN_ environment plus cmd's variables
// and extra. Every *_PORT variable cmd sets, and every *_PORT or *_ADDR
// default of the Caddyfile that cmd leaves alone, is moved to a free port.
func startAsREADME(t *testing.T, cmd shellCommand, extra map[string]string) *readmeGateway {
	t.Helper()
	want := []string{"go", "run", "./cmd/cairn-caddy", "run", "--config"}
	if len(cmd.words) != len(want)+1 || !slices.Equal(cmd.words[:len(want)], want) {
		t.Fatalf("README command %q is not `go run ./cmd/cairn-caddy run --config <file>`", cmd.words)
	}
	caddyfile := readFile(t, cmd.words[len(want)])

	// A newcomer's shell sets no CAIRN_ variable but the command's.
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "CAIRN_") && !strings.HasPrefix(name, "CAIRN_TEST_") && name != "CAIRN_REQUIRE_SERVICES" {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	g := &readmeGateway{ports: map[string]string{}}
	env := map[string]string{}
	move := func(from string) string {
		if _, ok := g.ports[from]; !ok {
			g.ports[from] = strconv.Itoa(gatewaytest.FreePort(t))
		}
		return g.ports[from]
	}
	for name, value := range cmd.env {
		if strings.HasSuffix(name, "_PORT") {
			value = move(value)
		}
		env[name] = value
	}
	for name, def := range caddyfileVars(caddyfile) {
		if _, set := cmd.env[name]; set || def == "" {
			continue
		}
		switch {
		case strings.HasSuffix(name, "_PORT"):
			env[name] = move(def)
		case strings.HasSuffix(name, "_ADDR"):
			env[name] = "127.0.0.1:" + move(portOf(def))
		}
	}
	for name, value := range extra {
		env[name] = value
	}
	var envList []string
	for name, value := range env {
		envList = append(envList, name+"="+value)
	}
	admin, err := strconv.Atoi(portOf(env["CAIRN_ADMIN_ADDR"]))
	if err != nil {
		t.Fatalf("%s has no {$CAIRN_ADMIN_ADDR:…} admin address the test can move: %v", cmd.words[len(want)], err)
	}
	g.Gateway = gatewaytest.Start(t, &builder, gatewaytest.Options{Caddyfile: caddyfile, Env: envList, AdminPort: admin})
	// Caddy warns at start-up about a file `caddy fmt` would change; a
	// newcomer's first run should show no warning about our own file.
	if strings.Contains(g.Logs(), "input is not formatted") {
		t.Errorf("%s is not formatted as `cairn-caddy fmt` would write it:\n%s", cmd.words[len(want)], g.Logs())
	}
	return g
}

// url rewrites a URL from the README to the ports actually used; a port
// the README's commands do not set fails the test, since the URL would not
// reach the gateway the README started.
func (g *readmeGateway) url(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("README URL %q: %v", raw, err)
	}
	to, ok := g.ports[u.Port()]
	if !ok {
		t.Fatalf("README URL %q uses port %q, on which the gateway started as the README says does not listen (it listens on %v)", raw, u.Port(), g.ports)
	}
	u.Host = u.Hostname() + ":" + to
	return u.String()
}

// waitHTTPS waits until the site at base answers over TLS: Caddy issues
// the internal CA's certificate after start-up.
func waitHTTPS(t *testing.T, g *readmeGateway, client *http.Client, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		// An XRPC path outside the health check's small public burst.
		resp, err := client.Get(base + "/xrpc/_ready")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered: %v\n%s", base, err, g.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReadmeQuickStart starts Caddyfile.example with the README's command
// for an unprivileged user and checks each curl line's answer against the
// comment beside it: health 200, getConvos 401 AuthMissing with the
// security headers, the HTTP→HTTPS redirect keeping the custom port, and
// the metrics on the internal listener. It also checks that the README
// names the admin and metrics listeners' default addresses and the
// variables that move them.
func TestReadmeQuickStart(t *testing.T) {
	readme := readFile(t, "README.md")
	section := markdownSection(t, readme, "## Quick start")
	section = strings.Split(section, "\n### ")[0]
	lines := shellLines(section)
	run := findCommand(t, lines, "--config Caddyfile.example")
	if run.env["CAIRN_HTTPS_PORT"] == "" || run.env["CAIRN_HTTP_PORT"] == "" {
		t.Fatalf("the quick start's command does not move both ports for an unprivileged user: %v", run.env)
	}

	example := readFile(t, "Caddyfile.example")
	vars := caddyfileVars(example)
	for _, name := range []string{"CAIRN_ADMIN_ADDR", "CAIRN_METRICS_ADDR"} {
		if def := vars[name]; def == "" || !strings.Contains(section, "`"+def+"`") || !strings.Contains(section, "`"+name+"`") {
			t.Errorf("the quick start does not name the listener %s (default %q in Caddyfile.example) and its default", name, def)
		}
	}

	g := startAsREADME(t, run, nil)
	client := func(insecure bool) *http.Client {
		return &http.Client{
			Timeout:       10 * time.Second,
			Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: insecure}},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	waitHTTPS(t, g, client(true), "https://localhost:"+g.ports[run.env["CAIRN_HTTPS_PORT"]])

	seen := map[string]bool{}
	metricsPort := portOf(vars["CAIRN_METRICS_ADDR"])
	for _, line := range lines {
		c := parseShellCommand(t, line)
		if len(c.words) == 0 || c.words[0] != "curl" {
			continue
		}
		t.Run(line, func(t *testing.T) {
			insecure, raw := false, ""
			for _, w := range c.words[1:] {
				switch {
				case w == "-k":
					insecure = true
				case w == "-i":
				case strings.HasPrefix(w, "http"):
					raw = w
				default:
					t.Fatalf("curl option %q: this test does not know what it means", w)
				}
			}
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client(insecure).Get(g.url(t, raw))
			if err != nil {
				t.Fatalf("curl %s: %v", raw, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()

			status, claims, _ := strings.Cut(c.comment, " ")
			if want, err := strconv.Atoi(status); err != nil || resp.StatusCode != want {
				t.Fatalf("status %d, README says %q (body %s)", resp.StatusCode, c.comment, body)
			}
			for claim := range strings.SplitSeq(claims, ", ") {
				switch {
				case strings.HasPrefix(claim, "{"):
					if strings.TrimSpace(string(body)) != claim {
						t.Errorf("body %s, README says %s", body, claim)
					}
					if u.Path == "/xrpc/_health" && u.Scheme == "https" {
						seen["health"] = true
					}
				case strings.HasPrefix(claim, "to "):
					want := g.url(t, strings.TrimPrefix(claim, "to "))
					if got := resp.Header.Get("Location"); got != want {
						t.Errorf("Location %q, README says %q (moved to the test's ports: %q)", got, claim, want)
					}
					if lu, _ := url.Parse(want); u.Scheme == "http" && lu.Scheme == "https" && lu.Port() != "" {
						seen["redirect keeps the port"] = true
					}
				case regexp.MustCompile(`^[A-Z][A-Za-z]+$`).MatchString(claim):
					var e struct{ Error, Message string }
					if err := json.Unmarshal(body, &e); err != nil || e.Error != claim || e.Message == "" {
						t.Errorf("body %s is not the XRPC error %s", body, claim)
					}
					if claim == "AuthMissing" && strings.HasSuffix(u.Path, ".getConvos") {
						seen["getConvos AuthMissing"] = true
					}
				case claim == "with the security headers":
					for k, v := range secheaders.Defaults() {
						if got := resp.Header.Get(k); got != v {
							t.Errorf("%s = %q, want %q", k, got, v)
						}
					}
					seen["security headers"] = true
				case claim == "Prometheus metrics":
					if !regexp.MustCompile(`(?m)^# TYPE cairn_[a-z_]+ `).Match(body) {
						t.Errorf("no cairn metrics in:\n%.500s", body)
					}
					if u.Port() == metricsPort && u.Path == "/metrics" {
						seen["metrics on the internal listener"] = true
					}
				default:
					t.Errorf("README claims %q, which this test does not know how to check", claim)
				}
			}
		})
	}
	for _, want := range []string{"health", "getConvos AuthMissing", "security headers", "redirect keeps the port", "metrics on the internal listener"} {
		if !seen[want] {
			t.Errorf("the quick start's curl lines no longer show %s", want)
		}
	}
}

// TestReadmeListsEveryVariable keeps the README's environment table and
// docs/configuration.md complete: every variable that Caddyfile.example or
// Caddyfile.dev reads is documented.
func TestReadmeListsEveryVariable(t *testing.T) {
	readme := readFile(t, "README.md")
	for name := range caddyfileVars(readFile(t, "Caddyfile.example")) {
		if !strings.Contains(readme, "| `"+name+"` |") {
			t.Errorf("Caddyfile.example reads %s, which README.md's environment table lacks", name)
		}
	}
	dev := markdownSection(t, readFile(t, filepath.Join("docs", "configuration.md")), "## Local development")
	for name := range caddyfileVars(readFile(t, "Caddyfile.dev")) {
		if !strings.Contains(dev, "`"+name+"`") {
			t.Errorf("Caddyfile.dev reads %s, which docs/configuration.md's Local development section does not name", name)
		}
	}
}

// TestDevConfigAuthenticatesLocalClients starts Caddyfile.dev with the
// README's command, its PLC URL pointing at a local PLC stand-in, and
// checks that local accounts authenticate with real service-auth tokens (a
// did:plc account on the local PLC and a did:web account served over http
// from this machine), at the URL and for the audience the README gives,
// and that the advertised WebSocket endpoint opens.
func TestDevConfigAuthenticatesLocalClients(t *testing.T) {
	atprototest.RequireHarness(t)
	section := markdownSection(t, readFile(t, "README.md"), "### A local node for client development")
	run := findCommand(t, shellLines(section), "--config Caddyfile.dev")
	if _, ok := run.env["CAIRN_PLC_URL"]; !ok {
		t.Fatalf("the README's development command does not set CAIRN_PLC_URL: %v", run.env)
	}
	field := func(re string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(section)
		if m == nil {
			t.Fatalf("the README's development section has no %s", re)
		}
		return m[1]
	}
	base, aud, wsPrefix := field("`(http://localhost:[0-9]+)`"), field("audience `(did:[^`]+)`"), field("`(ws://localhost:[0-9]+/)…`")

	plc := atprototest.NewPLC(t)
	web := atprototest.NewDIDWeb(t)
	g := startAsREADME(t, run, map[string]string{"CAIRN_PLC_URL": plc.URL})
	base = g.url(t, base)

	// The gateway refuses tokens issued before its replay memory began
	// (at start) plus cairn_auth's leeway, which Caddyfile.dev leaves at
	// its default; a client's tokens are minted later than that.
	const alice = "did:plc:aliceaaaaaaaaaaaaaaaaaaa"
	const (
		getConvos = "blue.catbird.mls.getConvos"
		ticketNS  = "blue.catbird.mls.getSubscriptionTicket"
	)
	now := gatewaytest.FreshIat(time.Now(), atpauth.DefaultLeeway)
	tok := func(key, iss, lxm string) atprototest.Token {
		return atprototest.Token{Key: key, Iss: iss, Aud: aud, Lxm: lxm, Iat: now, Exp: now + 60}
	}
	minted := atprototest.Mint(t,
		[]atprototest.Key{{Name: "alice", Type: "k256"}, {Name: "bob", Type: "p256"}},
		[]atprototest.Token{tok("alice", alice, getConvos), tok("alice", alice, ticketNS), tok("bob", web.DID, getConvos)},
	)
	plc.Publish(alice, minted.Keys["alice"])
	web.Publish(minted.Keys["bob"])
	client := &http.Client{Timeout: 10 * time.Second}
	call := func(method, nsid, token, body string) (*http.Response, []byte) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, base+"/xrpc/"+nsid, rd)
		req.Header.Set("Authorization", "Bearer "+token)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		var resp *http.Response
		var err error
		// The HTTP site may start a moment after the admin API answers.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if resp, err = client.Do(req); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", method, nsid, err, g.Logs())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	for i, who := range []string{"did:plc on the local PLC", "did:web served over http from this machine"} {
		token := minted.Tokens[[]int{0, 2}[i]]
		resp, body := call(http.MethodGet, getConvos, token, "")
		var out struct{ Conversations []json.RawMessage }
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil || out.Conversations == nil {
			t.Errorf("%s: getConvos %d %s, want 200 with a conversations list", who, resp.StatusCode, body)
		}
	}

	resp, body := call(http.MethodPost, ticketNS, minted.Tokens[1], `{}`)
	var ticket struct{ Ticket, Endpoint string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &ticket) != nil {
		t.Fatalf("getSubscriptionTicket: %d %s", resp.StatusCode, body)
	}
	if want := g.url(t, wsPrefix) + "xrpc/blue.catbird.mls.subscribeConvoEvents"; ticket.Endpoint != want {
		t.Fatalf("advertised WebSocket endpoint %q, want %q (the README's %s on the test's port)", ticket.Endpoint, want, wsPrefix)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, ticket.Endpoint+"?ticket="+url.QueryEscape(ticket.Ticket), nil)
	if err != nil {
		t.Fatalf("WebSocket at the advertised endpoint: %v", err)
	}
	conn.Close(websocket.StatusNormalClosure, "")
}
