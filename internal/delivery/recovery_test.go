package delivery_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/delivery"
	"github.com/cairn-chat/cairn-caddy/internal/mlswire"
)

// externalCommit is an external commit (RFC 9420 §12.4.3.2) of the group
// made in epoch by a joiner whose basic credential is identity: a
// PublicMessage from a new_member_commit sender with an ExternalInit
// proposal and the joiner's leaf in its path. The server checks the
// framing, not the signatures, so those are random.
func externalCommit(t testing.TB, groupHex string, epoch uint64, identity string) []byte {
	t.Helper()
	gid, err := hex.DecodeString(groupHex)
	if err != nil {
		t.Fatal(err)
	}
	leaf := mlswire.LeafNode{
		EncryptionKey: randBytes(t, 32), SignatureKey: randBytes(t, 32),
		Credential: mlswire.Credential{Type: mlswire.CredentialTypeBasic, Identity: []byte(identity)},
		Source:     mlswire.LeafNodeSourceCommit, ParentHash: randBytes(t, 32), Signature: randBytes(t, 64),
	}
	pm := &mlswire.PublicMessage{
		Content: mlswire.FramedContent{
			GroupID: gid, Epoch: epoch, Sender: mlswire.Sender{Type: mlswire.SenderTypeNewMemberCommit},
			ContentType: mlswire.ContentTypeCommit,
			Commit: &mlswire.Commit{
				Proposals: []mlswire.ProposalOrRef{{Type: mlswire.ProposalOrRefTypeProposal, Proposal: &mlswire.Proposal{
					Type: mlswire.ProposalTypeExternalInit, ExternalInit: &mlswire.ExternalInit{KEMOutput: randBytes(t, 32)},
				}}},
				Path: &mlswire.UpdatePath{LeafNode: leaf},
			},
		},
		Auth: mlswire.FramedContentAuthData{Signature: randBytes(t, 64), ConfirmationTag: randBytes(t, 32)},
	}
	return marshal(t, &mlswire.Message{Version: mlswire.ProtocolVersionMLS10, WireFormat: mlswire.WireFormatPublicMessage, PublicMessage: pm})
}

// register registers id's device (its DeviceID) with one key package and
// returns that package.
func (e *env) register(t testing.TB, id who) testKeyPackage {
	t.Helper()
	kp := newKeyPackage(t, id.DID+"#"+id.DeviceID, e.clock.Now(), 24*time.Hour)
	e.post(who{DID: id.DID}, "registerDevice", obj{
		"deviceName": "phone " + id.DeviceID, "deviceUUID": id.DeviceID,
		"keyPackages":        []obj{{"keyPackage": kp.b64(), "cipherSuite": suite.String(), "expires": e.clock.Now().Add(time.Hour).Format(time.RFC3339)}},
		"signaturePublicKey": b64bytes(randBytes(t, 32)),
	}).must(t, http.StatusOK)
	return kp
}

func extCommit(g string, data []byte) obj {
	return obj{"convoId": g, "externalCommit": b64(data)}
}

