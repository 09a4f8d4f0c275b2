package delivery_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/mlswire"
)

// send posts an application message of 512 bytes for epoch.
func (e *env) send(id who, g string, epoch uint64, msgID string) resp {
	ct := app(e.t, g, epoch)
	return e.post(id, "sendMessage", obj{
		"convoId": g, "msgId": msgID, "ciphertext": b64bytes(ct), "epoch": epoch, "paddedSize": len(ct),
	})
}

func TestSendAndGetMessages(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice, bob)
		ct := app(t, g, 0)
		msg := obj{"convoId": g, "msgId": "01HZZZZZZZZZZZZZZZZZZZZZZZ", "ciphertext": b64bytes(ct), "epoch": 0, "paddedSize": 512}
		r := e.post(alice, "sendMessage", msg).must(t, http.StatusOK)
		if r.body["messageId"] != "01HZZZZZZZZZZZZZZZZZZZZZZZ" || r.body["seq"] != float64(1) || r.body["epoch"] != float64(0) || r.body["receivedAt"] == nil {
			t.Fatalf("sendMessage: %s", r.raw)
		}
		// A retry (same msgId) replays; the same msgId with other bytes is refused.
		if again := e.post(alice, "sendMessage", msg).must(t, http.StatusOK); string(again.raw) != string(r.raw) {
			t.Fatalf("retry differs: %s", again.raw)
		}
		other := obj{"convoId": g, "msgId": "01HZZZZZZZZZZZZZZZZZZZZZZZ", "ciphertext": b64bytes(app(t, g, 0)), "epoch": 0, "paddedSize": 512}
		e.post(alice, "sendMessage", other).isErr(t, http.StatusUnprocessableEntity, "IdempotencyKeyReused")
		// The message row is the record, not the caller: another member
		// resending the same bytes gets the same answer and writes nothing
		// (the store keeps no sender to tell them apart); other bytes
		// under a taken msgId are refused whoever sends them.
		if again := e.post(bob, "sendMessage", msg).must(t, http.StatusOK); string(again.raw) != string(r.raw) {
			t.Fatalf("resend by another member differs: %s", again.raw)
		}
		e.post(bob, "sendMessage", other).isErr(t, http.StatusUnprocessableEntity, "IdempotencyKeyReused")
		for i := 2; i <= 5; i++ {
			e.send(bob, g, 0, fmt.Sprintf("m%d", i)).must(t, http.StatusOK)
		}

		page := e.get(bob, "getMessages", url.Values{"convoId": {g}, "limit": {"3"}}).must(t, http.StatusOK)
		msgs := page.body["messages"].([]any)
		if len(msgs) != 3 || page.body["lastSeq"] != float64(3) || page.body["gapInfo"] != nil {
			t.Fatalf("page 1: %s", page.raw)
		}
		m0 := msgs[0].(map[string]any)
		if m0["id"] != "01HZZZZZZZZZZZZZZZZZZZZZZZ" || m0["convoId"] != g || m0["seq"] != float64(1) || m0["epoch"] != float64(0) ||
			m0["messageType"] != "app" || m0["createdAt"] == nil || m0["sender"] != nil {
			t.Fatalf("messageView: %v", m0)
		}
		if b := m0["ciphertext"].(map[string]any)["$bytes"]; b != b64bytes(ct)["$bytes"] {
			t.Fatal("ciphertext does not round-trip")
		}
		page2 := e.get(bob, "getMessages", url.Values{"convoId": {g}, "sinceSeq": {"3"}}).must(t, http.StatusOK)
		if n := len(page2.body["messages"].([]any)); n != 2 || page2.body["lastSeq"] != float64(5) {
			t.Fatalf("page 2: %s", page2.raw)
		}
		empty := e.get(bob, "getMessages", url.Values{"convoId": {g}, "sinceSeq": {"5"}}).must(t, http.StatusOK)
		if n := len(empty.body["messages"].([]any)); n != 0 || empty.body["lastSeq"] != nil {
			t.Fatalf("empty page: %s", empty.raw)
		}
		e.get(bob, "getMessages", url.Values{"convoId": {g}, "sinceSeq": {"6"}}).isErr(t, http.StatusBadRequest, "InvalidCursor")
		e.get(eve, "getMessages", url.Values{"convoId": {g}}).isErr(t, http.StatusForbidden, "NotMember")
		e.get(eve, "getMessages", url.Values{"convoId": {newGroup(t)}}).isErr(t, http.StatusNotFound, "ConvoNotFound")

		// The MLS framing decides, not the declared fields.
		cases := []struct {
			name   string
			body   obj
			status int
			err    string
		}{
			{"future epoch", obj{"convoId": g, "msgId": "f", "ciphertext": b64bytes(app(t, g, 1)), "epoch": 1, "paddedSize": 512}, 409, "EpochMismatch"},
			{"declared epoch differs", obj{"convoId": g, "msgId": "d", "ciphertext": b64bytes(app(t, g, 0)), "epoch": 1, "paddedSize": 512}, 400, "EpochMismatch"},
			{"other group", obj{"convoId": g, "msgId": "o", "ciphertext": b64bytes(app(t, newGroup(t), 0)), "epoch": 0, "paddedSize": 512}, 400, "InvalidMessage"},
			{"not mls", obj{"convoId": g, "msgId": "n", "ciphertext": b64bytes(make([]byte, 512)), "epoch": 0, "paddedSize": 512}, 400, "InvalidMessage"},
			{"padded size not a bucket", obj{"convoId": g, "msgId": "p", "ciphertext": b64bytes(framed(t, g, 0, mlswire.ContentTypeApplication, 600)), "epoch": 0, "paddedSize": 600}, 400, "InvalidRequest"},
			{"padded size not the length", obj{"convoId": g, "msgId": "l", "ciphertext": b64bytes(app(t, g, 0)), "epoch": 0, "paddedSize": 1024}, 400, "InvalidRequest"},
			{"no msgId", obj{"convoId": g, "ciphertext": b64bytes(app(t, g, 0)), "epoch": 0, "paddedSize": 512}, 400, "IdempotencyKeyRequired"},
			{"msgId too long", obj{"convoId": g, "msgId": "012345678901234567890123456", "ciphertext": b64bytes(app(t, g, 0)), "epoch": 0, "paddedSize": 512}, 400, "InvalidRequest"},
			{"no epoch", obj{"convoId": g, "msgId": "e", "ciphertext": b64bytes(app(t, g, 0)), "paddedSize": 512}, 400, "InvalidRequest"},
			{"epoch a string", obj{"convoId": g, "msgId": "e", "ciphertext": b64bytes(app(t, g, 0)), "epoch": "0", "paddedSize": 512}, 400, "InvalidRequest"},
			{"ciphertext a string", obj{"convoId": g, "msgId": "e", "ciphertext": "AAAA", "epoch": 0, "paddedSize": 512}, 400, "InvalidRequest"},
			{"ciphertext bad base64", obj{"convoId": g, "msgId": "e", "ciphertext": obj{"$bytes": "!!!"}, "epoch": 0, "paddedSize": 512}, 400, "InvalidRequest"},
			{"bad delivery", obj{"convoId": g, "msgId": "e", "ciphertext": b64bytes(app(t, g, 0)), "epoch": 0, "paddedSize": 512, "delivery": "carrier-pigeon"}, 400, "InvalidRequest"},
			{"non-member", obj{"convoId": g, "msgId": "x", "ciphertext": b64bytes(app(t, g, 0)), "epoch": 0, "paddedSize": 512}, 403, "NotMember"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				id := alice
				if tc.name == "non-member" {
					id = eve
				}
				e.post(id, "sendMessage", tc.body).isErr(t, tc.status, tc.err)
			})
		}
		// Nothing refused was stored.
		if last := e.get(alice, "getMessages", url.Values{"convoId": {g}, "sinceSeq": {"4"}}).must(t, http.StatusOK); last.body["lastSeq"] != float64(5) {
			t.Fatalf("refused messages were stored: %s", last.raw)
		}
	})
}

