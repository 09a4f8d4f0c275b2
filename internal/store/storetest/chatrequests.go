package storetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// chatRequest stores a pending request from sender to recipient, due in a
// day, holding held.
func (e *env) chatRequest(id, sender, recipient string, held ...store.HeldMessage) store.ChatRequest {
	e.t.Helper()
	r, err := e.s.CreateChatRequest(e.ctx, store.ChatRequest{ID: id, SenderDID: sender, RecipientDID: recipient,
		ExpiresAt: e.clock.Now().Add(24 * time.Hour)}, held, []byte("pair:"+recipient+":"+sender))
	must(e.t, err, "create chat request "+id)
	return r
}

func held(s string) store.HeldMessage {
	return store.HeldMessage{Ciphertext: padded(s), PaddedSize: 512, EphPubKey: []byte("eph-" + s)}
}

// testChatRequests: a request is stored pending with its held messages,
// duplicates and blocked pairs are refused, it closes once, handing its
// messages over and deleting them, and lists page by id.
func testChatRequests(t *testing.T, b Backend) {
	e := b.env(t)
	r := e.chatRequest("01", "did:plc:sam", "did:plc:rita", held("one"), held("two"))
	if r.Status != store.ChatRequestPending || r.MessageCount != 2 || !bucketed(r.CreatedAt) || r.ExpiresAt.IsZero() {
		t.Fatalf("created = %+v", r)
	}
	got, err := e.s.ChatRequest(e.ctx, "01")
	must(t, err, "read")
	if got.SenderDID != "did:plc:sam" || got.RecipientDID != "did:plc:rita" || got.Status != store.ChatRequestPending ||
		got.MessageCount != 2 || !got.CreatedAt.Equal(r.CreatedAt) || !got.ExpiresAt.Equal(r.ExpiresAt) {
		t.Fatalf("read = %+v, created %+v", got, r)
	}
	if _, err := e.s.ChatRequest(e.ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown request: %v", err)
	}
	_, err = e.s.CreateChatRequest(e.ctx, store.ChatRequest{ID: "02", SenderDID: "did:plc:sam", RecipientDID: "did:plc:rita",
		ExpiresAt: e.clock.Now().Add(time.Hour)}, nil, []byte("pair:did:plc:rita:did:plc:sam"))
	if !errors.Is(err, store.ErrDuplicateRequest) {
		t.Fatalf("second pending request of the pair: %v", err)
	}
	// A group invite is another request, and so is another sender's.
	g, err := e.s.CreateChatRequest(e.ctx, store.ChatRequest{ID: "03", SenderDID: "did:plc:sam", RecipientDID: "did:plc:rita",
		GroupID: "abcd", SealedPreview: []byte("sealed"), ExpiresAt: e.clock.Now().Add(time.Hour)}, nil, []byte("pair:x"))
	must(t, err, "group invite")
	if g.GroupID != "abcd" || !bytes.Equal(g.SealedPreview, []byte("sealed")) {
		t.Fatalf("group invite = %+v", g)
	}
	e.clock.Advance(3 * time.Second)
	e.chatRequest("04", "did:plc:tom", "did:plc:rita")
	if _, err := e.s.CreateChatRequest(e.ctx, store.ChatRequest{ID: "01", SenderDID: "did:plc:una", RecipientDID: "did:plc:rita",
		ExpiresAt: e.clock.Now().Add(time.Hour)}, nil, []byte("pair:y")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("taken id: %v", err)
	}

	n, latest, err := e.s.PendingChatRequests(e.ctx, "did:plc:rita")
	must(t, err, "count")
	if n != 3 || !latest.Equal(store.Bucket(e.clock.Now())) {
		t.Fatalf("pending = %d, latest %v", n, latest)
	}
	page, err := e.s.ChatRequestsFor(e.ctx, "did:plc:rita", store.ChatRequestPending, "", 2)
	must(t, err, "list")
	if len(page) != 2 || page[0].ID != "04" || page[1].ID != "03" {
		t.Fatalf("first page = %v", chatIDs(page))
	}
	page, err = e.s.ChatRequestsFor(e.ctx, "did:plc:rita", store.ChatRequestPending, "03", 2)
	must(t, err, "list after")
	if len(page) != 1 || page[0].ID != "01" {
		t.Fatalf("second page = %v", chatIDs(page))
	}
	if other, _ := e.s.ChatRequestsFor(e.ctx, "did:plc:sam", store.ChatRequestPending, "", 10); len(other) != 0 {
		t.Fatalf("the sender lists requests it sent: %v", chatIDs(other))
	}

	closed, msgs, err := e.s.CloseChatRequest(e.ctx, "01", store.ChatRequestAccepted)
	must(t, err, "accept")
	if closed.Status != store.ChatRequestAccepted || closed.ClosedAt.IsZero() || len(msgs) != 2 ||
		msgs[0].Seq != 1 || !bytes.Equal(msgs[1].Ciphertext, padded("two")) || msgs[1].PaddedSize != 512 ||
		!bytes.Equal(msgs[0].EphPubKey, []byte("eph-one")) {
		t.Fatalf("accepted = %+v with %+v", closed, msgs)
	}
	if _, _, err := e.s.CloseChatRequest(e.ctx, "01", store.ChatRequestDeclined); !errors.Is(err, store.ErrNotPending) {
		t.Fatalf("second answer: %v", err)
	}
	if _, _, err := e.s.CloseChatRequest(e.ctx, "nope", store.ChatRequestDeclined); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("answer to an unknown request: %v", err)
	}
	_, _, err = e.s.CloseChatRequest(e.ctx, "03", store.ChatRequestDeclined)
	must(t, err, "decline")
	g, err = e.s.ChatRequest(e.ctx, "03")
	must(t, err, "read declined")
	if g.Status != store.ChatRequestDeclined || g.SealedPreview != nil {
		t.Fatalf("declined = %+v: the preview outlives the request", g)
	}
	acc, err := e.s.ChatRequestsFor(e.ctx, "did:plc:rita", store.ChatRequestAccepted, "", 10)
	must(t, err, "list accepted")
	if len(acc) != 1 || acc[0].ID != "01" || acc[0].MessageCount != 2 {
		t.Fatalf("accepted list = %+v", acc)
	}
	// Once the first is answered, the pair may ask again.
	e.chatRequest("05", "did:plc:sam", "did:plc:rita")
}

