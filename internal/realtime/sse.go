package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
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
// The stream's goroutine keeps this function's frame, and its callers', for
// as long as the stream is open: openStream does the set-up in a frame of
// its own, and follow keeps only what the loop needs.
func (s *Server) ServeStream(w http.ResponseWriter, r *http.Request) {
	sub, sw := s.openStream(w, r)
	if sub == nil {
		return
	}
	defer sub.Close()
	s.follow(r.Context(), sw, sub)
}

// openStream checks the request, subscribes and sends the response's
// header and the starting cursor. It returns a nil Subscription when it
// answered the request with an error or the client is gone.
func (s *Server) openStream(w http.ResponseWriter, r *http.Request) (*Subscription, *sseWriter) {
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
	sub, err := s.cfg.Hub.Subscribe(r.Context(), Request{Identity: id, ConvoID: convoID, Cursor: cursor, Transport: "sse"})
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
	if sw.write([]byte(": ok\nid: "+sub.Cursor()+"\n\n")) != nil || sw.flush() != nil {
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

// writeQueued writes ev and whatever else is already queued, then flushes
// once. It returns the cursor of the last event written.
func (s *Server) writeQueued(sw *sseWriter, sub *Subscription, ev *Event) (string, error) {
	var last string
	n := 0
	for ok := true; ok; {
		if err := sw.event(*ev); err != nil {
			return last, err
		}
		last = ev.Cursor
		n++
		select {
		case ev, ok = <-sub.Events():
		default:
			ok = false
		}
	}
	s.cfg.Hub.cfg.Observer.EventsDelivered("sse", n)
	return last, sw.flush()
}

// sseWriter writes the text/event-stream framing with a deadline per
// write.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     bytes.Buffer
}

func (sw *sseWriter) write(b []byte) error {
	_ = sw.rc.SetWriteDeadline(time.Now().Add(sw.timeout))
	_, err := sw.w.Write(b)
	return err
}

func (sw *sseWriter) flush() error {
	_ = sw.rc.SetWriteDeadline(time.Now().Add(sw.timeout))
	return sw.rc.Flush()
}

func (sw *sseWriter) comment(text string) error {
	if err := sw.write([]byte(": " + text + "\n\n")); err != nil {
		return err
	}
	return sw.flush()
}

// event writes one event without flushing. JSON holds no raw newline, so
// one data line suffices.
func (sw *sseWriter) event(ev Event) error {
	sw.buf.Reset()
	if ev.Cursor != "" {
		sw.buf.WriteString("id: ")
		sw.buf.WriteString(ev.Cursor)
		sw.buf.WriteByte('\n')
	}
	sw.buf.WriteString("data: ")
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
		sw.buf.WriteString(`{"event":{"$type":"` + NSIDStream + `#messageEvent","cursor":`)
		sw.buf.Write(cursor)
		sw.buf.WriteString(`,"message":`)
		sw.buf.Write(view)
		sw.buf.WriteString(`}}`)
	} else {
		data, err := json.Marshal(struct {
			Event any `json:"event"`
		}{ev.lexicon(NSIDStream)})
		if err != nil {
			return err
		}
		sw.buf.Write(data)
	}
	sw.buf.WriteString("\n\n")
	return sw.write(sw.buf.Bytes())
}