func TestMessageTooLarge(t *testing.T) {
	e := newEnv(t, openSQLite, func(c *deliveryConfig) { c.MaxMessageBytes = 1024 })
	g := e.createConvo(t, alice)
	ct := framed(t, g, 0, mlswire.ContentTypeApplication, 2048)
	e.post(alice, "sendMessage", obj{"convoId": g, "msgId": "big", "ciphertext": b64bytes(ct), "epoch": 0, "paddedSize": 2048}).
		isErr(t, http.StatusRequestEntityTooLarge, "MessageTooLarge")
}

func TestConcurrentSendsAreGapless(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice, bob, carol)
		senders := []who{alice, bob, carol}
		const n = 50
		seqs := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				r := e.send(senders[i%3], g, 0, fmt.Sprintf("c%02d", i))
				if r.status != http.StatusOK {
					t.Errorf("send %d: %d %s", i, r.status, r.raw)
					return
				}
				seqs[i] = int(r.body["seq"].(float64))
			})
		}
		wg.Wait()
		sort.Ints(seqs)
		for i, s := range seqs {
			if s != i+1 {
				t.Fatalf("seqs %v are not exactly 1..%d", seqs, n)
			}
		}
		var got []int
		since := 0
		for {
			page := e.get(alice, "getMessages", url.Values{"convoId": {g}, "sinceSeq": {fmt.Sprint(since)}, "limit": {"100"}}).must(t, http.StatusOK)
			msgs := page.body["messages"].([]any)
			if len(msgs) == 0 {
				break
			}
			for _, m := range msgs {
				got = append(got, int(m.(map[string]any)["seq"].(float64)))
			}
			since = got[len(got)-1]
		}
		if len(got) != n || got[0] != 1 || got[n-1] != n || !sort.IntsAreSorted(got) {
			t.Fatalf("getMessages returned %v", got)
		}
	})
}

