package delivery_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/blocks"
	"github.com/cairn-chat/cairn-caddy/internal/delivery"
	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// pdsLocator names one PDS stand-in for every DID (the handler tests' DIDs
// are not resolvable; internal/blocks tests the DID-document path).
type pdsLocator struct{ url string }

func (l pdsLocator) PDSEndpoint(context.Context, string) (string, error) { return l.url, nil }

// blockEnvs runs f per backend with a block source reading from a PDS
// stand-in, and the options mutate applies. The source's cache is off, so
// a test sees a block as soon as it is made (internal/blocks tests the
// cache).
func blockEnvs(t *testing.T, f func(t *testing.T, e *env, pds *atprototest.PDS), mutate ...func(*delivery.Config)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			pds := atprototest.NewPDS(t)
			src, err := blocks.New(blocks.Config{Locator: pdsLocator{pds.URL}, Client: http.DefaultClient, CacheTTL: time.Nanosecond})
			if err != nil {
				t.Fatal(err)
			}
			opts := append([]func(*delivery.Config){func(c *delivery.Config) { c.Blocks = src }}, mutate...)
			f(t, newEnv(t, b.open, opts...), pds)
		})
	}
}

func TestBlockedAccountsAreNotAddedTogether(t *testing.T) {
	blockEnvs(t, func(t *testing.T, e *env, pds *atprototest.PDS) {
		g := e.createConvo(t, alice, bob)
		pds.Block(carol.DID, bob.DID) // carol blocks a member
		add := func(key string, ids ...who) resp {
			var dids []string
			for _, id := range ids {
				dids = append(dids, id.DID+"#"+id.DeviceID)
			}
			return e.post(alice, "addMembers", obj{"convoId": g, "didList": dids, "idempotencyKey": key})
		}
		add("k1", carol).isErr(t, http.StatusForbidden, "BlockedByMember")
		// A block between two accounts added together refuses the add too.
		pds.Block(eve.DID, mallory.DID)
		add("k2", eve, mallory).isErr(t, http.StatusForbidden, "BlockedByMember")
		add("k3", eve).must(t, http.StatusOK)
		// createConvo names the same refusal MutualBlockDetected.
		e.post(alice, "createConvo", obj{"groupId": newGroup(t), "cipherSuite": suite.String(), "idempotencyKey": "c1",
			"initialMembers": []string{"did:plc:bob#b1", "did:plc:carol#c1"}}).isErr(t, http.StatusForbidden, "MutualBlockDetected")
	})
}

func TestBlockSourceDownFailsClosedByDefault(t *testing.T) {
	blockEnvs(t, func(t *testing.T, e *env, pds *atprototest.PDS) {
		g := e.createConvo(t, alice)
		pds.SetDown(true)
		r := e.post(alice, "addMembers", obj{"convoId": g, "didList": []string{"did:plc:bob#b1"}, "idempotencyKey": "k"})
		r.isErr(t, http.StatusServiceUnavailable, "BlueskyServiceUnavailable")
		if r.header.Get("Retry-After") == "" {
			t.Fatal("no Retry-After on BlueskyServiceUnavailable")
		}
	})
	blockEnvs(t, func(t *testing.T, e *env, pds *atprototest.PDS) {
		g := e.createConvo(t, alice)
		pds.SetDown(true)
		e.post(alice, "addMembers", obj{"convoId": g, "didList": []string{"did:plc:bob#b1"}, "idempotencyKey": "k"}).must(t, http.StatusOK)
	}, func(c *delivery.Config) { c.BlocksFailOpen = true })
}

