package delivery_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/audit"
	"github.com/cairn-chat/cairn-caddy/internal/delivery"
)

func roleBody(g string, target who) obj { return obj{"convoId": g, "targetDid": target.DID} }

func TestAdminRoster(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice, bob, carol)
		// Only admins promote: bob (member) cannot.
		e.post(bob, "promoteAdmin", roleBody(g, carol)).isErr(t, http.StatusForbidden, "NotAdmin")
		e.post(mallory, "promoteAdmin", roleBody(g, carol)).isErr(t, http.StatusForbidden, "NotMember")
		e.post(alice, "promoteAdmin", roleBody(newGroup(t), carol)).isErr(t, http.StatusNotFound, "ConvoNotFound")
		e.post(alice, "promoteAdmin", roleBody(g, eve)).isErr(t, http.StatusNotFound, "NotMember")
		e.post(alice, "promoteAdmin", obj{"convoId": g, "targetDid": "not-a-did"}).isErr(t, http.StatusBadRequest, "InvalidDid")

		// The creator is the first admin and promotes bob.
		r := e.post(alice, "promoteAdmin", roleBody(g, bob)).must(t, http.StatusOK)
		if r.body["ok"] != true || r.body["promotedAt"] == nil {
			t.Fatalf("promoteAdmin: %s", r.raw)
		}
		e.post(alice, "promoteAdmin", roleBody(g, bob)).isErr(t, http.StatusConflict, "AlreadyAdmin")
		// A client key replays the answer.
		k := roleBody(g, carol)
		k["idempotencyKey"] = "mod-carol"
		first := e.post(alice, "promoteModerator", k).must(t, http.StatusOK)
		again := e.post(alice, "promoteModerator", k).must(t, http.StatusOK)
		if !bytes.Equal(first.raw, again.raw) {
			t.Fatalf("replay differs: %s vs %s", first.raw, again.raw)
		}
		e.post(alice, "promoteModerator", roleBody(g, carol)).isErr(t, http.StatusConflict, "AlreadyModerator")
		e.post(alice, "promoteModerator", roleBody(g, bob)).isErr(t, http.StatusBadRequest, "IsAdmin")
		// Moderators cannot promote.
		e.post(carol, "promoteAdmin", roleBody(g, carol)).isErr(t, http.StatusForbidden, "NotAdmin")
		e.post(carol, "promoteModerator", roleBody(g, carol)).isErr(t, http.StatusForbidden, "NotAdmin")

		// getConvos shows the roles.
		members := e.get(alice, "getConvos", nil).must(t, http.StatusOK).body["conversations"].([]any)[0].(map[string]any)["members"].([]any)
		roles := map[string]string{}
		for _, m := range members {
			mv := m.(map[string]any)
			roles[mv["userDid"].(string)] = map[bool]string{true: "admin", false: ""}[mv["isAdmin"] == true] + map[bool]string{true: "moderator", false: ""}[mv["isModerator"] == true]
		}
		if roles[bob.DID] != "admin" || roles[carol.DID] != "moderator" || roles[alice.DID] != "admin" {
			t.Fatalf("roles: %v", roles)
		}

		// Demotions: a non-admin may demote only itself.
		e.post(carol, "demoteModerator", roleBody(g, bob)).isErr(t, http.StatusForbidden, "NotAdmin")
		e.post(alice, "demoteModerator", roleBody(g, bob)).isErr(t, http.StatusBadRequest, "NotModerator")
		e.post(carol, "demoteModerator", roleBody(g, carol)).must(t, http.StatusOK)
		e.post(alice, "demoteModerator", roleBody(g, eve)).isErr(t, http.StatusNotFound, "NotMember")
		e.post(alice, "demoteModerator", roleBody(newGroup(t), carol)).isErr(t, http.StatusNotFound, "ConvoNotFound")
		e.post(carol, "demoteAdmin", roleBody(g, bob)).isErr(t, http.StatusForbidden, "NotAdmin")
		e.post(alice, "demoteAdmin", roleBody(g, carol)).isErr(t, http.StatusBadRequest, "NotAdminTarget")
		e.post(alice, "demoteAdmin", roleBody(g, eve)).isErr(t, http.StatusNotFound, "NotMember")
		e.post(alice, "demoteAdmin", roleBody(newGroup(t), bob)).isErr(t, http.StatusNotFound, "ConvoNotFound")
		e.post(bob, "demoteAdmin", roleBody(g, bob)).must(t, http.StatusOK)
		// alice is now the last admin.
		e.post(alice, "demoteAdmin", roleBody(g, alice)).isErr(t, http.StatusBadRequest, "LastAdmin")
	})
}

func TestLastAdminUnderRace(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice, bob)
		e.post(alice, "promoteAdmin", roleBody(g, bob)).must(t, http.StatusOK)
		// Both admins demote themselves at once: exactly one may succeed.
		var wg sync.WaitGroup
		results := make([]resp, 2)
		for i, id := range []who{alice, bob} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = e.post(id, "demoteAdmin", roleBody(g, id))
			}()
		}
		wg.Wait()
		ok := 0
		for _, r := range results {
			if r.status == http.StatusOK {
				ok++
			} else if r.errName() != "LastAdmin" {
				t.Fatalf("unexpected refusal: %s", r.raw)
			}
		}
		if ok != 1 {
			t.Fatalf("%d demotions succeeded, want exactly 1", ok)
		}
	})
}

