package realtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

type ticketInput struct {
	ConvoID string `json:"convoId"`
}

type ticketOutput struct {
	Ticket    string `json:"ticket"`
	Endpoint  string `json:"endpoint"`
	ExpiresAt string `json:"expiresAt"`
}

// maxTicketBody bounds getSubscriptionTicket's body.
const maxTicketBody = 4 << 10

// ServeTicket serves blue.catbird.mls.getSubscriptionTicket: a ticket for
// the authenticated caller, bound to convoId if the body names one (the
// caller must be an active member of it).
func (s *Server) ServeTicket(w http.ResponseWriter, r *http.Request) {
	if err := s.serveTicket(w, r); err != nil {
		s.fail(w, r, err)
	}
}

func (s *Server) serveTicket(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Tickets == nil {
		return xrpc.Errorf(http.StatusNotImplemented, "MethodNotImplemented", "WebSocket subscriptions are not enabled")
	}
	if r.Method != http.MethodPost {
		return methodNotAllowed(NSIDGetTicket, http.MethodPost)
	}
	id, ok := caller.From(r.Context())
	if !ok {
		return xrpc.Errorf(http.StatusUnauthorized, "AuthenticationRequired", "authentication required")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxTicketBody+1))
	if err != nil {
		return xrpc.Errorf(http.StatusBadRequest, "InvalidRequest", "could not read the request body")
	}
	if len(body) > maxTicketBody {
		return xrpc.Errorf(http.StatusRequestEntityTooLarge, "PayloadTooLarge", "request body exceeds %d bytes", maxTicketBody)
	}
	var in ticketInput
	if len(strings.TrimSpace(string(body))) > 0 {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			return xrpc.Errorf(http.StatusUnsupportedMediaType, "InvalidRequest", "Content-Type must be application/json")
		}
		if err := json.Unmarshal(body, &in); err != nil {
			return xrpc.Errorf(http.StatusBadRequest, "InvalidRequest", "body must be a JSON object")
		}
	}
	if err := checkConvoID(in.ConvoID); err != nil {
		return err
	}
	if in.ConvoID != "" {
		if err := s.cfg.Hub.member(r.Context(), in.ConvoID, id); err != nil {
			if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrNotMember) {
				return xrpc.Errorf(http.StatusForbidden, "NotMember", "caller is not a member of the conversation")
			}
			return subscribeError(err)
		}
	}
	ticket, exp, err := s.cfg.Tickets.Issue(id, in.ConvoID)
	if err != nil {
		return err
	}
	endpoint := s.cfg.Endpoint
	if endpoint == "" {
		endpoint = "wss://" + r.Host + xrpc.PathPrefix + NSIDSubscribe
	}
	xrpc.WriteJSON(w, http.StatusOK, ticketOutput{Ticket: ticket, Endpoint: endpoint, ExpiresAt: datetime(exp)})
	return nil
}

// ServeSubscribe serves blue.catbird.mls.subscribeConvoEvents over
// WebSocket. The client authenticates with a ticket from
// getSubscriptionTicket in the "ticket" query parameter, never with a
// long-lived token; the ticket works once. Each event is one binary
// message in the atproto event-stream framing the lexicon names: a
// DAG-CBOR header {op: 1, t: "#messageEvent"} then the DAG-CBOR body. The
// server pings every Ping and closes a peer that does not answer.
//
// Origins are not checked: the ticket is not an ambient credential, so a
// cross-site page cannot use a victim's session to open a stream.
//
// Once upgraded, the stream no longer needs the handler: it is served
// without it (see wsStream) and the handler returns, so the connection
// goroutine's stack (parked under the whole handler chain) and the
// request's state are not kept for the life of the stream.
func (s *Server) ServeSubscribe(w http.ResponseWriter, r *http.Request) {
	sub, err := s.subscribeWS(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ho := &handover{ResponseWriter: w, timeout: s.cfg.WriteTimeout}
	conn, err := websocket.Accept(ho, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		sub.Close()
		return // Accept has answered the client
	}
	s.followWS(conn, ho.frames, sub)
}

// wsControlBuffer is the write buffer coder/websocket gets: the largest
// control frame a server sends (RFC 6455 §5.5: a 2-byte header and at most
// 125 bytes of payload), so each ping, pong and close frame it writes
// reaches the connection in one Write. It writes nothing else: events go
// through frameConn.writeBinary.
const wsControlBuffer = 128

// handover hands the connection to coder/websocket with small buffers in
// place of net/http's 4 KiB ones, which it would otherwise keep for the
// life of the stream: the server reads no more than pongs and the close
// frame, and writes its events itself (frameConn), without a buffer kept
// between them.
type handover struct {
	http.ResponseWriter
	timeout time.Duration
	// frames is the connection's writer once Hijack has run.
	frames *frameConn
}

// Hijack implements http.Hijacker. Bytes net/http had already read past
// the request are handed on in front of the connection.
func (w *handover) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	var r io.Reader = conn
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		r = io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn)
	}
	w.frames = &frameConn{conn: conn, timeout: w.timeout}
	return conn, bufio.NewReadWriter(bufio.NewReaderSize(r, 16), bufio.NewWriterSize(w.frames, wsControlBuffer)), nil
}

