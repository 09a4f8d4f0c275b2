package realtime

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// serve runs a Server behind a stand-in for cairn_auth that takes the
// caller from the X-Test-DID header.
func (e *env) serve(cfg ServerConfig) *httptest.Server {
	e.t.Helper()
	cfg.Hub = e.hub
	srv, err := NewServer(cfg)
	testenv.Must(e.t, err, "new server")
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if did := r.Header.Get("X-Test-DID"); did != "" {
			r = r.WithContext(caller.With(r.Context(), caller.Identity{DID: did}))
		}
		srv.ServeHTTP(w, r)
	}))
	e.t.Cleanup(ts.Close)
	return ts
}

// frame is one SSE block: an event (id, data) or a comment.
type frame struct {
	id, data, comment string
}

type sseStream struct {
	resp   *http.Response
	frames chan frame
}

// openSSE opens streamConvoEvents as did with query q and extra headers.
func openSSE(t *testing.T, ts *httptest.Server, did, q string, hdr http.Header) (*http.Response, *sseStream) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/xrpc/"+NSIDStream+"?"+q, nil)
	if did != "" {
		req.Header.Set("X-Test-DID", did)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	testenv.Must(t, err, "open stream")
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		return resp, nil
	}
	s := &sseStream{resp: resp, frames: make(chan frame, 64)}
	go func() {
		defer close(s.frames)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var f frame
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				s.frames <- f
				f = frame{}
			case strings.HasPrefix(line, ": "):
				f.comment = line[2:]
			case strings.HasPrefix(line, "id: "):
				f.id = line[4:]
			case strings.HasPrefix(line, "data: "):
				f.data = line[6:]
			}
		}
	}()
	return resp, s
}

func (s *sseStream) next(t *testing.T) frame {
	t.Helper()
	select {
	case f, ok := <-s.frames:
		if !ok {
			t.Fatal("stream closed")
		}
		return f
	case <-time.After(guard):
		t.Fatal("no frame")
	}
	return frame{}
}

type wireEvent struct {
	Event struct {
		Type    string `json:"$type"`
		Cursor  string `json:"cursor"`
		Info    string `json:"info"`
		Message *struct {
			ID          string            `json:"id"`
			ConvoID     string            `json:"convoId"`
			Seq         int64             `json:"seq"`
			Ciphertext  map[string]string `json:"ciphertext"`
			MessageType string            `json:"messageType"`
			CreatedAt   string            `json:"createdAt"`
		} `json:"message"`
	} `json:"event"`
}

// nextEvent skips comments and decodes the next event.
func (s *sseStream) nextEvent(t *testing.T) (frame, wireEvent) {
	t.Helper()
	for {
		f := s.next(t)
		if f.comment != "" {
			continue
		}
		var ev wireEvent
		if err := json.Unmarshal([]byte(f.data), &ev); err != nil {
			t.Fatalf("data %q: %v", f.data, err)
		}
		return f, ev
	}
}

func (s *sseStream) messageIDs(t *testing.T, n int) ([]string, string) {
	t.Helper()
	var ids []string
	var last string
	for len(ids) < n {
		f, ev := s.nextEvent(t)
		if ev.Event.Message == nil {
			t.Fatalf("frame %+v is not a message", f)
		}
		if f.id != ev.Event.Cursor {
			t.Fatalf("id %q differs from the event's cursor %q", f.id, ev.Event.Cursor)
		}
		ids = append(ids, ev.Event.Message.ID)
		last = f.id
	}
	return ids, last
}

