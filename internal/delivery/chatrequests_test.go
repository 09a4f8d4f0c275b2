package delivery_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/delivery"
	"github.com/cairn-chat/cairn-caddy/internal/ratelimit"
	"github.com/cairn-chat/cairn-caddy/internal/seal"
	"github.com/cairn-chat/cairn-caddy/internal/store/sqlite"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// heldMsg is a held message of n bytes (a padding bucket).
func heldMsg(t testing.TB, n int) (obj, []byte) {
	ct := randBytes(t, n)
	return obj{"ciphertext": b64bytes(ct), "paddedSize": n, "ephPubKey": b64bytes([]byte("eph"))}, ct
}

// reachable makes id a known recipient: it publishes a key package.
func (e *env) reachable(t testing.TB, id who) testKeyPackage {
	t.Helper()
	kp := newKeyPackage(t, id.DID+"#"+id.DeviceID, e.clock.Now(), 30*day)
	e.publish(id, kp, "kp-"+id.DID).must(t, http.StatusOK)
	return kp
}

func bytesField(t testing.TB, v any) []byte {
	t.Helper()
	m, _ := v.(map[string]any)
	s, _ := m["$bytes"].(string)
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		t.Fatalf("bytes field %v: %v", v, err)
	}
	return b
}

func TestSendAndAcceptChatRequest(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.reachable(t, bob)
		m1, ct1 := heldMsg(t, 512)
		m2, ct2 := heldMsg(t, 1024)
		body := obj{"recipientDid": bob.DID, "previewText": "hello from alice", "heldMessages": []obj{m1, m2}}
		r := e.post(alice, "sendChatRequest", body).must(t, http.StatusOK)
		id, _ := r.body["requestId"].(string)
		if len(id) != 32 || r.body["status"] != "pending" || r.body["createdAt"] == nil || r.body["expiresAt"] == nil || r.body["convoId"] != nil {
			t.Fatalf("sendChatRequest: %s", r.raw)
		}
		// A retry of the same body replays the answer; another request of
		// the pair while this one is pending is a duplicate.
		if again := e.post(alice, "sendChatRequest", body).must(t, http.StatusOK); !bytes.Equal(again.raw, r.raw) {
			t.Fatalf("retry answered %s, first %s", again.raw, r.raw)
		}
		m3, _ := heldMsg(t, 512)
		e.post(alice, "sendChatRequest", obj{"recipientDid": bob.DID, "heldMessages": []obj{m3}}).isErr(t, http.StatusConflict, "DuplicateRequest")
		e.post(alice, "sendChatRequest", obj{"recipientDid": alice.DID}).isErr(t, http.StatusBadRequest, "SelfRequest")
		e.post(alice, "sendChatRequest", obj{"recipientDid": mallory.DID}).isErr(t, http.StatusNotFound, "RecipientNotFound")

		cnt := e.get(bob, "getRequestCount", nil).must(t, http.StatusOK)
		if cnt.body["pendingCount"] != float64(1) || cnt.body["lastRequestAt"] != r.body["createdAt"] {
			t.Fatalf("getRequestCount: %s", cnt.raw)
		}
		e.get(who{}, "getRequestCount", nil).isErr(t, http.StatusUnauthorized, "Unauthorized")
		if c := e.get(alice, "getRequestCount", nil).must(t, http.StatusOK); c.body["pendingCount"] != float64(0) || c.body["lastRequestAt"] != nil {
			t.Fatalf("the sender's count: %s", c.raw)
		}
		l := e.get(bob, "listChatRequests", nil).must(t, http.StatusOK)
		reqs, _ := l.body["requests"].([]any)
		if len(reqs) != 1 {
			t.Fatalf("listChatRequests: %s", l.raw)
		}
		v := reqs[0].(map[string]any)
		// Without a preview sealer the preview is dropped unread.
		if v["id"] != id || v["senderDid"] != alice.DID || v["status"] != "pending" || v["messageCount"] != float64(2) ||
			v["isGroupInvite"] != false || v["previewText"] != nil {
			t.Fatalf("chatRequest view: %s", l.raw)
		}
		if l := e.get(alice, "listChatRequests", nil).must(t, http.StatusOK); len(l.body["requests"].([]any)) != 0 {
			t.Fatalf("the sender lists the requests it sent: %s", l.raw)
		}

		// Only the recipient sees or answers it.
		e.post(carol, "acceptChatRequest", obj{"requestId": id}).isErr(t, http.StatusNotFound, "RequestNotFound")
		e.post(bob, "acceptChatRequest", obj{"requestId": "nope"}).isErr(t, http.StatusNotFound, "RequestNotFound")
		a := e.post(bob, "acceptChatRequest", obj{"requestId": id}).must(t, http.StatusOK)
		if a.body["convoId"] != id || a.body["acceptedAt"] == nil {
			t.Fatalf("acceptChatRequest: %s", a.raw)
		}
		held := a.body["heldMessages"].([]any)
		if len(held) != 2 {
			t.Fatalf("held messages: %s", a.raw)
		}
		for i, want := range [][]byte{ct1, ct2} {
			h := held[i].(map[string]any)
			if !bytes.Equal(bytesField(t, h["ciphertext"]), want) || h["sequence"] != float64(i+1) || h["paddedSize"] != float64(len(want)) ||
				!bytes.Equal(bytesField(t, h["ephPubKey"]), []byte("eph")) {
				t.Fatalf("held message %d: %v", i, h)
			}
		}
		if again := e.post(bob, "acceptChatRequest", obj{"requestId": id}).must(t, http.StatusOK); !bytes.Equal(again.raw, a.raw) {
			t.Fatalf("accept retry: %s", again.raw)
		}
		// The request is now a conversation of the two.
		ms, err := e.store.Members(t.Context(), []string{id}, false)
		if err != nil {
			t.Fatal(err)
		}
		var users []string
		for _, m := range ms[id] {
			users = append(users, m.UserDID+":"+string(m.Role))
		}
		if strings.Join(users, ",") != "did:plc:alice:member,did:plc:bob:admin" && strings.Join(users, ",") != "did:plc:bob:admin,did:plc:alice:member" {
			t.Fatalf("members of the accepted conversation: %v", users)
		}
		c := e.get(alice, "getConvos", nil).must(t, http.StatusOK)
		if !strings.Contains(string(c.raw), id) {
			t.Fatalf("the requester's getConvos lacks the conversation: %s", c.raw)
		}
		e.post(bob, "declineChatRequest", obj{"requestId": id}).isErr(t, http.StatusNotFound, "RequestNotFound")
		if l := e.get(bob, "listChatRequests", url.Values{"status": {"accepted"}}).must(t, http.StatusOK); !strings.Contains(string(l.raw), id) {
			t.Fatalf("accepted list: %s", l.raw)
		}

		// Declined requests are AlreadyProcessed, expired ones RequestExpired.
		e.reachable(t, carol)
		d := e.post(alice, "sendChatRequest", obj{"recipientDid": carol.DID}).must(t, http.StatusOK)
		did, _ := d.body["requestId"].(string)
		e.post(carol, "declineChatRequest", obj{"requestId": did, "reportReason": "spam", "reportDetails": "unsolicited"}).must(t, http.StatusOK)
		e.post(carol, "acceptChatRequest", obj{"requestId": did}).isErr(t, http.StatusConflict, "AlreadyProcessed")
		x := e.post(eve, "sendChatRequest", obj{"recipientDid": carol.DID}).must(t, http.StatusOK)
		xid, _ := x.body["requestId"].(string)
		e.clock.Advance(8 * day)
		e.post(carol, "acceptChatRequest", obj{"requestId": xid}).isErr(t, http.StatusGone, "RequestExpired")
		e.post(carol, "declineChatRequest", obj{"requestId": xid}).isErr(t, http.StatusNotFound, "RequestNotFound")
		if l := e.get(carol, "listChatRequests", url.Values{"status": {"expired"}}).must(t, http.StatusOK); !strings.Contains(string(l.raw), xid) {
			t.Fatalf("expired list: %s", l.raw)
		}
	})
}

