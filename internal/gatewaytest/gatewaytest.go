// Package gatewaytest runs real cairn-caddy processes for integration tests:
// it builds the binary once per test binary, starts it on a Caddyfile with
// free loopback ports and an isolated home directory, captures everything it
// logs, and stops it. Tests talk to it over real HTTP, as clients and
// operators do.
//
// It is imported only from tests.
package gatewaytest

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// Builder builds the cairn-caddy binary once and hands out its path.
type Builder struct {
	// Flags are extra `go build` flags (-trimpath, -tags, -ldflags), for
	// tests that need binaries built another way, such as the upgrade
	// test's two versions.
	Flags []string
	// Path, if set, is a binary to use as it is: nothing is built.
	Path string

	once sync.Once
	dir  string
	path string
	err  error
}

// Binary returns the path of a freshly built cairn-caddy, building it on the
// first call.
func (b *Builder) Binary(t testing.TB) string {
	t.Helper()
	if b.Path != "" {
		return b.Path
	}
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "cairn-caddy-bin-")
		if b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "cairn-caddy")
		args := append(append([]string{"build"}, b.Flags...), "-o", b.path, "./cmd/cairn-caddy")
		cmd := exec.Command("go", args...)
		cmd.Dir = RepoRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// Cleanup removes the built binary; call it from TestMain after m.Run.
func (b *Builder) Cleanup() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// RepoRoot returns the repository root (the directory holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// FreePort returns a port for the gateway (or another process the test
// starts) to listen on, leased until the test ends: see testenv.Port.
func FreePort(t testing.TB) int {
	t.Helper()
	return testenv.Port(t)
}

// Options describe one gateway process.
type Options struct {
	// Caddyfile is the configuration text.
	Caddyfile string
	// Env adds environment variables (KEY=value).
	Env []string
	// Home is the process's HOME and XDG base; a fresh temp dir when empty.
	// Reuse one across restarts to keep the data directory.
	Home string
	// AdminPort is the admin API port the Caddyfile configures. Start waits
	// for it to answer, reads the running configuration from it and then
	// waits until every TCP address an HTTP server of that configuration
	// listens on accepts connections: the admin endpoint answers while the
	// apps are still provisioning, before any site listens. When zero,
	// Start waits for ReadyURL instead.
	AdminPort int
	// ReadyURL, if set and AdminPort is zero, must answer (any status)
	// before Start returns.
	ReadyURL string
	// AnswerURLs must each answer an HTTP request (with any status) before
	// Start returns, after the listeners accept: a site's health endpoint,
	// or any path of a TLS site, which answers only once its certificate is
	// issued (the internal CA issues asynchronously after start).
	// Certificates are not verified.
	AnswerURLs []string
	// ReadyTimeout bounds the whole wait; 60 s when zero.
	ReadyTimeout time.Duration
}

// Gateway is a running cairn-caddy process.
type Gateway struct {
	proc *testenv.Process
	logs *testenv.SyncBuffer
	Home string
}

