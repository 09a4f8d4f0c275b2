package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/portlease"
	"github.com/cairn-chat/cairn-caddy/internal/realtime"
)

// caddyfileTemplate is the gateway under test: plain HTTP on loopback, the
// cairn app in development mode resolving DIDs through the tool's PLC
// directory, service auth with an in-memory replay store, and the delivery
// service with its event streams. The WebSocket stream authenticates by
// ticket, so it sits outside cairn_auth, as in Caddyfile.example. The
// node's stream cap is raised to what the run opens. Arguments: admin
// port, PLC URL, data dir, database line, stream cap, site port.
const caddyfileTemplate = `{
	admin 127.0.0.1:%d
	cairn {
		mode development
		plc_url %s
		data_dir %s
		%s
		streams {
			max %d
		}
	}
}
http://127.0.0.1:%d {
	handle /xrpc/blue.catbird.mls.subscribeConvoEvents {
		cairn_delivery
	}
	route /xrpc/* {
		cairn_auth {
			service_did ` + serviceDID + `
			replay memory
			leeway ` + tokenLeeway + `
		}
		cairn_delivery
		error 501
	}
}
`

// serviceDID is the audience the tool's tokens name.
const serviceDID = "did:web:gateway.load.test"

// tokenLeeway is the gateway's cairn_auth leeway. The gateway refuses tokens
// issued before its replay memory began (at its start) plus the leeway, so
// the tool waits that long after the start before minting (startGateway).
const tokenLeeway = "1s"

// gateway is a running cairn-caddy child process.
type gateway struct {
	cmd       *exec.Cmd
	logs      *logBuffer
	done      chan struct{}
	base      string // http://127.0.0.1:<port>
	adminBase string
	// ports are the site and admin ports' leases (package portlease),
	// released once the child has ended, so no outgoing connection or
	// other run takes them between the lease and the child's bind.
	ports []*portlease.Lease
}

// gatewayConfig describes the child process.
type gatewayConfig struct {
	binary  string
	home    string
	plcURL  string
	dbURL   string // empty: SQLite in home/data
	env     []string
	verbose bool
	// maxStreams is the node's cap on open streams (at least the default).
	maxStreams int
}

// dataDir is where the gateway keeps its SQLite database.
func (c gatewayConfig) dataDir() string { return filepath.Join(c.home, "data") }

// startGateway writes the Caddyfile and runs cairn-caddy on it until it
// answers on its admin endpoint.
func startGateway(ctx context.Context, cfg gatewayConfig) (*gateway, error) {
	site, err := portlease.Take()
	if err != nil {
		return nil, fmt.Errorf("lease the site port: %w", err)
	}
	admin, err := portlease.Take()
	if err != nil {
		site.Release()
		return nil, fmt.Errorf("lease the admin port: %w", err)
	}
	sitePort, adminPort := site.Port(), admin.Port()
	db := ""
	if cfg.dbURL != "" {
		db = "database " + cfg.dbURL
	}
	text := fmt.Sprintf(caddyfileTemplate, adminPort, cfg.plcURL, cfg.dataDir(), db, max(cfg.maxStreams, realtime.DefaultMaxConnections), sitePort)
	path := filepath.Join(cfg.home, "Caddyfile")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		site.Release()
		admin.Release()
		return nil, fmt.Errorf("write Caddyfile: %w", err)
	}
	g := &gateway{
		logs:      &logBuffer{},
		done:      make(chan struct{}),
		base:      fmt.Sprintf("http://127.0.0.1:%d", sitePort),
		adminBase: fmt.Sprintf("http://127.0.0.1:%d", adminPort),
		ports:     []*portlease.Lease{site, admin},
	}
	g.cmd = exec.Command(cfg.binary, "run", "--config", path, "--adapter", "caddyfile")
	g.cmd.Env = append(os.Environ(),
		"HOME="+cfg.home,
		"XDG_DATA_HOME="+filepath.Join(cfg.home, "xdg-data"),
		"XDG_CONFIG_HOME="+filepath.Join(cfg.home, "xdg-config"),
	)
	g.cmd.Env = append(g.cmd.Env, cfg.env...)
	g.cmd.Stdout = g.logs
	g.cmd.Stderr = g.logs
	if cfg.verbose {
		g.logs.tee = os.Stderr
	}
	if err := g.cmd.Start(); err != nil {
		site.Release()
		admin.Release()
		return nil, fmt.Errorf("start %s: %w", cfg.binary, err)
	}
	go func() {
		_ = g.cmd.Wait()
		for _, l := range g.ports {
			l.Release()
		}
		close(g.done)
	}()

	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-g.done:
			return nil, fmt.Errorf("cairn-caddy exited during start-up:\n%s", g.logs.String())
		case <-ctx.Done():
			g.stop()
			return nil, ctx.Err()
		default:
		}
		if resp, err := client.Get(g.adminBase + "/config/"); err == nil {
			resp.Body.Close()
			return g, g.awaitReplayMemory(ctx, time.Now())
		}
		if time.Now().After(deadline) {
			g.stop()
			return nil, fmt.Errorf("cairn-caddy did not answer on %s within 60 s:\n%s", g.adminBase, g.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pid returns the child's process id.
func (g *gateway) pid() int { return g.cmd.Process.Pid }

// exited reports whether the child has ended.
func (g *gateway) exited() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// stop ends the child (SIGTERM, then SIGKILL after 10 s) and waits for it.
func (g *gateway) stop() {
	if g.exited() {
		return
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.done
	}
}

// buildGateway builds ./cmd/cairn-caddy of the module in dir into out.
func buildGateway(ctx context.Context, dir, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/cairn-caddy")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/cairn-caddy: %w\n%s", err, b)
	}
	return nil
}

// moduleRoot finds the directory holding go.mod, from the working
// directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory; run from the repository or pass -binary")
		}
		dir = parent
	}
}

// logBuffer keeps what the child writes, optionally echoing it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	tee *os.File
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tee != nil {
		_, _ = b.tee.Write(p)
	}
	// Keep the tail only: a long run must not grow the tool's memory.
	if b.buf.Len() > 1<<20 {
		tail := append([]byte(nil), b.buf.Bytes()[b.buf.Len()-(256<<10):]...)
		b.buf.Reset()
		b.buf.Write(tail)
	}
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// awaitReplayMemory waits until tokens the tool mints (iat in whole seconds)
// are issued at least tokenLeeway after ready, when the gateway's replay
// memory had begun.
func (g *gateway) awaitReplayMemory(ctx context.Context, ready time.Time) error {
	leeway, err := time.ParseDuration(tokenLeeway)
	if err != nil {
		return err
	}
	for {
		sec := time.Now().Truncate(time.Second)
		if !sec.Before(ready.Add(leeway)) {
			return nil
		}
		select {
		case <-ctx.Done():
			g.stop()
			return ctx.Err()
		case <-time.After(time.Until(sec.Add(time.Second))):
		}
	}
}