func TestAcceptChatRequestWithWelcome(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.reachable(t, bob)
		akp := e.reachable(t, alice)
		r := e.post(alice, "sendChatRequest", obj{"recipientDid": bob.DID}).must(t, http.StatusOK)
		id, _ := r.body["requestId"].(string)
		// A Welcome that adds none of the requester's key packages is refused.
		e.post(bob, "acceptChatRequest", obj{"requestId": id, "welcomeData": b64bytes(welcome(t, suite, randBytes(t, 32)))}).
			isErr(t, http.StatusBadRequest, "InvalidMessage")
		e.post(bob, "acceptChatRequest", obj{"requestId": id, "welcomeData": b64bytes(welcome(t, suite, akp.ref))}).must(t, http.StatusOK)
		w := e.get(alice, "getWelcome", url.Values{"convoId": {id}}).must(t, http.StatusOK)
		if w.body["convoId"] != id {
			t.Fatalf("getWelcome: %s", w.raw)
		}
		ep := e.get(bob, "getEpoch", url.Values{"convoId": {id}}).must(t, http.StatusOK)
		if ep.body["currentEpoch"] != float64(1) {
			t.Fatalf("epoch after the Welcome: %s", ep.raw)
		}
	})
}

func TestGroupInviteChatRequest(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice)
		e.reachable(t, bob)
		e.post(carol, "sendChatRequest", obj{"recipientDid": bob.DID, "isGroupInvite": true, "groupId": g}).isErr(t, http.StatusForbidden, "NotMember")
		e.post(alice, "sendChatRequest", obj{"recipientDid": bob.DID, "groupId": g}).isErr(t, http.StatusBadRequest, "InvalidRequest")
		r := e.post(alice, "sendChatRequest", obj{"recipientDid": bob.DID, "isGroupInvite": true, "groupId": g}).must(t, http.StatusOK)
		id, _ := r.body["requestId"].(string)
		l := e.get(bob, "listChatRequests", nil).must(t, http.StatusOK)
		if !strings.Contains(string(l.raw), `"isGroupInvite":true`) || !strings.Contains(string(l.raw), g) {
			t.Fatalf("group invite view: %s", l.raw)
		}
		e.post(bob, "acceptChatRequest", obj{"requestId": id, "welcomeData": b64bytes([]byte("x"))}).isErr(t, http.StatusBadRequest, "InvalidRequest")
		a := e.post(bob, "acceptChatRequest", obj{"requestId": id}).must(t, http.StatusOK)
		if a.body["convoId"] != g {
			t.Fatalf("accepted group invite: %s", a.raw)
		}
	})
}