// testChatRequestBlocks: a block closes the sender's pending requests to
// the recipient as blocked and refuses the pair's next ones, and no one
// else's.
func testChatRequestBlocks(t *testing.T, b Backend) {
	e := b.env(t)
	e.chatRequest("01", "did:plc:sam", "did:plc:rita", held("a"))
	e.chatRequest("02", "did:plc:tom", "did:plc:rita")
	n, err := e.s.BlockChatSender(e.ctx, "did:plc:rita", "did:plc:sam", []byte("pair:did:plc:rita:did:plc:sam"))
	must(t, err, "block")
	if n != 1 {
		t.Fatalf("blocked %d requests, want 1", n)
	}
	r, err := e.s.ChatRequest(e.ctx, "01")
	must(t, err, "read")
	if r.Status != store.ChatRequestBlocked {
		t.Fatalf("blocked request status = %s", r.Status)
	}
	if _, _, err := e.s.CloseChatRequest(e.ctx, "01", store.ChatRequestAccepted); !errors.Is(err, store.ErrNotPending) {
		t.Fatalf("accepting a blocked request: %v", err)
	}
	_, err = e.s.CreateChatRequest(e.ctx, store.ChatRequest{ID: "03", SenderDID: "did:plc:sam", RecipientDID: "did:plc:rita",
		ExpiresAt: e.clock.Now().Add(time.Hour)}, nil, []byte("pair:did:plc:rita:did:plc:sam"))
	if !errors.Is(err, store.ErrChatBlocked) {
		t.Fatalf("request of a blocked pair: %v", err)
	}
	// Blocking again is harmless and finds nothing more.
	if n, err := e.s.BlockChatSender(e.ctx, "did:plc:rita", "did:plc:sam", []byte("pair:did:plc:rita:did:plc:sam")); err != nil || n != 0 {
		t.Fatalf("second block = %d, %v", n, err)
	}
	if r, _ := e.s.ChatRequest(e.ctx, "02"); r.Status != store.ChatRequestPending {
		t.Fatalf("another sender's request = %s", r.Status)
	}
}

