package realtime

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/sqlite"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// FuzzRedeemTicket: no string makes Open or Redeem panic, and only a ticket
// this server issued opens and redeems; anything else is ErrInvalidTicket
// (the clock stands still, so an issued ticket never expires here). The key
// is new in each process: the fuzzer's workers are processes of their own,
// and a ticket another one issued must be as foreign to this one as any
// forgery.
func FuzzRedeemTicket(f *testing.F) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	tk, err := NewTickets(TicketConfig{Key: []byte(rand.Text() + rand.Text()), Now: clk.Now})
	testenv.Must(f, err, "new tickets")
	issued := map[string]bool{}
	for _, convo := range []string{"", "c1", strings.Repeat("x", maxConvoIDLen)} {
		ticket, _, err := tk.Issue(caller.Identity{DID: alice, DeviceID: "phone"}, convo)
		testenv.Must(f, err, "issue")
		issued[ticket] = true
		f.Add(ticket)
		f.Add(ticket[:len(ticket)/2])
		f.Add(ticket + "A")
	}
	other, err := NewTickets(TicketConfig{Key: []byte(strings.Repeat("k", 32)), Now: clk.Now})
	testenv.Must(f, err, "other tickets")
	foreign, _, err := other.Issue(caller.Identity{DID: alice}, "")
	testenv.Must(f, err, "issue foreign")
	f.Add(foreign)
	f.Add("")
	f.Add("...")
	f.Add("eyJhbGciOiJub25lIn0.e30.") // the JWT shape tickets once had
	f.Fuzz(func(t *testing.T, s string) {
		got, err := tk.Open(s)
		if err == nil {
			err = tk.Redeem(context.Background(), got)
		}
		switch {
		case !issued[s] && !is(err, ErrInvalidTicket):
			t.Fatalf("Open/Redeem(%q) = %+v, %v; want ErrInvalidTicket", s, got, err)
		case issued[s] && err != nil && !is(err, ErrTicketReplayed):
			t.Fatalf("Redeem of an issued ticket: %v", err)
		case err == nil && got.Identity.DID != alice:
			t.Fatalf("Open(%q) names %q", s, got.Identity.DID)
		}
	})
}

// FuzzTicketRequest: no getSubscriptionTicket body or Content-Type makes
// the handler panic or answer anything but a ticket or a 4xx XRPC error.
func FuzzTicketRequest(f *testing.F) {
	for _, seed := range []struct{ body, contentType string }{
		{"", ""}, {"{}", "application/json"}, {`{"convoId":"c1"}`, "application/json"},
		{`{"convoId":"nope"}`, "application/json; charset=utf-8"}, {`{"convoId":"c\u0000"}`, "application/json"},
		{`{"convoId":"` + strings.Repeat("x", maxConvoIDLen+1) + `"}`, "application/json"},
		{`{"convoId":1}`, "application/json"}, {"null", "application/json"}, {"[]", "application/json"},
		{`{"convoId":"c1"}`, "text/plain"}, {"{", "application/json"}, {`{"convoId":"\ud800"}`, "application/json"},
	} {
		f.Add(seed.body, seed.contentType)
	}
	st, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(f.TempDir(), "cairn.db")})
	testenv.Must(f, err, "open sqlite")
	f.Cleanup(func() { st.Close() })
	_, err = st.CreateConvo(context.Background(), store.NewConvo{ID: "c1", CreatorDID: alice, CipherSuite: suite,
		Members: []store.NewMember{{MemberDID: alice, UserDID: alice, Role: store.RoleAdmin}}})
	testenv.Must(f, err, "create convo")
	hub, err := New(Config{Store: st})
	testenv.Must(f, err, "new hub")
	f.Cleanup(func() { hub.Close() })
	tk, err := NewTickets(TicketConfig{Key: testKey})
	testenv.Must(f, err, "new tickets")
	srv, err := NewServer(ServerConfig{Hub: hub, Tickets: tk})
	testenv.Must(f, err, "new server")
	f.Fuzz(func(t *testing.T, body, contentType string) {
		req := httptest.NewRequest(http.MethodPost, "/xrpc/"+NSIDGetTicket, strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req = req.WithContext(caller.With(req.Context(), caller.Identity{DID: alice}))
		rec := httptest.NewRecorder()
		srv.ServeTicket(rec, req)
		testenv.ClientError(t, rec, fmt.Sprintf("body %q, Content-Type %q", body, contentType))
	})
}
