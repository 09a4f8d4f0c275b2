package delivery_test

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/delivery"
	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// interposed is a store that runs one armed change just before the next
// Idempotent transaction: after a handler's own checks passed and before
// its write, where a concurrent removal or demotion could land.
type interposed struct {
	store.Store
	mu     sync.Mutex
	change func(ctx context.Context) error
}

func (s *interposed) arm(change func(ctx context.Context) error) {
	s.mu.Lock()
	s.change = change
	s.mu.Unlock()
}

func (s *interposed) Idempotent(ctx context.Context, key store.IdempotencyKey, hash []byte,
	fn func(ctx context.Context, tx store.Writer) ([]byte, error)) ([]byte, bool, error) {
	s.mu.Lock()
	change := s.change
	s.change = nil
	s.mu.Unlock()
	if change != nil {
		if err := change(ctx); err != nil {
			return nil, false, err
		}
	}
	return s.Store.Idempotent(ctx, key, hash, fn)
}

// newInterposedEnv is newEnv with its store behind an interposed.
func newInterposedEnv(t testing.TB, open func(testing.TB, func() time.Time) store.Store, mutate ...func(*delivery.Config)) (*env, *interposed) {
	t.Helper()
	is := &interposed{}
	e := newEnv(t, open, append(mutate, func(c *delivery.Config) {
		is.Store = c.Store.(store.Store)
		c.Store = is
	})...)
	return e, is
}

// TestRemovalBetweenCheckAndWriteIsRefused: a removal or demotion landing
// after a handler's checks and before its write refuses the write, since
// the store checks the caller again in the write's transaction.
func TestRemovalBetweenCheckAndWriteIsRefused(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			e, is := newInterposedEnv(t, b.open)
			g := e.createConvo(t, alice, bob, carol, eve)
			for _, u := range []string{carol.DID, eve.DID} {
				if _, err := e.store.GrantRole(t.Context(), store.RoleGrant{ConvoID: g, UserDID: u, Role: store.RoleAdmin, GrantedBy: alice.DID}); err != nil {
					t.Fatal(err)
				}
			}
			remove := func(u who) func(ctx context.Context) error {
				return func(ctx context.Context) error {
					_, err := e.store.RemoveMembers(ctx, g, []string{u.DID}, store.Removed, nil)
					return err
				}
			}
			report := func(by, about who) resp {
				return e.post(by, "reportMember", obj{"convoId": g, "reportedDid": about.DID, "category": "spam", "encryptedContent": b64bytes(sealed(t))})
			}

			is.arm(remove(bob))
			report(bob, eve).isErr(t, http.StatusForbidden, "NotMember")

			reportID := report(eve, alice).must(t, http.StatusOK).body["reportId"].(string)
			psk := randBytes(t, 32)
			inviteID := e.post(carol, "createInvite", obj{"convoId": g, "pskHash": pskHash(psk)}).must(t, http.StatusOK).body["inviteId"].(string)

			is.arm(remove(alice))
			e.post(alice, "resolveReport", obj{"reportId": reportID, "action": "dismissed"}).isErr(t, http.StatusNotFound, "ReportNotFound")

			is.arm(func(ctx context.Context) error {
				_, err := e.store.GrantRole(ctx, store.RoleGrant{ConvoID: g, UserDID: carol.DID, Role: store.RoleMember})
				return err
			})
			if r := e.post(carol, "revokeInvite", obj{"inviteId": inviteID}); r.status != http.StatusForbidden {
				t.Fatalf("revokeInvite by an admin demoted before the write: %d %s, want 403", r.status, r.raw)
			}
			// Invites are admin-only by default: carol, demoted, is refused.
			if r := e.post(carol, "createInvite", obj{"convoId": g, "pskHash": pskHash(randBytes(t, 32))}); r.status != http.StatusForbidden {
				t.Fatalf("createInvite by a demoted admin: %d %s, want 403", r.status, r.raw)
			}
			is.arm(remove(eve))
			e.post(eve, "createInvite", obj{"convoId": g, "pskHash": pskHash(randBytes(t, 32))}).isErr(t, http.StatusForbidden, "NotMember")

			// Nothing was written by the refused requests.
			reports, err := e.store.Reports(t.Context(), g, "", 10)
			if err != nil || len(reports) != 1 || reports[0].Status != store.ReportPending {
				t.Fatalf("reports = %+v, %v; want eve's alone, pending", reports, err)
			}
			invites, err := e.store.Invites(t.Context(), g, true)
			if err != nil || len(invites) != 1 || !invites[0].RevokedAt.IsZero() {
				t.Fatalf("invites = %+v, %v; want carol's alone, not revoked", invites, err)
			}
		})
	}
}

