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
	"fmt"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
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
	// AdminPort is the admin API port the Caddyfile configures; Start waits
	// for it to answer. When zero, Start waits for ReadyURL instead.
	AdminPort int
	// ReadyURL, if set, must answer (any status) before Start returns.
	ReadyURL string
}

// Gateway is a running cairn-caddy process.
type Gateway struct {
	cmd  *exec.Cmd
	logs *testenv.SyncBuffer
	done chan struct{}
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
	g := &Gateway{logs: &testenv.SyncBuffer{}, done: make(chan struct{}), Home: home}
	g.cmd = exec.Command(bin, "run", "--config", cfg, "--adapter", "caddyfile")
	g.cmd.Dir = RepoRoot()
	g.cmd.Env = append(os.Environ(),
		"HOME="+home,
		"XDG_DATA_HOME="+filepath.Join(home, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(home, "config"),
	)
	g.cmd.Env = append(g.cmd.Env, opts.Env...)
	g.cmd.Stdout = g.logs
	g.cmd.Stderr = g.logs
	if err := g.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting cairn-caddy: %w", err)
	}
	go func() { _ = g.cmd.Wait(); close(g.done) }()
	t.Cleanup(g.Stop)

	ready := opts.ReadyURL
	if opts.AdminPort != 0 {
		ready = fmt.Sprintf("http://127.0.0.1:%d/config/", opts.AdminPort)
	}
	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-g.done:
			return nil, fmt.Errorf("cairn-caddy exited during start-up:\n%s", g.Logs())
		default:
		}
		if ready != "" {
			if resp, err := client.Get(ready); err == nil {
				resp.Body.Close()
				return g, nil
			}
		}
		if time.Now().After(deadline) {
			g.Stop()
			return nil, fmt.Errorf("cairn-caddy did not become ready at %s:\n%s", ready, g.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Logs returns everything the process has written so far.
func (g *Gateway) Logs() string { return g.logs.String() }

// Stop ends the process (SIGTERM, then SIGKILL after 10 s) and waits for it.
func (g *Gateway) Stop() {
	select {
	case <-g.done:
		return
	default:
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.done
	}
}

// Kill ends the process with SIGKILL, as a crash or the OOM killer would:
// no shutdown runs. It waits for the process to be gone.
func (g *Gateway) Kill() {
	select {
	case <-g.done:
		return
	default:
	}
	_ = g.cmd.Process.Kill()
	<-g.done
}

// Reload applies a new Caddyfile through the admin API, as `caddy reload`
// does.
func (g *Gateway) Reload(t testing.TB, adminPort int, caddyfile string) {
	t.Helper()
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