// Unwrap returns the wrapped ResponseWriter, for http.ResponseController.
func (w *handover) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// frameConn is the writing side of a WebSocket stream's connection.
// coder/websocket writes its control frames through it (one Write per
// frame, see wsControlBuffer) and the stream writes each event as one
// binary frame with one writev of its header and the shared encoding, so
// no write buffer is held while the stream is idle (coder/websocket keeps
// one per connection for as long as it lives). Writes are serialized and
// each has a deadline; nothing is written after a close frame.
type frameConn struct {
	conn    net.Conn
	timeout time.Duration

	mu     sync.Mutex
	closed bool
}

// Write writes one of coder/websocket's frames.
func (f *frameConn) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(p) > 0 && p[0]&0x0f == wsOpClose {
		f.closed = true
	}
	_ = f.conn.SetWriteDeadline(time.Now().Add(f.timeout))
	return f.conn.Write(p)
}

// wsOpClose and wsOpBinary are RFC 6455 §5.2 opcodes.
const (
	wsOpClose  = 0x8
	wsOpBinary = 0x2
)

// errWSClosed is writeBinary's error once a close frame has been sent.
var errWSClosed = errors.New("websocket: close frame already sent")

// writeBinary writes payload as one unfragmented binary message.
func (f *frameConn) writeBinary(payload []byte) error {
	var head [10]byte
	bufs := net.Buffers{appendFrameHeader(head[:0], wsOpBinary, len(payload)), payload}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errWSClosed
	}
	_ = f.conn.SetWriteDeadline(time.Now().Add(f.timeout))
	_, err := bufs.WriteTo(f.conn)
	return err
}

// appendFrameHeader appends the header of a final, unmasked (server to
// client) frame of opcode carrying n bytes (RFC 6455 §5.2).
func appendFrameHeader(b []byte, opcode byte, n int) []byte {
	b = append(b, 0x80|opcode)
	if n >= 0 && n < 126 {
		return append(b, byte(n))
	}
	if n >= 0 && n <= math.MaxUint16 {
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 127), uint64(max(n, 0)))
}

// wsStream serves one WebSocket stream without a goroutine of its own
// while it is idle: its writer runs only while the subscription has
// events queued (Subscription.onQueued starts it), its pings are timers,
// and the client leaving is noticed by coder/websocket's reading
// goroutine (CloseRead), which the stream needs anyway for pongs and the
// close frame. Each goroutine parked for a stream's life costs its stack,
// 2–8 KiB, on every open stream.
type wsStream struct {
	s      *Server
	conn   *websocket.Conn
	frames *frameConn
	sub    *Subscription
	ctx    context.Context // ends when the connection does

	mu      sync.Mutex
	ping    *time.Timer
	writing bool // a drain goroutine is running
	again   bool // events were queued while it ran
	// last is the cursor of the last event written; only the drain
	// goroutine, one at a time, uses it.
	last string

	endOnce sync.Once
}