// testChatRequestExpiry: a request past its expiry reads as expired,
// cannot be answered, does not count, and leaves room for a new one; the
// purge closes it (deleting its messages) and later deletes closed rows.
func testChatRequestExpiry(t *testing.T, b Backend) {
	e := b.env(t)
	e.chatRequest("01", "did:plc:sam", "did:plc:rita", held("a"))
	e.chatRequest("02", "did:plc:tom", "did:plc:rita", held("b"))
	_, _, err := e.s.CloseChatRequest(e.ctx, "02", store.ChatRequestDeclined)
	must(t, err, "decline")
	e.clock.Advance(25 * time.Hour)
	r, err := e.s.ChatRequest(e.ctx, "01")
	must(t, err, "read")
	if r.Status != store.ChatRequestExpired {
		t.Fatalf("status past expiry = %s", r.Status)
	}
	if _, _, err := e.s.CloseChatRequest(e.ctx, "01", store.ChatRequestAccepted); !errors.Is(err, store.ErrExpired) {
		t.Fatalf("accepting an expired request: %v", err)
	}
	if n, _, err := e.s.PendingChatRequests(e.ctx, "did:plc:rita"); err != nil || n != 0 {
		t.Fatalf("pending past expiry = %d, %v", n, err)
	}
	exp, err := e.s.ChatRequestsFor(e.ctx, "did:plc:rita", store.ChatRequestExpired, "", 10)
	must(t, err, "list expired")
	if len(exp) != 1 || exp[0].ID != "01" {
		t.Fatalf("expired list = %v", chatIDs(exp))
	}
	n, err := e.s.PurgeChatRequests(e.ctx, 7*24*time.Hour)
	must(t, err, "purge")
	if n != 1 {
		t.Fatalf("first purge = %d, want the expired request closed", n)
	}
	if _, _, err := e.s.CloseChatRequest(e.ctx, "01", store.ChatRequestAccepted); !errors.Is(err, store.ErrNotPending) {
		t.Fatalf("accepting a purged-expired request: %v", err)
	}
	e.chatRequest("03", "did:plc:sam", "did:plc:rita")
	e.clock.Advance(8 * 24 * time.Hour)
	n, err = e.s.PurgeChatRequests(e.ctx, 7*24*time.Hour)
	must(t, err, "second purge")
	// 03 expires (closed now), 01 and 02 closed over 7 days ago go.
	if n != 3 {
		t.Fatalf("second purge = %d, want 3", n)
	}
	for _, id := range []string{"01", "02"} {
		if _, err := e.s.ChatRequest(e.ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("request %s outlives its retention: %v", id, err)
		}
	}
	if _, err := e.s.ChatRequest(e.ctx, "03"); err != nil {
		t.Fatalf("request just expired is gone: %v", err)
	}
}