func TestSSEStreamAndResume(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b, Config{})
			ts := e.serve(ServerConfig{})
			e.convo("c1", alice, bob)
			for i := 1; i <= 5; i++ {
				e.send("c1", fmt.Sprintf("m%03d", i))
			}
			resp, s := openSSE(t, ts, bob, "convoId=c1&cursor="+start, nil)
			for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
			if f := s.next(t); f.comment != "ok" {
				t.Errorf("first frame %+v, want the opening comment", f)
			}
			ids, _ := s.messageIDs(t, 3)
			_, ev := s.nextEvent(t)
			m := ev.Event.Message
			if ev.Event.Type != NSIDStream+"#messageEvent" || m.ConvoID != "c1" || m.Seq != 4 || m.MessageType != "app" || m.Ciphertext["$bytes"] == "" || m.CreatedAt == "" {
				t.Errorf("fourth event %+v", ev.Event)
			}
			resume := ev.Event.Cursor
			resp.Body.Close()

			for i := 6; i <= 8; i++ {
				e.send("c1", fmt.Sprintf("m%03d", i))
			}
			// EventSource reconnects with Last-Event-ID, which wins over
			// the original cursor parameter.
			_, s2 := openSSE(t, ts, bob, "cursor="+start, http.Header{"Last-Event-ID": {resume}})
			rest, last := s2.messageIDs(t, 4)
			ids = append(ids, "m004")
			ids = append(ids, rest...)
			if want := msgIDs("m", 1, 8); !slices.Equal(ids, want) {
				t.Errorf("got %v, want %v", ids, want)
			}

			// The cursor parameter alone resumes too, and live follows.
			_, s3 := openSSE(t, ts, bob, "convoId=c1&cursor="+last, nil)
			e.send("c1", "m009")
			if got, _ := s3.messageIDs(t, 1); got[0] != "m009" {
				t.Errorf("after resume by parameter: %v", got)
			}
		})
	}
}

func TestSSEHeartbeat(t *testing.T) {
	e := newEnv(t, backends()[0], Config{})
	ts := e.serve(ServerConfig{Heartbeat: time.Millisecond})
	_, s := openSSE(t, ts, alice, "", nil)
	for {
		if f := s.next(t); f.comment == "heartbeat" {
			return
		}
	}
}

func TestSSERefusals(t *testing.T) {
	e := newEnv(t, backends()[0], Config{MaxPerDID: 1})
	ts := e.serve(ServerConfig{})
	e.convo("c1", alice, bob)
	_, held := openSSE(t, ts, alice, "", nil)
	held.next(t)
	for _, c := range []struct {
		name, did, q string
		status       int
		errName      string
	}{
		{"no caller", "", "", 401, "AuthenticationRequired"},
		{"not a member", carol, "convoId=c1", 403, "NotMember"},
		{"unknown convo", carol, "convoId=nope", 404, "ConvoNotFound"},
		{"bad cursor", bob, "cursor=zzz", 400, "InvalidRequest"},
		{"over the per-DID cap", alice, "", 429, "RateLimitExceeded"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, _ := openSSE(t, ts, c.did, c.q, nil)
			var body xrpc.Body
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != c.status || body.Error != c.errName {
				t.Errorf("got %d %+v, want %d %s", resp.StatusCode, body, c.status, c.errName)
			}
			if c.status == 429 && resp.Header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		})
	}
	resp, err := http.Post(ts.URL+"/xrpc/"+NSIDStream, "application/json", nil)
	testenv.Must(t, err, "post")
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

// gatedWriter is a ResponseWriter whose writes block until the gate
// opens: a client that stopped reading.
type gatedWriter struct {
	*httptest.ResponseRecorder
	gate chan struct{}
}

func (g *gatedWriter) Write(b []byte) (int, error) {
	<-g.gate
	return g.ResponseRecorder.Write(b)
}

func (g *gatedWriter) Flush() {}