func TestPolicy(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice, bob)
		p := e.get(bob, "getPolicy", url.Values{"convoId": {g}}).must(t, http.StatusOK).body["policy"].(map[string]any)
		if p["allowInvites"] != true || p["adminOnlyInvites"] != true || p["allowMemberAdd"] != true ||
			p["allowMemberRemove"] != false || p["maxMembers"] != float64(1000) || p["convoId"] != g {
			t.Fatalf("default policy: %v", p)
		}
		e.get(mallory, "getPolicy", url.Values{"convoId": {g}}).isErr(t, http.StatusForbidden, "NotMember")
		e.get(alice, "getPolicy", url.Values{"convoId": {newGroup(t)}}).isErr(t, http.StatusNotFound, "ConvoNotFound")

		e.post(bob, "updatePolicy", obj{"convoId": g, "allowMemberAdd": false}).isErr(t, http.StatusForbidden, "Unauthorized")
		e.post(mallory, "updatePolicy", obj{"convoId": g, "allowMemberAdd": false}).isErr(t, http.StatusForbidden, "NotMember")
		e.post(alice, "updatePolicy", obj{"convoId": newGroup(t), "allowMemberAdd": false}).isErr(t, http.StatusNotFound, "ConvoNotFound")
		e.post(alice, "updatePolicy", obj{"convoId": g}).isErr(t, http.StatusBadRequest, "NoFieldsProvided")
		e.post(alice, "updatePolicy", obj{"convoId": g, "maxMembers": 1}).isErr(t, http.StatusBadRequest, "InvalidRequest")
		e.post(alice, "updatePolicy", obj{"convoId": g, "maxMembers": 2}).must(t, http.StatusOK)
		// Two members now; adding carol would make three.
		e.post(alice, "addMembers", obj{"convoId": g, "idempotencyKey": "add-carol", "didList": []string{"did:plc:carol#c1"}}).
			isErr(t, http.StatusBadRequest, "TooManyMembers")
		// maxMembers below the current count is refused.
		e.post(alice, "updatePolicy", obj{"convoId": g, "maxMembers": 3}).must(t, http.StatusOK)
		e.post(alice, "addMembers", obj{"convoId": g, "idempotencyKey": "add-carol2", "didList": []string{"did:plc:carol#c1"}}).must(t, http.StatusOK)
		e.post(alice, "updatePolicy", obj{"convoId": g, "maxMembers": 2}).isErr(t, http.StatusBadRequest, "InvalidMaxMembers")

		// allowMemberAdd false: only admins add.
		up := e.post(alice, "updatePolicy", obj{"convoId": g, "allowMemberAdd": false, "maxMembers": 10}).must(t, http.StatusOK)
		if pv := up.body["policy"].(map[string]any); pv["allowMemberAdd"] != false || pv["updatedBy"] != alice.DID || pv["maxMembers"] != float64(10) {
			t.Fatalf("updated policy: %s", up.raw)
		}
		e.post(bob, "addMembers", obj{"convoId": g, "idempotencyKey": "bob-add", "didList": []string{"did:plc:eve#e1"}}).
			isErr(t, http.StatusForbidden, "NotAdmin")
		// A non-admin removal is refused unless allowMemberRemove, and
		// admins can never be removed by non-admins.
		e.post(bob, "removeMember", obj{"convoId": g, "targetDid": carol.DID, "idempotencyKey": "rm1"}).isErr(t, http.StatusForbidden, "NotAdmin")
		e.post(alice, "updatePolicy", obj{"convoId": g, "allowMemberRemove": true}).must(t, http.StatusOK)
		e.post(bob, "removeMember", obj{"convoId": g, "targetDid": alice.DID, "idempotencyKey": "rm2"}).isErr(t, http.StatusForbidden, "NotAdmin")
		e.post(bob, "removeMember", obj{"convoId": g, "targetDid": carol.DID, "idempotencyKey": "rm3"}).must(t, http.StatusOK)
	})
}

// sealed is an opaque test blob standing in for an HPKE-sealed report.
func sealed(t testing.TB) []byte { return append([]byte("hpke-sealed:"), randBytes(t, 300)...) }