func TestBlockChatSender(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.reachable(t, bob)
		r := e.post(alice, "sendChatRequest", obj{"recipientDid": bob.DID}).must(t, http.StatusOK)
		id, _ := r.body["requestId"].(string)
		e.post(bob, "blockChatSender", obj{"senderDid": bob.DID}).isErr(t, http.StatusBadRequest, "InvalidRequest")
		e.post(bob, "blockChatSender", obj{"senderDid": carol.DID, "requestId": id}).isErr(t, http.StatusBadRequest, "InvalidRequest")
		e.post(bob, "blockChatSender", obj{"senderDid": alice.DID, "reason": "nope"}).isErr(t, http.StatusBadRequest, "InvalidRequest")
		b := e.post(bob, "blockChatSender", obj{"senderDid": alice.DID, "requestId": id, "reason": "spam"}).must(t, http.StatusOK)
		if b.body["success"] != true || b.body["blockedCount"] != float64(1) {
			t.Fatalf("blockChatSender: %s", b.raw)
		}
		e.post(bob, "acceptChatRequest", obj{"requestId": id}).isErr(t, http.StatusConflict, "AlreadyProcessed")
		e.post(alice, "sendChatRequest", obj{"recipientDid": bob.DID, "previewText": "again"}).isErr(t, http.StatusForbidden, "BlockedByRecipient")
		if l := e.get(bob, "listChatRequests", url.Values{"status": {"blocked"}}).must(t, http.StatusOK); !strings.Contains(string(l.raw), id) {
			t.Fatalf("blocked list: %s", l.raw)
		}
		// Others still reach bob.
		e.post(carol, "sendChatRequest", obj{"recipientDid": bob.DID}).must(t, http.StatusOK)
	})
}

func TestChatRequestRespectsBlueskyBlocksAndOptIn(t *testing.T) {
	blockEnvs(t, func(t *testing.T, e *env, pds *atprototest.PDS) {
		e.reachable(t, bob)
		pds.Block(bob.DID, alice.DID)
		e.post(alice, "sendChatRequest", obj{"recipientDid": bob.DID}).isErr(t, http.StatusForbidden, "BlockedByRecipient")
		e.post(carol, "sendChatRequest", obj{"recipientDid": bob.DID}).must(t, http.StatusOK)
	})
	for _, b := range backends {
		t.Run(b.name+"/optin", func(t *testing.T) {
			e := newEnv(t, b.open, func(c *delivery.Config) { c.RequireOptIn = true })
			e.reachable(t, bob)
			e.post(alice, "sendChatRequest", obj{"recipientDid": bob.DID}).isErr(t, http.StatusNotFound, "RecipientNotFound")
			e.post(bob, "optIn", obj{}).must(t, http.StatusOK)
			e.post(alice, "sendChatRequest", obj{"recipientDid": bob.DID}).isErr(t, http.StatusForbidden, "NotOptedIn")
			e.post(alice, "optIn", obj{}).must(t, http.StatusOK)
			e.post(alice, "sendChatRequest", obj{"recipientDid": bob.DID}).must(t, http.StatusOK)
		})
	}
}