// TestSSESlowConsumer stalls a client: after the events that fit the
// buffer it gets an infoEvent carrying the last cursor it received, and
// the stream ends.
func TestSSESlowConsumer(t *testing.T) {
	obs := &liveObserver{live: make(chan struct{}, 1)}
	e := newEnv(t, backends()[0], Config{BufferSize: 2, SlowAfter: time.Millisecond, Observer: obs})
	srv, err := NewServer(ServerConfig{Hub: e.hub})
	testenv.Must(t, err, "server")
	e.convo("c1", alice, bob)
	w := &gatedWriter{ResponseRecorder: httptest.NewRecorder(), gate: make(chan struct{})}
	r := httptest.NewRequest(http.MethodGet, "/xrpc/"+NSIDStream+"?convoId=c1", nil)
	r = r.WithContext(caller.With(r.Context(), who(bob)))
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ServeHTTP(w, r)
	}()
	<-obs.live
	for i := 1; i <= 5; i++ {
		e.send("c1", fmt.Sprintf("m%03d", i))
	}
	for e.hub.Open() != 0 {
		time.Sleep(time.Millisecond) // polls for the close; asserts no timing
	}
	close(w.gate)
	<-done
	body := w.Body.String()
	blocks := strings.Split(strings.TrimSpace(body), "\n\n")
	if len(blocks) != 4 || !strings.Contains(blocks[3], InfoSlowConsumer) {
		t.Fatalf("body:\n%s", body)
	}
	secondID := strings.TrimPrefix(strings.Split(blocks[2], "\n")[0], "id: ")
	if !strings.Contains(blocks[3], `"cursor":"`+secondID+`"`) {
		t.Errorf("the info event does not carry the last delivered cursor %q:\n%s", secondID, blocks[3])
	}
}

// liveObserver signals when a subscription has replayed and gone live.
type liveObserver struct {
	nopObserver
	live chan struct{}
}

func (o *liveObserver) Replayed(string, int) { o.live <- struct{}{} }

// TestSSEResumeBeforeFirstEvent: a stream without a cursor hands out its
// start in an id-only block, so a client that drops before the first
// event and reconnects with Last-Event-ID misses nothing.
func TestSSEResumeBeforeFirstEvent(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b, Config{})
			ts := e.serve(ServerConfig{})
			e.convo("c1", alice, bob)
			e.send("c1", "old")
			resp, s := openSSE(t, ts, bob, "convoId=c1", nil)
			first := s.next(t)
			if first.comment != "ok" || first.id == "" || first.data != "" {
				t.Fatalf("first block %+v, want a comment and an id only", first)
			}
			resp.Body.Close()
			e.send("c1", "m001")
			e.send("c1", "m002")
			_, s2 := openSSE(t, ts, bob, "convoId=c1", http.Header{"Last-Event-ID": {first.id}})
			got, _ := s2.messageIDs(t, 2)
			if b.settle > 0 && got[0] == "old" {
				// A settled start may include the recent past.
				got, _ = s2.messageIDs(t, 1)
				got = append([]string{"m001"}, got...)
			}
			if !slices.Equal(got, []string{"m001", "m002"}) {
				t.Errorf("got %v", got)
			}
		})
	}
}

// TestSSEMessageEventEncoding checks that the envelope written around a
// message's shared JSON is byte for byte what json.Marshal makes of the
// lexicon event, whether the view is shared or encoded on the spot.
func TestSSEMessageEventEncoding(t *testing.T) {
	m := &store.Message{ConvoID: "c0ffee", Seq: 7, Epoch: 2, MsgID: "m<&>1", Ciphertext: []byte{0, 1, 2, 250},
		ReceivedAt: time.Unix(1_800_000_000, 0), IsCommit: true}
	for _, view := range []*sharedView{nil, {}} {
		ev := Event{Type: EventMessage, Cursor: "42", ConvoID: m.ConvoID, Message: m, view: view}
		want, err := json.Marshal(struct {
			Event any `json:"event"`
		}{ev.lexicon(NSIDStream)})
		testenv.Must(t, err, "marshal")
		for range 2 { // the second use of a shared view reads it back
			rec := httptest.NewRecorder()
			sw := &sseWriter{w: rec, rc: http.NewResponseController(rec), timeout: time.Second}
			testenv.Must(t, sw.event(ev), "write event")
			testenv.Must(t, sw.flush(), "flush")
			if got, want := rec.Body.String(), "id: 42\ndata: "+string(want)+"\n\n"; got != want {
				t.Fatalf("shared view %v:\n got %q\nwant %q", view != nil, got, want)
			}
		}
	}
}