func TestReports(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice, bob, carol)
		blob := sealed(t)
		rep := obj{"convoId": g, "reportedDid": carol.DID, "category": "spam", "encryptedContent": b64bytes(blob), "messageIds": []string{"m1"}}
		e.post(bob, "reportMember", obj{"convoId": g, "reportedDid": bob.DID, "category": "spam", "encryptedContent": b64bytes(blob)}).
			isErr(t, http.StatusBadRequest, "CannotReportSelf")
		e.post(mallory, "reportMember", rep).isErr(t, http.StatusForbidden, "NotMember")
		e.post(bob, "reportMember", obj{"convoId": g, "reportedDid": eve.DID, "category": "spam", "encryptedContent": b64bytes(blob)}).
			isErr(t, http.StatusNotFound, "TargetNotMember")
		e.post(bob, "reportMember", obj{"convoId": newGroup(t), "reportedDid": carol.DID, "category": "spam", "encryptedContent": b64bytes(blob)}).
			isErr(t, http.StatusNotFound, "ConvoNotFound")
		e.post(bob, "reportMember", obj{"convoId": g, "reportedDid": carol.DID, "category": "gossip", "encryptedContent": b64bytes(blob)}).
			isErr(t, http.StatusBadRequest, "InvalidRequest")
		big := obj{"convoId": g, "reportedDid": carol.DID, "category": "spam", "encryptedContent": b64bytes(make([]byte, 51201))}
		if r := e.post(bob, "reportMember", big); r.status != http.StatusRequestEntityTooLarge && r.status != http.StatusBadRequest {
			t.Fatalf("oversize report: %s", r.raw)
		}

		r := e.post(bob, "reportMember", rep).must(t, http.StatusOK)
		id := r.body["reportId"].(string)
		// The same blob again is the same report.
		if again := e.post(bob, "reportMember", rep).must(t, http.StatusOK); again.body["reportId"] != id {
			t.Fatalf("retry filed a second report: %s", again.raw)
		}

		// Only admins read reports.
		e.get(bob, "getReports", url.Values{"convoId": {g}}).isErr(t, http.StatusForbidden, "NotAdmin")
		e.get(alice, "getReports", url.Values{"convoId": {newGroup(t)}}).isErr(t, http.StatusNotFound, "ConvoNotFound")
		got := e.get(alice, "getReports", url.Values{"convoId": {g}}).must(t, http.StatusOK)
		list := got.body["reports"].([]any)
		if len(list) != 1 {
			t.Fatalf("reports: %s", got.raw)
		}
		rv := list[0].(map[string]any)
		if rv["id"] != id || rv["reportedDid"] != carol.DID || rv["status"] != "pending" || rv["category"] != "spam" {
			t.Fatalf("reportView: %v", rv)
		}
		if _, ok := rv["reporterDid"]; ok {
			t.Fatalf("reportView names the reporter: %v", rv)
		}
		if bytes.Contains(got.raw, []byte(bob.DID)) {
			t.Fatalf("getReports mentions the reporter's DID: %s", got.raw)
		}
		// The stored bytes are the submitted bytes.
		stored, err := e.store.Report(t.Context(), id)
		if err != nil || !bytes.Equal(stored.Sealed, blob) {
			t.Fatalf("stored report differs from submitted bytes: %v", err)
		}
		if content := rv["encryptedContent"].(map[string]any)["$bytes"].(string); content != b64bytes(blob)["$bytes"] {
			t.Fatalf("returned content differs")
		}

		// Resolution: admins only, once.
		e.post(bob, "resolveReport", obj{"reportId": id, "action": "dismissed"}).isErr(t, http.StatusForbidden, "NotAdmin")
		e.post(mallory, "resolveReport", obj{"reportId": id, "action": "dismissed"}).isErr(t, http.StatusNotFound, "ReportNotFound")
		e.post(alice, "resolveReport", obj{"reportId": "nope", "action": "dismissed"}).isErr(t, http.StatusNotFound, "ReportNotFound")
		e.post(alice, "resolveReport", obj{"reportId": id, "action": "ban"}).isErr(t, http.StatusBadRequest, "InvalidRequest")
		e.clock.Advance(3 * time.Hour)
		res := obj{"reportId": id, "action": "removed_member", "notes": "plaintext the server drops"}
		first := e.post(alice, "resolveReport", res).must(t, http.StatusOK)
		if again := e.post(alice, "resolveReport", res).must(t, http.StatusOK); !bytes.Equal(again.raw, first.raw) {
			t.Fatalf("resolve retry: %s", again.raw)
		}
		e.post(alice, "resolveReport", obj{"reportId": id, "action": "dismissed"}).isErr(t, http.StatusConflict, "AlreadyResolved")
		if pending := e.get(alice, "getReports", url.Values{"convoId": {g}, "status": {"pending"}}).must(t, http.StatusOK); len(pending.body["reports"].([]any)) != 0 {
			t.Fatalf("pending after resolve: %s", pending.raw)
		}

		// Stats: to the conversation's admins only.
		e.get(bob, "getAdminStats", url.Values{"convoId": {g}}).isErr(t, http.StatusForbidden, "NotAuthorized")
		e.get(mallory, "getAdminStats", url.Values{"convoId": {g}}).isErr(t, http.StatusForbidden, "NotAuthorized")
		e.get(alice, "getAdminStats", nil).isErr(t, http.StatusForbidden, "NotAuthorized")
		e.get(alice, "getAdminStats", url.Values{"convoId": {newGroup(t)}}).isErr(t, http.StatusNotFound, "ConvoNotFound")
		st := e.get(alice, "getAdminStats", url.Values{"convoId": {g}}).must(t, http.StatusOK)
		stats := st.body["stats"].(map[string]any)
		if stats["totalReports"] != float64(1) || stats["resolvedReports"] != float64(1) || stats["pendingReports"] != float64(0) ||
			stats["totalRemovals"] != float64(1) || stats["averageResolutionTimeHours"] != float64(3) ||
			stats["reportsByCategory"].(map[string]any)["spam"] != float64(1) {
			t.Fatalf("stats: %s", st.raw)
		}
		future := start.Add(24 * time.Hour).Format(time.RFC3339)
		if st := e.get(alice, "getAdminStats", url.Values{"convoId": {g}, "since": {future}}).must(t, http.StatusOK); st.body["stats"].(map[string]any)["totalReports"] != float64(0) {
			t.Fatalf("since: %s", st.raw)
		}
	})
}