// followWS starts serving sub's events on conn, and pinging, until the
// client leaves, a write or a ping fails or the subscription ends. It
// returns at once.
func (s *Server) followWS(conn *websocket.Conn, frames *frameConn, sub *Subscription) {
	w := &wsStream{s: s, conn: conn, frames: frames, sub: sub, last: sub.Cursor()}
	w.ctx = conn.CloseRead(context.Background())
	// Under mu: a short Ping may fire before AfterFunc has returned.
	w.mu.Lock()
	w.ping = time.AfterFunc(s.cfg.Ping, w.pingPeer)
	w.mu.Unlock()
	context.AfterFunc(w.ctx, w.end)
	sub.onQueued(w.kick)
}

// kick starts the writer unless it is running, in which case it will look
// at the queue again before it stops.
func (w *wsStream) kick() {
	w.mu.Lock()
	if w.writing {
		w.again = true
		w.mu.Unlock()
		return
	}
	w.writing = true
	w.mu.Unlock()
	go w.drain()
}

// drain writes what is queued, then stops; a kick that came meanwhile
// makes it look again, so an event queued while it stopped is not left
// behind.
func (w *wsStream) drain() {
	obs := w.s.cfg.Hub.cfg.Observer
	for {
		for more := true; more; {
			select {
			case ev, ok := <-w.sub.Events():
				if !ok {
					w.s.closeWS(w.conn, w.sub.Err(), w.write, w.last)
					w.end()
					return // writing stays set: nothing more is written
				}
				if w.write(*ev) != nil {
					w.end()
					return
				}
				w.last = ev.Cursor
				obs.EventsDelivered("websocket", 1)
			default:
				more = false
			}
		}
		w.mu.Lock()
		if !w.again {
			w.writing = false
			w.mu.Unlock()
			return
		}
		w.again = false
		w.mu.Unlock()
	}
}

// write writes one event as a binary message.
func (w *wsStream) write(ev Event) error {
	data, err := firehoseFrame(ev)
	if err != nil {
		return err
	}
	return w.frames.writeBinary(data)
}

// pingPeer pings and waits for the pong; a peer that does not answer
// within WriteTimeout is dropped.
func (w *wsStream) pingPeer() {
	ctx, cancel := context.WithTimeout(w.ctx, w.s.cfg.WriteTimeout)
	err := w.conn.Ping(ctx)
	cancel()
	if err != nil {
		w.end() // dead peer: CloseNow drops it
		return
	}
	if w.ctx.Err() == nil {
		w.pingTimer().Reset(w.s.cfg.Ping)
	}
}

// pingTimer returns the ping timer, once followWS has set it.
func (w *wsStream) pingTimer() *time.Timer {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ping
}

// end drops the connection and ends the subscription, once.
func (w *wsStream) end() {
	w.endOnce.Do(func() {
		if t := w.pingTimer(); t != nil {
			t.Stop()
		}
		_ = w.conn.CloseNow()
		w.sub.Close()
	})
}

// subscribeWS opens the ticket, subscribes and then redeems the ticket,
// all before the upgrade, so refusals are ordinary XRPC error responses.
// The ticket is used up only once the request is certain to upgrade: a
// plain GET (a link preview, a proxy's probe) or a refused subscription
// leaves it usable.
func (s *Server) subscribeWS(r *http.Request) (*Subscription, error) {
	if s.cfg.Tickets == nil {
		return nil, xrpc.Errorf(http.StatusNotImplemented, "MethodNotImplemented", "WebSocket subscriptions are not enabled")
	}
	if r.Method != http.MethodGet {
		return nil, methodNotAllowed(NSIDSubscribe, http.MethodGet)
	}
	q := r.URL.Query()
	raw := q.Get("ticket")
	if raw == "" {
		return nil, xrpc.Errorf(http.StatusUnauthorized, "AuthenticationRequired", "a ticket from getSubscriptionTicket is required")
	}
	t, err := s.cfg.Tickets.Open(raw)
	if err != nil {
		return nil, ticketError(err)
	}
	if err := upgradeRequest(r); err != nil {
		return nil, err
	}
	convoID := q.Get("convoId")
	if t.ConvoID != "" {
		if convoID != "" && convoID != t.ConvoID {
			return nil, xrpc.Errorf(http.StatusForbidden, "InvalidToken", "ticket is bound to another conversation")
		}
		convoID = t.ConvoID
	}
	if err := checkConvoID(convoID); err != nil {
		return nil, err
	}
	// The stream outlives the request (see ServeSubscribe): only the
	// set-up reads are bound to it.
	sub, err := s.cfg.Hub.subscribe(r.Context(), context.Background(), Request{Identity: t.Identity, ConvoID: convoID, Cursor: q.Get("cursor"), Transport: "websocket"})
	if err != nil {
		return nil, subscribeError(err)
	}
	if err := s.cfg.Tickets.Redeem(r.Context(), t); err != nil {
		sub.Close()
		return nil, ticketError(err)
	}
	return sub, nil
}