func TestChatRequestSettings(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		s := e.get(bob, "getChatRequestSettings", nil).must(t, http.StatusOK)
		if s.body["allowFollowersBypass"] != true || s.body["allowFollowingBypass"] != false || s.body["autoExpireDays"] != float64(7) {
			t.Fatalf("default settings: %s", s.raw)
		}
		e.post(bob, "updateChatRequestSettings", obj{"autoExpireDays": 31}).isErr(t, http.StatusBadRequest, "InvalidRequest")
		e.post(bob, "updateChatRequestSettings", obj{"autoExpireDays": 0}).isErr(t, http.StatusBadRequest, "InvalidRequest")
		u := e.post(bob, "updateChatRequestSettings", obj{"autoExpireDays": 2, "allowFollowingBypass": true}).must(t, http.StatusOK)
		if u.body["allowFollowersBypass"] != true || u.body["allowFollowingBypass"] != true || u.body["autoExpireDays"] != float64(2) {
			t.Fatalf("updated settings: %s", u.raw)
		}
		if s := e.get(bob, "getChatRequestSettings", nil).must(t, http.StatusOK); !bytes.Equal(s.raw, u.raw) {
			t.Fatalf("settings read %s, updated %s", s.raw, u.raw)
		}
		// The recipient's autoExpireDays sets new requests' expiry.
		e.reachable(t, bob)
		r := e.post(alice, "sendChatRequest", obj{"recipientDid": bob.DID}).must(t, http.StatusOK)
		created, _ := time.Parse(time.RFC3339, r.body["createdAt"].(string))
		expires, _ := time.Parse(time.RFC3339, r.body["expiresAt"].(string))
		if d := expires.Sub(created); d < 2*day-2*time.Second || d > 2*day+2*time.Second {
			t.Fatalf("expiry %v after creation, want 2 days", d)
		}
	})
}

func TestChatRequestQuotas(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b.open, func(c *delivery.Config) {
				c.ChatRequestLimiter = ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
				c.ChatRequestsPerSender = ratelimit.Limit{Rate: 2, Period: time.Hour, Burst: 2}
				c.ChatRequestsPerRecipient = ratelimit.Limit{Rate: 3, Period: time.Hour, Burst: 3}
			})
			for _, id := range []who{bob, carol, eve, mallory} {
				e.reachable(t, id)
			}
			e.post(alice, "sendChatRequest", obj{"recipientDid": bob.DID}).must(t, http.StatusOK)
			e.post(alice, "sendChatRequest", obj{"recipientDid": carol.DID}).must(t, http.StatusOK)
			r := e.post(alice, "sendChatRequest", obj{"recipientDid": eve.DID})
			r.isErr(t, http.StatusTooManyRequests, "RateLimited")
			if r.header.Get("Retry-After") == "" {
				t.Fatal("RateLimited without Retry-After")
			}
			// mallory receives from three senders, not a fourth.
			for _, s := range []who{bob, carol, eve} {
				e.post(s, "sendChatRequest", obj{"recipientDid": mallory.DID}).must(t, http.StatusOK)
			}
			e.post(who{DID: "did:plc:zed", DeviceID: "z1"}, "sendChatRequest", obj{"recipientDid": mallory.DID}).isErr(t, http.StatusTooManyRequests, "RateLimited")
		})
	}
}