func TestWarnMember(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		var recorded []audit.Event
		var mu sync.Mutex
		e.svc = mustService(t, delivery.Config{Store: e.store, Now: e.clock.Now,
			Audit: audit.RecorderFunc(func(_ context.Context, ev audit.Event) error {
				mu.Lock()
				defer mu.Unlock()
				recorded = append(recorded, ev)
				return nil
			}),
			HashIdentity: func(s string) string { sum := sha256.Sum256([]byte("k" + s)); return hex.EncodeToString(sum[:8]) },
		})
		g := e.createConvo(t, alice, bob, carol)
		w := obj{"convoId": g, "memberDid": carol.DID, "reason": "be kind"}
		e.post(bob, "warnMember", w).isErr(t, http.StatusForbidden, "NotAdmin")
		e.post(alice, "warnMember", obj{"convoId": g, "memberDid": eve.DID, "reason": "x"}).isErr(t, http.StatusNotFound, "TargetNotMember")
		e.post(alice, "warnMember", obj{"convoId": newGroup(t), "memberDid": carol.DID, "reason": "x"}).isErr(t, http.StatusNotFound, "ConvoNotFound")
		e.post(alice, "promoteAdmin", roleBody(g, bob)).must(t, http.StatusOK)
		e.post(alice, "warnMember", obj{"convoId": g, "memberDid": bob.DID, "reason": "x"}).isErr(t, http.StatusForbidden, "CannotWarnAdmin")
		r := e.post(alice, "warnMember", w).must(t, http.StatusOK)
		if r.body["warningId"] == "" || r.body["deliveredAt"] == nil {
			t.Fatalf("warnMember: %s", r.raw)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(recorded) != 2 || recorded[0].Type != audit.TypeRoleChange || recorded[1].Type != audit.TypeMemberWarn {
			t.Fatalf("audit events: %+v", recorded)
		}
		for _, ev := range recorded {
			text := ev.Actor + ev.Target
			for _, v := range ev.Metadata {
				if s, ok := v.(string); ok {
					text += s
				}
			}
			if strings.Contains(text, "did:") || strings.Contains(text, g) || strings.Contains(text, "be kind") {
				t.Fatalf("audit event carries an identity or the reason: %+v", ev)
			}
		}
	})
}

func mustService(t testing.TB, cfg delivery.Config) *delivery.Service {
	t.Helper()
	s, err := delivery.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pskHash(psk []byte) string {
	sum := sha256.Sum256(psk)
	return hex.EncodeToString(sum[:])
}

func TestInvites(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice, bob)
		psk := randBytes(t, 32)
		inv := obj{"convoId": g, "pskHash": pskHash(psk), "maxUses": 1, "expiresAt": start.Add(time.Hour).Format(time.RFC3339)}
		e.post(alice, "createInvite", obj{"convoId": g, "pskHash": "xyz"}).isErr(t, http.StatusBadRequest, "InvalidPSKHash")
		e.post(bob, "createInvite", inv).isErr(t, http.StatusForbidden, "Unauthorized")
		e.post(mallory, "createInvite", inv).isErr(t, http.StatusForbidden, "NotMember")
		e.post(alice, "createInvite", obj{"convoId": newGroup(t), "pskHash": pskHash(psk)}).isErr(t, http.StatusNotFound, "ConvoNotFound")
		r := e.post(alice, "createInvite", inv).must(t, http.StatusOK)
		id := r.body["inviteId"].(string)
		view := r.body["invite"].(map[string]any)
		if view["pskHash"] != pskHash(psk) || view["createdBy"] != alice.DID || view["useCount"] != float64(0) || view["isRevoked"] != false || view["maxUses"] != float64(1) {
			t.Fatalf("inviteView: %s", r.raw)
		}
		if again := e.post(alice, "createInvite", inv).must(t, http.StatusOK); again.body["inviteId"] != id {
			t.Fatalf("retry created a second invite: %s", again.raw)
		}

		e.get(bob, "listInvites", url.Values{"convoId": {g}}).isErr(t, http.StatusForbidden, "Unauthorized")
		e.get(mallory, "listInvites", url.Values{"convoId": {g}}).isErr(t, http.StatusForbidden, "NotMember")
		e.get(alice, "listInvites", url.Values{"convoId": {newGroup(t)}}).isErr(t, http.StatusNotFound, "ConvoNotFound")
		if l := e.get(alice, "listInvites", url.Values{"convoId": {g}}).must(t, http.StatusOK); len(l.body["invites"].([]any)) != 1 {
			t.Fatalf("listInvites: %s", l.raw)
		}

		// Redeem: eve, not a member, reads the GroupInfo with the invite's
		// hash and joins by external commit with the PSK.
		e.get(eve, "getGroupInfo", url.Values{"convoId": {g}}).isErr(t, http.StatusForbidden, "Unauthorized")
		e.get(eve, "getGroupInfo", url.Values{"convoId": {g}, "pskHash": {pskHash(randBytes(t, 32))}}).isErr(t, http.StatusForbidden, "Unauthorized")
		e.post(alice, "updateGroupInfo", obj{"convoId": g, "groupInfo": b64(groupInfo(t, g, 0)), "epoch": 0}).must(t, http.StatusOK)
		e.get(eve, "getGroupInfo", url.Values{"convoId": {g}, "pskHash": {pskHash(psk)}}).must(t, http.StatusOK)
		join := obj{"convoId": g, "externalCommit": b64(externalCommit(t, g, 0, "did:plc:eve#e1")), "groupInfo": b64(groupInfo(t, g, 1))}
		// Without a psk it is a rejoin, which wants an account that is a
		// member.
		e.post(eve, "processExternalCommit", join).isErr(t, http.StatusForbidden, "Unauthorized")
		join["psk"] = b64(randBytes(t, 32))
		e.post(eve, "processExternalCommit", join).isErr(t, http.StatusForbidden, "Unauthorized")
		join["psk"] = b64(psk)
		j := e.post(eve, "processExternalCommit", join).must(t, http.StatusOK)
		if j.body["epoch"] != float64(1) {
			t.Fatalf("join: %s", j.raw)
		}
		if again := e.post(eve, "processExternalCommit", join).must(t, http.StatusOK); !bytes.Equal(again.raw, j.raw) {
			t.Fatalf("join retry: %s", again.raw)
		}
		e.get(eve, "getEpoch", url.Values{"convoId": {g}}).must(t, http.StatusOK)
		// maxUses 1: a second redeemer is refused.
		join2 := obj{"convoId": g, "externalCommit": b64(externalCommit(t, g, 1, "did:plc:carol#c1")), "psk": b64(psk)}
		e.post(carol, "processExternalCommit", join2).isErr(t, http.StatusForbidden, "Unauthorized")

		// Revocation: admins only, once.
		e.post(bob, "revokeInvite", obj{"inviteId": id}).isErr(t, http.StatusForbidden, "Unauthorized")
		e.post(mallory, "revokeInvite", obj{"inviteId": id}).isErr(t, http.StatusNotFound, "InviteNotFound")
		e.post(alice, "revokeInvite", obj{"inviteId": "nope"}).isErr(t, http.StatusNotFound, "InviteNotFound")
		e.post(alice, "revokeInvite", obj{"inviteId": id}).must(t, http.StatusOK)
		e.post(alice, "revokeInvite", obj{"inviteId": id}).must(t, http.StatusOK) // replay
		e.post(alice, "revokeInvite", obj{"inviteId": id, "idempotencyKey": "other"}).isErr(t, http.StatusConflict, "AlreadyRevoked")
		if l := e.get(alice, "listInvites", url.Values{"convoId": {g}}).must(t, http.StatusOK); len(l.body["invites"].([]any)) != 0 {
			t.Fatalf("revoked invite listed: %s", l.raw)
		}
		l := e.get(alice, "listInvites", url.Values{"convoId": {g}, "includeRevoked": {"true"}}).must(t, http.StatusOK)
		v := l.body["invites"].([]any)[0].(map[string]any)
		if v["isRevoked"] != true || v["useCount"] != float64(1) || v["revokedBy"] != alice.DID {
			t.Fatalf("revoked invite: %v", v)
		}

		// A revoked invite no longer admits, and invites can be reserved
		// to nobody: allowInvites false.
		psk2 := randBytes(t, 32)
		e.post(alice, "createInvite", obj{"convoId": g, "pskHash": pskHash(psk2), "targetDid": carol.DID}).must(t, http.StatusOK)
		join3 := obj{"convoId": g, "externalCommit": b64(externalCommit(t, g, 1, "did:plc:carol#c1")), "psk": b64(psk2)}
		e.post(mallory, "processExternalCommit", obj{"convoId": g, "externalCommit": b64(externalCommit(t, g, 1, "did:plc:mallory#m1")),
			"psk": b64(psk2)}).isErr(t, http.StatusForbidden, "Unauthorized") // targetDid is carol

		e.post(alice, "updatePolicy", obj{"convoId": g, "adminOnlyInvites": false}).must(t, http.StatusOK)
		e.post(bob, "createInvite", obj{"convoId": g, "pskHash": pskHash(randBytes(t, 32))}).must(t, http.StatusOK)
		e.post(alice, "updatePolicy", obj{"convoId": g, "allowInvites": false}).must(t, http.StatusOK)
		e.post(alice, "createInvite", obj{"convoId": g, "pskHash": pskHash(randBytes(t, 32))}).isErr(t, http.StatusForbidden, "Unauthorized")
		e.post(carol, "processExternalCommit", join3).isErr(t, http.StatusForbidden, "Unauthorized")
	})
}