// downStore is a store whose database cannot take calls.
type downStore struct{ store.Store }

func (downStore) UserConvos(context.Context, string) ([]store.UserConvo, error) {
	return nil, fmt.Errorf("list conversations: %w: connection refused", store.ErrUnavailable)
}

func (downStore) ActiveMember(context.Context, string, string) (store.Member, error) {
	return store.Member{}, fmt.Errorf("read member: %w: connection refused", store.ErrUnavailable)
}

// TestStreamWhileTheStoreIsDown: opening a stream while the database
// cannot take calls is 503 ServiceUnavailable with Retry-After, for one
// conversation and for all, never a 500.
func TestStreamWhileTheStoreIsDown(t *testing.T) {
	b := backends()[0]
	e := newEnv(t, b, Config{})
	e.convo("c", alice, bob)
	e.hub.Close()
	down := newEnv(t, b, Config{Store: downStore{e.st}})
	ts := down.serve(ServerConfig{})
	for _, q := range []string{"", "convoId=c"} {
		resp, _ := openSSE(t, ts, alice, q, nil)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("stream %q with the store down: %s, Retry-After %q; want 503 with Retry-After", q, resp.Status, resp.Header.Get("Retry-After"))
		}
		var body xrpc.Error
		if err := json.NewDecoder(resp.Body).Decode(&struct {
			Error *string `json:"error"`
		}{&body.Name}); err != nil || body.Name != "ServiceUnavailable" {
			t.Fatalf("stream %q: error %q (%v), want ServiceUnavailable", q, body.Name, err)
		}
	}
}

// TestSSEDetachedStream checks the HTTP/1.1 stream that ServeStream takes
// over from net/http: its body is well-formed chunked encoding, a client
// that leaves frees its slot at once (not at the next heartbeat), and a
// closing hub ends the body cleanly.
func TestSSEDetachedStream(t *testing.T) {
	e := newEnv(t, backends()[0], Config{})
	ts := e.serve(ServerConfig{Heartbeat: time.Hour})
	e.convo("c1", alice, bob)

	resp, s := openSSE(t, ts, bob, "convoId=c1", nil)
	if !slices.Equal(resp.TransferEncoding, []string{"chunked"}) {
		t.Fatalf("Transfer-Encoding %v, want chunked", resp.TransferEncoding)
	}
	if f := s.next(t); f.comment != "ok" {
		t.Fatalf("first frame %+v, want the opening comment", f)
	}
	e.send("c1", "m001")
	e.send("c1", "m002")
	if ids, _ := s.messageIDs(t, 2); !slices.Equal(ids, []string{"m001", "m002"}) {
		t.Fatalf("got %v", ids)
	}
	if e.hub.Open() != 1 {
		t.Fatalf("%d streams open, want 1", e.hub.Open())
	}
	resp.Body.Close()
	deadline := time.Now().Add(guard)
	for e.hub.Open() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stream's slot was not freed after the client left")
		}
		time.Sleep(5 * time.Millisecond)
	}

	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/xrpc/"+NSIDStream+"?convoId=c1", nil)
	req.Header.Set("X-Test-DID", alice)
	resp2, err := http.DefaultClient.Do(req)
	testenv.Must(t, err, "open the second stream")
	defer resp2.Body.Close()
	body := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(resp2.Body)
		body <- err
	}()
	for e.hub.Open() != 1 {
		time.Sleep(5 * time.Millisecond)
	}
	testenv.Must(t, e.hub.Close(), "close hub")
	select {
	case err := <-body:
		if err != nil {
			t.Fatalf("reading the body to its end: %v, want a clean end of the chunked body", err)
		}
	case <-time.After(guard):
		t.Fatal("the stream did not end when the hub closed")
	}
}