// testChatRequestCloseConcurrent: two answers at once to one request: one
// wins, the other finds it closed.
func testChatRequestCloseConcurrent(t *testing.T, b Backend) {
	e := b.env(t)
	e.chatRequest("01", "did:plc:sam", "did:plc:rita", held("a"))
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, st := range []string{store.ChatRequestAccepted, store.ChatRequestDeclined} {
		wg.Go(func() { _, _, errs[i] = e.s.CloseChatRequest(e.ctx, "01", st) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrNotPending):
			t.Fatalf("concurrent answer: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d of 2 concurrent answers won, want 1", won)
	}
}

// testChatRequestSettings: settings round-trip; none stored is ErrNotFound.
func testChatRequestSettings(t *testing.T, b Backend) {
	e := b.env(t)
	if _, err := e.s.ChatRequestSettings(e.ctx, "did:plc:rita"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("settings never stored: %v", err)
	}
	want := store.ChatRequestSettings{DID: "did:plc:rita", AllowFollowersBypass: false, AllowFollowingBypass: true, AutoExpireDays: 3}
	_, err := e.s.PutChatRequestSettings(e.ctx, want)
	must(t, err, "put")
	want.AutoExpireDays = 30
	_, err = e.s.PutChatRequestSettings(e.ctx, want)
	must(t, err, "put again")
	got, err := e.s.ChatRequestSettings(e.ctx, "did:plc:rita")
	must(t, err, "read")
	if got != want {
		t.Fatalf("settings = %+v, want %+v", got, want)
	}
}

// testChatRequestsInIdempotent: the chat request writes run in
// Idempotent's transaction and roll back with it.
func testChatRequestsInIdempotent(t *testing.T, b Backend) {
	e := b.env(t)
	boom := errors.New("boom")
	_, _, err := e.s.Idempotent(e.ctx, store.IdempotencyKey{CallerDID: "did:plc:sam", NSID: "x", Key: "k"}, []byte("h"),
		func(ctx context.Context, tx store.Writer) ([]byte, error) {
			cr, ok := tx.(store.ChatRequests)
			if !ok {
				t.Errorf("%T does not implement store.ChatRequests", tx)
				return nil, boom
			}
			if _, err := cr.CreateChatRequest(ctx, store.ChatRequest{ID: "rolled", SenderDID: "did:plc:sam", RecipientDID: "did:plc:rita",
				ExpiresAt: e.clock.Now().Add(time.Hour)}, []store.HeldMessage{held("a")}, []byte("p")); err != nil {
				return nil, err
			}
			if _, _, err := cr.CloseChatRequest(ctx, "rolled", store.ChatRequestAccepted); err != nil {
				t.Errorf("the transaction does not see its own write: %v", err)
			}
			return nil, boom
		})
	if !errors.Is(err, boom) {
		t.Fatalf("idempotent: %v", err)
	}
	if _, err := e.s.ChatRequest(e.ctx, "rolled"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a rolled-back request persists: %v", err)
	}
}

// testChatRequestSchema: the chat request tables keep exactly their
// documented columns (docs/privacy.md): the held messages no sender, the
// blocks no DID, and no column that could hold preview text unsealed.
func testChatRequestSchema(t *testing.T, b Backend) {
	e := b.env(t)
	found := e.exactColumns(map[string][]string{
		"chat_requests": {"closed_at", "created_at", "expires_at", "group_id", "id", "message_count", "recipient_did",
			"sealed_preview", "sender_did", "status"},
		"chat_request_messages": {"ciphertext", "eph_pub_key", "padded_size", "request_id", "seq"},
		"chat_request_blocks":   {"block_hash", "created_at"},
		"chat_request_settings": {"allow_followers_bypass", "allow_following_bypass", "auto_expire_days", "did"},
	})
	for table, got := range found {
		for _, c := range got {
			for _, part := range strings.Split(c, "_") {
				if slices.Contains([]string{"text", "plaintext", "reason", "details", "ip"}, part) {
					t.Errorf("%s has column %q", table, c)
				}
				if part == "preview" && c != "sealed_preview" {
					t.Errorf("%s has an unsealed preview column %q", table, c)
				}
				if (table == "chat_request_messages" || table == "chat_request_blocks") && (part == "sender" || part == "did") {
					t.Errorf("%s has identity column %q", table, c)
				}
			}
		}
	}
}

func chatIDs(rs []store.ChatRequest) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}