// TestAppViewBlockSource: with blocks read from an AppView, an add across
// a block is refused with the same error as with the PDS source, and an
// AppView that is down or unreachable refuses adds (fail closed) with the
// same 503.
func TestAppViewBlockSource(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			pds := atprototest.NewPDS(t)
			av := atprototest.NewAppView(t, pds)
			src, err := blocks.NewAppView(blocks.AppViewConfig{BaseURL: av.URL, CacheTTL: time.Nanosecond})
			if err != nil {
				t.Fatal(err)
			}
			e := newEnv(t, b.open, func(c *delivery.Config) { c.Blocks = src })
			g := e.createConvo(t, alice, bob)
			pds.Block(carol.DID, bob.DID)
			add := func(key string, id who) resp {
				return e.post(alice, "addMembers", obj{"convoId": g, "didList": []string{id.DID + "#" + id.DeviceID}, "idempotencyKey": key})
			}
			add("k1", carol).isErr(t, http.StatusForbidden, "BlockedByMember")
			bs := e.get(alice, "getBlockStatus", url.Values{"convoId": {g}}).must(t, http.StatusOK)
			if bs.body["hasConflicts"] != false {
				t.Fatalf("getBlockStatus: %s", bs.raw)
			}
			av.SetDown(true)
			r := add("k2", eve)
			r.isErr(t, http.StatusServiceUnavailable, "BlueskyServiceUnavailable")
			if r.header.Get("Retry-After") == "" {
				t.Fatal("no Retry-After on BlueskyServiceUnavailable")
			}
			av.Close()
			add("k3", eve).isErr(t, http.StatusServiceUnavailable, "BlueskyServiceUnavailable")
		})
	}
}

// TestAddToALargeConversationAsksTheAppViewLinearly: an add checks the
// newcomer's pairs with the members, not the members' pairs among
// themselves: one newcomer to 202 accounts is 7 getRelationships requests
// of 30 (Among over the 203 accounts makes 784).
func TestAddToALargeConversationAsksTheAppViewLinearly(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			pds := atprototest.NewPDS(t)
			av := atprototest.NewAppView(t, pds)
			src, err := blocks.NewAppView(blocks.AppViewConfig{BaseURL: av.URL})
			if err != nil {
				t.Fatal(err)
			}
			e := newEnv(t, b.open, func(c *delivery.Config) { c.Blocks = src })
			g := e.createConvo(t, alice, bob)
			var seeded []store.NewMember
			for i := range 200 {
				did := fmt.Sprintf("did:plc:%024d", i)
				seeded = append(seeded, store.NewMember{MemberDID: did + "#d1", UserDID: did, DeviceID: "d1"})
			}
			if _, err := e.store.AddMembers(t.Context(), g, seeded, nil); err != nil {
				t.Fatal(err)
			}
			pds.Block(seeded[150].UserDID, carol.DID)
			before := av.Hits()
			e.post(alice, "addMembers", obj{"convoId": g, "didList": []string{carol.DID + "#" + carol.DeviceID}, "idempotencyKey": "k1"}).
				isErr(t, http.StatusForbidden, "BlockedByMember")
			if got, want := av.Hits()-before, (202+29)/30; got != want {
				t.Fatalf("one newcomer to 202 accounts made %d AppView requests, want %d", got, want)
			}
		})
	}
}

func TestCheckBlocksAnswersOnlyAboutRelatedAccounts(t *testing.T) {
	blockEnvs(t, func(t *testing.T, e *env, pds *atprototest.PDS) {
		e.createConvo(t, alice, bob)
		pds.Block(bob.DID, eve.DID)     // a co-member of alice and a candidate
		pds.Block(eve.DID, mallory.DID) // two strangers to alice
		q := url.Values{"dids": {bob.DID, eve.DID, mallory.DID}}
		r := e.get(alice, "checkBlocks", q).must(t, http.StatusOK)
		bs := r.body["blocks"].([]any)
		if len(bs) != 1 || bs[0].(map[string]any)["blockerDid"] != bob.DID || bs[0].(map[string]any)["blockedDid"] != eve.DID ||
			bs[0].(map[string]any)["blockUri"] == nil || r.body["checkedAt"] == nil {
			t.Fatalf("checkBlocks: %s", r.raw)
		}
		// mallory shares nothing with bob or eve: she learns nothing.
		if n := len(e.get(mallory, "checkBlocks", q).must(t, http.StatusOK).body["blocks"].([]any)); n != 1 {
			t.Fatalf("mallory learned %d blocks, want only her own (eve blocks her)", n)
		}
		if n := len(e.get(carol, "checkBlocks", q).must(t, http.StatusOK).body["blocks"].([]any)); n != 0 {
			t.Fatalf("an unrelated caller learned %d blocks", n)
		}
		many := url.Values{}
		for i := 0; i < 101; i++ {
			many.Add("dids", "did:plc:x"+string(rune('a'+i%26))+string(rune('a'+i/26)))
		}
		e.get(alice, "checkBlocks", many).isErr(t, http.StatusBadRequest, "TooManyDids")
		e.get(alice, "checkBlocks", url.Values{"dids": {bob.DID}}).isErr(t, http.StatusBadRequest, "InvalidRequest")
		e.get(alice, "checkBlocks", url.Values{"dids": {bob.DID, "nope"}}).isErr(t, http.StatusBadRequest, "InvalidDid")
		pds.SetDown(true)
		e.get(alice, "checkBlocks", url.Values{"dids": {bob.DID, carol.DID}}).isErr(t, http.StatusServiceUnavailable, "BlueskyServiceUnavailable")
	})
}