func TestConcurrentCommitsOneWins(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice, bob)
		// Two members race a commit for epoch 0; each adds someone with a
		// Welcome. Exactly one wins; only its Welcome is held.
		kpC := newKeyPackage(t, "did:plc:carol#c1", e.clock.Now(), 24*3600e9)
		kpE := newKeyPackage(t, "did:plc:eve#e1", e.clock.Now(), 24*3600e9)
		e.post(carol, "publishKeyPackage", obj{"keyPackage": kpC.b64(), "cipherSuite": suite.String(), "idempotencyKey": "c"}).must(t, http.StatusOK)
		e.post(eve, "publishKeyPackage", obj{"keyPackage": kpE.b64(), "cipherSuite": suite.String(), "idempotencyKey": "e"}).must(t, http.StatusOK)
		e.get(alice, "getKeyPackages", url.Values{"dids": {carol.DID, eve.DID}}).must(t, http.StatusOK)
		reqs := []struct {
			by     who
			target who
			kp     testKeyPackage
		}{{alice, carol, kpC}, {bob, eve, kpE}}
		status := make([]resp, 2)
		var wg sync.WaitGroup
		for i, rq := range reqs {
			wg.Go(func() {
				status[i] = e.post(rq.by, "addMembers", obj{
					"convoId": g, "didList": []string{rq.target.DID}, "idempotencyKey": "race",
					"commit": b64(commit(t, g, 0)), "welcomeMessage": b64(welcome(t, suite, rq.kp.ref)),
					"keyPackageHashes": []obj{{"did": rq.target.DID, "hash": rq.kp.refHex()}},
				})
			})
		}
		wg.Wait()
		ok, lost := -1, -1
		for i, r := range status {
			switch {
			case r.status == http.StatusOK:
				ok = i
			case r.status == http.StatusConflict && r.errName() == "StaleEpoch":
				lost = i
			default:
				t.Fatalf("commit %d: %d %s", i, r.status, r.raw)
			}
		}
		if ok < 0 || lost < 0 {
			t.Fatalf("want one winner and one 409: %d %s / %d %s", status[0].status, status[0].raw, status[1].status, status[1].raw)
		}
		e.get(reqs[ok].target, "getWelcome", url.Values{"convoId": {g}}).must(t, http.StatusOK)
		e.get(reqs[lost].target, "getWelcome", url.Values{"convoId": {g}}).isErr(t, http.StatusForbidden, "NotMember")
		ep := e.get(alice, "getEpoch", url.Values{"convoId": {g}}).must(t, http.StatusOK)
		if ep.body["currentEpoch"] != float64(1) {
			t.Fatalf("epoch after the race: %s", ep.raw)
		}

		// The same race through sendMessage (a commit as a framed message).
		results := make([]resp, 2)
		sends := make([]obj, 2)
		for i := range sends {
			ct := framed(t, g, 1, mlswire.ContentTypeCommit, 1024)
			sends[i] = obj{"convoId": g, "msgId": fmt.Sprintf("commit-%d", i), "ciphertext": b64bytes(ct), "epoch": 1, "paddedSize": 1024}
		}
		for i, by := range []who{alice, bob} {
			wg.Go(func() { results[i] = e.post(by, "sendMessage", sends[i]) })
		}
		wg.Wait()
		if a, b := results[0].status, results[1].status; !(a == 200 && b == 409 || a == 409 && b == 200) {
			t.Fatalf("sendMessage commit race: %d %s / %d %s", a, results[0].raw, b, results[1].raw)
		}
		// A retry of the winning commit replays although its epoch has
		// passed; the loser's retry still loses.
		for i, by := range []who{alice, bob} {
			again := e.post(by, "sendMessage", sends[i])
			if again.status != results[i].status || string(again.raw) != string(results[i].raw) {
				t.Fatalf("retry of commit %d: %d %s, first %d %s", i, again.status, again.raw, results[i].status, results[i].raw)
			}
		}

		// getCommits: both winners, in order, with no sender.
		cm := e.get(bob, "getCommits", url.Values{"convoId": {g}, "fromEpoch": {"0"}}).must(t, http.StatusOK)
		commits := cm.body["commits"].([]any)
		if cm.body["convoId"] != g || len(commits) != 2 {
			t.Fatalf("getCommits: %s", cm.raw)
		}
		for i, c := range commits {
			c := c.(map[string]any)
			if c["epoch"] != float64(i) || c["sender"] != nil || c["commitData"] == nil || c["createdAt"] == nil {
				t.Fatalf("commitMessage %d: %v", i, c)
			}
		}
		one := e.get(bob, "getCommits", url.Values{"convoId": {g}, "fromEpoch": {"1"}, "toEpoch": {"1"}}).must(t, http.StatusOK)
		if n := len(one.body["commits"].([]any)); n != 1 {
			t.Fatalf("getCommits 1..1: %s", one.raw)
		}
		e.get(bob, "getCommits", url.Values{"convoId": {g}, "fromEpoch": {"2"}, "toEpoch": {"1"}}).isErr(t, http.StatusBadRequest, "InvalidEpochRange")
		e.get(bob, "getCommits", url.Values{"convoId": {g}}).isErr(t, http.StatusBadRequest, "InvalidRequest")
		e.get(mallory, "getCommits", url.Values{"convoId": {g}, "fromEpoch": {"0"}}).isErr(t, http.StatusForbidden, "NotMember")
		// The message stream shows the commits as such.
		all := e.get(bob, "getMessages", url.Values{"convoId": {g}}).must(t, http.StatusOK)
		for _, m := range all.body["messages"].([]any) {
			if m.(map[string]any)["messageType"] != "commit" {
				t.Fatalf("stream: %s", all.raw)
			}
		}
	})
}

