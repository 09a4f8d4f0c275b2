package delivery_test

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// newGroup returns a fresh random hex group id.
func newGroup(t testing.TB) string { return hex.EncodeToString(randBytes(t, 16)) }

// createConvo creates a conversation of creator with members added as
// device DIDs (no key packages) and returns its id.
func (e *env) createConvo(t testing.TB, creator who, members ...who) string {
	t.Helper()
	g := newGroup(t)
	var dids []string
	for _, m := range members {
		dids = append(dids, m.DID+"#"+m.DeviceID)
	}
	e.post(creator, "createConvo", obj{
		"groupId": g, "cipherSuite": suite.String(), "idempotencyKey": "create-" + g, "initialMembers": dids,
	}).must(t, http.StatusOK)
	return g
}

func TestCreateAndListConvos(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := newGroup(t)
		req := obj{
			"groupId": g, "cipherSuite": suite.String(), "idempotencyKey": "k1",
			"initialMembers": []string{"did:plc:bob#b1"}, "metadata": obj{"name": "team", "description": "d"},
		}
		r := e.post(alice, "createConvo", req).must(t, http.StatusOK)
		if r.body["groupId"] != g || r.body["creator"] != alice.DID || r.body["cipherSuite"] != suite.String() ||
			r.body["epoch"] != float64(0) || r.body["createdAt"] == nil {
			t.Fatalf("convoView: %s", r.raw)
		}
		members := r.body["members"].([]any)
		if len(members) != 2 {
			t.Fatalf("members: %v", members)
		}
		first := members[0].(map[string]any)
		if first["did"] != "did:plc:alice#a1" || first["userDid"] != alice.DID || first["isAdmin"] != true || first["joinedAt"] == nil {
			t.Fatalf("creator member view: %v", first)
		}
		if md := r.body["metadata"].(map[string]any); md["name"] != "team" {
			t.Fatalf("metadata: %v", md)
		}

		// A retry returns the first response and changes nothing.
		again := e.post(alice, "createConvo", req).must(t, http.StatusOK)
		if string(again.raw) != string(r.raw) {
			t.Fatalf("retry response differs:\n%s\n%s", r.raw, again.raw)
		}
		// The same key with another request is refused.
		other := obj{"groupId": newGroup(t), "cipherSuite": suite.String(), "idempotencyKey": "k1"}
		e.post(alice, "createConvo", other).isErr(t, http.StatusUnprocessableEntity, "IdempotencyKeyReused")
		// The key is scoped to the caller: bob may use "k1" too, but not
		// alice's group id.
		e.post(bob, "createConvo", obj{"groupId": g, "cipherSuite": suite.String(), "idempotencyKey": "k1"}).
			isErr(t, http.StatusConflict, "ConvoAlreadyExists")

		// getConvos: newest activity first, real pagination.
		e.clock.Advance(5e9)
		g2 := e.createConvo(t, alice)
		e.clock.Advance(5e9)
		g3 := e.createConvo(t, alice, bob)
		var got []string
		cursor := ""
		for i := 0; i < 5; i++ {
			q := url.Values{"limit": {"2"}}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			page := e.get(alice, "getConvos", q).must(t, http.StatusOK)
			for _, c := range page.body["conversations"].([]any) {
				got = append(got, c.(map[string]any)["groupId"].(string))
			}
			cursor, _ = page.body["cursor"].(string)
			if cursor == "" {
				break
			}
		}
		if want := []string{g3, g2, g}; !reflect.DeepEqual(got, want) {
			t.Fatalf("getConvos order %v, want %v", got, want)
		}
		bobs := e.get(bob, "getConvos", nil).must(t, http.StatusOK)
		if n := len(bobs.body["conversations"].([]any)); n != 2 {
			t.Fatalf("bob sees %d convos, want 2", n)
		}
		e.get(alice, "getConvos", url.Values{"cursor": {"!!bogus"}}).isErr(t, http.StatusBadRequest, "InvalidCursor")

		// getEpoch: members only; unknown and foreign look different but
		// neither leaks the other.
		ep := e.get(bob, "getEpoch", url.Values{"convoId": {g}}).must(t, http.StatusOK)
		if ep.body["convoId"] != g || ep.body["currentEpoch"] != float64(0) {
			t.Fatalf("getEpoch: %s", ep.raw)
		}
		e.get(eve, "getEpoch", url.Values{"convoId": {g}}).isErr(t, http.StatusForbidden, "NotMember")
		e.get(eve, "getEpoch", url.Values{"convoId": {newGroup(t)}}).isErr(t, http.StatusNotFound, "ConvoNotFound")
		// A caller not bound to a device acts as any of its devices.
		e.get(who{DID: bob.DID}, "getEpoch", url.Values{"convoId": {g}}).must(t, http.StatusOK)
		// Another device of a member is not the member.
		e.get(who{DID: bob.DID, DeviceID: "b2"}, "getEpoch", url.Values{"convoId": {g}}).isErr(t, http.StatusForbidden, "NotMember")
	})
}