func TestGetBlockStatus(t *testing.T) {
	blockEnvs(t, func(t *testing.T, e *env, pds *atprototest.PDS) {
		g := e.createConvo(t, alice, bob, carol)
		q := url.Values{"convoId": {g}}
		r := e.get(alice, "getBlockStatus", q).must(t, http.StatusOK)
		if r.body["hasConflicts"] != false || r.body["memberCount"] != float64(3) || r.body["convoId"] != g {
			t.Fatalf("getBlockStatus: %s", r.raw)
		}
		pds.Block(bob.DID, carol.DID) // after both joined
		r = e.get(alice, "getBlockStatus", q).must(t, http.StatusOK)
		if r.body["hasConflicts"] != true || len(r.body["blocks"].([]any)) != 1 {
			t.Fatalf("getBlockStatus after a block: %s", r.raw)
		}
		e.get(bob, "getBlockStatus", q).isErr(t, http.StatusForbidden, "NotAdmin")
		e.get(mallory, "getBlockStatus", q).isErr(t, http.StatusForbidden, "NotMember")
		e.get(alice, "getBlockStatus", url.Values{"convoId": {newGroup(t)}}).isErr(t, http.StatusNotFound, "ConvoNotFound")
	})
}

func TestHandleBlockChange(t *testing.T) {
	blockEnvs(t, func(t *testing.T, e *env, pds *atprototest.PDS) {
		g := e.createConvo(t, alice, bob, carol)
		other := e.createConvo(t, carol, bob) // alice is not in it
		body := func(blocker, blocked who, action, uri string) obj {
			o := obj{"blockerDid": blocker.DID, "blockedDid": blocked.DID, "action": action}
			if uri != "" {
				o["blockUri"] = uri
			}
			return o
		}
		// No such block yet.
		e.post(alice, "handleBlockChange", body(alice, bob, "created", "")).isErr(t, http.StatusBadRequest, "BlockNotVerified")
		uri := pds.Block(alice.DID, bob.DID)
		// Only the blocker reports its block.
		e.post(carol, "handleBlockChange", body(alice, bob, "created", uri)).isErr(t, http.StatusForbidden, "BlockNotVerified")
		// A URI in another repository proves nothing.
		e.post(alice, "handleBlockChange", body(alice, bob, "created", "at://"+carol.DID+"/app.bsky.graph.block/3l1")).
			isErr(t, http.StatusBadRequest, "BlockNotVerified")
		r := e.post(alice, "handleBlockChange", body(alice, bob, "created", uri)).must(t, http.StatusOK)
		affected := r.body["affectedConvos"].([]any)
		if len(affected) != 1 || affected[0].(map[string]any)["convoId"] != g ||
			affected[0].(map[string]any)["action"] != "requires_resolution" || affected[0].(map[string]any)["adminNotified"] != false {
			t.Fatalf("handleBlockChange: %s (other convo %s must not appear)", r.raw, other)
		}
		e.post(alice, "handleBlockChange", body(alice, bob, "removed", "")).isErr(t, http.StatusBadRequest, "BlockNotVerified")
		pds.Unblock(alice.DID, bob.DID)
		r = e.post(alice, "handleBlockChange", body(alice, bob, "removed", "")).must(t, http.StatusOK)
		if a := r.body["affectedConvos"].([]any); len(a) != 1 || a[0].(map[string]any)["action"] != "no_action" {
			t.Fatalf("handleBlockChange removed: %s", r.raw)
		}
		e.post(alice, "handleBlockChange", body(alice, bob, "maybe", "")).isErr(t, http.StatusBadRequest, "InvalidRequest")
		e.post(alice, "handleBlockChange", obj{"blockerDid": alice.DID, "blockedDid": "x", "action": "created"}).isErr(t, http.StatusBadRequest, "InvalidDid")
	})
}
