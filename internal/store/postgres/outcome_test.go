package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// cutProxy relays PostgreSQL connections and, once armed, cuts the one
// whose client sends the marker bytes: it passes them on to the server,
// lets the server answer in full (so a COMMIT is applied), and closes the
// connection before the client hears the answer. The client is left as
// after a crash between the server's commit and its reply.
type cutProxy struct {
	t      *testing.T
	l      net.Listener
	target string
	marker atomic.Pointer[[]byte]
	cuts   atomic.Int64
	wg     sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{t: t, l: l, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(func() { l.Close(); p.wg.Wait() })
	return p
}

// arm makes the next client message containing marker the cut one.
func (p *cutProxy) arm(marker string) {
	b := []byte(marker)
	p.marker.Store(&b)
}

func (p *cutProxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		var cut atomic.Bool
		p.wg.Go(func() { p.toServer(c, s, &cut) })
		p.wg.Go(func() { p.toClient(c, s, &cut) })
	}
}

// toServer copies the client's bytes, marking the connection cut when a
// read holds the armed marker.
func (p *cutProxy) toServer(c, s net.Conn, cut *atomic.Bool) {
	defer s.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if m := p.marker.Load(); m != nil && bytes.Contains(buf[:n], *m) && p.marker.CompareAndSwap(m, nil) {
				cut.Store(true)
			}
			if _, werr := s.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// toClient relays the server's messages one by one; once the connection
// is cut it swallows them up to the server's ReadyForQuery, then closes
// both sides.
func (p *cutProxy) toClient(c, s net.Conn, cut *atomic.Bool) {
	defer c.Close()
	hdr := make([]byte, 5)
	for {
		if _, err := io.ReadFull(s, hdr); err != nil {
			return
		}
		body := make([]byte, int(binary.BigEndian.Uint32(hdr[1:]))-4)
		if _, err := io.ReadFull(s, body); err != nil {
			return
		}
		if cut.Load() {
			if hdr[0] == 'Z' {
				p.cuts.Add(1)
				s.Close()
				return
			}
			continue
		}
		if _, err := c.Write(append(hdr, body...)); err != nil {
			return
		}
	}
}

// openThrough opens a store on a fresh database through a cutProxy.
func openThrough(t *testing.T) (*Store, *cutProxy) {
	t.Helper()
	dbURL := testenv.Postgres(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	p := newCutProxy(t, u.Host)
	u.Host = p.l.Addr().String()
	s, err := Open(t.Context(), Config{URL: u.String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	_, err = s.CreateConvo(t.Context(), store.NewConvo{ID: "c", CreatorDID: "did:plc:a", CipherSuite: "suite",
		Members: []store.NewMember{{MemberDID: "did:plc:a"}}})
	testenv.Must(t, err, "create convo")
	return s, p
}

// TestCommitCutOffIsOutcomeUnknown: the connection dies after the server
// committed but before the client heard it. The write is reported as
// ErrOutcomeUnknown (and so ErrUnavailable), it was in fact applied, and
// repeating it under the same idempotency key replays its response
// instead of applying it again.
func TestCommitCutOffIsOutcomeUnknown(t *testing.T) {
	s, p := openThrough(t)
	key := store.IdempotencyKey{CallerDID: "did:plc:a", NSID: "n", Key: "k"}
	runs := 0
	write := func() ([]byte, bool, error) {
		return s.Idempotent(t.Context(), key, []byte("h"), func(ctx context.Context, tx store.Writer) ([]byte, error) {
			runs++
			m, err := tx.AppendMessage(ctx, store.NewMessage{ConvoID: "c", MsgID: "m1", Ciphertext: []byte("x"), PaddedSize: 512})
			if err != nil {
				return nil, err
			}
			return []byte{byte(m.Seq)}, nil
		})
	}
	p.arm("commit\x00")
	_, _, err := write()
	if p.cuts.Load() != 1 {
		t.Fatalf("the proxy cut %d connections, want 1", p.cuts.Load())
	}
	if !errors.Is(err, store.ErrOutcomeUnknown) || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("write whose COMMIT was cut off: %v, want ErrOutcomeUnknown", err)
	}
	if _, err := s.Message(t.Context(), "c", "m1"); err != nil {
		t.Fatalf("the cut-off write was applied, but reading it: %v", err)
	}
	resp, replayed, err := write()
	if err != nil || !replayed || !bytes.Equal(resp, []byte{1}) || runs != 1 {
		t.Fatalf("retry: %v replayed=%v resp=%v, %d runs: want the first response replayed, run once", err, replayed, resp, runs)
	}
}

// TestAutocommitCutOffIsOutcomeUnknown: a message appended alone is one
// autocommitted statement. Cut off after the server ran it, the append is
// ErrOutcomeUnknown; the message is stored, and appending the same msgId
// again stores nothing more (ErrConflict, which the delivery layer
// answers from the stored message).
func TestAutocommitCutOffIsOutcomeUnknown(t *testing.T) {
	s, p := openThrough(t)
	msg := store.NewMessage{ConvoID: "c", MsgID: "cut-off-append", Ciphertext: []byte("x"), PaddedSize: 512}
	p.arm(msg.MsgID)
	_, err := s.AppendMessage(t.Context(), msg)
	if p.cuts.Load() != 1 {
		t.Fatalf("the proxy cut %d connections, want 1", p.cuts.Load())
	}
	if !errors.Is(err, store.ErrOutcomeUnknown) {
		t.Fatalf("append whose statement was cut off: %v, want ErrOutcomeUnknown", err)
	}
	if _, err := s.AppendMessage(t.Context(), msg); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("retry of an applied append: %v, want ErrConflict", err)
	}
	page, err := s.Messages(t.Context(), "c", 0, 10)
	testenv.Must(t, err, "read messages")
	if len(page.Messages) != 1 || page.Messages[0].MsgID != msg.MsgID || page.Messages[0].Seq != 1 {
		t.Fatalf("stored %+v, want the one message at seq 1", page.Messages)
	}
}

// TestStatementCutOffBeforeCommitIsUnavailable: a connection lost inside a
// transaction, before its COMMIT, is ErrUnavailable but not
// ErrOutcomeUnknown: the server rolled the transaction back, and nothing
// was written.
func TestStatementCutOffBeforeCommitIsUnavailable(t *testing.T) {
	s, p := openThrough(t)
	p.arm("did:plc:new")
	_, err := s.AddMembers(t.Context(), "c", []store.NewMember{{MemberDID: "did:plc:new"}}, nil)
	if p.cuts.Load() != 1 {
		t.Fatalf("the proxy cut %d connections, want 1", p.cuts.Load())
	}
	if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrOutcomeUnknown) {
		t.Fatalf("write cut off before COMMIT: %v, want ErrUnavailable only", err)
	}
	ms, err := s.Members(t.Context(), []string{"c"}, true)
	testenv.Must(t, err, "read members")
	if len(ms["c"]) != 1 {
		t.Fatalf("members %+v: the rolled-back write left a row", ms["c"])
	}
}

// TestBatchCommitCutOffIsOutcomeUnknown: appends that arrive together
// commit in one pipelined transaction. Cut off after the server committed
// it, every append of the batch hears ErrOutcomeUnknown; all were stored,
// once, and a retry of each finds its message taken (ErrConflict).
func TestBatchCommitCutOffIsOutcomeUnknown(t *testing.T) {
	s, p := openThrough(t)
	var batch []*pendingAppend
	for _, id := range []string{"b1", "b2", "b3"} {
		batch = append(batch, &pendingAppend{ctx: t.Context(), done: make(chan struct{}),
			m: store.NewMessage{ConvoID: "c", MsgID: id, Ciphertext: []byte(id), PaddedSize: 512}})
	}
	p.arm("commit\x00")
	if err := s.appends.together(batch); err != nil {
		t.Fatalf("together: %v: a failed COMMIT is every append's outcome, not a reason to rerun them", err)
	}
	if p.cuts.Load() != 1 {
		t.Fatalf("the proxy cut %d connections, want 1", p.cuts.Load())
	}
	for _, pa := range batch {
		if !errors.Is(pa.err, store.ErrOutcomeUnknown) {
			t.Errorf("%s: %v, want ErrOutcomeUnknown", pa.m.MsgID, pa.err)
		}
		if _, err := s.AppendMessage(t.Context(), pa.m); !errors.Is(err, store.ErrConflict) {
			t.Errorf("retry of %s: %v, want ErrConflict (it was stored)", pa.m.MsgID, err)
		}
	}
	page, err := s.Messages(t.Context(), "c", 0, 10)
	testenv.Must(t, err, "read messages")
	if len(page.Messages) != 3 || page.Messages[2].Seq != 3 {
		t.Fatalf("stored %+v, want the three messages at seq 1..3", page.Messages)
	}
}