func TestMembership(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice)
		// bob publishes a key package for his device; alice claims it and
		// adds bob with a commit and a Welcome.
		kp := newKeyPackage(t, "did:plc:bob#b1", e.clock.Now(), 24*3600e9)
		e.post(bob, "publishKeyPackage", obj{"keyPackage": kp.b64(), "cipherSuite": suite.String(), "idempotencyKey": "p1"}).must(t, http.StatusOK)
		claimed := e.get(alice, "getKeyPackages", url.Values{"dids": {bob.DID}}).must(t, http.StatusOK)
		kps := claimed.body["keyPackages"].([]any)
		if len(kps) != 1 || kps[0].(map[string]any)["keyPackageHash"] != kp.refHex() {
			t.Fatalf("getKeyPackages: %s", claimed.raw)
		}
		add := obj{
			"convoId": g, "didList": []string{bob.DID}, "idempotencyKey": "add-bob",
			"commit": b64(commit(t, g, 0)), "welcomeMessage": b64(welcome(t, suite, kp.ref)),
			"keyPackageHashes": []obj{{"did": bob.DID, "hash": kp.refHex()}},
		}
		e.post(eve, "addMembers", add).isErr(t, http.StatusForbidden, "NotMember")
		r := e.post(alice, "addMembers", add).must(t, http.StatusOK)
		if r.body["success"] != true || r.body["newEpoch"] != float64(1) {
			t.Fatalf("addMembers: %s", r.raw)
		}
		again := e.post(alice, "addMembers", add).must(t, http.StatusOK)
		if string(again.raw) != string(r.raw) {
			t.Fatalf("addMembers retry differs: %s", again.raw)
		}
		// bob joined as his device, and his Welcome waits for him.
		w := e.get(bob, "getWelcome", url.Values{"convoId": {g}}).must(t, http.StatusOK)
		if w.body["convoId"] != g || w.body["welcome"] == "" {
			t.Fatalf("getWelcome: %s", w.raw)
		}
		e.post(bob, "confirmWelcome", obj{"convoId": g, "success": true}).must(t, http.StatusOK)
		e.get(bob, "getWelcome", url.Values{"convoId": {g}}).isErr(t, http.StatusNotFound, "WelcomeNotFound")
		e.post(bob, "confirmWelcome", obj{"convoId": g, "success": true}).must(t, http.StatusOK)
		// Adding bob again is AlreadyMember (no commit: no epoch change).
		e.post(alice, "addMembers", obj{"convoId": g, "didList": []string{"did:plc:bob#b1"}, "idempotencyKey": "again"}).
			isErr(t, http.StatusConflict, "AlreadyMember")
		// A Welcome needs its commit.
		e.post(alice, "addMembers", obj{"convoId": g, "didList": []string{carol.DID}, "idempotencyKey": "w",
			"welcomeMessage": b64(welcome(t, suite, kp.ref))}).isErr(t, http.StatusBadRequest, "InvalidRequest")
		// A commit for a past epoch loses.
		e.post(alice, "addMembers", obj{"convoId": g, "didList": []string{carol.DID}, "idempotencyKey": "stale",
			"commit": b64(commit(t, g, 0))}).isErr(t, http.StatusConflict, "StaleEpoch")
		// A commit of another group is refused.
		e.post(alice, "addMembers", obj{"convoId": g, "didList": []string{carol.DID}, "idempotencyKey": "foreign",
			"commit": b64(commit(t, newGroup(t), 1))}).isErr(t, http.StatusBadRequest, "InvalidMessage")
		e.post(alice, "addMembers", obj{"convoId": g, "didList": []string{carol.DID + "#c1"}, "idempotencyKey": "carol",
			"commit": b64(commit(t, g, 1))}).must(t, http.StatusOK)

		// Only admins remove others; nobody removes themselves that way.
		rm := obj{"convoId": g, "targetDid": carol.DID, "idempotencyKey": "rm-carol", "commit": b64(commit(t, g, 2))}
		e.post(bob, "removeMember", rm).isErr(t, http.StatusForbidden, "NotAdmin")
		e.post(alice, "removeMember", obj{"convoId": g, "targetDid": alice.DID, "idempotencyKey": "self"}).
			isErr(t, http.StatusBadRequest, "CannotRemoveSelf")
		e.post(alice, "removeMember", obj{"convoId": g, "targetDid": eve.DID, "idempotencyKey": "eve"}).
			isErr(t, http.StatusNotFound, "NotMember")
		rr := e.post(alice, "removeMember", rm).must(t, http.StatusOK)
		if rr.body["ok"] != true || rr.body["epochHint"] != float64(3) {
			t.Fatalf("removeMember: %s", rr.raw)
		}
		e.post(alice, "removeMember", rm).must(t, http.StatusOK) // retry replays
		e.get(carol, "getMessages", url.Values{"convoId": {g}}).isErr(t, http.StatusForbidden, "NotMember")

		// bob leaves; alice, alone, cannot.
		leave := obj{"convoId": g, "commit": b64(commit(t, g, 3))}
		l := e.post(bob, "leaveConvo", leave).must(t, http.StatusOK)
		if l.body["success"] != true || l.body["newEpoch"] != float64(4) {
			t.Fatalf("leaveConvo: %s", l.raw)
		}
		if again := e.post(bob, "leaveConvo", leave).must(t, http.StatusOK); string(again.raw) != string(l.raw) {
			t.Fatalf("leaveConvo retry differs: %s", again.raw)
		}
		e.get(bob, "getEpoch", url.Values{"convoId": {g}}).isErr(t, http.StatusForbidden, "NotMember")
		e.post(alice, "leaveConvo", obj{"convoId": g}).isErr(t, http.StatusBadRequest, "LastMember")
	})
}