func TestExternalCommit(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice, bob)
		bob2 := who{DID: bob.DID, DeviceID: "b2"}
		unknown := newGroup(t)
		cases := []struct {
			name   string
			id     who
			body   obj
			status int
			err    string
		}{
			{"not a member's account", mallory, extCommit(g, externalCommit(t, g, 0, "did:plc:mallory#m1")), 403, "Unauthorized"},
			{"credential of another account", bob, extCommit(g, externalCommit(t, g, 0, "did:plc:alice#a1")), 403, "Unauthorized"},
			{"credential of another device", bob, extCommit(g, externalCommit(t, g, 0, "did:plc:bob#b9")), 403, "Unauthorized"},
			{"device the account never registered", bob, extCommit(g, externalCommit(t, g, 0, "did:plc:bob#b1")), 403, "Unauthorized"},
			{"a member's commit", bob, extCommit(g, commit(t, g, 0)), 400, "InvalidCommit"},
			{"another group", bob, extCommit(g, externalCommit(t, newGroup(t), 0, "did:plc:bob#b1")), 400, "InvalidCommit"},
			{"garbage", bob, extCommit(g, []byte("nope")), 400, "InvalidCommit"},
			{"group info of another epoch", bob, obj{"convoId": g, "externalCommit": b64(externalCommit(t, g, 0, "did:plc:bob#b1")),
				"groupInfo": b64(groupInfo(t, g, 0))}, 400, "InvalidGroupInfo"},
			{"unknown conversation", bob, extCommit(unknown, externalCommit(t, unknown, 0, "did:plc:bob#b1")), 404, "ConvoNotFound"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) { e.post(tc.id, "processExternalCommit", tc.body).isErr(t, tc.status, tc.err) })
		}
		e.register(t, bob)
		e.register(t, bob2)

		// bob's device lost its state and resyncs: its row stays, the epoch
		// moves, the group info of the new epoch is stored with it.
		ec := externalCommit(t, g, 0, "did:plc:bob#b1")
		body := obj{"convoId": g, "externalCommit": b64(ec), "groupInfo": b64(groupInfo(t, g, 1)), "idempotencyKey": "ec-1"}
		r := e.post(bob, "processExternalCommit", body).must(t, http.StatusOK)
		if r.body["epoch"] != float64(1) || r.body["rejoinedAt"] == nil {
			t.Fatalf("processExternalCommit: %s", r.raw)
		}
		again := e.post(bob, "processExternalCommit", body).must(t, http.StatusOK)
		if string(again.raw) != string(r.raw) {
			t.Errorf("retry answered %s, first %s", again.raw, r.raw)
		}
		e.post(bob, "processExternalCommit", extCommit(g, externalCommit(t, g, 0, "did:plc:bob#b1"))).isErr(t, http.StatusConflict, "StaleEpoch")
		if gi := e.get(alice, "getGroupInfo", url.Values{"convoId": {g}}).must(t, http.StatusOK); gi.body["epoch"] != float64(1) {
			t.Errorf("group info after the external commit: %s", gi.raw)
		}
		// The commit is in the stream like any commit.
		msgs := e.get(alice, "getMessages", url.Values{"convoId": {g}}).must(t, http.StatusOK).body["messages"].([]any)
		if len(msgs) != 1 || msgs[0].(map[string]any)["messageType"] != "commit" {
			t.Fatalf("messages after the external commit: %v", msgs)
		}
		// A second device of bob's joins by itself.
		e.post(bob2, "processExternalCommit", extCommit(g, externalCommit(t, g, 1, "did:plc:bob#b2"))).must(t, http.StatusOK)
		e.get(bob2, "getEpoch", url.Values{"convoId": {g}}).must(t, http.StatusOK)

		// Removed, bob's account can come back neither way.
		e.post(alice, "removeMember", obj{"convoId": g, "targetDid": bob.DID, "idempotencyKey": "rm-bob"}).must(t, http.StatusOK)
		e.post(bob, "processExternalCommit", extCommit(g, externalCommit(t, g, 2, "did:plc:bob#b1"))).isErr(t, http.StatusForbidden, "Unauthorized")
		e.get(bob, "getGroupInfo", url.Values{"convoId": {g}}).isErr(t, http.StatusForbidden, "Unauthorized")
		e.post(bob, "groupInfoRefresh", obj{"convoId": g}).isErr(t, http.StatusForbidden, "Unauthorized")
		kp := newKeyPackage(t, "did:plc:bob#b1", e.clock.Now(), time.Hour)
		e.post(bob, "requestRejoin", obj{"convoId": g, "keyPackage": kp.b64()}).isErr(t, http.StatusNotFound, "ConvoNotFound")
		e.post(bob, "readdition", obj{"convoId": g}).isErr(t, http.StatusForbidden, "Unauthorized")
		if r := e.post(alice, "groupInfoRefresh", obj{"convoId": g}).must(t, http.StatusOK); r.body["requested"] != true {
			t.Errorf("groupInfoRefresh: %s", r.raw)
		}
		e.post(alice, "groupInfoRefresh", obj{"convoId": newGroup(t)}).isErr(t, http.StatusNotFound, "ConversationNotFound")
	})
}