// TestPolicyChangeBetweenCheckAndInviteIsObeyed: an updatePolicy landing
// after createInvite's checks and before its write decides the invite,
// since the write reads the policy again in its own transaction.
func TestPolicyChangeBetweenCheckAndInviteIsObeyed(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			e, is := newInterposedEnv(t, b.open)
			g := e.createConvo(t, alice, bob)
			e.post(alice, "updatePolicy", obj{"convoId": g, "adminOnlyInvites": false}).must(t, http.StatusOK)
			change := func(p store.Policy) func(ctx context.Context) error {
				return func(ctx context.Context) error {
					p.ConvoID, p.MaxMembers, p.UpdatedBy = g, 10, alice.DID
					_, err := e.store.PutPolicy(ctx, p)
					return err
				}
			}
			invite := func(by who) resp {
				return e.post(by, "createInvite", obj{"convoId": g, "pskHash": pskHash(randBytes(t, 32))})
			}

			is.arm(change(store.Policy{AllowInvites: true, AdminOnlyInvites: true}))
			if r := invite(bob); r.status != http.StatusForbidden {
				t.Fatalf("createInvite by a member after invites were reserved to admins: %d %s, want 403", r.status, r.raw)
			}
			is.arm(change(store.Policy{AllowInvites: false}))
			invite(alice).isErr(t, http.StatusForbidden, "Unauthorized")

			invites, err := e.store.Invites(t.Context(), g, true)
			if err != nil || len(invites) != 0 {
				t.Fatalf("invites = %+v, %v; want none", invites, err)
			}
		})
	}
}

// TestPolicyChangeBetweenCheckAndRedemptionIsObeyed: an updatePolicy
// turning invites off or lowering maxMembers, or a revokeInvite, landing
// after processExternalCommit's checks of an invite join and before its
// write refuses the join with the error the checks give for the same
// condition, since the join reads the policy again, and the store counts
// the members and checks the invite, in its own transaction. Nothing of
// a refused join is written; once the policy allows it, the same join
// gets in.
func TestPolicyChangeBetweenCheckAndRedemptionIsObeyed(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			e, is := newInterposedEnv(t, b.open)
			g := e.createConvo(t, alice, bob)
			psk := randBytes(t, 32)
			inviteID := e.post(alice, "createInvite", obj{"convoId": g, "pskHash": pskHash(psk)}).must(t, http.StatusOK).body["inviteId"].(string)
			e.post(alice, "updateGroupInfo", obj{"convoId": g, "groupInfo": b64(groupInfo(t, g, 0)), "epoch": 0}).must(t, http.StatusOK)
			change := func(p store.Policy) func(ctx context.Context) error {
				return func(ctx context.Context) error {
					p.ConvoID, p.AdminOnlyInvites, p.UpdatedBy = g, true, alice.DID
					_, err := e.store.PutPolicy(ctx, p)
					return err
				}
			}
			join := func(psk []byte) resp {
				return e.post(eve, "processExternalCommit", obj{"convoId": g, "psk": b64(psk),
					"externalCommit": b64(externalCommit(t, g, 0, eve.DID+"#"+eve.DeviceID))})
			}
			refused := func(what string) {
				t.Helper()
				inv, err := e.store.Invite(t.Context(), inviteID)
				if err != nil || inv.UseCount != 0 {
					t.Fatalf("after the join refused for %s: invite %+v, %v; want unused", what, inv, err)
				}
				if all, err := e.store.Members(t.Context(), []string{g}, true); err != nil || len(all[g]) != 2 {
					t.Fatalf("after the join refused for %s: members %+v, %v; want alice and bob", what, all[g], err)
				}
			}

			is.arm(change(store.Policy{AllowInvites: false, MaxMembers: 10}))
			join(psk).isErr(t, http.StatusForbidden, "Unauthorized")
			refused("invites off")
			// Nor is the GroupInfo served to an invitee while invites are off.
			e.get(eve, "getGroupInfo", url.Values{"convoId": {g}, "pskHash": {pskHash(psk)}}).isErr(t, http.StatusForbidden, "Unauthorized")

			// Each change is undone before the next, so that the join's
			// own checks pass and only the change refuses it.
			allow := func() {
				t.Helper()
				if err := change(store.Policy{AllowInvites: true, MaxMembers: 10})(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			allow()
			is.arm(change(store.Policy{AllowInvites: true, MaxMembers: 2}))
			join(psk).isErr(t, http.StatusBadRequest, "TooManyMembers")
			refused("maxMembers lowered to the member count")

			allow()
			e.get(eve, "getGroupInfo", url.Values{"convoId": {g}, "pskHash": {pskHash(psk)}}).must(t, http.StatusOK)
			is.arm(func(ctx context.Context) error {
				_, err := e.store.RevokeInvite(ctx, inviteID, alice.DID, nil)
				return err
			})
			join(psk).isErr(t, http.StatusForbidden, "Unauthorized")
			refused("the invite revoked")

			other := randBytes(t, 32)
			e.post(alice, "createInvite", obj{"convoId": g, "pskHash": pskHash(other)}).must(t, http.StatusOK)
			join(other).must(t, http.StatusOK)
		})
	}
}

