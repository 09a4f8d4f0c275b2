package delivery_test

import (
	"net/http"
	"net/url"
	"testing"
)

func TestGroupInfo(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice, bob)
		q := url.Values{"convoId": {g}}
		e.get(bob, "getGroupInfo", q).isErr(t, http.StatusNotFound, "GroupInfoUnavailable")
		gi := groupInfo(t, g, 0)
		up := obj{"convoId": g, "groupInfo": b64(gi), "epoch": 0}
		r := e.post(alice, "updateGroupInfo", up).must(t, http.StatusOK)
		if r.body["updated"] != true {
			t.Fatalf("updateGroupInfo: %s", r.raw)
		}
		e.post(alice, "updateGroupInfo", up).must(t, http.StatusOK) // naturally idempotent
		got := e.get(bob, "getGroupInfo", q).must(t, http.StatusOK)
		if got.body["groupInfo"] != b64(gi) || got.body["epoch"] != float64(0) || got.body["expiresAt"] == nil {
			t.Fatalf("getGroupInfo: %s", got.raw)
		}
		cases := []struct {
			name   string
			id     who
			body   obj
			status int
			err    string
		}{
			{"epoch differs from the GroupInfo", alice, obj{"convoId": g, "groupInfo": b64(groupInfo(t, g, 1)), "epoch": 0}, 400, "InvalidGroupInfo"},
			{"other group", alice, obj{"convoId": g, "groupInfo": b64(groupInfo(t, newGroup(t), 0)), "epoch": 0}, 400, "InvalidGroupInfo"},
			{"not a GroupInfo", alice, obj{"convoId": g, "groupInfo": b64(commit(t, g, 0)), "epoch": 0}, 400, "InvalidGroupInfo"},
			{"garbage", alice, obj{"convoId": g, "groupInfo": b64([]byte("nope")), "epoch": 0}, 400, "InvalidGroupInfo"},
			{"future epoch", alice, obj{"convoId": g, "groupInfo": b64(groupInfo(t, g, 1)), "epoch": 1}, 409, "StaleEpoch"},
			{"no epoch", alice, obj{"convoId": g, "groupInfo": b64(gi)}, 400, "InvalidRequest"},
			{"bad base64", alice, obj{"convoId": g, "groupInfo": "***", "epoch": 0}, 400, "InvalidRequest"},
			{"non-member", mallory, up, 403, "Unauthorized"},
			{"unknown convo", alice, obj{"convoId": newGroup(t), "groupInfo": b64(gi), "epoch": 0}, 404, "NotFound"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) { e.post(tc.id, "updateGroupInfo", tc.body).isErr(t, tc.status, tc.err) })
		}
		e.get(mallory, "getGroupInfo", q).isErr(t, http.StatusForbidden, "Unauthorized")
		e.get(alice, "getGroupInfo", url.Values{"convoId": {newGroup(t)}}).isErr(t, http.StatusNotFound, "NotFound")
		e.get(alice, "getGroupInfo", nil).isErr(t, http.StatusBadRequest, "InvalidRequest")

		// A past member may not: the GroupInfo is the roster and the key to
		// an external-commit rejoin.
		e.get(bob, "getGroupInfo", q).must(t, http.StatusOK)
		e.post(bob, "leaveConvo", obj{"convoId": g}).must(t, http.StatusOK)
		e.get(bob, "getGroupInfo", q).isErr(t, http.StatusForbidden, "Unauthorized")
	})
}

func TestWelcomeLifecycle(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		// createConvo with an initial member holds the Welcome for them.
		kp := newKeyPackage(t, "did:plc:bob#b1", e.clock.Now(), 24*3600e9)
		e.post(bob, "publishKeyPackage", obj{"keyPackage": kp.b64(), "cipherSuite": suite.String(), "idempotencyKey": "p"}).must(t, http.StatusOK)
		e.get(alice, "getKeyPackages", url.Values{"dids": {bob.DID}}).must(t, http.StatusOK)
		g := newGroup(t)
		w := welcome(t, suite, kp.ref)
		r := e.post(alice, "createConvo", obj{
			"groupId": g, "cipherSuite": suite.String(), "idempotencyKey": "c", "initialMembers": []string{bob.DID},
			"welcomeMessage": b64(w), "keyPackageHashes": []obj{{"did": bob.DID, "hash": kp.refHex()}},
		}).must(t, http.StatusOK)
		if r.body["epoch"] != float64(1) {
			t.Fatalf("epoch after a Welcome: %s", r.raw)
		}
		q := url.Values{"convoId": {g}}
		e.get(alice, "getWelcome", q).isErr(t, http.StatusNotFound, "WelcomeNotFound")
		e.get(mallory, "getWelcome", q).isErr(t, http.StatusForbidden, "NotMember")
		got := e.get(bob, "getWelcome", q).must(t, http.StatusOK)
		if got.body["welcome"] != b64url(w) {
			t.Fatalf("getWelcome: %s", got.raw)
		}
		// A failed processing keeps it; success consumes it.
		e.post(bob, "confirmWelcome", obj{"convoId": g, "success": false, "errorDetails": "oops"}).must(t, http.StatusOK)
		e.get(bob, "getWelcome", q).must(t, http.StatusOK)
		c := e.post(bob, "confirmWelcome", obj{"convoId": g, "success": true}).must(t, http.StatusOK)
		if c.body["confirmed"] != true {
			t.Fatalf("confirmWelcome: %s", c.raw)
		}
		e.get(bob, "getWelcome", q).isErr(t, http.StatusNotFound, "WelcomeNotFound")
		e.post(bob, "confirmWelcome", obj{"convoId": g}).isErr(t, http.StatusBadRequest, "InvalidRequest")
		e.post(mallory, "confirmWelcome", obj{"convoId": g, "success": true}).isErr(t, http.StatusForbidden, "NotMember")

		// A Welcome must be addressed to the named key packages, and be of
		// the conversation's suite.
		other := newKeyPackage(t, "did:plc:carol#c1", e.clock.Now(), 24*3600e9)
		bad := []obj{
			{"groupId": newGroup(t), "cipherSuite": suite.String(), "idempotencyKey": "x1", "initialMembers": []string{carol.DID},
				"welcomeMessage": b64(welcome(t, suite, other.ref)), "keyPackageHashes": []obj{{"did": carol.DID + "#c1", "hash": kp.refHex()}}},
			{"groupId": newGroup(t), "cipherSuite": suite.String(), "idempotencyKey": "x2", "initialMembers": []string{carol.DID + "#c1"},
				"welcomeMessage": b64(welcome(t, 2, other.ref))},
			{"groupId": newGroup(t), "cipherSuite": suite.String(), "idempotencyKey": "x3", "initialMembers": []string{carol.DID + "#c1"},
				"welcomeMessage": b64(commit(t, g, 0))},
		}
		for i, b := range bad {
			r := e.post(alice, "createConvo", b)
			if r.status != http.StatusBadRequest || r.errName() != "InvalidMessage" {
				t.Fatalf("bad welcome %d: %d %s", i, r.status, r.raw)
			}
		}
		// An unknown key package is KeyPackageNotFound.
		e.post(alice, "createConvo", obj{"groupId": newGroup(t), "cipherSuite": suite.String(), "idempotencyKey": "x4",
			"initialMembers": []string{carol.DID}, "keyPackageHashes": []obj{{"did": carol.DID, "hash": other.refHex()}}}).
			isErr(t, http.StatusBadRequest, "KeyPackageNotFound")
	})
}
