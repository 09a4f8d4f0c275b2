package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// ServeStream serves blue.catbird.mls.streamConvoEvents as Server-Sent
// Events. Each event is one "data:" line holding the lexicon's
// eventWrapper, with "id:" set to its cursor, so a browser EventSource
// resumes by itself through Last-Event-ID (which wins over the cursor
// parameter). A comment line is sent every Heartbeat so that proxies keep
// the connection open and dead peers are noticed.
//
// Over HTTP/1.1 the stream is detached from net/http once its header is
// sent: the connection is taken over (hijacked) and the handler returns,
// which frees the connection goroutine's stack, net/http's buffers and
// the request's state for as long as the stream stays open. A goroutine
// of a few hundred bytes of stack writes the events as HTTP/1.1 chunks
// and another notices the client leaving. Over HTTP/2, or when a wrapper
// of the ResponseWriter cannot hand over the connection, the handler
// serves the stream itself as before. Either way openStream does the
// set-up in a frame of its own, so what stays on the stack is small.
func (s *Server) ServeStream(w http.ResponseWriter, r *http.Request) {
	detach := r.ProtoMajor == 1 && r.ProtoMinor >= 1
	sub, sw := s.openStream(w, r, detach)
	if sub == nil {
		return
	}
	if detach && sw.detach() {
		go s.followDetached(sw, sub)
		return
	}
	defer sub.Close()
	s.follow(r.Context(), sw, sub)
}

// followDetached serves a detached stream until the client leaves, a write
// fails or the subscription ends, then ends the chunked body and closes
// the connection.
func (s *Server) followDetached(sw *sseWriter, sub *Subscription) {
	ctx, gone := context.WithCancel(context.Background())
	go watchPeer(sw.conn, gone)
	s.follow(ctx, sw, sub)
	gone()
	sub.Close()
	sw.release()
	_ = sw.conn.SetWriteDeadline(time.Now().Add(sw.timeout))
	_, _ = io.WriteString(sw.conn, "0\r\n\r\n")
	_ = sw.conn.Close()
}

// watchPeer calls gone once conn's reading side fails: the client closed
// the connection or it broke. What a client sends after its request is
// read and dropped, as net/http drops it while a handler runs.
func watchPeer(conn net.Conn, gone context.CancelFunc) {
	var b [64]byte
	for {
		if _, err := conn.Read(b[:]); err != nil {
			gone()
			return
		}
	}
}

// openStream checks the request, subscribes and sends the response's
// header and the starting cursor. It returns a nil Subscription when it
// answered the request with an error or the client is gone. With detach
// the subscription does not end with r's context: the caller must end it.
func (s *Server) openStream(w http.ResponseWriter, r *http.Request, detach bool) (*Subscription, *sseWriter) {
	if r.Method != http.MethodGet {
		s.fail(w, r, methodNotAllowed(NSIDStream, http.MethodGet))
		return nil, nil
	}
	id, ok := caller.From(r.Context())
	if !ok {
		s.fail(w, r, xrpc.Errorf(http.StatusUnauthorized, "AuthenticationRequired", "authentication required"))
		return nil, nil
	}
	q := r.URL.Query()
	convoID := q.Get("convoId")
	if err := checkConvoID(convoID); err != nil {
		s.fail(w, r, err)
		return nil, nil
	}
	cursor := q.Get("cursor")
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		cursor = last
	}
	life := r.Context()
	if detach {
		life = context.Background()
	}
	sub, err := s.cfg.Hub.subscribe(r.Context(), life, Request{Identity: id, ConvoID: convoID, Cursor: cursor, Transport: "sse"})
	if err != nil {
		s.fail(w, r, subscribeError(err))
		return nil, nil
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	sw := &sseWriter{w: w, rc: http.NewResponseController(w), timeout: s.cfg.WriteTimeout}
	// An id-only block dispatches no event but sets the client's
	// Last-Event-ID, so a reconnect before the first event resumes here.
	sw.buffer().WriteString(": ok\nid: " + sub.Cursor() + "\n\n")
	if sw.flush() != nil {
		sub.Close()
		return nil, nil
	}
	return sub, sw
}

// follow writes sub's events and the heartbeats until the client leaves,
// a write fails or the subscription ends.
func (s *Server) follow(ctx context.Context, sw *sseWriter, sub *Subscription) {
	heartbeat := time.NewTicker(s.cfg.Heartbeat)
	defer heartbeat.Stop()
	last := sub.Cursor()
	for {
		select {
		case <-ctx.Done():
			return
		case <-heartbeat.C:
			if sw.comment("heartbeat") != nil {
				return
			}
		case ev, ok := <-sub.Events():
			if !ok {
				if errors.Is(sub.Err(), ErrSlowConsumer) {
					if sw.event(Event{Type: EventInfo, Cursor: last, Info: InfoSlowConsumer}) == nil {
						_ = sw.flush()
					}
				}
				return
			}
			var err error
			if last, err = s.writeQueued(sw, sub, ev); err != nil {
				return
			}
		}
	}
}

