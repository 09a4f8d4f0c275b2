package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/fxamacker/cbor/v2"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// getTicket calls getSubscriptionTicket as did.
func getTicket(t *testing.T, ts *httptest.Server, did, body string) (int, ticketOutput, xrpc.Body) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/xrpc/"+NSIDGetTicket, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if did != "" {
		req.Header.Set("X-Test-DID", did)
	}
	resp, err := http.DefaultClient.Do(req)
	testenv.Must(t, err, "get ticket")
	defer resp.Body.Close()
	var out ticketOutput
	var eb xrpc.Body
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	_ = json.Unmarshal(buf.Bytes(), &out)
	_ = json.Unmarshal(buf.Bytes(), &eb)
	return resp.StatusCode, out, eb
}

func wsURL(ts *httptest.Server, q string) string {
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/xrpc/" + NSIDSubscribe + "?" + q
}

func dial(t *testing.T, ts *httptest.Server, q string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, wsURL(ts, q), opts)
	if c != nil {
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

type wsEvent struct {
	Type    string
	Cursor  string `cbor:"cursor"`
	ConvoID string `cbor:"convoId"`
	DID     string `cbor:"did"`
	Action  string `cbor:"action"`
	Epoch   int64  `cbor:"epoch"`
	Info    string `cbor:"info"`
	Message *struct {
		ID         string `cbor:"id"`
		ConvoID    string `cbor:"convoId"`
		Ciphertext []byte `cbor:"ciphertext"`
		Seq        int64  `cbor:"seq"`
	} `cbor:"message"`
}

// readWS reads one event-stream frame: a header, then the body.
func readWS(t *testing.T, c *websocket.Conn) wsEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	typ, data, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageBinary {
		t.Fatalf("frame type %v", typ)
	}
	dec := cbor.NewDecoder(bytes.NewReader(data))
	var head struct {
		Op int64  `cbor:"op"`
		T  string `cbor:"t"`
	}
	var ev wsEvent
	if err := dec.Decode(&head); err != nil || head.Op != 1 {
		t.Fatalf("header %+v: %v", head, err)
	}
	if err := dec.Decode(&ev); err != nil {
		t.Fatalf("body: %v", err)
	}
	ev.Type = NSIDSubscribe + head.T
	return ev
}

func newTicketEnv(t *testing.T, b backend, cfg Config, scfg ServerConfig) (*env, *httptest.Server) {
	e := newEnv(t, b, cfg)
	tk, err := NewTickets(TicketConfig{Key: testKey})
	testenv.Must(t, err, "tickets")
	scfg.Tickets = tk
	return e, e.serve(scfg)
}