// TestRemovedAccountCannotReturnByInvite: an account an admin removed
// cannot come back with an invite that does not name it (issue 15: "a
// removed account cannot use rejoin or an external commit to come back");
// one that left can, an invite naming it can, and so can it once a member
// has added it back.
func TestRemovedAccountCannotReturnByInvite(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice, bob, carol)
		open := randBytes(t, 32)
		e.post(alice, "createInvite", obj{"convoId": g, "pskHash": pskHash(open)}).must(t, http.StatusOK)
		join := func(who who, epoch uint64, psk []byte) obj {
			return obj{"convoId": g, "psk": b64(psk), "groupInfo": b64(groupInfo(t, g, epoch+1)),
				"externalCommit": b64(externalCommit(t, g, epoch, who.DID+"#"+who.DeviceID))}
		}
		uses := func() float64 {
			t.Helper()
			l := e.get(alice, "listInvites", url.Values{"convoId": {g}}).must(t, http.StatusOK)
			for _, v := range l.body["invites"].([]any) {
				if v := v.(map[string]any); v["pskHash"] == pskHash(open) {
					return v["useCount"].(float64)
				}
			}
			t.Fatalf("untargeted invite not listed: %s", l.raw)
			return 0
		}

		// Removed by an admin: the link shared in the group is refused,
		// and the refusal does not use it up.
		e.post(alice, "removeMember", obj{"convoId": g, "targetDid": bob.DID, "idempotencyKey": "rm-bob",
			"commit": b64(commit(t, g, 0))}).must(t, http.StatusOK)
		e.post(bob, "processExternalCommit", join(bob, 1, open)).isErr(t, http.StatusForbidden, "Unauthorized")
		if n := uses(); n != 0 {
			t.Fatalf("a refused redemption was counted: useCount %v", n)
		}

		// Left voluntarily: the same link admits.
		e.post(carol, "leaveConvo", obj{"convoId": g, "commit": b64(commit(t, g, 1))}).must(t, http.StatusOK)
		e.post(carol, "processExternalCommit", join(carol, 2, open)).must(t, http.StatusOK)

		// An invite naming the removed account admits it.
		forBob := randBytes(t, 32)
		e.post(alice, "createInvite", obj{"convoId": g, "pskHash": pskHash(forBob), "targetDid": bob.DID}).must(t, http.StatusOK)
		e.post(bob, "processExternalCommit", join(bob, 3, forBob)).must(t, http.StatusOK)

		// An admin's leaveConvo naming someone else is a removal too.
		e.post(alice, "leaveConvo", obj{"convoId": g, "targetDid": bob.DID, "commit": b64(commit(t, g, 4))}).must(t, http.StatusOK)
		e.post(bob, "processExternalCommit", join(bob, 5, open)).isErr(t, http.StatusForbidden, "Unauthorized")
		// Nor is the GroupInfo for an external join served to it by the
		// untargeted invite's hash; by the invite naming it, it is.
		e.get(bob, "getGroupInfo", url.Values{"convoId": {g}, "pskHash": {pskHash(open)}}).isErr(t, http.StatusForbidden, "Unauthorized")
		e.get(bob, "getGroupInfo", url.Values{"convoId": {g}, "pskHash": {pskHash(forBob)}}).must(t, http.StatusOK)
		e.get(carol, "getGroupInfo", url.Values{"convoId": {g}}).must(t, http.StatusOK)

		// Added back by a member, then left: the link admits again.
		e.post(alice, "addMembers", obj{"convoId": g, "didList": []string{bob.DID + "#" + bob.DeviceID}, "idempotencyKey": "readd-bob",
			"commit": b64(commit(t, g, 5))}).must(t, http.StatusOK)
		e.post(bob, "leaveConvo", obj{"convoId": g, "commit": b64(commit(t, g, 6))}).must(t, http.StatusOK)
		e.post(bob, "processExternalCommit", join(bob, 7, open)).must(t, http.StatusOK)
		if n := uses(); n != 2 {
			t.Fatalf("useCount %v, want 2 (carol, then bob after his re-addition)", n)
		}
	})
}