func TestRejoinRequest(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice, bob)
		e.register(t, bob)
		kp := newKeyPackage(t, "did:plc:bob#b1", e.clock.Now(), 24*time.Hour)
		req := obj{"convoId": g, "keyPackage": b64url(kp.data), "reason": "device_reinstall"}
		e.post(who{DID: bob.DID}, "requestRejoin", req).isErr(t, http.StatusBadRequest, "InvalidRequest")
		e.post(who{DID: bob.DID, DeviceID: "b7"}, "requestRejoin", req).isErr(t, http.StatusForbidden, "Unauthorized")
		e.post(mallory, "requestRejoin", req).isErr(t, http.StatusNotFound, "ConvoNotFound")
		e.post(bob, "requestRejoin", obj{"convoId": g, "keyPackage": newKeyPackage(t, "did:plc:alice#a1", e.clock.Now(), time.Hour).b64()}).
			isErr(t, http.StatusForbidden, "InvalidKeyPackage")
		e.post(bob, "requestRejoin", obj{"convoId": g, "keyPackage": "AAAA"}).isErr(t, http.StatusBadRequest, "InvalidKeyPackage")

		r := e.post(bob, "rejoin", req).must(t, http.StatusOK)
		if r.body["pending"] != true || r.body["requestId"] == "" {
			t.Fatalf("rejoin: %s", r.raw)
		}
		if again := e.post(bob, "requestRejoin", req).must(t, http.StatusOK); again.body["requestId"] != r.body["requestId"] {
			t.Errorf("asking again made request %v, want the same %v", again.body["requestId"], r.body["requestId"])
		}
		exp := e.get(bob, "getExpectedConversations", nil).must(t, http.StatusOK).body["conversations"].([]any)
		if len(exp) != 1 || exp[0].(map[string]any)["needsRejoin"] != true {
			t.Fatalf("getExpectedConversations: %v", exp)
		}
		st := e.get(bob, "validateDeviceState", nil).must(t, http.StatusOK)
		if st.body["isValid"] != false || fmt.Sprint(st.body["pendingRejoinRequests"]) != "["+g+"]" {
			t.Fatalf("validateDeviceState: %s", st.raw)
		}
		// bob's own device does not see its request; alice does, claims it
		// and gets the fresh package.
		if l := e.get(bob, "getPendingDeviceAdditions", nil).must(t, http.StatusOK).body["pendingAdditions"].([]any); len(l) != 0 {
			t.Errorf("the requesting device sees its own request: %v", l)
		}
		list := e.get(alice, "getPendingDeviceAdditions", url.Values{"convoIds": {g}}).must(t, http.StatusOK).body["pendingAdditions"].([]any)
		if len(list) != 1 || list[0].(map[string]any)["deviceCredentialDid"] != "did:plc:bob#b1" || list[0].(map[string]any)["deviceName"] != "phone b1" {
			t.Fatalf("pending additions: %v", list)
		}
		id := list[0].(map[string]any)["id"]
		e.post(bob, "claimPendingDeviceAddition", obj{"pendingAdditionId": id}).must(t, http.StatusOK)
		c := e.post(alice, "claimPendingDeviceAddition", obj{"pendingAdditionId": id}).must(t, http.StatusOK)
		if c.body["claimed"] != true || c.body["keyPackage"].(map[string]any)["keyPackageHash"] != kp.refHex() {
			t.Fatalf("claim: %s", c.raw)
		}
		// The flagged device is re-added by a commit with its Welcome.
		e.post(alice, "addMembers", obj{"convoId": g, "idempotencyKey": "readd", "didList": []string{"did:plc:bob#b1"},
			"keyPackageHashes": []obj{{"did": "did:plc:bob#b1", "hash": kp.refHex()}},
			"commit":           b64(commit(t, g, 0)), "welcomeMessage": b64(welcome(t, suite, kp.ref))}).must(t, http.StatusOK)
		done := e.post(alice, "completePendingDeviceAddition", obj{"pendingAdditionId": id, "newEpoch": 1}).must(t, http.StatusOK)
		if done.body["success"] != true {
			t.Fatalf("complete: %s", done.raw)
		}
		if st := e.get(bob, "validateDeviceState", nil).must(t, http.StatusOK); len(st.body["pendingRejoinRequests"].([]any)) != 0 {
			t.Errorf("after the re-addition: %s", st.raw)
		}
		e.get(bob, "getWelcome", url.Values{"convoId": {g}}).must(t, http.StatusOK)

		// readdition: asked for by the device, with others to answer.
		e.post(bob, "readdition", obj{"convoId": newGroup(t)}).isErr(t, http.StatusNotFound, "NotFound")
		rd := e.post(bob, "readdition", obj{"convoId": g}).must(t, http.StatusOK)
		if rd.body["requested"] != true || rd.body["activeMembers"] != float64(1) {
			t.Fatalf("readdition: %s", rd.raw)
		}
		alone := e.createConvo(t, bob)
		e.post(bob, "readdition", obj{"convoId": alone}).isErr(t, http.StatusConflict, "NoActiveMembers")
	})
}