func TestWebSocketStream(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			e, ts := newTicketEnv(t, b, Config{}, ServerConfig{})
			e.convo("c1", alice, bob)
			e.send("c1", "m001")
			e.send("c1", "m002")

			status, tk, _ := getTicket(t, ts, bob, `{"convoId":"c1"}`)
			if status != 200 || tk.Ticket == "" || !strings.HasSuffix(tk.Endpoint, "/xrpc/"+NSIDSubscribe) || tk.ExpiresAt == "" {
				t.Fatalf("ticket: %d %+v", status, tk)
			}
			c, _, err := dial(t, ts, "ticket="+tk.Ticket+"&cursor="+start, nil)
			testenv.Must(t, err, "dial")
			var ids []string
			var cursor string
			for len(ids) < 2 {
				ev := readWS(t, c)
				if ev.Type != NSIDSubscribe+"#messageEvent" {
					t.Fatalf("event %+v", ev)
				}
				if string(ev.Message.Ciphertext) != "ct-"+ev.Message.ID || ev.Message.ConvoID != "c1" {
					t.Fatalf("message %+v", ev.Message)
				}
				ids = append(ids, ev.Message.ID)
				cursor = ev.Cursor
			}
			e.send("c1", "m003")
			ids = append(ids, readWS(t, c).Message.ID)
			if !slices.Equal(ids, []string{"m001", "m002", "m003"}) {
				t.Errorf("got %v", ids)
			}

			// The ticket works once; a new one resumes by cursor.
			if _, resp, err := dial(t, ts, "ticket="+tk.Ticket, nil); err == nil || resp == nil || resp.StatusCode != 401 {
				t.Errorf("reused ticket: %v %v", resp, err)
			}
			c.Close(websocket.StatusNormalClosure, "")
			_, tk2, _ := getTicket(t, ts, bob, `{}`)
			c2, _, err := dial(t, ts, "ticket="+tk2.Ticket+"&convoId=c1&cursor="+cursor, nil)
			testenv.Must(t, err, "dial again")
			if ev := readWS(t, c2); ev.Message == nil || ev.Message.ID != "m003" {
				t.Errorf("resumed with %+v", ev)
			}

			// Removal ends a single-conversation stream with a
			// membershipChangeEvent and a normal close.
			e.remove("c1", bob)
			if ev := readWS(t, c2); ev.Type != NSIDSubscribe+"#membershipChangeEvent" || ev.DID != bob || ev.ConvoID != "c1" || ev.Action != "removed" {
				t.Errorf("removal event %+v", ev)
			}
			ctx, cancel := context.WithTimeout(context.Background(), guard)
			defer cancel()
			if _, _, err := c2.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Errorf("after removal: %v", err)
			}
		})
	}
}

func TestWebSocketRefusals(t *testing.T) {
	e, ts := newTicketEnv(t, backends()[0], Config{MaxPerDID: 1}, ServerConfig{})
	e.convo("c1", alice, bob)
	e.convo("c2", alice, carol)

	if status, _, body := getTicket(t, ts, carol, `{"convoId":"c1"}`); status != 403 || body.Error != "NotMember" {
		t.Errorf("ticket for a non-member: %d %+v", status, body)
	}
	if status, _, body := getTicket(t, ts, "", `{}`); status != 401 || body.Error != "AuthenticationRequired" {
		t.Errorf("ticket without a caller: %d %+v", status, body)
	}
	if _, resp, err := dial(t, ts, "", nil); err == nil || resp.StatusCode != 401 {
		t.Errorf("no ticket: %v", err)
	}
	if _, resp, err := dial(t, ts, "ticket=forged", nil); err == nil || resp.StatusCode != 401 {
		t.Errorf("forged ticket: %v", err)
	}
	_, bound, _ := getTicket(t, ts, alice, `{"convoId":"c1"}`)
	if _, resp, err := dial(t, ts, "ticket="+bound.Ticket+"&convoId=c2", nil); err == nil || resp.StatusCode != 403 {
		t.Errorf("ticket for c1 used for c2: %v", err)
	}
	// A ticket speaks for its DID only: alice's cannot open carol's c2...
	e.convo("c3", bob, carol)
	_, unbound, _ := getTicket(t, ts, alice, `{}`)
	if _, resp, err := dial(t, ts, "ticket="+unbound.Ticket+"&convoId=c3", nil); err == nil || resp.StatusCode != 403 {
		t.Errorf("alice's ticket for bob and carol's conversation: %v", err)
	}
	// ...and a ticket spliced from carol's is not one.
	_, other, _ := getTicket(t, ts, carol, `{}`)
	forged := unbound.Ticket[:32] + other.Ticket[32:]
	if _, resp, err := dial(t, ts, "ticket="+forged+"&convoId=c3", nil); err == nil || resp.StatusCode != 401 {
		t.Errorf("ticket spliced from another DID's: %v", err)
	}

	_, t1, _ := getTicket(t, ts, alice, `{}`)
	_, t2, _ := getTicket(t, ts, alice, `{}`)
	first, _, err := dial(t, ts, "ticket="+t1.Ticket, nil)
	if err != nil {
		t.Fatalf("first stream: %v", err)
	}
	if _, resp, err := dial(t, ts, "ticket="+t2.Ticket, nil); err == nil || resp.StatusCode != 429 {
		t.Errorf("over the cap: %v %v", resp, err)
	}
	// A refused subscription leaves its ticket usable.
	first.CloseNow()
	waitOpen(t, e.hub, 0)
	if _, _, err := dial(t, ts, "ticket="+t2.Ticket, nil); err != nil {
		t.Errorf("the ticket refused over the cap, once under it: %v", err)
	}
}