// TestInviteJoinNeedsARealExternalCommit: redeeming an invite takes an MLS
// external commit made by the caller in the conversation's epoch; anything
// else is refused with a 4xx before the invite is used.
func TestInviteJoinNeedsARealExternalCommit(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice, bob)
		psk := randBytes(t, 32)
		e.post(alice, "createInvite", obj{"convoId": g, "pskHash": pskHash(psk), "maxUses": 1}).must(t, http.StatusOK)
		join := func(data []byte) obj { return obj{"convoId": g, "externalCommit": b64(data), "psk": b64(psk)} }
		cases := []struct {
			name   string
			body   obj
			status int
			err    string
		}{
			{"garbage bytes", join([]byte("nope")), 400, "InvalidCommit"},
			{"not base64", obj{"convoId": g, "externalCommit": "%%%", "psk": b64(psk)}, 400, "InvalidRequest"},
			{"a member's commit, not an external one", join(commit(t, g, 0)), 400, "InvalidCommit"},
			{"an application message", join(app(t, g, 0)), 400, "InvalidCommit"},
			{"an external commit of another group", join(externalCommit(t, newGroup(t), 0, "did:plc:eve#e1")), 400, "InvalidCommit"},
			{"the joiner is another account", join(externalCommit(t, g, 0, "did:plc:carol#c1")), 403, "Unauthorized"},
			{"the joiner is another device of a member", join(externalCommit(t, g, 0, "did:plc:alice#a9")), 403, "Unauthorized"},
			{"a future epoch", join(externalCommit(t, g, 5, "did:plc:eve#e1")), 409, "StaleEpoch"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) { e.post(eve, "processExternalCommit", tc.body).isErr(t, tc.status, tc.err) })
		}
		// None of them used the invite (maxUses 1): eve joins now, and an
		// external commit of the epoch she left behind is stale.
		e.post(eve, "processExternalCommit", join(externalCommit(t, g, 0, "did:plc:eve"))).must(t, http.StatusOK)
		psk2 := randBytes(t, 32)
		e.post(alice, "createInvite", obj{"convoId": g, "pskHash": pskHash(psk2)}).must(t, http.StatusOK)
		e.post(carol, "processExternalCommit", obj{"convoId": g, "externalCommit": b64(externalCommit(t, g, 0, "did:plc:carol#c1")),
			"psk": b64(psk2)}).isErr(t, http.StatusConflict, "StaleEpoch")
		e.post(carol, "processExternalCommit", obj{"convoId": g, "externalCommit": b64(externalCommit(t, g, 1, "did:plc:carol#c1")),
			"psk": b64(psk2)}).must(t, http.StatusOK)
		if l := e.get(alice, "listInvites", url.Values{"convoId": {g}}).must(t, http.StatusOK); len(l.body["invites"].([]any)) != 2 {
			t.Fatalf("listInvites: %s", l.raw)
		}
	})
}

