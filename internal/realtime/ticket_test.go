package realtime

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/atpauth"
	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func TestTickets(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	tk, err := NewTickets(TicketConfig{Key: testKey, Now: clk.Now})
	testenv.Must(t, err, "new tickets")
	id := caller.Identity{DID: alice, DeviceID: "phone"}

	ticket, exp, err := tk.Issue(id, "c1")
	testenv.Must(t, err, "issue")
	if exp.Sub(clk.Now()) != DefaultTicketTTL {
		t.Errorf("expires %v after issue, want %v", exp.Sub(clk.Now()), DefaultTicketTTL)
	}
	got, err := tk.Redeem(ctx, ticket)
	testenv.Must(t, err, "redeem")
	if got.Identity != id || got.ConvoID != "c1" {
		t.Errorf("redeemed %+v", got)
	}
	if _, err := tk.Redeem(ctx, ticket); !is(err, ErrTicketReplayed) {
		t.Errorf("second redeem: %v, want ErrTicketReplayed", err)
	}

	late, _, _ := tk.Issue(id, "")
	clk.Advance(DefaultTicketTTL)
	if _, err := tk.Redeem(ctx, late); !is(err, ErrTicketExpired) {
		t.Errorf("redeem at expiry: %v, want ErrTicketExpired", err)
	}

	other, _ := NewTickets(TicketConfig{Key: []byte(strings.Repeat("k", 32)), Now: clk.Now})
	foreign, _, _ := other.Issue(id, "")
	fresh, _, _ := tk.Issue(id, "")
	parts := strings.Split(fresh, ".")
	forgedSub, _, _ := tk.Issue(caller.Identity{DID: bob}, "")
	for name, bad := range map[string]string{
		"other key":      foreign,
		"empty":          "",
		"two parts":      parts[0] + "." + parts[1],
		"swapped claims": parts[0] + "." + strings.Split(forgedSub, ".")[1] + "." + parts[2],
		"alg none":       "eyJhbGciOiJub25lIn0." + parts[1] + ".",
		"too long":       strings.Repeat("a", 5000),
	} {
		if _, err := tk.Redeem(ctx, bad); !is(err, ErrInvalidTicket) {
			t.Errorf("%s: %v, want ErrInvalidTicket", name, err)
		}
	}
	if _, err := tk.Redeem(ctx, fresh); err != nil {
		t.Errorf("a valid ticket after refusals: %v", err)
	}

	if _, err := NewTickets(TicketConfig{Key: []byte("short")}); err == nil {
		t.Error("a short key was accepted")
	}
}

func TestMemoryReplayStore(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := NewMemoryReplayStore(clk.Now)
	exp := clk.Now().Add(time.Minute)
	if ok, _ := m.Remember(ctx, "a", exp); !ok {
		t.Fatal("first claim refused")
	}
	if ok, _ := m.Remember(ctx, "a", exp); ok {
		t.Fatal("second claim accepted")
	}
	clk.Advance(time.Minute)
	if ok, _ := m.Remember(ctx, "a", clk.Now().Add(time.Minute)); !ok {
		t.Fatal("claim after expiry refused")
	}
}

// TestTicketsAcrossNodes redeems a ticket on one node and replays it on
// another, both sharing atpauth's Redis replay store.
func TestTicketsAcrossNodes(t *testing.T) {
	ctx := context.Background()
	client, prefix := testenv.Redis(t)
	node := func() *Tickets {
		tk, err := NewTickets(TicketConfig{Key: testKey, Replay: &atpauth.RedisReplayStore{Client: client, Prefix: prefix}})
		testenv.Must(t, err, "tickets")
		return tk
	}
	a, b := node(), node()
	ticket, _, err := a.Issue(caller.Identity{DID: alice}, "")
	testenv.Must(t, err, "issue")
	if _, err := a.Redeem(ctx, ticket); err != nil {
		t.Fatalf("redeem on A: %v", err)
	}
	if _, err := b.Redeem(ctx, ticket); !is(err, ErrTicketReplayed) {
		t.Errorf("replay on B: %v, want ErrTicketReplayed", err)
	}
}