// TestChatRequestPreviewPrivacy: without a sealer the preview is not
// stored at all; with one it is stored only sealed, opens for the
// recipient alone, and goes with the request. The SQLite files are read
// byte for byte for the plaintext.
func TestChatRequestPreviewPrivacy(t *testing.T) {
	const secret = "meet me at the old mill at nine"
	for _, sealed := range []bool{false, true} {
		t.Run(map[bool]string{false: "dropped", true: "sealed"}[sealed], func(t *testing.T) {
			dir := t.TempDir()
			c := &clock{t: start}
			st, err := sqlite.Open(t.Context(), sqlite.Config{Path: filepath.Join(dir, "cairn.db"), Now: c.Now})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			cfg := delivery.Config{Store: st, Now: c.Now}
			if sealed {
				key, _ := seal.NewKey()
				box, err := seal.New(key)
				if err != nil {
					t.Fatal(err)
				}
				cfg.ChatPreviewSealer = box
			}
			e := &env{t: t, clock: c, store: st, svc: mustService(t, cfg)}
			e.reachable(t, bob)
			e.reachable(t, carol)
			r := e.post(alice, "sendChatRequest", obj{"recipientDid": bob.DID, "previewText": secret}).must(t, http.StatusOK)
			id, _ := r.body["requestId"].(string)
			e.post(alice, "sendChatRequest", obj{"recipientDid": carol.DID, "previewText": strings.Repeat("x", 201)}).isErr(t, http.StatusBadRequest, "InvalidRequest")
			l := e.get(bob, "listChatRequests", nil).must(t, http.StatusOK)
			if got := strings.Contains(string(l.raw), secret); got != sealed {
				t.Fatalf("recipient sees the preview: %v, want %v: %s", got, sealed, l.raw)
			}
			stored, err := st.ChatRequest(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			if (len(stored.SealedPreview) > 0) != sealed || bytes.Contains(stored.SealedPreview, []byte(secret)) {
				t.Fatalf("stored preview = %q", stored.SealedPreview)
			}
			if inFiles(t, dir, secret) {
				t.Fatal("the preview's plaintext is in the database files")
			}
			e.post(bob, "declineChatRequest", obj{"requestId": id}).must(t, http.StatusOK)
			if stored, _ := st.ChatRequest(t.Context(), id); stored.SealedPreview != nil {
				t.Fatal("the sealed preview outlives the declined request")
			}
		})
	}
}

// inFiles reports whether any file in dir (the database, its WAL)
// contains s.
func inFiles(t *testing.T, dir, s string) bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		b, err := os.ReadFile(filepath.Join(dir, en.Name()))
		if err == nil && bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}

// TestChatRequestServerErrorsNameNoOne: the faults the service reports
// for logging (OnServerError) carry no DID of the parties.
func TestChatRequestServerErrorsNameNoOne(t *testing.T) {
	var reported []string
	c := &clock{t: start}
	st := openSQLite(t, c.Now)
	svc := mustService(t, delivery.Config{Store: st, Now: c.Now,
		ChatRequestLimiter: ratelimit.LimiterFunc(func(context.Context, string, ratelimit.Limit) (ratelimit.Result, error) {
			return ratelimit.Result{}, context.DeadlineExceeded
		}),
		OnServerError: func(r *http.Request, xe *xrpc.Error) { reported = append(reported, xe.Error()) }})
	e := &env{t: t, clock: c, store: st, svc: svc}
	e.reachable(t, bob)
	e.post(alice, "sendChatRequest", obj{"recipientDid": bob.DID}).isErr(t, http.StatusServiceUnavailable, "RateLimited")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	e.get(bob, "listChatRequests", nil)
	e.post(alice, "sendChatRequest", obj{"recipientDid": bob.DID})
	for _, msg := range reported {
		if strings.Contains(msg, "did:") {
			t.Fatalf("a reported fault names a DID: %s", msg)
		}
	}
}

// FuzzSendChatRequestBody: no body makes sendChatRequest's decoder panic,
// and whatever it accepts is within the lexicon's bounds; what it refuses
// is a 4xx XRPC error.
func FuzzSendChatRequestBody(f *testing.F) {
	ct := base64.RawStdEncoding.EncodeToString(make([]byte, 512))
	for _, s := range []string{
		`{"recipientDid":"did:plc:bob"}`,
		`{"recipientDid":"did:plc:bob","previewText":"hi","heldMessages":[{"ciphertext":{"$bytes":"` + ct + `"},"paddedSize":512,"ephPubKey":{"$bytes":"AAE"}}]}`,
		`{"recipientDid":"did:plc:bob","isGroupInvite":true,"groupId":"abcd"}`,
		`{"recipientDid":"did:plc:bob#d","heldMessages":[{}]}`, `{"heldMessages":null}`, `[]`, `{"paddedSize":1e99}`,
	} {
		f.Add([]byte(s))
	}
	svc, err := delivery.New(delivery.Config{Store: openSQLite(f, time.Now), MaxMessageBytes: 1 << 16})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		recipient, held, err := delivery.DecodeSendChatRequest(svc, body)
		if err != nil {
			xe, ok := err.(*xrpc.Error)
			if !ok || xe.Status < 400 || xe.Status > 499 {
				t.Fatalf("refusal %v is not a 4xx XRPC error", err)
			}
			return
		}
		if recipient == "" || held > 5 {
			t.Fatalf("accepted recipient %q with %d held messages", recipient, held)
		}
	})
}