// TestPolicyChangeBetweenCheckAndAddIsObeyed: an updatePolicy turning
// allowMemberAdd off or lowering maxMembers, a demotion or removal of the
// adding member, or an optOut of the account added, landing after
// addMembers' checks and before its write refuses the add with the error
// the checks give for the same condition, since the add checks them
// again in its own transaction. An optOut so landing refuses an invite
// join likewise. Nothing of a refused add is written. Each step adds an
// account of its own, so that it fails on its own if its check is gone.
func TestPolicyChangeBetweenCheckAndAddIsObeyed(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			e, is := newInterposedEnv(t, b.open, func(c *delivery.Config) { c.RequireOptIn = true })
			newcomer := func(name string) who {
				t.Helper()
				u := who{DID: "did:plc:" + name, DeviceID: "d1"}
				if _, err := e.store.OptIn(t.Context(), u.DID); err != nil {
					t.Fatal(err)
				}
				return u
			}
			for _, u := range []who{alice, bob, carol} {
				newcomer(u.DID[len("did:plc:"):])
			}
			g := e.createConvo(t, alice, bob, carol)
			if _, err := e.store.GrantRole(t.Context(), store.RoleGrant{ConvoID: g, UserDID: carol.DID, Role: store.RoleAdmin, GrantedBy: alice.DID}); err != nil {
				t.Fatal(err)
			}
			put := func(ctx context.Context, allowAdd bool, maxMembers int) error {
				_, err := e.store.PutPolicy(ctx, store.Policy{ConvoID: g, AllowInvites: true, AllowMemberAdd: allowAdd, MaxMembers: maxMembers, UpdatedBy: alice.DID})
				return err
			}
			change := func(allowAdd bool, maxMembers int) func(ctx context.Context) error {
				return func(ctx context.Context) error { return put(ctx, allowAdd, maxMembers) }
			}
			add := func(by, u who) resp {
				return e.post(by, "addMembers", obj{"convoId": g, "didList": []string{u.DID + "#" + u.DeviceID}, "idempotencyKey": "add-" + u.DeviceID + u.DID})
			}
			notIn := func(u who) {
				t.Helper()
				all, err := e.store.Members(t.Context(), []string{g}, true)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range all[g] {
					if m.UserDID == u.DID {
						t.Fatalf("%s was added by a refused add: %+v", u.DID, m)
					}
				}
			}
			optOut := func(u who) func(ctx context.Context) error {
				return func(ctx context.Context) error {
					_, err := e.store.OptOut(ctx, u.DID)
					return err
				}
			}
			// Each step starts from a policy that lets its add through,
			// so that only the change interposed refuses it.
			step := func(name string, allowAdd bool, f func(t *testing.T)) {
				t.Run(name, func(t *testing.T) {
					if err := put(t.Context(), allowAdd, 10); err != nil {
						t.Fatal(err)
					}
					f(t)
				})
			}

			step("allowMemberAdd off", true, func(t *testing.T) {
				u := newcomer("t1")
				is.arm(change(false, 10))
				add(bob, u).isErr(t, http.StatusForbidden, "NotAdmin")
				notIn(u)
			})
			step("maxMembers lowered to the member count", true, func(t *testing.T) {
				u := newcomer("t2")
				users, err := e.store.Members(t.Context(), []string{g}, false)
				if err != nil {
					t.Fatal(err)
				}
				is.arm(change(true, len(users[g])))
				add(alice, u).isErr(t, http.StatusBadRequest, "TooManyMembers")
				notIn(u)
			})
			step("the account opted out", true, func(t *testing.T) {
				u := newcomer("t3")
				is.arm(optOut(u))
				add(alice, u).isErr(t, http.StatusForbidden, "NotOptedIn")
				notIn(u)
			})
			step("the adding admin demoted", false, func(t *testing.T) {
				u := newcomer("t4")
				is.arm(func(ctx context.Context) error {
					_, err := e.store.GrantRole(ctx, store.RoleGrant{ConvoID: g, UserDID: carol.DID, Role: store.RoleMember})
					return err
				})
				add(carol, u).isErr(t, http.StatusForbidden, "NotAdmin")
				notIn(u)
			})
			step("the adding member removed", true, func(t *testing.T) {
				u := newcomer("t5")
				is.arm(func(ctx context.Context) error {
					_, err := e.store.RemoveMembers(ctx, g, []string{bob.DID}, store.Removed, nil)
					return err
				})
				add(bob, u).isErr(t, http.StatusForbidden, "NotMember")
				notIn(u)
			})
			step("an invitee opted out", true, func(t *testing.T) {
				u := newcomer("t6")
				psk := randBytes(t, 32)
				e.post(alice, "createInvite", obj{"convoId": g, "pskHash": pskHash(psk)}).must(t, http.StatusOK)
				e.post(alice, "updateGroupInfo", obj{"convoId": g, "groupInfo": b64(groupInfo(t, g, 0)), "epoch": 0}).must(t, http.StatusOK)
				is.arm(optOut(u))
				e.post(u, "processExternalCommit", obj{"convoId": g, "psk": b64(psk),
					"externalCommit": b64(externalCommit(t, g, 0, u.DID+"#"+u.DeviceID))}).isErr(t, http.StatusForbidden, "NotOptedIn")
				notIn(u)
			})
			step("nothing interposed", true, func(t *testing.T) {
				add(alice, newcomer("t7")).must(t, http.StatusOK)
			})
		})
	}
}

