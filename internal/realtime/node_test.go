package realtime

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/store/postgres"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

func TestChooseNotifier(t *testing.T) {
	for _, tc := range []struct {
		configured       string
		shared, hasRedis bool
		want, wantErr    string
	}{
		{"", false, false, NotifierLocal, ""},
		{"", false, true, NotifierLocal, ""},
		{"postgres", false, false, "", "SQLite"},
		{"redis", false, true, "", "SQLite"},
		{"", true, false, NotifierPostgres, ""},
		{"postgres", true, true, NotifierPostgres, ""},
		{"redis", true, true, NotifierRedis, ""},
		{"redis", true, false, "", "redis option"},
		{"kafka", true, true, "", "kafka"},
	} {
		got, err := ChooseNotifier(tc.configured, tc.shared, tc.hasRedis)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%+v: %q, %v; want an error naming %q", tc, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%+v: %q, %v; want %q", tc, got, err, tc.want)
		}
	}
}

// TestTicketKeyIsTheDerivationNodesAlreadyUse pins the derivation: nodes of
// one cluster running different releases must agree on the ticket key.
func TestTicketKeyIsTheDerivationNodesAlreadyUse(t *testing.T) {
	secret := []byte(strings.Repeat("k", 64))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("cairn realtime ticket key v1"))
	if got := TicketKey(secret); !hmac.Equal(got, mac.Sum(nil)) {
		t.Fatal("TicketKey changed its derivation")
	}
	if hmac.Equal(TicketKey(secret), secret[:32]) {
		t.Fatal("the ticket key is the secret itself")
	}
}

// TestStartNodeTicketsWorkAcrossNodes starts two nodes on one PostgreSQL
// with the LISTEN/NOTIFY notifier and one secret: a ticket issued by one
// is redeemed by the other (pg_notifier_test covers the wake-ups).
func TestStartNodeTicketsWorkAcrossNodes(t *testing.T) {
	url := testenv.Postgres(t)
	st, err := postgres.Open(t.Context(), postgres.Config{URL: url})
	testenv.Must(t, err, "open postgres")
	t.Cleanup(func() { st.Close() })
	secret := []byte(strings.Repeat("s", 64))
	start := func() *Node {
		// Each node remembers tickets in its own memory, which begins when
		// it starts: a ticket from another node must be issued a skew later.
		n, err := StartNode(t.Context(), NodeConfig{Store: st, Notifier: NotifierPostgres, PostgresURL: url, Secret: secret, TicketSkew: time.Millisecond})
		testenv.Must(t, err, "start node")
		t.Cleanup(func() { n.Close() })
		return n
	}
	a, c := start(), start()
	time.Sleep(2 * time.Millisecond)
	ticket, _, err := a.Tickets.Issue(caller.Identity{DID: "did:plc:alice"}, "")
	testenv.Must(t, err, "issue")
	got, err := c.Tickets.Open(ticket)
	testenv.Must(t, err, "open on the other node")
	testenv.Must(t, c.Tickets.Redeem(context.Background(), got), "redeem on the other node")
	if got.Identity.DID != "did:plc:alice" {
		t.Fatalf("redeemed %+v", got)
	}
}

func TestStartNodeRefusesWhatItCannotRun(t *testing.T) {
	st := backends()[0].open(t, time.Now)
	if _, err := StartNode(t.Context(), NodeConfig{Store: st, Secret: []byte("short")}); err == nil {
		t.Error("a node with a short secret started")
	}
	if _, err := StartNode(t.Context(), NodeConfig{Store: st, Notifier: "kafka", Secret: make([]byte, 32)}); err == nil {
		t.Error("a node with an unknown notifier started")
	}
	if _, err := StartNode(t.Context(), NodeConfig{Notifier: NotifierLocal, Secret: make([]byte, 32)}); err == nil {
		t.Error("a node without a store started")
	}
	n, err := StartNode(t.Context(), NodeConfig{Store: st, Notifier: NotifierLocal, Secret: make([]byte, 32)})
	testenv.Must(t, err, "start a local node")
	testenv.Must(t, n.Close(), "close")
}