func TestOptIn(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b.open, func(c *delivery.Config) { c.RequireOptIn = true })
			q := url.Values{"dids": {bob.DID, carol.DID}}
			st := e.get(alice, "getOptInStatus", q).must(t, http.StatusOK).body["statuses"].([]any)
			if len(st) != 2 || st[0].(map[string]any)["optedIn"] != false {
				t.Fatalf("statuses: %v", st)
			}
			e.get(alice, "getOptInStatus", url.Values{"dids": {"nope"}}).isErr(t, http.StatusBadRequest, "InvalidDid")
			e.get(alice, "getOptInStatus", nil).isErr(t, http.StatusBadRequest, "InvalidRequest")
			many := url.Values{}
			for range 101 {
				many.Add("dids", bob.DID)
			}
			e.get(alice, "getOptInStatus", many).isErr(t, http.StatusBadRequest, "InvalidRequest")

			// With require opt-in, bob cannot be added until he opts in.
			g := newGroup(t)
			create := obj{"groupId": g, "cipherSuite": suite.String(), "idempotencyKey": "c-" + g, "initialMembers": []string{"did:plc:bob#b1"}}
			e.post(alice, "createConvo", create).isErr(t, http.StatusForbidden, "NotOptedIn")
			r := e.post(bob, "optIn", obj{"deviceId": "b1"}).must(t, http.StatusOK)
			if r.body["optedIn"] != true || r.body["optedInAt"] == nil {
				t.Fatalf("optIn: %s", r.raw)
			}
			e.post(bob, "optIn", obj{}).must(t, http.StatusOK)
			e.post(alice, "createConvo", create).must(t, http.StatusOK)
			e.post(alice, "addMembers", obj{"convoId": g, "idempotencyKey": "add-c", "didList": []string{"did:plc:carol#c1"}}).
				isErr(t, http.StatusForbidden, "NotOptedIn")

			// Others learn whether, not when.
			st = e.get(alice, "getOptInStatus", q).must(t, http.StatusOK).body["statuses"].([]any)
			if s0 := st[0].(map[string]any); s0["optedIn"] != true || s0["optedInAt"] != nil {
				t.Fatalf("status seen by another: %v", s0)
			}
			own := e.get(bob, "getOptInStatus", url.Values{"dids": {bob.DID}}).must(t, http.StatusOK).body["statuses"].([]any)[0].(map[string]any)
			if own["optedInAt"] == nil {
				t.Fatalf("own status lacks optedInAt: %v", own)
			}
			e.post(bob, "optOut", obj{}).must(t, http.StatusOK)
			e.post(bob, "optOut", obj{}).must(t, http.StatusOK)
			if s0 := e.get(alice, "getOptInStatus", q).must(t, http.StatusOK).body["statuses"].([]any)[0].(map[string]any); s0["optedIn"] != false {
				t.Fatalf("after optOut: %v", s0)
			}
		})
	}
}

func FuzzParseDatetime(f *testing.F) {
	for _, s := range []string{"2026-11-30T06:00:00Z", "2026-11-30T06:00:00.123+02:00", "", "x", "2026-13-01T00:00:00Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := delivery.ParseDatetime("since", s)
		if err != nil {
			return
		}
		if tm.Location() != time.UTC {
			t.Fatalf("%q parsed to a non-UTC time", s)
		}
	})
}

func FuzzParsePSKHash(f *testing.F) {
	for _, s := range []string{strings.Repeat("ab", 32), strings.Repeat("AB", 32), "", "zz", strings.Repeat("a", 63)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := delivery.ParsePSKHash(s)
		if err != nil {
			return
		}
		if len(h) != 64 || strings.ToLower(s) != h {
			t.Fatalf("%q parsed to %q", s, h)
		}
		if _, err := hex.DecodeString(h); err != nil {
			t.Fatalf("%q accepted but not hex", s)
		}
	})
}