func TestPendingDeviceAddition(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice, bob, carol)
		a2 := who{DID: alice.DID, DeviceID: "a2"}
		a2kp := e.register(t, a2)
		list := e.get(bob, "getPendingDeviceAdditions", nil).must(t, http.StatusOK).body["pendingAdditions"].([]any)
		if len(list) != 1 {
			t.Fatalf("after registering a second device: %v", list)
		}
		p := list[0].(map[string]any)
		if p["convoId"] != g || p["userDid"] != alice.DID || p["deviceId"] != "a2" || p["status"] != "pending" {
			t.Fatalf("pending addition: %v", p)
		}
		id := p["id"]
		e.post(mallory, "claimPendingDeviceAddition", obj{"pendingAdditionId": id}).isErr(t, http.StatusForbidden, "NotMember")
		if r := e.post(bob, "claimPendingDeviceAddition", obj{"pendingAdditionId": "unknown"}).must(t, http.StatusOK); r.body["claimed"] != false {
			t.Errorf("claim of an unknown addition: %s", r.raw)
		}
		// Members race for it: exactly one claim succeeds.
		var wg sync.WaitGroup
		var mu sync.Mutex
		winners := map[string]bool{}
		holders := map[string]bool{}
		for _, m := range []who{alice, bob, carol} {
			wg.Go(func() {
				r := e.post(m, "claimPendingDeviceAddition", obj{"pendingAdditionId": id})
				mu.Lock()
				defer mu.Unlock()
				if r.body["claimed"] == true {
					winners[m.DID] = true
				} else {
					holders[fmt.Sprint(r.body["claimedBy"])] = true
				}
			})
		}
		wg.Wait()
		if len(winners) != 1 || len(holders) != 1 {
			t.Fatalf("winners %v, refused claimers told %v", winners, holders)
		}
		var winner, loser who
		for _, m := range []who{alice, bob, carol} {
			if winners[m.DID] {
				winner = m
			} else {
				loser = m
			}
		}
		if !holders[winner.DID] {
			t.Errorf("the refused claimers were told %v, not the winner %s", holders, winner.DID)
		}
		e.post(loser, "completePendingDeviceAddition", obj{"pendingAdditionId": id, "newEpoch": 0}).isErr(t, http.StatusForbidden, "NotClaimed")
		if r := e.post(winner, "completePendingDeviceAddition", obj{"pendingAdditionId": id, "newEpoch": 0}).must(t, http.StatusOK); r.body["success"] != false || r.body["error"] != "InvalidStatus:in_progress" {
			t.Errorf("complete before the device was added: %s", r.raw)
		}
		e.post(winner, "completePendingDeviceAddition", obj{"pendingAdditionId": id, "newEpoch": 5}).isErr(t, http.StatusBadRequest, "InvalidRequest")
		// The claim lapses after 60 s and goes to the next member.
		e.clock.Advance(61 * time.Second)
		c := e.post(loser, "claimPendingDeviceAddition", obj{"pendingAdditionId": id}).must(t, http.StatusOK)
		if c.body["claimed"] != true || c.body["keyPackage"].(map[string]any)["keyPackageHash"] != a2kp.refHex() {
			t.Fatalf("claim after the first lapsed: %s", c.raw)
		}
		e.post(loser, "addMembers", obj{"convoId": g, "idempotencyKey": "add-a2", "didList": []string{"did:plc:alice#a2"},
			"keyPackageHashes": []obj{{"did": "did:plc:alice#a2", "hash": a2kp.refHex()}},
			"commit":           b64(commit(t, g, 0)), "welcomeMessage": b64(welcome(t, suite, a2kp.ref))}).must(t, http.StatusOK)
		if r := e.post(loser, "completePendingDeviceAddition", obj{"pendingAdditionId": id, "newEpoch": 1}).must(t, http.StatusOK); r.body["success"] != true {
			t.Fatalf("complete: %s", r.raw)
		}
		if r := e.post(loser, "completePendingDeviceAddition", obj{"pendingAdditionId": id, "newEpoch": 1}).must(t, http.StatusOK); r.body["error"] != "PendingAdditionNotFound" {
			t.Errorf("complete twice: %s", r.raw)
		}
		e.get(a2, "getWelcome", url.Values{"convoId": {g}}).must(t, http.StatusOK)
	})
}