// TestOperatorMaxMembersHoldsOnEveryAdd: the operator's max_members
// bounds the device rows of a conversation on every path that adds one,
// checked in the write's transaction: an addMembers whose checks passed
// before another device landed, an invite join and a new device's own
// external commit are refused with 400 TooManyMembers at the limit, while
// the policy's maxMembers, which counts accounts, would let them in. A
// flagged device rejoining at the limit adds no row and gets in.
func TestOperatorMaxMembersHoldsOnEveryAdd(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			const limit = 3
			e, is := newInterposedEnv(t, b.open, func(c *delivery.Config) { c.MaxMembers = limit })
			bob2 := who{DID: bob.DID, DeviceID: "b2"}
			addBob2 := func(g string) func(ctx context.Context) error {
				return func(ctx context.Context) error {
					_, err := e.store.AddMembers(ctx, g, []store.NewMember{{MemberDID: bob2.DID + "#" + bob2.DeviceID, UserDID: bob2.DID, DeviceID: bob2.DeviceID}}, nil)
					return err
				}
			}
			atLimit := func(g string, u who) {
				t.Helper()
				all, err := e.store.Members(t.Context(), []string{g}, true)
				if err != nil {
					t.Fatal(err)
				}
				if len(all[g]) != limit {
					t.Fatalf("%d member rows under max_members %d: %+v", len(all[g]), limit, all[g])
				}
				for _, m := range all[g] {
					if m.MemberDID == u.DID+"#"+u.DeviceID {
						t.Fatalf("%s#%s was added past max_members", u.DID, u.DeviceID)
					}
				}
			}

			t.Run("addMembers", func(t *testing.T) {
				g := e.createConvo(t, alice, bob)
				is.arm(addBob2(g))
				e.post(alice, "addMembers", obj{"convoId": g, "didList": []string{carol.DID + "#" + carol.DeviceID}, "idempotencyKey": "add-carol"}).
					isErr(t, http.StatusBadRequest, "TooManyMembers")
				atLimit(g, carol)
			})
			t.Run("invite join", func(t *testing.T) {
				g := e.createConvo(t, alice, bob)
				if err := addBob2(g)(t.Context()); err != nil {
					t.Fatal(err)
				}
				psk := randBytes(t, 32)
				e.post(alice, "createInvite", obj{"convoId": g, "pskHash": pskHash(psk)}).must(t, http.StatusOK)
				e.post(eve, "processExternalCommit", obj{"convoId": g, "psk": b64(psk),
					"externalCommit": b64(externalCommit(t, g, 0, eve.DID+"#"+eve.DeviceID))}).isErr(t, http.StatusBadRequest, "TooManyMembers")
				atLimit(g, eve)
			})
			t.Run("a device's own join", func(t *testing.T) {
				g := e.createConvo(t, alice, bob, carol)
				e.register(t, bob)
				e.register(t, bob2)
				e.post(bob2, "processExternalCommit", extCommit(g, externalCommit(t, g, 0, "did:plc:bob#b2"))).
					isErr(t, http.StatusBadRequest, "TooManyMembers")
				atLimit(g, bob2)
				if _, err := e.store.MarkNeedsRejoin(t.Context(), nil, g, bob.DID+"#"+bob.DeviceID); err != nil {
					t.Fatal(err)
				}
				e.post(bob, "processExternalCommit", extCommit(g, externalCommit(t, g, 0, "did:plc:bob#b1"))).must(t, http.StatusOK)
			})
		})
	}
}
