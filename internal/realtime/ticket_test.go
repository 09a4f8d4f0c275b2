package realtime

import (
	"context"
	"encoding/base64"
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
	redeem := func(ticket string) (Ticket, error) {
		t.Helper()
		opened, err := tk.Open(ticket)
		if err != nil {
			return Ticket{}, err
		}
		return opened, tk.Redeem(ctx, opened)
	}

	ticket, exp, err := tk.Issue(id, "c1")
	testenv.Must(t, err, "issue")
	if exp.Sub(clk.Now()) != DefaultTicketTTL {
		t.Errorf("expires %v after issue, want %v", exp.Sub(clk.Now()), DefaultTicketTTL)
	}
	// Opening does not use a ticket up; redeeming does, once.
	for range 2 {
		if got, err := tk.Open(ticket); err != nil || got.Identity != id || got.ConvoID != "c1" {
			t.Fatalf("open: %+v, %v", got, err)
		}
	}
	got, err := redeem(ticket)
	testenv.Must(t, err, "redeem")
	if got.Identity != id || got.ConvoID != "c1" {
		t.Errorf("redeemed %+v", got)
	}
	if _, err := redeem(ticket); !is(err, ErrTicketReplayed) {
		t.Errorf("second redeem: %v, want ErrTicketReplayed", err)
	}
	if err := tk.Redeem(ctx, Ticket{Identity: id, ExpiresAt: exp}); !is(err, ErrInvalidTicket) {
		t.Errorf("redeeming a ticket that was never opened: %v", err)
	}

	late, _, _ := tk.Issue(id, "")
	opened, err := tk.Open(late)
	testenv.Must(t, err, "open before expiry")
	clk.Advance(DefaultTicketTTL)
	if _, err := tk.Open(late); !is(err, ErrTicketExpired) {
		t.Errorf("open at expiry: %v, want ErrTicketExpired", err)
	}
	if err := tk.Redeem(ctx, opened); !is(err, ErrTicketExpired) {
		t.Errorf("redeem at expiry of a ticket opened before: %v, want ErrTicketExpired", err)
	}

	other, _ := NewTickets(TicketConfig{Key: []byte(strings.Repeat("k", 32)), Now: clk.Now})
	foreign, _, _ := other.Issue(id, "")
	fresh, _, _ := tk.Issue(id, "")
	alsoFresh, _, _ := tk.Issue(caller.Identity{DID: bob}, "")
	raw, _ := base64.RawURLEncoding.DecodeString(fresh)
	flipped := append([]byte(nil), raw...)
	flipped[len(flipped)/2] ^= 1
	rawOther, _ := base64.RawURLEncoding.DecodeString(alsoFresh)
	spliced := append(append([]byte(nil), raw[:24]...), rawOther[24:]...)
	for name, bad := range map[string]string{
		"other key": foreign,
		"empty":     "",
		"tampered":  base64.RawURLEncoding.EncodeToString(flipped),
		"spliced":   base64.RawURLEncoding.EncodeToString(spliced),
		"truncated": fresh[:len(fresh)-4],
		"padded":    fresh + "==",
		"short":     "AAAA",
		"a JWT":     "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkaWQ6cGxjOmFsaWNlIn0.c2ln",
		"too long":  strings.Repeat("a", 5000),
	} {
		if _, err := tk.Open(bad); !is(err, ErrInvalidTicket) {
			t.Errorf("%s: %v, want ErrInvalidTicket", name, err)
		}
	}
	if _, err := redeem(fresh); err != nil {
		t.Errorf("a valid ticket after refusals: %v", err)
	}

	if _, err := NewTickets(TicketConfig{Key: []byte("short")}); err == nil {
		t.Error("a short key was accepted")
	}
}

// TestTicketsAreOpaque checks that a ticket's text, and its bytes, name
// neither the DID, the device nor the conversation, in clear or in any
// base64, and that tickets for identities of different lengths have the
// same length.
func TestTicketsAreOpaque(t *testing.T) {
	tk, err := NewTickets(TicketConfig{Key: testKey})
	testenv.Must(t, err, "new tickets")
	const convo = "0123456789abcdef0123456789abcdef"
	secrets := []string{alice, "plc:alice", "alice", "phone", convo, "0123456789abcdef", "convoId", "sub", "did:"}
	var lengths []int
	for _, did := range []string{alice, "did:plc:a", "did:web:a-longer-name.example.com"} {
		ticket, _, err := tk.Issue(caller.Identity{DID: did, DeviceID: "phone"}, convo)
		testenv.Must(t, err, "issue")
		lengths = append(lengths, len(ticket))
		raw, err := base64.RawURLEncoding.DecodeString(ticket)
		testenv.Must(t, err, "ticket is base64url")
		for _, s := range append(secrets, did) {
			for _, enc := range []string{s, base64.RawURLEncoding.EncodeToString([]byte(s)), base64.StdEncoding.EncodeToString([]byte(s))} {
				if len(enc) >= 4 && strings.Contains(ticket, enc) {
					t.Errorf("ticket %s contains %q (%q)", ticket, enc, s)
				}
			}
			if strings.Contains(string(raw), s) {
				t.Errorf("ticket bytes contain %q", s)
			}
		}
	}
	if lengths[0] != lengths[1] || lengths[1] != lengths[2] {
		t.Errorf("ticket lengths %v differ with the DID's length", lengths)
	}
}

// TestTicketsAcrossNodes redeems a ticket on one node and replays it on
// another, both sharing atpauth's Redis replay store.
func TestTicketsAcrossNodes(t *testing.T) {
	ctx := context.Background()
	client, prefix := testenv.Redis(t)
	// The Redis memory begins before the ticket is issued, by more than the
	// (here tiny) skew.
	began, err := (&atpauth.RedisReplayStore{Client: client, Prefix: prefix}).Begin(ctx)
	testenv.Must(t, err, "begin the replay memory")
	time.Sleep(time.Until(began.Add(2 * time.Millisecond)))
	node := func() *Tickets {
		tk, err := NewTickets(TicketConfig{Key: testKey, Skew: time.Millisecond, Replay: &atpauth.RedisReplayStore{Client: client, Prefix: prefix}})
		testenv.Must(t, err, "tickets")
		return tk
	}
	a, b := node(), node()
	ticket, _, err := a.Issue(caller.Identity{DID: alice}, "")
	testenv.Must(t, err, "issue")
	onB, err := b.Open(ticket)
	testenv.Must(t, err, "open on B: nodes sharing the key open each other's tickets")
	onA, err := a.Open(ticket)
	testenv.Must(t, err, "open on A")
	if err := a.Redeem(ctx, onA); err != nil {
		t.Fatalf("redeem on A: %v", err)
	}
	if err := b.Redeem(ctx, onB); !is(err, ErrTicketReplayed) {
		t.Errorf("replay on B: %v, want ErrTicketReplayed", err)
	}
}