func TestValidateAndInvalidateWelcome(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		kp := newKeyPackage(t, "did:plc:bob#b1", e.clock.Now(), 24*time.Hour)
		e.publish(bob, kp, "kp1").must(t, http.StatusOK)
		other := newKeyPackage(t, "did:plc:bob#b2", e.clock.Now(), 24*time.Hour)
		e.publish(who{DID: bob.DID, DeviceID: "b2"}, other, "kp2").must(t, http.StatusOK)
		g := newGroup(t)
		w := welcome(t, suite, kp.ref)
		e.post(alice, "createConvo", obj{"groupId": g, "cipherSuite": suite.String(), "idempotencyKey": "c-" + g,
			"initialMembers": []string{"did:plc:bob#b1"}, "keyPackageHashes": []obj{{"did": "did:plc:bob#b1", "hash": kp.refHex()}},
			"welcomeMessage": b64(w)}).must(t, http.StatusOK)

		v := e.post(bob, "validateWelcome", obj{"welcomeMessage": b64bytes(w)}).must(t, http.StatusOK)
		sum := sha256.Sum256(kp.data)
		if v.body["valid"] != true || v.body["reserved"] != true || v.body["keyPackageHash"] != hex.EncodeToString(sum[:]) || v.body["recipientDid"] != bob.DID {
			t.Fatalf("validateWelcome: %s", v.raw)
		}
		e.post(bob, "validateWelcome", obj{"welcomeMessage": b64bytes(w)}).must(t, http.StatusOK)
		e.post(bob, "validateWelcome", obj{"welcomeMessage": b64bytes(welcome(t, suite, kp.ref))}).isErr(t, http.StatusConflict, "KeyPackageReserved")
		e.post(bob, "validateWelcome", obj{"welcomeMessage": b64bytes(welcome(t, suite, other.ref))}).isErr(t, http.StatusForbidden, "RecipientMismatch")
		e.post(bob, "validateWelcome", obj{"welcomeMessage": b64bytes(welcome(t, suite, randBytes(t, 32)))}).isErr(t, http.StatusNotFound, "KeyPackageNotFound")
		e.post(bob, "validateWelcome", obj{"welcomeMessage": b64bytes([]byte("nope"))}).isErr(t, http.StatusBadRequest, "InvalidWelcome")
		e.post(bob, "validateWelcome", obj{}).isErr(t, http.StatusBadRequest, "InvalidRequest")

		// Once confirmed, the package brought bob's device in: a Welcome
		// naming it again is refused.
		e.post(bob, "confirmWelcome", obj{"convoId": g, "success": true}).must(t, http.StatusOK)
		e.clock.Advance(6 * time.Minute)
		e.post(bob, "validateWelcome", obj{"welcomeMessage": b64bytes(w)}).isErr(t, http.StatusConflict, "KeyPackageAlreadyConsumed")

		// invalidateWelcome: a Welcome bob's device cannot process.
		kp3 := newKeyPackage(t, "did:plc:bob#b1", e.clock.Now(), 24*time.Hour)
		e.publish(bob, kp3, "kp3").must(t, http.StatusOK)
		g2 := newGroup(t)
		e.post(alice, "createConvo", obj{"groupId": g2, "cipherSuite": suite.String(), "idempotencyKey": "c-" + g2,
			"initialMembers": []string{"did:plc:bob#b1"}, "keyPackageHashes": []obj{{"did": "did:plc:bob#b1", "hash": kp3.refHex()}},
			"welcomeMessage": b64(welcome(t, suite, kp3.ref))}).must(t, http.StatusOK)
		inv := obj{"convoId": g2, "reason": "NoMatchingKeyPackage"}
		e.post(mallory, "invalidateWelcome", inv).isErr(t, http.StatusForbidden, "Unauthorized")
		e.post(bob, "invalidateWelcome", obj{"convoId": g2}).isErr(t, http.StatusBadRequest, "InvalidRequest")
		r := e.post(bob, "invalidateWelcome", inv).must(t, http.StatusOK)
		if r.body["invalidated"] != true || r.body["welcomeId"] == "" {
			t.Fatalf("invalidateWelcome: %s", r.raw)
		}
		e.get(bob, "getWelcome", url.Values{"convoId": {g2}}).isErr(t, http.StatusNotFound, "WelcomeNotFound")
		e.post(bob, "invalidateWelcome", inv).isErr(t, http.StatusNotFound, "NotFound")
		exp := e.get(bob, "getExpectedConversations", nil).must(t, http.StatusOK).raw
		if !strings.Contains(string(exp), `"convoId":"`+g2+`","name":"","memberCount":2,"shouldBeInGroup":true`) || !strings.Contains(string(exp), `"needsRejoin":true`) {
			t.Errorf("after invalidating the Welcome: %s", exp)
		}
	})
}

