package realtime_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairn-chat/cairn-caddy/internal/delivery"
	"github.com/cairn-chat/cairn-caddy/internal/realtime"
	"github.com/cairn-chat/cairn-caddy/internal/store/sqlite"
)

// Example wires the hub to the delivery service and serves the three
// realtime methods, as the cairn app and cairn_delivery would.
func Example() {
	dir, _ := os.MkdirTemp("", "cairn-example")
	defer os.RemoveAll(dir)
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(dir, "cairn.db")})
	if err != nil {
		panic(err)
	}
	defer st.Close()

	// Once per process (the cairn app), so reloads keep open streams.
	// On PostgreSQL: Notifier: a *realtime.PGNotifier. Whether cursors are
	// ordered is read from the store's traits.
	hub, err := realtime.New(realtime.Config{Store: st})
	if err != nil {
		panic(err)
	}
	defer hub.Close()
	tickets, err := realtime.NewTickets(realtime.TicketConfig{Key: []byte("a 32-byte key derived from secrets")})
	if err != nil {
		panic(err)
	}

	// Per handler: every committed write wakes the hub.
	svc, err := delivery.New(delivery.Config{Store: st, OnChange: func(_ context.Context, id string) { hub.Notify(id) }})
	if err != nil {
		panic(err)
	}
	rt, err := realtime.NewServer(realtime.ServerConfig{Hub: hub, Tickets: tickets})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	// streamConvoEvents and getSubscriptionTicket sit behind cairn_auth;
	// subscribeConvoEvents authenticates by its ticket instead.
	mux.Handle("/xrpc/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nsid, _ := strings.CutPrefix(r.URL.Path, "/xrpc/")
		if rt.Handles(nsid) {
			rt.ServeHTTP(w, r)
			return
		}
		svc.ServeHTTP(w, r)
	}))
	_ = mux
	// Output:
}