// writeQueued writes ev and whatever else is already queued, flushing once
// at the end (or whenever flushAt bytes are gathered). It returns the
// cursor of the last event written.
func (s *Server) writeQueued(sw *sseWriter, sub *Subscription, ev *Event) (string, error) {
	var last string
	n := 0
	for ok := true; ok; {
		if err := sw.event(*ev); err != nil {
			return last, err
		}
		last = ev.Cursor
		n++
		if sw.batch.Len() >= flushAt {
			if err := sw.flush(); err != nil {
				return last, err
			}
		}
		select {
		case ev, ok = <-sub.Events():
		default:
			ok = false
		}
	}
	s.cfg.Hub.cfg.Observer.EventsDelivered("sse", n)
	return last, sw.flush()
}

// flushAt is the batch size at which writeQueued writes without waiting
// for the queue to empty, so a burst of large messages is not gathered
// whole.
const flushAt = 32 << 10

// sseWriter writes the text/event-stream framing. Events are gathered in a
// batch, taken from a pool shared by every stream and returned at each
// flush, so an idle stream holds no buffer; a flush is one write with a
// deadline. Until detach it writes through the http.ResponseWriter; after,
// straight to the connection as HTTP/1.1 chunks.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	batch   *bytes.Buffer
	// conn is the connection once the stream is detached from net/http.
	conn net.Conn
}

// batchPool holds the batches streams gather events in between flushes.
var batchPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBatch is the largest batch returned to the pool; a bigger one
// (a burst of large messages) is left to the collector.
const maxPooledBatch = 64 << 10

// detach takes the connection over from net/http, once the header and the
// first block are flushed. It reports false, and leaves the writer as it
// was, when the ResponseWriter cannot hand the connection over.
func (sw *sseWriter) detach() bool {
	conn, _, err := sw.rc.Hijack()
	if err != nil {
		return false
	}
	sw.conn, sw.w, sw.rc = conn, nil, nil
	return true
}

// buffer returns the batch being gathered.
func (sw *sseWriter) buffer() *bytes.Buffer {
	if sw.batch == nil {
		sw.batch = batchPool.Get().(*bytes.Buffer)
	}
	return sw.batch
}

// release returns the batch to the pool.
func (sw *sseWriter) release() {
	if b := sw.batch; b != nil {
		sw.batch = nil
		if b.Cap() <= maxPooledBatch {
			b.Reset()
			batchPool.Put(b)
		}
	}
}

// flush writes what was gathered, if anything, and pushes it to the client.
func (sw *sseWriter) flush() error {
	defer sw.release()
	var data []byte
	if sw.batch != nil {
		data = sw.batch.Bytes()
	}
	if sw.conn != nil {
		if len(data) == 0 {
			return nil
		}
		_ = sw.conn.SetWriteDeadline(time.Now().Add(sw.timeout))
		// One chunk of the chunked body net/http began: size, data, CRLF.
		head := strconv.AppendInt(make([]byte, 0, 18), int64(len(data)), 16)
		head = append(head, '\r', '\n')
		bufs := net.Buffers{head, data, []byte("\r\n")}
		_, err := bufs.WriteTo(sw.conn)
		return err
	}
	_ = sw.rc.SetWriteDeadline(time.Now().Add(sw.timeout))
	if len(data) > 0 {
		if _, err := sw.w.Write(data); err != nil {
			return err
		}
	}
	return sw.rc.Flush()
}

func (sw *sseWriter) comment(text string) error {
	b := sw.buffer()
	b.WriteString(": ")
	b.WriteString(text)
	b.WriteString("\n\n")
	return sw.flush()
}

// event adds one event to the batch; flush writes it. JSON holds no raw
// newline, so one data line suffices.
func (sw *sseWriter) event(ev Event) error {
	b := sw.buffer()
	mark := b.Len()
	if err := appendEvent(b, ev); err != nil {
		b.Truncate(mark)
		return err
	}
	return nil
}

// appendEvent appends ev's text/event-stream block to b.
func appendEvent(b *bytes.Buffer, ev Event) error {
	if ev.Cursor != "" {
		b.WriteString("id: ")
		b.WriteString(ev.Cursor)
		b.WriteByte('\n')
	}
	b.WriteString("data: ")
	if ev.Type == EventMessage {
		// The envelope around the message's shared JSON, in the field
		// order json.Marshal gives messageEvent.
		view, err := ev.messageJSON()
		if err != nil {
			return err
		}
		cursor, err := json.Marshal(ev.Cursor)
		if err != nil {
			return err
		}
		b.WriteString(`{"event":{"$type":"` + NSIDStream + `#messageEvent","cursor":`)
		b.Write(cursor)
		b.WriteString(`,"message":`)
		b.Write(view)
		b.WriteString(`}}`)
	} else {
		data, err := json.Marshal(struct {
			Event any `json:"event"`
		}{ev.lexicon(NSIDStream)})
		if err != nil {
			return err
		}
		b.Write(data)
	}
	b.WriteString("\n\n")
	return nil
}