func TestKeyPackageHistory(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		kp := newKeyPackage(t, "did:plc:bob#b1", e.clock.Now(), 24*time.Hour)
		e.publish(bob, kp, "kp").must(t, http.StatusOK)
		if h := e.get(bob, "getKeyPackageHistory", nil).must(t, http.StatusOK).body["history"].([]any); len(h) != 0 {
			t.Fatalf("history before any hand-out: %v", h)
		}
		e.get(alice, "getKeyPackages", url.Values{"dids": {bob.DID}}).must(t, http.StatusOK)
		h := e.get(bob, "getKeyPackageHistory", url.Values{"limit": {"5"}}).must(t, http.StatusOK).body["history"].([]any)
		if len(h) != 1 {
			t.Fatalf("history: %v", h)
		}
		entry := h[0].(map[string]any)
		if entry["packageId"] != kp.refHex() || entry["deviceId"] != "b1" || entry["cipherSuite"] != suite.String() || entry["consumedAt"] == nil {
			t.Errorf("history entry: %v", entry)
		}
		if h := e.get(alice, "getKeyPackageHistory", nil).must(t, http.StatusOK).body["history"].([]any); len(h) != 0 {
			t.Errorf("alice sees bob's history: %v", h)
		}
		e.get(bob, "getKeyPackageHistory", url.Values{"limit": {"0"}}).isErr(t, http.StatusBadRequest, "InvalidRequest")
	})
}