// waitOpen waits until the hub has n open subscriptions.
func waitOpen(t *testing.T, h *Hub, n int) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for h.Open() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscriptions open, want %d", h.Open(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWebSocketTicketNeedsUpgrade: a request that is no WebSocket upgrade
// (a plain GET, as a link preview or a proxy's probe sends, or a bad
// handshake) is refused without using the ticket up.
func TestWebSocketTicketNeedsUpgrade(t *testing.T) {
	e, ts := newTicketEnv(t, backends()[0], Config{}, ServerConfig{})
	e.convo("c1", alice, bob)
	_, tk, _ := getTicket(t, ts, alice, `{"convoId":"c1"}`)
	url := ts.URL + "/xrpc/" + NSIDSubscribe + "?ticket=" + tk.Ticket
	for name, h := range map[string]http.Header{
		"plain GET":   {},
		"no Upgrade":  {"Connection": {"Upgrade"}},
		"bad version": {"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"8"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}},
		"no key":      {"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}},
		"short key":   {"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"c2hvcnQ="}},
	} {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		testenv.Must(t, err, name)
		var body xrpc.Body
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUpgradeRequired && resp.StatusCode != http.StatusBadRequest || body.Error != "InvalidRequest" {
			t.Errorf("%s: %d %+v", name, resp.StatusCode, body)
		}
	}
	if e.hub.Open() != 0 {
		t.Errorf("%d subscriptions open after refused upgrades", e.hub.Open())
	}
	if _, _, err := dial(t, ts, "ticket="+tk.Ticket, nil); err != nil {
		t.Fatalf("the ticket after requests that did not upgrade: %v", err)
	}
	if _, resp, err := dial(t, ts, "ticket="+tk.Ticket, nil); err == nil || resp.StatusCode != 401 {
		t.Errorf("the ticket once used: %v %v", resp, err)
	}
}

// TestWebSocketExpiredTicket redeems a ticket past its lifetime.
func TestWebSocketExpiredTicket(t *testing.T) {
	e := newEnv(t, backends()[0], Config{})
	clk := &clock{t: time.Now()}
	tk, _ := NewTickets(TicketConfig{Key: testKey, Now: clk.Now})
	ts := e.serve(ServerConfig{Tickets: tk})
	_, out, _ := getTicket(t, ts, alice, `{}`)
	clk.Advance(time.Minute)
	_, resp, err := dial(t, ts, "ticket="+out.Ticket, nil)
	if err == nil || resp.StatusCode != 401 {
		t.Fatalf("expired ticket: %v", err)
	}
}

// TestWebSocketPing checks that the server pings, and closes a peer that
// never answers.
func TestWebSocketPing(t *testing.T) {
	obs := &closeObserver{closed: make(chan string, 4)}
	e, ts := newTicketEnv(t, backends()[0], Config{Observer: obs}, ServerConfig{Ping: time.Millisecond, WriteTimeout: 50 * time.Millisecond})

	pinged := make(chan struct{}, 1)
	_, out, _ := getTicket(t, ts, alice, `{}`)
	c, _, err := dial(t, ts, "ticket="+out.Ticket, &websocket.DialOptions{OnPingReceived: func(context.Context, []byte) bool {
		select {
		case pinged <- struct{}{}:
		default:
		}
		return true
	}})
	testenv.Must(t, err, "dial")
	// Reading lets the client answer pings.
	go c.Read(context.Background())
	select {
	case <-pinged:
	case <-time.After(guard):
		t.Fatal("no ping")
	}

	// A peer that never reads never answers: the server drops it.
	_, out2, _ := getTicket(t, ts, bob, `{}`)
	if _, _, err := dial(t, ts, "ticket="+out2.Ticket, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case tr := <-obs.closed:
		if tr != "websocket" || e.hub.Open() != 1 {
			t.Errorf("closed %q with %d left open, want the silent one closed and the answering one open", tr, e.hub.Open())
		}
	case <-time.After(guard):
		t.Fatal("the silent peer was not closed")
	}
}

type closeObserver struct {
	nopObserver
	closed chan string
}

func (o *closeObserver) ConnClosed(tr string) { o.closed <- tr }

// TestMessageFrameEncoding checks that a messageEvent frame built around the
// message's shared DAG-CBOR is byte for byte the frame of the lexicon event
// encoded whole.
func TestMessageFrameEncoding(t *testing.T) {
	m := &store.Message{ConvoID: "c0ffee", Seq: 7, Epoch: 2, MsgID: "m1", Ciphertext: bytes.Repeat([]byte{0xfe}, 300),
		ReceivedAt: time.Unix(1_800_000_000, 0)}
	for _, view := range []*sharedView{nil, {}} {
		ev := Event{Type: EventMessage, Cursor: "1234567", ConvoID: m.ConvoID, Message: m, view: view}
		head, err := dagCBOR.Marshal(frameHeader{Op: 1, T: "#messageEvent"})
		testenv.Must(t, err, "marshal header")
		body, err := dagCBOR.Marshal(ev.lexicon(NSIDSubscribe))
		testenv.Must(t, err, "marshal body")
		want := append(head, body...)
		for range 2 { // the second use of a shared view reads it back
			got, err := firehoseFrame(ev)
			testenv.Must(t, err, "frame")
			if !bytes.Equal(got, want) {
				t.Fatalf("shared view %v:\n got %x\nwant %x", view != nil, got, want)
			}
		}
	}
}

// TestHostileConvoIDsNever5xx: a convoId that is not UTF-8 text without NUL
// is a 400 on every way in (the SSE query, the ticket body, the WebSocket
// query) and on both stores. PostgreSQL answered 500 before checkConvoID.
func TestHostileConvoIDsNever5xx(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			e, ts := newTicketEnv(t, b, Config{}, ServerConfig{})
			e.convo("c1", alice)
			for _, q := range []string{"convoId=%00", "convoId=c1%00", "convoId=%FF", "convoId=%ED%A0%80"} {
				resp, _ := openSSE(t, ts, alice, q, nil)
				var body xrpc.Body
				_ = json.NewDecoder(resp.Body).Decode(&body)
				if resp.StatusCode != http.StatusBadRequest || body.Error != "InvalidRequest" {
					t.Errorf("SSE ?%s: %d %+v, want 400 InvalidRequest", q, resp.StatusCode, body)
				}
				_, unbound, _ := getTicket(t, ts, alice, `{}`)
				if _, resp, err := dial(t, ts, "ticket="+unbound.Ticket+"&"+q, nil); err == nil || resp.StatusCode != http.StatusBadRequest {
					t.Errorf("WebSocket ?%s: %v, want 400", q, err)
				}
			}
			if status, _, body := getTicket(t, ts, alice, `{"convoId":"c1\u0000"}`); status != http.StatusBadRequest || body.Error != "InvalidRequest" {
				t.Errorf("ticket for a convoId with NUL: %d %+v, want 400 InvalidRequest", status, body)
			}
		})
	}
}