// TestRemovedAndOutsideAccountsAreRefused: an account removed from a
// conversation, one that left it, and one never in it can neither read nor
// write its social and device state: group info, reports, invites,
// pending device additions, policy and roles, block status, and a rejoin
// by external commit. Each refusal is a 4xx that names nothing of the
// conversation's state.
func TestRemovedAndOutsideAccountsAreRefused(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice, bob, carol, eve)
		e.post(alice, "updateGroupInfo", obj{"convoId": g, "groupInfo": b64(groupInfo(t, g, 0)), "epoch": 0}).must(t, http.StatusOK)
		psk := randBytes(t, 32)
		inv := e.post(alice, "createInvite", obj{"convoId": g, "pskHash": pskHash(psk)}).must(t, http.StatusOK).body["inviteId"].(string)
		rep := e.post(bob, "reportMember", obj{"convoId": g, "reportedDid": carol.DID, "category": "spam", "encryptedContent": b64bytes(sealed(t))}).
			must(t, http.StatusOK).body["reportId"].(string)
		e.register(t, carol)
		e.register(t, eve)
		e.register(t, who{DID: alice.DID, DeviceID: "a2"}) // a pending addition for the members
		pending := e.get(bob, "getPendingDeviceAdditions", nil).must(t, http.StatusOK).body["pendingAdditions"].([]any)
		if len(pending) != 1 {
			t.Fatalf("pending additions: %v", pending)
		}
		add := pending[0].(map[string]any)["id"].(string)
		e.post(alice, "removeMember", obj{"convoId": g, "targetDid": carol.DID, "idempotencyKey": "rm"}).must(t, http.StatusOK)
		e.post(eve, "leaveConvo", obj{"convoId": g, "idempotencyKey": "leave"}).must(t, http.StatusOK)

		q := url.Values{"convoId": {g}}
		secrets := []string{inv, rep, add, pskHash(psk)}
		for _, x := range []struct {
			name string
			id   who
		}{{"removed", carol}, {"left", eve}, {"never a member", mallory}} {
			t.Run(x.name, func(t *testing.T) {
				refused := func(what string, r resp) {
					t.Helper()
					if r.status != http.StatusForbidden && r.status != http.StatusNotFound {
						t.Errorf("%s: %d %s, want 403 or 404", what, r.status, r.raw)
					}
					if r.errName() == "" {
						t.Errorf("%s: no XRPC error name: %s", what, r.raw)
					}
					for _, s := range secrets {
						if strings.Contains(string(r.raw), s) {
							t.Errorf("%s: the refusal names %q: %s", what, s, r.raw)
						}
					}
				}
				id := x.id
				refused("getGroupInfo", e.get(id, "getGroupInfo", q))
				refused("updateGroupInfo", e.post(id, "updateGroupInfo", obj{"convoId": g, "groupInfo": b64(groupInfo(t, g, 0)), "epoch": 0}))
				refused("groupInfoRefresh", e.post(id, "groupInfoRefresh", obj{"convoId": g}))
				refused("reportMember", e.post(id, "reportMember", obj{"convoId": g, "reportedDid": bob.DID, "category": "spam",
					"encryptedContent": b64bytes(sealed(t)), "idempotencyKey": "r-" + id.DeviceID}))
				refused("getReports", e.get(id, "getReports", q))
				refused("resolveReport", e.post(id, "resolveReport", obj{"reportId": rep, "action": "dismissed", "idempotencyKey": "res-" + id.DeviceID}))
				refused("warnMember", e.post(id, "warnMember", obj{"convoId": g, "memberDid": bob.DID, "reason": "x", "idempotencyKey": "w-" + id.DeviceID}))
				refused("getAdminStats", e.get(id, "getAdminStats", q))
				refused("createInvite", e.post(id, "createInvite", obj{"convoId": g, "pskHash": pskHash(randBytes(t, 32))}))
				refused("listInvites", e.get(id, "listInvites", q))
				refused("revokeInvite", e.post(id, "revokeInvite", obj{"inviteId": inv, "idempotencyKey": "rv-" + id.DeviceID}))
				refused("claimPendingDeviceAddition", e.post(id, "claimPendingDeviceAddition", obj{"pendingAdditionId": add}))
				refused("completePendingDeviceAddition", e.post(id, "completePendingDeviceAddition", obj{"pendingAdditionId": add, "newEpoch": 0}))
				refused("getPolicy", e.get(id, "getPolicy", q))
				refused("updatePolicy", e.post(id, "updatePolicy", obj{"convoId": g, "allowInvites": false}))
				refused("promoteAdmin", e.post(id, "promoteAdmin", obj{"convoId": g, "targetDid": bob.DID, "idempotencyKey": "p-" + id.DeviceID}))
				refused("promoteModerator", e.post(id, "promoteModerator", obj{"convoId": g, "targetDid": bob.DID, "idempotencyKey": "pm-" + id.DeviceID}))
				refused("getBlockStatus", e.get(id, "getBlockStatus", q))
				refused("rejoin by external commit", e.post(id, "processExternalCommit", extCommit(g, externalCommit(t, g, 1, id.DID+"#"+id.DeviceID))))
				refused("requestRejoin", e.post(id, "requestRejoin", obj{"convoId": g, "keyPackage": newKeyPackage(t, id.DID+"#"+id.DeviceID, e.clock.Now(), time.Hour).b64()}))
				refused("readdition", e.post(id, "readdition", obj{"convoId": g}))
				if l := e.get(id, "getPendingDeviceAdditions", nil).must(t, http.StatusOK).body["pendingAdditions"].([]any); len(l) != 0 {
					t.Errorf("getPendingDeviceAdditions lists %v", l)
				}
				if l := e.get(id, "getPendingDeviceAdditions", url.Values{"convoIds": {g}}).must(t, http.StatusOK).body["pendingAdditions"].([]any); len(l) != 0 {
					t.Errorf("getPendingDeviceAdditions for the conversation lists %v", l)
				}
			})
		}
		// Nothing they tried changed the conversation's state.
		if l := e.get(alice, "listInvites", q).must(t, http.StatusOK).body["invites"].([]any); len(l) != 1 {
			t.Errorf("invites after the refusals: %v", l)
		}
		if l := e.get(alice, "getReports", q).must(t, http.StatusOK).body["reports"].([]any); len(l) != 1 || l[0].(map[string]any)["status"] != "pending" {
			t.Errorf("reports after the refusals: %v", l)
		}
		if p := e.get(alice, "getPolicy", q).must(t, http.StatusOK); !strings.Contains(string(p.raw), `"allowInvites":true`) {
			t.Errorf("policy after the refusals: %s", p.raw)
		}
	})
}

// TestRemovedAdminRejoinsWithoutItsRole: an admin removed from a
// conversation who joins again by an invite naming it (a removed account
// cannot use any other) comes back as a plain member: the role is not
// restored with the row.
func TestRemovedAdminRejoinsWithoutItsRole(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice, bob, carol)
		q := url.Values{"convoId": {g}}
		e.post(alice, "promoteAdmin", obj{"convoId": g, "targetDid": carol.DID, "idempotencyKey": "p"}).must(t, http.StatusOK)
		e.get(carol, "getReports", q).must(t, http.StatusOK)
		e.post(alice, "removeMember", obj{"convoId": g, "targetDid": carol.DID, "idempotencyKey": "rm"}).must(t, http.StatusOK)
		psk := randBytes(t, 32)
		e.post(alice, "createInvite", obj{"convoId": g, "pskHash": pskHash(psk), "targetDid": carol.DID}).must(t, http.StatusOK)
		e.post(carol, "processExternalCommit", obj{"convoId": g, "externalCommit": b64(externalCommit(t, g, 0, "did:plc:carol#c1")), "psk": b64(psk)}).
			must(t, http.StatusOK)
		e.get(carol, "getReports", q).isErr(t, http.StatusForbidden, "NotAdmin")
		e.post(carol, "updatePolicy", obj{"convoId": g, "allowInvites": false}).isErr(t, http.StatusForbidden, "Unauthorized")
	})
}