// FuzzProcessExternalCommit: no bytes as an external commit make
// processExternalCommit panic or answer anything but a success or a 4xx.
func FuzzProcessExternalCommit(f *testing.F) {
	f.Add(externalCommit(f, "abcd", 0, "did:plc:alice#a1"))
	f.Add(commit(f, "abcd", 0))
	f.Add([]byte{0, 1, 0, 1})
	e := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		body := obj{"convoId": "abcd", "externalCommit": b64(data), "idempotencyKey": "f" + hex.EncodeToString(data[:min(len(data), 16)])}
		r := e.post(alice, "processExternalCommit", body)
		if r.status != http.StatusOK && (r.status < 400 || r.status >= 500) {
			t.Fatalf("status %d for %x: %s", r.status, data, r.raw)
		}
	})
}

// FuzzParseExternalCommit: what parseExternalCommit accepts is an MLS
// PublicMessage commit of the group from a new_member_commit sender with an
// ExternalInit proposal and a path, and the identity it returns is that
// path's basic credential.
func FuzzParseExternalCommit(f *testing.F) {
	f.Add(externalCommit(f, "abcd", 7, "did:plc:alice#a1"))
	f.Add(commit(f, "abcd", 0))
	f.Add(app(f, "abcd", 0))
	f.Add([]byte{0, 1, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		epoch, identity, err := delivery.ParseExternalCommit(data, "abcd")
		if err != nil {
			if !errors.Is(err, delivery.ErrInvalidMessage) && !errors.Is(err, delivery.ErrIdentityMismatch) {
				t.Fatalf("error %v is neither an invalid message nor an identity mismatch", err)
			}
			return
		}
		m, perr := mlswire.ParseMessage(data)
		if perr != nil || m.PublicMessage == nil {
			t.Fatalf("accepted bytes that are no PublicMessage: %v", perr)
		}
		fc := m.PublicMessage.Content
		if fc.Sender.Type != mlswire.SenderTypeNewMemberCommit || fc.Commit == nil || fc.Commit.Path == nil ||
			hex.EncodeToString(fc.GroupID) != "abcd" || uint64(epoch) != fc.Epoch {
			t.Fatalf("accepted a commit that is not an external commit of the group: %+v", fc)
		}
		if id, ok := fc.Commit.Path.LeafNode.Credential.BasicIdentity(); !ok || string(id) != string(identity) {
			t.Fatalf("identity %q is not the path's credential", identity)
		}
	})
}

// FuzzJoinByInvite: no bytes as the external commit of an invite join
// make processExternalCommit panic or answer a 5xx, and what it accepts
// is eve's own external commit.
func FuzzJoinByInvite(f *testing.F) {
	f.Add(externalCommit(f, "abcd", 0, "did:plc:eve#e1"))
	f.Add(externalCommit(f, "abcd", 0, "did:plc:bob#b1"))
	f.Add(commit(f, "abcd", 0))
	f.Add([]byte("nope"))
	e := newFuzzEnv(f)
	psk := randBytes(f, 32)
	e.post(alice, "createInvite", obj{"convoId": "abcd", "pskHash": pskHash(psk)}).must(f, http.StatusOK)
	f.Fuzz(func(t *testing.T, data []byte) {
		r := e.post(eve, "processExternalCommit", obj{"convoId": "abcd", "externalCommit": b64(data), "psk": b64(psk)})
		switch {
		case r.status == http.StatusOK:
			if _, id, err := delivery.ParseExternalCommit(data, "abcd"); err != nil || (string(id) != "did:plc:eve#e1" && string(id) != "did:plc:eve") {
				t.Fatalf("joined with %x (%v, %q)", data, err, id)
			}
		case r.status < 400 || r.status >= 500:
			t.Fatalf("status %d for %x: %s", r.status, data, r.raw)
		}
	})
}
