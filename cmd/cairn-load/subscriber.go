package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/fxamacker/cbor/v2"
)

// Method NSIDs the tool calls.
const (
	nsidStream    = "blue.catbird.mls.streamConvoEvents"
	nsidSubscribe = "blue.catbird.mls.subscribeConvoEvents"
	nsidTicket    = "blue.catbird.mls.getSubscriptionTicket"
	nsidSend      = "blue.catbird.mls.sendMessage"
)

// tracker matches received events to the sends that caused them.
type tracker struct {
	sent     sync.Map // message id -> *sentMessage
	received atomic.Int64
}

// sentMessage is one message the tool sent, awaiting its deliveries.
type sentMessage struct {
	// at is when the send started; acked when its response arrived. The
	// sender sets acked before the deliveries are read back.
	at    time.Time
	acked time.Time
	phase int
	want  int64
	got   atomic.Int64
	done  chan struct{}
}

// expect registers a message about to be sent, which want subscribers
// should receive.
func (t *tracker) expect(id string, phase int, want int) *sentMessage {
	m := &sentMessage{phase: phase, want: int64(want), done: make(chan struct{})}
	t.sent.Store(id, m)
	return m
}

// subscriber is one open event stream of one user.
type subscriber struct {
	user  int
	convo int
	// arrivals holds this stream's deliveries by phase; only its own
	// reader goroutine appends, and the report reads after the phases.
	arrivals [phases][]arrival
	events   atomic.Int64
	closed   atomic.Bool
	close    func()
	// done is closed when the reader goroutine has ended.
	done chan struct{}
}

// arrival is one delivery of a sent message.
type arrival struct {
	m  *sentMessage
	at time.Time
}

// Measurement phases.
const (
	phaseFanout = iota
	phaseSustained
	phases
)

// onMessage records the delivery of message id at now.
func (s *subscriber) onMessage(t *tracker, id string, now time.Time) {
	s.events.Add(1)
	t.received.Add(1)
	v, ok := t.sent.Load(id)
	if !ok {
		return
	}
	m := v.(*sentMessage)
	s.arrivals[m.phase] = append(s.arrivals[m.phase], arrival{m, now})
	if m.got.Add(1) == m.want {
		close(m.done)
	}
}

// messageID finds the message id in an SSE event's JSON without decoding
// all of it: the tool must not be the bottleneck when it shares the cores
// with the server.
func messageID(data []byte) (string, bool) {
	const key = `"message":{"id":"`
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return "", false
	}
	rest := data[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return "", false
	}
	return string(rest[:j]), true
}

// openSSE opens streamConvoEvents for one conversation over a raw TCP
// connection (one goroutine per stream in the tool) and reads it until the
// connection closes. It returns once the stream's first id line arrived,
// that is once the server has subscribed it.
func openSSE(ctx context.Context, dialer *sourceDialer, base string, ids *identities, s *subscriber, convoID string, t *tracker) error {
	tok, err := ids.token(ids.did(s.user), nsidStream)
	if err != nil {
		return err
	}
	u, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("parse base URL: %w", err)
	}
	conn, err := dialer.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	req := "GET /xrpc/" + nsidStream + "?convoId=" + convoID + " HTTP/1.1\r\n" +
		"Host: " + u.Host + "\r\nAuthorization: Bearer " + tok + "\r\nAccept: text/event-stream\r\n\r\n"
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return fmt.Errorf("write request: %w", err)
	}
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		conn.Close()
		return fmt.Errorf("streamConvoEvents: %s: %s", resp.Status, b)
	}
	body := bufio.NewReaderSize(resp.Body, 4096)
	// The stream opens with comments and its starting id.
	for {
		line, err := body.ReadSlice('\n')
		if err != nil {
			conn.Close()
			return fmt.Errorf("read the stream's start: %w", err)
		}
		if bytes.HasPrefix(line, []byte("id:")) {
			break
		}
	}
	_ = conn.SetDeadline(time.Time{})
	s.close = func() { s.closed.Store(true); conn.Close() }
	go func() {
		defer close(s.done)
		defer conn.Close()
		for {
			line, err := body.ReadSlice('\n')
			if err == bufio.ErrBufferFull {
				// A long line: gather it.
				full := append([]byte(nil), line...)
				for err == bufio.ErrBufferFull {
					line, err = body.ReadSlice('\n')
					full = append(full, line...)
				}
				line = full
			}
			if err != nil {
				s.closed.Store(true)
				return
			}
			if data, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
				now := time.Now()
				if id, ok := messageID(data); ok {
					s.onMessage(t, id, now)
				}
			}
		}
	}()
	return nil
}

// openWebSocket gets a ticket for one conversation and opens
// subscribeConvoEvents with it, then reads it until it closes.
func openWebSocket(ctx context.Context, dialer *sourceDialer, base string, client *http.Client, ids *identities, s *subscriber, convoID string, t *tracker) error {
	tok, err := ids.token(ids.did(s.user), nsidTicket)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]string{"convoId": convoID})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/xrpc/"+nsidTicket, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("ticket request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("getSubscriptionTicket: %w", err)
	}
	var issued struct{ Ticket string }
	err = json.NewDecoder(resp.Body).Decode(&issued)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil {
		return fmt.Errorf("getSubscriptionTicket: %s (%v)", resp.Status, err)
	}
	wsURL := strings.Replace(base, "http://", "ws://", 1) + "/xrpc/" + nsidSubscribe + "?ticket=" + url.QueryEscape(issued.Ticket)
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(dctx, wsURL, &websocket.DialOptions{HTTPClient: dialer.httpClient()})
	if err != nil {
		return fmt.Errorf("subscribeConvoEvents: %w", err)
	}
	conn.SetReadLimit(1 << 20)
	rctx, rcancel := context.WithCancel(context.Background())
	s.close = func() { s.closed.Store(true); rcancel(); conn.CloseNow() }
	go func() {
		defer close(s.done)
		defer rcancel()
		defer conn.CloseNow()
		for {
			_, data, err := conn.Read(rctx)
			if err != nil {
				s.closed.Store(true)
				return
			}
			now := time.Now()
			if id, ok := frameMessageID(data); ok {
				s.onMessage(t, id, now)
			}
		}
	}()
	return nil
}

// frameMessageID reads the message id of a messageEvent frame: a DAG-CBOR
// header {op, t} followed by the DAG-CBOR body.
func frameMessageID(frame []byte) (string, bool) {
	dec := cbor.NewDecoder(bytes.NewReader(frame))
	var head struct {
		Op int64  `cbor:"op"`
		T  string `cbor:"t"`
	}
	if dec.Decode(&head) != nil || head.Op != 1 || head.T != "#messageEvent" {
		return "", false
	}
	var body struct {
		Message struct {
			ID string `cbor:"id"`
		} `cbor:"message"`
	}
	if dec.Decode(&body) != nil || body.Message.ID == "" {
		return "", false
	}
	return body.Message.ID, true
}
