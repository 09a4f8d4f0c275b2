// Command cairn-load measures the realtime event streams of a real
// cairn-caddy process: how many concurrent subscribers one node holds, what
// each costs in server memory, and how fast one message fans out to every
// member of a large conversation.
//
// It builds (or takes) the cairn-caddy binary, seeds conversations in a
// fresh SQLite or PostgreSQL database, starts the gateway on loopback with
// a PLC directory the tool serves itself, opens the subscribers over real
// HTTP (SSE, or WebSocket with tickets), sends messages through
// sendMessage and times each delivery from the start of the send to its
// arrival on each stream. It is a benchmark, not a test: see
// docs/realtime.md and docs/benchmarks.md.
//
//	go run ./cmd/cairn-load -subscribers 10000 -members 1000
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// config holds the tool's flags.
type config struct {
	binary      string
	storeKind   string
	pgURL       string
	subscribers int
	members     int
	devices     int
	websocket   bool
	openConc    int
	messages    int
	interval    time.Duration
	sustained   time.Duration
	senders     int
	settle      time.Duration
	profileDir  string
	sourceAddrs int
	verbose     bool
}

func parseFlags(args []string, errOut io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("cairn-load", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.StringVar(&c.binary, "binary", "", "cairn-caddy binary to run (default: go build ./cmd/cairn-caddy into a temp dir)")
	fs.StringVar(&c.storeKind, "store", "sqlite", "database backend: sqlite or postgres")
	fs.StringVar(&c.pgURL, "pg-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "administrative PostgreSQL URL; a fresh database is created beside it and dropped after")
	fs.IntVar(&c.subscribers, "subscribers", 10000, "concurrent event streams to open in total")
	fs.IntVar(&c.members, "members", 1000, "members per conversation; subscribers/(members*devices) conversations are seeded")
	fs.IntVar(&c.devices, "devices", 1, "streams per member (at most the server's per-DID cap, 5)")
	fs.BoolVar(&c.websocket, "websocket", false, "subscribe over WebSocket (subscribeConvoEvents with tickets) instead of SSE")
	fs.IntVar(&c.openConc, "open-concurrency", 64, "streams being opened at once")
	fs.IntVar(&c.messages, "messages", 30, "messages sent one at a time into the first conversation, each awaited on every stream, for the fan-out latency")
	fs.DurationVar(&c.interval, "interval", 200*time.Millisecond, "pause between fan-out messages")
	fs.DurationVar(&c.sustained, "sustained", 10*time.Second, "length of the sustained phase, sending into every conversation (0 skips it)")
	fs.IntVar(&c.senders, "senders", 4, "concurrent senders in the sustained phase")
	fs.DurationVar(&c.settle, "settle", 3*time.Second, "wait after start-up and after connecting before reading the server's RSS")
	fs.StringVar(&c.profileDir, "profile", "", "directory to save the server's heap, goroutine and fan-out CPU profiles in (from the admin endpoint)")
	fs.IntVar(&c.sourceAddrs, "source-addrs", 1, "loopback source addresses to open streams from (127.0.0.1 up), for more streams than one address has ephemeral ports")
	fs.BoolVar(&c.verbose, "v", false, "echo the gateway's logs")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case c.storeKind != "sqlite" && c.storeKind != "postgres":
		return c, fmt.Errorf("-store %q: want sqlite or postgres", c.storeKind)
	case c.members < 1 || c.devices < 1 || c.subscribers < 1:
		return c, fmt.Errorf("-subscribers, -members and -devices must be positive")
	case c.subscribers%(c.members*c.devices) != 0:
		return c, fmt.Errorf("-subscribers %d is not a multiple of -members × -devices (%d)", c.subscribers, c.members*c.devices)
	case c.sourceAddrs < 1 || c.sourceAddrs > maxSourceAddrs:
		return c, fmt.Errorf("-source-addrs %d: want 1 to %d", c.sourceAddrs, maxSourceAddrs)
	case c.openConc < 1 || c.senders < 1:
		return c, fmt.Errorf("-open-concurrency and -senders must be positive")
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if err == flag.ErrHelp {
			return
		}
		fmt.Fprintln(os.Stderr, "cairn-load:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "cairn-load:", err)
		os.Exit(1)
	}
}