func TestTooManyMembers(t *testing.T) {
	e := newEnv(t, openSQLite, func(c *deliveryConfig) { c.MaxMembers = 2 })
	g := e.createConvo(t, alice, bob)
	e.post(alice, "addMembers", obj{"convoId": g, "didList": []string{carol.DID}, "idempotencyKey": "c"}).
		isErr(t, http.StatusBadRequest, "TooManyMembers")
	var many []string
	for i := range 1000 {
		many = append(many, fmt.Sprintf("did:plc:m%d", i))
	}
	e.post(alice, "createConvo", obj{"groupId": newGroup(t), "cipherSuite": suite.String(), "idempotencyKey": "m", "initialMembers": many}).
		isErr(t, http.StatusBadRequest, "TooManyMembers")
}

// TestKeyPackageHashForms names key packages the lexicon's way (SHA-256 of
// the package bytes) and the server's way (RFC 9420 KeyPackageRef): both
// resolve to the same package in createConvo, addMembers and
// syncKeyPackages, and the Welcome is checked against the KeyPackageRef.
func TestKeyPackageHashForms(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		sha := func(k testKeyPackage) string { return store.KeyPackageSHA256(k.data) }
		publish := func(id who, k testKeyPackage, key string) {
			e.post(id, "publishKeyPackage", obj{"keyPackage": k.b64(), "cipherSuite": suite.String(), "idempotencyKey": key}).must(t, http.StatusOK)
		}
		bobKP := newKeyPackage(t, "did:plc:bob#b1", e.clock.Now(), 24*3600e9)
		carolKP := newKeyPackage(t, "did:plc:carol#c1", e.clock.Now(), 24*3600e9)
		publish(bob, bobKP, "pb")
		publish(carol, carolKP, "pc")

		// createConvo with bob's package named by its SHA-256, bare DID:
		// bob joins as his device and his Welcome waits for him.
		g := newGroup(t)
		e.post(alice, "createConvo", obj{
			"groupId": g, "cipherSuite": suite.String(), "idempotencyKey": "c", "initialMembers": []string{bob.DID},
			"welcomeMessage": b64(welcome(t, suite, bobKP.ref)), "keyPackageHashes": []obj{{"did": bob.DID, "hash": sha(bobKP)}},
		}).must(t, http.StatusOK)
		e.get(bob, "getWelcome", url.Values{"convoId": {g}}).must(t, http.StatusOK)
		e.post(alice, "addMembers", obj{"convoId": g, "didList": []string{"did:plc:bob#b1"}, "idempotencyKey": "again"}).
			isErr(t, http.StatusConflict, "AlreadyMember")

		// addMembers with carol's named by SHA-256 (upper case) on her
		// device DID.
		e.post(alice, "addMembers", obj{
			"convoId": g, "didList": []string{carol.DID + "#c1"}, "idempotencyKey": "add-carol",
			"commit": b64(commit(t, g, 1)), "welcomeMessage": b64(welcome(t, suite, carolKP.ref)),
			"keyPackageHashes": []obj{{"did": carol.DID + "#c1", "hash": strings.ToUpper(sha(carolKP))}},
		}).must(t, http.StatusOK)
		e.get(carol, "getWelcome", url.Values{"convoId": {g}}).must(t, http.StatusOK)

		// A SHA-256 that names nobody's package is still KeyPackageNotFound,
		// and another owner's package is not found through this DID.
		dave := newKeyPackage(t, "did:plc:carol#c1", e.clock.Now(), 24*3600e9)
		for i, h := range []string{sha(dave), sha(bobKP)} {
			r := e.post(alice, "createConvo", obj{"groupId": newGroup(t), "cipherSuite": suite.String(), "idempotencyKey": fmt.Sprint("nf", i),
				"initialMembers": []string{carol.DID}, "keyPackageHashes": []obj{{"did": carol.DID, "hash": h}}})
			r.isErr(t, http.StatusBadRequest, "KeyPackageNotFound")
		}

		// syncKeyPackages keeps a package the client names by SHA-256, and
		// answers with the server's form.
		kept := newKeyPackage(t, "did:plc:bob#b1", e.clock.Now(), 24*3600e9)
		dropped := newKeyPackage(t, "did:plc:bob#b1", e.clock.Now(), 24*3600e9)
		publish(bob, kept, "pk")
		publish(bob, dropped, "pd")
		r := e.post(bob, "syncKeyPackages", obj{"deviceId": "b1", "localHashes": []string{sha(kept)}}).must(t, http.StatusOK)
		if got := fmt.Sprint(r.body["serverHashes"]); got != "["+kept.refHex()+"]" {
			t.Fatalf("syncKeyPackages by SHA-256: %s", r.raw)
		}
	})
}