// Start runs cairn-caddy with opts and waits until it serves. The process is
// stopped when the test ends.
func Start(t testing.TB, b *Builder, opts Options) *Gateway {
	t.Helper()
	g, err := start(t, b, opts)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// StartErr runs cairn-caddy like Start but returns the failure (with the
// process output) instead of failing the test, for tests that expect a
// configuration to be refused.
func StartErr(t testing.TB, b *Builder, opts Options) (*Gateway, error) {
	t.Helper()
	return start(t, b, opts)
}

func start(t testing.TB, b *Builder, opts Options) (*Gateway, error) {
	bin := b.Binary(t)
	home := opts.Home
	if home == "" {
		home = t.TempDir()
	}
	cfg := filepath.Join(home, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(opts.Caddyfile), 0o600); err != nil {
		return nil, err
	}
	g := &Gateway{logs: &testenv.SyncBuffer{}, Home: home}
	cmd := exec.Command(bin, "run", "--config", cfg, "--adapter", "caddyfile")
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(),
		"HOME="+home,
		"XDG_DATA_HOME="+filepath.Join(home, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(home, "config"),
	)
	cmd.Env = append(cmd.Env, opts.Env...)
	cmd.Stdout = g.logs
	cmd.Stderr = g.logs
	var err error
	// The process (and anything it starts) is stopped when the test ends,
	// and killed by the kernel if the test binary dies.
	if g.proc, err = testenv.StartProcess(t, cmd); err != nil {
		return nil, fmt.Errorf("starting cairn-caddy: %w", err)
	}

	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	if err := g.awaitReady(opts, time.Now().Add(timeout)); err != nil {
		g.Stop()
		return nil, err
	}
	return g, nil
}

// awaitReady waits, until deadline, for the admin endpoint (or ReadyURL),
// then every site listener, then AnswerURLs. Its error names the step that
// did not finish, the last failure seen and the process output.
func (g *Gateway) awaitReady(opts Options, deadline time.Time) error {
	client := &http.Client{
		// Generous per attempt: a loaded machine answers slowly, and an
		// attempt cut short would be tried again until the deadline.
		Timeout: 5 * time.Second,
		// Readiness only: the node's own CA signs its sites in tests.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec
	}
	defer client.CloseIdleConnections()
	// wait polls check until it succeeds, the process exits or the deadline
	// passes.
	wait := func(what string, check func() error) error {
		for {
			err := check()
			if err == nil {
				return nil
			}
			select {
			case <-g.proc.Done():
				logs := g.Logs()
				hint := ""
				if strings.Contains(logs, "address already in use") {
					hint = " (a port it was given was taken: lease ports with FreePort)"
				}
				return fmt.Errorf("cairn-caddy exited during start-up, waiting for %s%s:\n%s", what, hint, logs)
			default:
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("cairn-caddy was not ready in time: %s: %v\n%s", what, err, g.Logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	answers := func(url string) func() error {
		return func() error {
			resp, err := client.Get(url)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			return resp.Body.Close()
		}
	}
	if opts.AdminPort != 0 {
		config := fmt.Sprintf("http://127.0.0.1:%d/config/", opts.AdminPort)
		var listeners []string
		if err := wait("the admin endpoint at "+config, func() error {
			var err error
			listeners, err = siteListeners(client, config)
			return err
		}); err != nil {
			return err
		}
		for _, addr := range listeners {
			if err := wait("the site listener "+addr, func() error {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err == nil {
					c.Close()
				}
				return err
			}); err != nil {
				return err
			}
		}
	} else if opts.ReadyURL != "" {
		if err := wait(opts.ReadyURL, answers(opts.ReadyURL)); err != nil {
			return err
		}
	}
	for _, url := range opts.AnswerURLs {
		if err := wait(url, answers(url)); err != nil {
			return err
		}
	}
	return nil
}

// siteListeners reads the running configuration from the admin API at url
// and returns, for its HTTP servers, the loopback addresses to dial for each
// TCP address they listen on.
func siteListeners(client *http.Client, url string) ([]string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var config struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen []string `json:"listen"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&config); err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	var addrs []string
	for _, s := range config.Apps.HTTP.Servers {
		for _, l := range s.Listen {
			a, err := dialAddrs(l)
			if err != nil {
				return nil, err
			}
			addrs = append(addrs, a...)
		}
	}
	return addrs, nil
}

// dialAddrs turns one Caddy listen address ("[network/]host:port[-port]")
// into the addresses to dial: a wildcard host is dialled on loopback, and
// networks other than TCP (unix sockets, inherited descriptors, UDP) are
// left out.
func dialAddrs(listen string) ([]string, error) {
	network, addr := "tcp", listen
	if i := strings.Index(listen, "/"); i >= 0 {
		network, addr = listen[:i], listen[i+1:]
	}
	if network != "tcp" && network != "tcp4" && network != "tcp6" {
		return nil, nil
	}
	host, ports, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", listen, err)
	}
	switch host {
	case "", "0.0.0.0", "::":
		host = "127.0.0.1"
		if network == "tcp6" {
			host = "::1"
		}
	}
	first, last, isRange := strings.Cut(ports, "-")
	if !isRange {
		last = first
	}
	lo, err := strconv.Atoi(first)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: port: %w", listen, err)
	}
	hi, err := strconv.Atoi(last)
	if err != nil || hi < lo {
		return nil, fmt.Errorf("listen address %q: port range %q", listen, ports)
	}
	var out []string
	for p := lo; p <= hi; p++ {
		out = append(out, net.JoinHostPort(host, strconv.Itoa(p)))
	}
	return out, nil
}

// Logs returns everything the process has written so far.
func (g *Gateway) Logs() string { return g.logs.String() }

// Stop ends the process (SIGTERM, then SIGKILL after testenv.StopGrace)
// and waits for it.
func (g *Gateway) Stop() { g.proc.Stop(testenv.StopGrace) }

// Kill ends the process with SIGKILL, as a crash or the OOM killer would:
// no shutdown runs. It waits for the process to be gone.
func (g *Gateway) Kill() { g.proc.Kill() }

// Reload applies a new Caddyfile through the admin API, as `caddy reload`
// does, and returns once the old configuration's listening sockets are
// closed (on Linux, from /proc/net/tcp): until then the kernel may hand a
// new connection to the outgoing server, which closes it unanswered, and
// a test's first request after the reload sees EOF (docs/realtime.md,
// "Reloads", for what clients do about it). It then drops http.DefaultClient's idle connections: the old
// servers closed theirs as they stopped, and until the client's reader
// notices (late, on a loaded machine) it may hand one out again, where a
// POST fails with EOF (net/http resends only replayable requests). A test
// with a client of its own closes its idle connections itself.
func (g *Gateway) Reload(t testing.TB, adminPort int, caddyfile string) {
	t.Helper()
	listeners, err := siteListeners(http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/config/", adminPort))
	if err != nil {
		t.Fatalf("reload: the running configuration's listeners: %v", err)
	}
	ports, err := listenerPorts(listeners)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	before, _ := listeningSockets(ports)
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/load", adminPort), strings.NewReader(caddyfile))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var body bytes.Buffer
		_, _ = body.ReadFrom(resp.Body)
		t.Fatalf("reload: %s: %s", resp.Status, body.String())
	}
	if err := waitForOldListeners(before, 30*time.Second); err != nil {
		t.Fatalf("reload: %v", err)
	}
	http.DefaultClient.CloseIdleConnections()
}

// FreshIat waits until a token issued now has an iat (whole seconds) at
// least leeway past since, and returns that iat. A gateway refuses tokens
// issued before its replay memory began plus its leeway
// (atpauth.ErrIssuedBeforeReplayMemory); with the memory store that memory
// begins before the gateway serves, so since may be the moment Start
// returned.
func FreshIat(since time.Time, leeway time.Duration) int64 {
	for {
		now := time.Now()
		sec := now.Truncate(time.Second)
		if !sec.Before(since.Add(leeway)) {
			return sec.Unix()
		}
		time.Sleep(time.Until(sec.Add(time.Second)))
	}
}