// TestSendMessageRetryAfterLeaving: the message row is the retry's
// record, so a retry replays even after the sender has left; a new or
// altered message is refused as from a non-member, never 422, which would
// tell a non-member that the msgId exists.
func TestSendMessageRetryAfterLeaving(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice, bob)
		ct := app(t, g, 0)
		msg := obj{"convoId": g, "msgId": "last-words", "ciphertext": b64bytes(ct), "epoch": 0, "paddedSize": 512}
		first := e.post(bob, "sendMessage", msg).must(t, http.StatusOK)
		e.post(bob, "leaveConvo", obj{"convoId": g, "commit": b64(commit(t, g, 0))}).must(t, http.StatusOK)
		if again := e.post(bob, "sendMessage", msg).must(t, http.StatusOK); string(again.raw) != string(first.raw) {
			t.Fatalf("retry after leaving: %s, first %s", again.raw, first.raw)
		}
		e.send(bob, g, 0, "new").isErr(t, http.StatusForbidden, "NotMember")
		altered := obj{"convoId": g, "msgId": "last-words", "ciphertext": b64bytes(app(t, g, 0)), "epoch": 0, "paddedSize": 512}
		e.post(bob, "sendMessage", altered).isErr(t, http.StatusForbidden, "NotMember")
		e.post(mallory, "sendMessage", altered).isErr(t, http.StatusForbidden, "NotMember")
		page := e.get(alice, "getMessages", url.Values{"convoId": {g}}).must(t, http.StatusOK)
		if n := len(page.body["messages"].([]any)); n != 2 { // bob's message and his leaving commit
			t.Fatalf("messages: %s", page.raw)
		}
	})
}