// FuzzUpgradeRequest checks upgradeRequest against the WebSocket library
// itself: for any handshake headers, the ticket is redeemed (upgradeRequest
// passes) exactly when websocket.Accept gets past its handshake checks (to
// the hijack a recorder cannot do), so no ticket is used up by a request
// that then fails to upgrade.
func FuzzUpgradeRequest(f *testing.F) {
	f.Add("Upgrade", "websocket", "13", "dGhlIHNhbXBsZSBub25jZQ==", false, true)
	f.Add("keep-alive, Upgrade", "WebSocket", "13", " dGhlIHNhbXBsZSBub25jZQ== ", false, true)
	f.Add("Upgrade", "websocket", "13", "dGhlIHNhbXBsZSBub25jZQ==", true, true)
	f.Add("", "", "", "", false, true)
	f.Add("upgrade", "h2c, websocket", "8", "c2hvcnQ=", false, false)
	f.Fuzz(func(t *testing.T, connection, upgrade, version, key string, twoKeys, http11 bool) {
		r := httptest.NewRequest(http.MethodGet, "/xrpc/"+NSIDSubscribe, nil)
		if !http11 {
			r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.0", 1, 0
		}
		r.Header["Connection"] = []string{connection}
		r.Header["Upgrade"] = []string{upgrade}
		r.Header["Sec-Websocket-Version"] = []string{version}
		r.Header["Sec-Websocket-Key"] = []string{key}
		if twoKeys {
			r.Header["Sec-Websocket-Key"] = append(r.Header["Sec-Websocket-Key"], key)
		}
		ours := upgradeRequest(r) == nil
		rec := httptest.NewRecorder()
		_, _ = websocket.Accept(rec, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		theirs := rec.Code == http.StatusNotImplemented // past the handshake, at the hijack
		if ours != theirs {
			t.Fatalf("upgradeRequest passes %v, websocket.Accept's handshake %v (status %d) for %q", ours, theirs, rec.Code, r.Header)
		}
	})
}

// TestWebSocketFrameLengths sends messages whose frames need each of RFC
// 6455's three payload-length encodings (7-bit, 16-bit, 64-bit) and checks
// that a standard client reads each one whole.
func TestWebSocketFrameLengths(t *testing.T) {
	e, ts := newTicketEnv(t, backends()[0], Config{}, ServerConfig{})
	e.convo("c1", alice, bob)
	_, tk, _ := getTicket(t, ts, bob, `{"convoId":"c1"}`)
	c, _, err := dial(t, ts, "ticket="+tk.Ticket, nil)
	testenv.Must(t, err, "dial")
	c.SetReadLimit(-1)
	waitOpen(t, e.hub, 1)
	for i, size := range []int{1, 125, 126, 300, 65535, 65536, 200_000} {
		ct := bytes.Repeat([]byte{byte(i + 1)}, size)
		id := fmt.Sprintf("m%03d", i)
		_, err := e.st.AppendMessage(context.Background(), store.NewMessage{ConvoID: "c1", MsgID: id, Ciphertext: ct, PaddedSize: 512})
		testenv.Must(t, err, "send "+id)
		e.hub.Notify("c1")
		ev := readWS(t, c)
		if ev.Message == nil || ev.Message.ID != id || !bytes.Equal(ev.Message.Ciphertext, ct) {
			t.Fatalf("ciphertext of %d bytes: got event %q with %d bytes", size, ev.Type, len(ev.Message.Ciphertext))
		}
	}
}

// TestFrameConnNothingAfterClose checks that once coder/websocket has
// written a close frame, the stream writes no data frame after it.
func TestFrameConnNothingAfterClose(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	go func() { _, _ = io.Copy(io.Discard, client) }()
	f := &frameConn{conn: server, timeout: guard}
	testenv.Must(t, f.writeBinary([]byte("before")), "data frame before close")
	if _, err := f.Write([]byte{0x80 | wsOpClose, 2, 0x03, 0xe8}); err != nil {
		t.Fatalf("close frame: %v", err)
	}
	if err := f.writeBinary([]byte("after")); !errors.Is(err, errWSClosed) {
		t.Errorf("data frame after close: %v, want errWSClosed", err)
	}
}