// ticketError is the XRPC error for a ticket that cannot be used.
func ticketError(err error) error {
	switch {
	case errors.Is(err, ErrTicketExpired):
		return &xrpc.Error{Status: http.StatusUnauthorized, Name: "ExpiredToken", Message: "ticket expired; get a new one", Err: err}
	case errors.Is(err, ErrInvalidTicket), errors.Is(err, ErrTicketReplayed):
		return &xrpc.Error{Status: http.StatusUnauthorized, Name: "InvalidToken", Message: "ticket is invalid or already used", Err: err}
	default:
		return &xrpc.Error{Status: http.StatusServiceUnavailable, Name: "ServiceUnavailable", Message: "could not check the ticket", Err: err}
	}
}

// upgradeRequest refuses a request that websocket.Accept would refuse
// (RFC 6455 §4.2.1, as github.com/coder/websocket checks it), so that the
// ticket is redeemed only for a request that will upgrade.
func upgradeRequest(r *http.Request) error {
	upgrade := func(msg string) error {
		return &xrpc.Error{Status: http.StatusUpgradeRequired, Name: "InvalidRequest", Message: msg + "; the ticket was not used",
			Header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}}
	}
	switch {
	case !r.ProtoAtLeast(1, 1):
		return upgrade("a WebSocket upgrade needs HTTP/1.1")
	case !headerHasToken(r.Header, "Connection", "upgrade"), !headerHasToken(r.Header, "Upgrade", "websocket"):
		return upgrade("this method is served over WebSocket only: send a WebSocket upgrade")
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		return &xrpc.Error{Status: http.StatusBadRequest, Name: "InvalidRequest", Message: "Sec-WebSocket-Version must be 13; the ticket was not used",
			Header: http.Header{"Sec-WebSocket-Version": {"13"}}}
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return xrpc.Errorf(http.StatusBadRequest, "InvalidRequest", "one Sec-WebSocket-Key is required; the ticket was not used")
	}
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(keys[0])); err != nil || len(k) != 16 {
		return xrpc.Errorf(http.StatusBadRequest, "InvalidRequest", "Sec-WebSocket-Key must be 16 bytes in base64; the ticket was not used")
	}
	return nil
}

// headerHasToken reports whether a comma-separated header of h lists token
// (case-insensitively).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// closeWS ends a stream whose subscription ended, saying why.
func (s *Server) closeWS(conn *websocket.Conn, err error, write func(Event) error, last string) {
	switch {
	case errors.Is(err, ErrSlowConsumer):
		if write(Event{Type: EventInfo, Cursor: last, Info: InfoSlowConsumer}) == nil {
			conn.Close(websocket.StatusTryAgainLater, "slow consumer")
		}
	case errors.Is(err, ErrRemoved):
		conn.Close(websocket.StatusNormalClosure, "no longer a member")
	case errors.Is(err, ErrHubClosed):
		conn.Close(websocket.StatusGoingAway, "server shutting down")
	case err == nil:
		conn.Close(websocket.StatusNormalClosure, "")
	default:
		conn.Close(websocket.StatusInternalError, "internal error")
	}
}