// TestSendMessageKeepsNoCallerRecord guards the no-sender invariant
// against a side channel: an idempotency record keyed by the caller's DID
// and the msgId would link the sender to the message. sendMessage's
// record is the message row itself, so it leaves no idempotency record.
func TestSendMessageKeepsNoCallerRecord(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice, bob)
		e.clock.Advance(time.Hour)
		if n, err := e.store.PurgeIdempotency(context.Background(), time.Minute); err != nil || n == 0 {
			t.Fatalf("createConvo left no idempotency record to purge (%d, %v): the check below would prove nothing", n, err)
		}
		e.send(alice, g, 0, "m1").must(t, http.StatusOK)
		e.send(bob, g, 0, "m2").must(t, http.StatusOK)
		ct := framed(t, g, 0, mlswire.ContentTypeCommit, 1024)
		e.post(bob, "sendMessage", obj{"convoId": g, "msgId": "c1", "ciphertext": b64bytes(ct), "epoch": 0, "paddedSize": 1024}).must(t, http.StatusOK)
		e.clock.Advance(time.Hour)
		if n, err := e.store.PurgeIdempotency(context.Background(), time.Minute); err != nil || n != 0 {
			t.Fatalf("sendMessage left %d idempotency records (%v)", n, err)
		}
	})
}

func TestOnChangeSkipsReplays(t *testing.T) {
	var mu sync.Mutex
	changed := map[string]int{}
	e := newEnv(t, openSQLite, func(c *deliveryConfig) {
		c.OnChange = func(_ context.Context, id string) { mu.Lock(); changed[id]++; mu.Unlock() }
	})
	g := e.createConvo(t, alice, bob)
	ct := app(t, g, 0)
	msg := obj{"convoId": g, "msgId": "m1", "ciphertext": b64bytes(ct), "epoch": 0, "paddedSize": 512}
	e.post(alice, "sendMessage", msg).must(t, http.StatusOK)
	e.post(alice, "sendMessage", msg).must(t, http.StatusOK)
	e.send(bob, g, 1, "future").isErr(t, http.StatusConflict, "EpochMismatch")
	if changed[g] != 2 { // createConvo and one message
		t.Fatalf("OnChange calls: %v", changed)
	}
}

func TestGapInfoAfterPurge(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b.open, func(c *deliveryConfig) { c.MessageTTL = time.Minute })
			g := e.createConvo(t, alice)
			e.send(alice, g, 0, "m1").must(t, http.StatusOK)
			e.send(alice, g, 0, "m2").must(t, http.StatusOK)
			e.clock.Advance(30 * time.Second)
			e.send(alice, g, 0, "m3").must(t, http.StatusOK)
			e.clock.Advance(40 * time.Second)
			if _, err := e.store.PurgeMessages(t.Context(), 24*time.Hour); err != nil {
				t.Fatal(err)
			}
			r := e.get(alice, "getMessages", url.Values{"convoId": {g}}).must(t, http.StatusOK)
			gi, _ := r.body["gapInfo"].(map[string]any)
			if len(r.body["messages"].([]any)) != 1 || r.body["lastSeq"] != float64(3) || gi == nil ||
				gi["hasGaps"] != true || fmt.Sprint(gi["missingSeqs"]) != "[1 2]" || gi["totalMessages"] != float64(3) {
				t.Fatalf("gap info: %s", r.raw)
			}
			if r := e.get(alice, "getMessages", url.Values{"convoId": {g}, "sinceSeq": {"2"}}).must(t, http.StatusOK); r.body["gapInfo"] != nil {
				t.Fatalf("no gap after sinceSeq 2: %s", r.raw)
			}
		})
	}
}
