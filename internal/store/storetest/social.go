package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// testRoles: grants record when and by whom, demotion clears them, and
// the last admin cannot go, even when two admins demote each other at
// once.
func testRoles(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("r", "did:plc:alice", "did:plc:bob", "did:plc:carol")
	g, err := e.s.GrantRole(e.ctx, store.RoleGrant{ConvoID: "r", UserDID: "did:plc:bob", Role: store.RoleAdmin, GrantedBy: "did:plc:alice"})
	must(t, err, "grant")
	if g.GrantedAt.IsZero() || g.GrantedBy != "did:plc:alice" {
		t.Fatalf("grant = %+v", g)
	}
	ms, err := e.s.Members(e.ctx, []string{"r"}, false)
	must(t, err, "members")
	for _, m := range ms["r"] {
		if m.UserDID == "did:plc:bob" && m.Role != store.RoleAdmin {
			t.Fatalf("bob's role = %s", m.Role)
		}
	}
	if _, err := e.s.GrantRole(e.ctx, store.RoleGrant{ConvoID: "r", UserDID: "did:plc:nobody", Role: store.RoleAdmin}); !errors.Is(err, store.ErrNotMember) {
		t.Fatalf("grant to a non-member: %v", err)
	}
	if _, err := e.s.GrantRole(e.ctx, store.RoleGrant{ConvoID: "nope", UserDID: "did:plc:bob", Role: store.RoleAdmin}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("grant in an unknown convo: %v", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, u := range []string{"did:plc:alice", "did:plc:bob"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.s.GrantRole(e.ctx, store.RoleGrant{ConvoID: "r", UserDID: u, Role: store.RoleMember})
		}()
	}
	wg.Wait()
	failed := 0
	for _, err := range errs {
		if errors.Is(err, store.ErrLastAdmin) {
			failed++
		} else if err != nil {
			t.Fatalf("demote: %v", err)
		}
	}
	if failed != 1 {
		t.Fatalf("%d of 2 concurrent demotions hit ErrLastAdmin, want 1", failed)
	}
}

func testPolicies(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("p", "did:plc:alice")
	if _, err := e.s.Policy(e.ctx, "p"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("policy before any: %v", err)
	}
	want := store.Policy{ConvoID: "p", AllowInvites: true, AllowMemberRemove: true, MaxMembers: 7, UpdatedBy: "did:plc:alice"}
	got, err := e.s.PutPolicy(e.ctx, want)
	must(t, err, "put")
	read, err := e.s.Policy(e.ctx, "p")
	must(t, err, "read")
	want.UpdatedAt = got.UpdatedAt
	if read != want || got.UpdatedAt.IsZero() {
		t.Fatalf("policy = %+v, want %+v", read, want)
	}
	want.MaxMembers = 9
	_, err = e.s.PutPolicy(e.ctx, want)
	must(t, err, "update")
	if read, _ := e.s.Policy(e.ctx, "p"); read.MaxMembers != 9 {
		t.Fatalf("updated policy = %+v", read)
	}
	if _, err := e.s.PutPolicy(e.ctx, store.Policy{ConvoID: "nope"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("policy of an unknown convo: %v", err)
	}
}

// testReports: the sealed blob comes back byte for byte; resolution is
// once; stats count per conversation and server-wide.
func testReports(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("a", "did:plc:alice", "did:plc:bob")
	e.newConvo("b", "did:plc:alice", "did:plc:bob")
	blob := []byte{0, 1, 2, 0xff, 'x'}
	r, err := e.s.AddReport(e.ctx, store.Report{ID: "r1", ConvoID: "a", TargetDID: "did:plc:bob", Category: "spam", Sealed: blob}, nil)
	must(t, err, "add")
	if r.Status != store.ReportPending {
		t.Fatalf("status = %s", r.Status)
	}
	if _, err := e.s.AddReport(e.ctx, store.Report{ID: "r1", ConvoID: "a", TargetDID: "x", Category: "spam", Sealed: blob}, nil); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate id: %v", err)
	}
	if _, err := e.s.AddReport(e.ctx, store.Report{ID: "r9", ConvoID: "nope", Sealed: blob}, nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown convo: %v", err)
	}
	_, err = e.s.AddReport(e.ctx, store.Report{ID: "r2", ConvoID: "b", TargetDID: "did:plc:bob", Category: "harassment", Sealed: []byte("y")}, nil)
	must(t, err, "add r2")
	got, err := e.s.Report(e.ctx, "r1")
	must(t, err, "read")
	if !bytes.Equal(got.Sealed, blob) || got.ConvoID != "a" || got.TargetDID != "did:plc:bob" {
		t.Fatalf("report = %+v", got)
	}
	e.clock.Advance(2 * time.Hour)
	res, err := e.s.ResolveReport(e.ctx, "r1", store.ReportResolved, "removed_member", nil)
	must(t, err, "resolve")
	if res.ResolvedAt.IsZero() || res.Action != "removed_member" {
		t.Fatalf("resolved = %+v", res)
	}
	if _, err := e.s.ResolveReport(e.ctx, "r1", store.ReportDismissed, "dismissed", nil); !errors.Is(err, store.ErrNotPending) {
		t.Fatalf("second resolve: %v", err)
	}
	if _, err := e.s.ResolveReport(e.ctx, "nope", store.ReportDismissed, "dismissed", nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("resolve unknown: %v", err)
	}
	list, err := e.s.Reports(e.ctx, "a", store.ReportPending, 10)
	must(t, err, "list pending")
	if len(list) != 0 {
		t.Fatalf("pending = %v", list)
	}
	list, err = e.s.Reports(e.ctx, "a", "", 10)
	must(t, err, "list")
	if len(list) != 1 || list[0].ID != "r1" {
		t.Fatalf("list = %v", list)
	}
	st, err := e.s.ReportStats(e.ctx, "a", time.Time{})
	must(t, err, "stats")
	if st.Total != 1 || st.Resolved != 1 || st.Removals != 1 || st.ResolutionTime != 2*time.Hour || st.ByCategory["spam"] != 1 {
		t.Fatalf("stats = %+v", st)
	}
	all, err := e.s.ReportStats(e.ctx, "", time.Time{})
	must(t, err, "server stats")
	if all.Total != 2 || all.Pending != 1 {
		t.Fatalf("server-wide stats = %+v", all)
	}
}

// testInviteAfterRemoval: an account another member removed cannot come
// back through an invite that does not name it; one that left can; an
// invite naming the removed account, or a member re-adding it, ends the
// removal.
func testInviteAfterRemoval(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("r", "did:plc:alice", "did:plc:bob", "did:plc:carol", "did:plc:dave", "did:plc:erin")
	_, err := e.s.AddMembers(e.ctx, "r", []store.NewMember{member("did:plc:erin", "d2")}, nil)
	must(t, err, "add erin's second device")
	_, err = e.s.CreateInvite(e.ctx, store.Invite{ID: "open", ConvoID: "r", PSKHash: "ho", CreatedBy: "did:plc:alice"}, nil)
	must(t, err, "create untargeted invite")
	_, err = e.s.CreateInvite(e.ctx, store.Invite{ID: "forbob", ConvoID: "r", PSKHash: "hb", CreatedBy: "did:plc:alice", TargetDID: "did:plc:bob"}, nil)
	must(t, err, "create invite for bob")
	redeem := func(hash, did string) error {
		t.Helper()
		_, err := e.s.RedeemInvite(e.ctx, "r", hash, did, 0)
		return err
	}
	leave := func(did string, how store.Departure) {
		t.Helper()
		_, err := e.s.RemoveMembers(e.ctx, "r", []string{did}, how, nil)
		must(t, err, "remove "+did)
	}

	// Removed: the untargeted invite is refused and not counted.
	leave("did:plc:bob", store.Removed)
	if err := redeem("ho", "did:plc:bob"); !errors.Is(err, store.ErrRemovedMember) {
		t.Fatalf("removed account, untargeted invite: %v, want ErrRemovedMember", err)
	}
	if inv, err := e.s.Invite(e.ctx, "open"); err != nil || inv.UseCount != 0 {
		t.Fatalf("refused redemption counted: %+v, %v", inv, err)
	}
	removedRows := func() map[string]bool {
		t.Helper()
		all, err := e.s.Members(e.ctx, []string{"r"}, true)
		must(t, err, "members")
		out := map[string]bool{}
		for _, m := range all["r"] {
			out[m.MemberDID] = m.Removed
		}
		return out
	}
	if rm := removedRows(); !rm["did:plc:bob#d1"] || rm["did:plc:carol#d1"] {
		t.Fatalf("removed marks after removing bob: %v", rm)
	}
	// Removed, then an invite naming the account: allowed.
	must(t, redeem("hb", "did:plc:bob"), "removed account, targeted invite")
	_, err = e.s.AddMembers(e.ctx, "r", []store.NewMember{member("did:plc:bob", "d1")}, nil)
	must(t, err, "bob joins by the targeted invite")
	if rm := removedRows(); rm["did:plc:bob#d1"] {
		t.Fatalf("re-adding bob left his removed mark: %v", rm)
	}

	// Left: the untargeted invite works.
	leave("did:plc:carol", store.Left)
	must(t, redeem("ho", "did:plc:carol"), "voluntary leaver, untargeted invite")

	// Removed, re-added by a member, later left: the untargeted invite
	// works again.
	leave("did:plc:dave", store.Removed)
	if err := redeem("ho", "did:plc:dave"); !errors.Is(err, store.ErrRemovedMember) {
		t.Fatalf("removed dave: %v, want ErrRemovedMember", err)
	}
	_, err = e.s.AddMembers(e.ctx, "r", []store.NewMember{member("did:plc:dave", "d1")}, nil)
	must(t, err, "a member re-adds dave")
	leave("did:plc:dave", store.Left)
	must(t, redeem("ho", "did:plc:dave"), "re-added then left, untargeted invite")

	// One device removed from an account that stays does not remove the
	// account: after it leaves, the untargeted invite works.
	leave("did:plc:erin#d1", store.Removed)
	leave("did:plc:erin", store.Left)
	must(t, redeem("ho", "did:plc:erin"), "device removed, account left")

	// The mark is per conversation: bob's removal elsewhere does not
	// follow him here, and a removal here does not reach other groups.
	e.newConvo("r2", "did:plc:alice", "did:plc:bob")
	_, err = e.s.CreateInvite(e.ctx, store.Invite{ID: "open2", ConvoID: "r2", PSKHash: "ho2", CreatedBy: "did:plc:alice"}, nil)
	must(t, err, "create invite in r2")
	_, err = e.s.RemoveMembers(e.ctx, "r2", []string{"did:plc:bob"}, store.Left, nil)
	must(t, err, "bob leaves r2")
	leave("did:plc:bob", store.Removed)
	if _, err := e.s.RedeemInvite(e.ctx, "r2", "ho2", "did:plc:bob", 0); err != nil {
		t.Fatalf("removal from r reached r2: %v", err)
	}
}

// testInvites: redemption counts uses atomically and refuses revoked,
// expired, used-up and other-DID invites alike.
func testInvites(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("i", "did:plc:alice")
	inv, err := e.s.CreateInvite(e.ctx, store.Invite{ID: "inv1", ConvoID: "i", PSKHash: "h1", CreatedBy: "did:plc:alice", MaxUses: 3}, nil)
	must(t, err, "create")
	if inv.CreatedAt.IsZero() {
		t.Fatalf("invite = %+v", inv)
	}
	if _, err := e.s.CreateInvite(e.ctx, store.Invite{ID: "inv2", ConvoID: "i", PSKHash: "h1"}, nil); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate hash: %v", err)
	}
	if _, err := e.s.CreateInvite(e.ctx, store.Invite{ID: "inv3", ConvoID: "nope", PSKHash: "h"}, nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown convo: %v", err)
	}
	// Ten concurrent redemptions of a 3-use invite: three succeed.
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.s.RedeemInvite(e.ctx, "i", "h1", "did:plc:u"+strconv.Itoa(i), 0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, store.ErrInviteUnusable):
				t.Errorf("redeem: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok != 3 {
		t.Fatalf("%d redemptions of a 3-use invite succeeded", ok)
	}
	_, err = e.s.CreateInvite(e.ctx, store.Invite{ID: "inv4", ConvoID: "i", PSKHash: "h4", TargetDID: "did:plc:bob", ExpiresAt: e.clock.Now().Add(time.Hour)}, nil)
	must(t, err, "create targeted")
	if _, err := e.s.RedeemInvite(e.ctx, "i", "h4", "did:plc:eve", 0); !errors.Is(err, store.ErrInviteUnusable) {
		t.Fatalf("other DID: %v", err)
	}
	e.clock.Advance(2 * time.Hour)
	if _, err := e.s.RedeemInvite(e.ctx, "i", "h4", "did:plc:bob", 0); !errors.Is(err, store.ErrInviteUnusable) {
		t.Fatalf("expired: %v", err)
	}
	_, err = e.s.RevokeInvite(e.ctx, "inv1", "did:plc:alice", nil)
	must(t, err, "revoke")
	if _, err := e.s.RevokeInvite(e.ctx, "inv1", "did:plc:alice", nil); !errors.Is(err, store.ErrNotPending) {
		t.Fatalf("revoke twice: %v", err)
	}
	if _, err := e.s.RevokeInvite(e.ctx, "nope", "did:plc:alice", nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	live, err := e.s.Invites(e.ctx, "i", false)
	must(t, err, "list")
	every, err := e.s.Invites(e.ctx, "i", true)
	must(t, err, "list all")
	if len(live) != 1 || len(every) != 2 {
		t.Fatalf("invites: %d live, %d in all", len(live), len(every))
	}
	got, err := e.s.Invite(e.ctx, "inv1")
	must(t, err, "read")
	if got.UseCount != 3 || got.RevokedAt.IsZero() || got.RevokedBy != "did:plc:alice" {
		t.Fatalf("invite = %+v", got)
	}
}

func testOptIns(t *testing.T, b Backend) {
	e := b.env(t)
	at, err := e.s.OptIn(e.ctx, "did:plc:alice")
	must(t, err, "opt in")
	e.clock.Advance(time.Hour)
	again, err := e.s.OptIn(e.ctx, "did:plc:alice")
	must(t, err, "opt in again")
	if !again.Equal(at) {
		t.Fatalf("second opt-in moved the time: %v then %v", at, again)
	}
	got, err := e.s.OptedIn(e.ctx, []string{"did:plc:alice", "did:plc:bob"})
	must(t, err, "read")
	if len(got) != 1 || !got["did:plc:alice"].Equal(at) {
		t.Fatalf("opted in = %v", got)
	}
	removed, err := e.s.OptOut(e.ctx, "did:plc:alice")
	must(t, err, "opt out")
	if !removed {
		t.Fatal("opt out removed nothing")
	}
	if removed, _ := e.s.OptOut(e.ctx, "did:plc:alice"); removed {
		t.Fatal("second opt out removed something")
	}
}

// testSocialInIdempotent: the social writes run in Idempotent's
// transaction and roll back with it.
func testSocialInIdempotent(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("t", "did:plc:alice")
	boom := errors.New("boom")
	_, _, err := e.s.Idempotent(e.ctx, store.IdempotencyKey{CallerDID: "did:plc:alice", NSID: "x", Key: "k"}, []byte("h"),
		func(ctx context.Context, tx store.Writer) ([]byte, error) {
			sw, ok := tx.(store.Social)
			if !ok {
				t.Fatalf("%T does not implement store.Social", tx)
			}
			if _, err := sw.CreateInvite(ctx, store.Invite{ID: "rolled", ConvoID: "t", PSKHash: "h"}, nil); err != nil {
				return nil, err
			}
			if _, err := sw.Invite(ctx, "rolled"); err != nil {
				t.Errorf("the transaction does not see its own write: %v", err)
			}
			return nil, boom
		})
	if !errors.Is(err, boom) {
		t.Fatalf("idempotent: %v", err)
	}
	if _, err := e.s.Invite(e.ctx, "rolled"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a rolled-back invite persists: %v", err)
	}
}

// testSocialSchema: the new tables keep exactly their documented columns,
// with no reporter, sender or plaintext column (docs/privacy.md).
func testSocialSchema(t *testing.T, b Backend) {
	e := b.env(t)
	found := e.exactColumns(map[string][]string{
		"reports": {"action", "category", "convo_id", "created_at", "id", "resolved_at", "sealed", "status", "target_did"},
		"invites": {"convo_id", "created_at", "created_by", "expires_at", "id", "max_uses", "psk_hash", "revoked_at", "revoked_by", "target_did", "use_count"},
		"convo_policies": {"admin_only_invites", "allow_invites", "allow_member_add", "allow_member_remove", "convo_id",
			"max_members", "require_admin_approval", "updated_at", "updated_by"},
		"opt_ins": {"did", "opted_in_at"},
		"members": {"convo_id", "device_id", "joined_at", "left_at", "member_did", "needs_rejoin", "removed", "role", "role_granted_at", "role_granted_by", "user_did"},
	})
	// Nothing a report keeps can name who filed it or hold its text.
	forbidden := []string{"reporter", "sender", "author", "from", "reason", "notes", "text", "plaintext", "message", "ip"}
	for _, table := range []string{"reports", "invites", "convo_policies", "opt_ins"} {
		for _, c := range found[table] {
			for _, part := range strings.Split(c, "_") {
				if slices.Contains(forbidden, part) {
					t.Errorf("%s has column %q", table, c)
				}
			}
		}
	}
}

// testSocialActors: a social write checks its actor's membership and role
// in its own transaction, so a removed member's or a demoted admin's write
// is refused by the store itself and leaves nothing behind.
func testSocialActors(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("s", "did:plc:alice", "did:plc:bob", "did:plc:carol")
	as := func(user string, roles ...store.Role) *store.Actor {
		return &store.Actor{Member: store.MemberCheck{MemberDIDs: []string{user + "#d1", user}}, Roles: roles}
	}
	anyRow := &store.Actor{Member: store.MemberCheck{MemberDIDs: []string{"did:plc:bob"}, AnyRowOf: "did:plc:bob"}}
	admin := store.RoleAdmin

	_, err := e.s.CreateInvite(e.ctx, store.Invite{ID: "i1", ConvoID: "s", PSKHash: "h1", CreatedBy: "did:plc:bob"}, anyRow)
	must(t, err, "member's invite")
	if _, err := e.s.CreateInvite(e.ctx, store.Invite{ID: "i2", ConvoID: "s", PSKHash: "h2"}, as("did:plc:bob", admin)); !errors.Is(err, store.ErrRoleRequired) {
		t.Fatalf("non-admin's admin-only invite: %v, want ErrRoleRequired", err)
	}
	_, err = e.s.AddReport(e.ctx, store.Report{ID: "r1", ConvoID: "s", TargetDID: "did:plc:carol", Category: "spam", Sealed: []byte("x")}, as("did:plc:bob"))
	must(t, err, "member's report")
	if _, err := e.s.ResolveReport(e.ctx, "r1", store.ReportDismissed, "dismissed", as("did:plc:carol", admin)); !errors.Is(err, store.ErrRoleRequired) {
		t.Fatalf("non-admin's resolution: %v, want ErrRoleRequired", err)
	}
	if _, err := e.s.RevokeInvite(e.ctx, "i1", "did:plc:carol", as("did:plc:carol", admin)); !errors.Is(err, store.ErrRoleRequired) {
		t.Fatalf("non-admin's revocation: %v, want ErrRoleRequired", err)
	}

	// Bob leaves; alice makes carol an admin and leaves too.
	_, err = e.s.RemoveMembers(e.ctx, "s", []string{"did:plc:bob#d1"}, store.Removed, nil)
	must(t, err, "remove bob")
	_, err = e.s.GrantRole(e.ctx, store.RoleGrant{ConvoID: "s", UserDID: "did:plc:carol", Role: admin, GrantedBy: "did:plc:alice"})
	must(t, err, "promote carol")
	_, err = e.s.RemoveMembers(e.ctx, "s", []string{"did:plc:alice#d1"}, store.Removed, nil)
	must(t, err, "remove alice")

	for name, err := range map[string]error{
		"removed member's invite": func() error {
			_, err := e.s.CreateInvite(e.ctx, store.Invite{ID: "i3", ConvoID: "s", PSKHash: "h3", CreatedBy: "did:plc:bob"}, anyRow)
			return err
		}(),
		"removed member's report": func() error {
			_, err := e.s.AddReport(e.ctx, store.Report{ID: "r2", ConvoID: "s", TargetDID: "did:plc:carol", Category: "spam", Sealed: []byte("y")}, as("did:plc:bob"))
			return err
		}(),
		"removed admin's resolution": func() error {
			_, err := e.s.ResolveReport(e.ctx, "r1", store.ReportDismissed, "dismissed", as("did:plc:alice", admin))
			return err
		}(),
		"removed admin's revocation": func() error {
			_, err := e.s.RevokeInvite(e.ctx, "i1", "did:plc:alice", as("did:plc:alice", admin))
			return err
		}(),
	} {
		if !errors.Is(err, store.ErrNotMember) {
			t.Errorf("%s: %v, want ErrNotMember", name, err)
		}
	}
	invites, err := e.s.Invites(e.ctx, "s", true)
	must(t, err, "invites")
	if len(invites) != 1 || invites[0].ID != "i1" || !invites[0].RevokedAt.IsZero() {
		t.Fatalf("invites after refused writes = %+v, want i1 alone, not revoked", invites)
	}
	reports, err := e.s.Reports(e.ctx, "s", "", 10)
	must(t, err, "reports")
	if len(reports) != 1 || reports[0].ID != "r1" || reports[0].Status != store.ReportPending {
		t.Fatalf("reports after refused writes = %+v, want r1 alone, pending", reports)
	}

	// The remaining admin may.
	_, err = e.s.ResolveReport(e.ctx, "r1", store.ReportDismissed, "dismissed", as("did:plc:carol", admin))
	must(t, err, "admin's resolution")
	_, err = e.s.RevokeInvite(e.ctx, "i1", "did:plc:carol", as("did:plc:carol", admin))
	must(t, err, "admin's revocation")
	if _, err := e.s.CreateInvite(e.ctx, store.Invite{ID: "i4", ConvoID: "nope", PSKHash: "h4"}, as("did:plc:carol")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("invite in an unknown convo: %v, want ErrNotFound", err)
	}
}

// errInvitesOff is what a racing invite creator returns when the policy it
// read inside its transaction forbids invites.
var errInvitesOff = errors.New("invites are off")

// testPolicySerializesInvites: a policy change and an invite creation
// that reads the policy in its transaction (createInvite's form)
// serialize on the conversation. Creators race a change turning invites
// off, each in a loop until it sees the change; the invites the change
// saw (listed in its own transaction, or right after it committed) must
// be every invite there will ever be: none is created on the policy the
// change replaced once the change has taken effect. The change takes each
// form the delivery layer or an operator uses: PutPolicy alone, PutPolicy
// in Idempotent's transaction, and updatePolicy's read-modify-write there.
func testPolicySerializesInvites(t *testing.T, b Backend) {
	e := b.env(t)
	const rounds, creators = 30, 4
	admin := &store.Actor{Member: store.MemberCheck{MemberDIDs: []string{"did:plc:alice#d1"}}, Roles: []store.Role{store.RoleAdmin}}
	for round := range rounds {
		convo := "race" + strconv.Itoa(round)
		e.newConvo(convo, "did:plc:alice")
		_, err := e.s.PutPolicy(e.ctx, store.Policy{ConvoID: convo, AllowInvites: true, AdminOnlyInvites: true, MaxMembers: 10})
		must(t, err, "policy with invites on")

		started := make(chan struct{})
		var startOnce sync.Once
		var wg sync.WaitGroup
		errs := make([]error, creators)
		for c := range creators {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; ; n++ {
					id := convo + "-" + strconv.Itoa(c) + "-" + strconv.Itoa(n)
					err := e.inSocialTx("test.createInvite", id, func(ctx context.Context, sw store.Social) error {
						p, err := sw.Policy(ctx, convo)
						if err != nil {
							return err
						}
						if !p.AllowInvites {
							return errInvitesOff
						}
						_, err = sw.CreateInvite(ctx, store.Invite{ID: id, ConvoID: convo, PSKHash: id, CreatedBy: "did:plc:alice"}, admin)
						return err
					})
					if errors.Is(err, errInvitesOff) {
						return
					}
					if err != nil {
						errs[c] = err
						return
					}
					startOnce.Do(func() { close(started) })
				}
			}()
		}
		finished := make(chan struct{})
		go func() { wg.Wait(); close(finished) }()

		var seen []store.Invite
		var changeErr error
		select {
		case <-started:
			seen, changeErr = e.invitesOff(convo, round%3)
		case <-finished: // every creator failed: reported below
		}
		<-finished
		must(t, changeErr, "turn invites off")
		for _, err := range errs {
			must(t, err, "create invite")
		}
		if len(seen) == 0 {
			t.Fatalf("round %d: the change saw no invite; the race did not run", round)
		}
		after, err := e.s.Invites(e.ctx, convo, true)
		must(t, err, "invites after the race")
		if len(after) != len(seen) {
			t.Fatalf("round %d (form %d): the change turning invites off saw %d invites, %d exist: an invite was created on the policy it replaced",
				round, round%3, len(seen), len(after))
		}
	}
}

// invitesOff turns the conversation's invites off in one of three forms
// and returns the invites the change saw: 0, PutPolicy alone, then the
// invites listed after it committed; 1, PutPolicy in Idempotent's
// transaction and 2, a read-modify-write there, each with the invites
// listed in that transaction after the write.
func (e *env) invitesOff(convo string, form int) ([]store.Invite, error) {
	if form == 0 {
		if _, err := e.s.PutPolicy(e.ctx, store.Policy{ConvoID: convo, AdminOnlyInvites: true, MaxMembers: 10}); err != nil {
			return nil, err
		}
		return e.s.Invites(e.ctx, convo, true)
	}
	var seen []store.Invite
	err := e.inSocialTx("test.updatePolicy", convo, func(ctx context.Context, sw store.Social) error {
		p := store.Policy{ConvoID: convo, AdminOnlyInvites: true, MaxMembers: 10}
		if form == 2 {
			var err error
			if p, err = sw.Policy(ctx, convo); err != nil {
				return err
			}
			p.AllowInvites = false
		}
		if _, err := sw.PutPolicy(ctx, p); err != nil {
			return err
		}
		var err error
		seen, err = sw.Invites(ctx, convo, true)
		return err
	})
	return seen, err
}

// inSocialTx runs fn on the social writes of an Idempotent transaction of
// alice's, under key in nsid.
func (e *env) inSocialTx(nsid, key string, fn func(ctx context.Context, sw store.Social) error) error {
	_, _, err := e.s.Idempotent(e.ctx, store.IdempotencyKey{CallerDID: "did:plc:alice", NSID: nsid, Key: key}, nil,
		func(ctx context.Context, tx store.Writer) ([]byte, error) {
			sw, ok := tx.(store.Social)
			if !ok {
				return nil, fmt.Errorf("%T does not implement store.Social", tx)
			}
			return nil, fn(ctx, sw)
		})
	return err
}

// testPolicyReadModifyWrite: read-modify-writes of a policy in Idempotent's
// transaction (updatePolicy's form) lose no concurrent change: each of
// several raises maxMembers by one, and the policy ends raised by all.
func testPolicyReadModifyWrite(t *testing.T, b Backend) {
	e := b.env(t)
	const writers = 8
	e.newConvo("rmw", "did:plc:alice")
	_, err := e.s.PutPolicy(e.ctx, store.Policy{ConvoID: "rmw", AllowInvites: true, MaxMembers: 10})
	must(t, err, "policy")
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.inSocialTx("test.updatePolicy", strconv.Itoa(i), func(ctx context.Context, sw store.Social) error {
				p, err := sw.Policy(ctx, "rmw")
				if err != nil {
					return err
				}
				p.MaxMembers++
				_, err = sw.PutPolicy(ctx, p)
				return err
			})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		must(t, err, "raise maxMembers")
	}
	p, err := e.s.Policy(e.ctx, "rmw")
	must(t, err, "read policy")
	if p.MaxMembers != 10+writers {
		t.Fatalf("maxMembers = %d after %d concurrent raises from 10, want %d", p.MaxMembers, writers, 10+writers)
	}
}

// testRedemptionMemberLimit: redemptions racing in Idempotent's
// transaction, each followed by the joiner's AddMembers (an invite join's
// form), never take the conversation past the member limit they pass:
// each counts the members where no other join can commit until it ends.
func testRedemptionMemberLimit(t *testing.T, b Backend) {
	e := b.env(t)
	const limit = 3
	e.raceToLimit("limit", limit, func(ctx context.Context, sw store.Social, convo, did string, _ int) error {
		_, err := sw.RedeemInvite(ctx, convo, convo, did, limit)
		return err
	})
	// The limit counts accounts other than the redeemer, and 0 is none.
	if _, err := e.s.RedeemInvite(e.ctx, "limit0", "limit0", "did:plc:alice", limit); err != nil {
		t.Fatalf("a member's own redemption at the limit: %v", err)
	}
	if _, err := e.s.RedeemInvite(e.ctx, "limit0", "limit0", "did:plc:k", 0); err != nil {
		t.Fatalf("redemption without a limit: %v", err)
	}
	if _, err := e.s.RedeemInvite(e.ctx, "limit0", "limit0", "did:plc:k", limit); !errors.Is(err, store.ErrMemberLimit) {
		t.Fatalf("redemption at the limit: %v, want ErrMemberLimit", err)
	}
}

// testAdmitMembers: adds checked by AdmitMembers in Idempotent's
// transaction (addMembers' form), racing one another and invite
// redemptions, never take the conversation past the member limit, and
// AdmitMembers checks its actor and counts accounts against the account
// limit and devices against the device limit.
func testAdmitMembers(t *testing.T, b Backend) {
	e := b.env(t)
	const limit = 3
	admin := &store.Actor{Member: store.MemberCheck{MemberDIDs: []string{"did:plc:alice#d1"}}, Roles: []store.Role{store.RoleAdmin}}
	e.raceToLimit("admit", limit, func(ctx context.Context, sw store.Social, convo, did string, j int) error {
		if j%2 == 1 {
			_, err := sw.RedeemInvite(ctx, convo, convo, did, limit)
			return err
		}
		return sw.AdmitMembers(ctx, convo, []store.NewMember{member(did, "d1")}, store.MemberLimits{Accounts: limit}, admin)
	})

	e.newConvo("a", "did:plc:alice", "did:plc:bob")
	bob := &store.Actor{Member: store.MemberCheck{MemberDIDs: []string{"did:plc:bob#d1"}}}
	c1, d1, bob2 := member("did:plc:c", "d1"), member("did:plc:d", "d1"), member("did:plc:bob", "d2")
	accounts := func(n int) store.MemberLimits { return store.MemberLimits{Accounts: n} }
	devices := func(n int) store.MemberLimits { return store.MemberLimits{Devices: n} }
	for _, c := range []struct {
		name   string
		convo  string
		add    []store.NewMember
		limits store.MemberLimits
		by     *store.Actor
		want   error
	}{
		{"one more under the limit", "a", []store.NewMember{c1}, accounts(3), bob, nil},
		{"two more past the limit", "a", []store.NewMember{c1, d1}, accounts(3), bob, store.ErrMemberLimit},
		{"the same account twice", "a", []store.NewMember{c1, member("did:plc:c", "d2")}, accounts(3), bob, nil},
		{"a member's account counts once", "a", []store.NewMember{bob2, c1}, accounts(3), bob, nil},
		{"at the limit already", "a", []store.NewMember{c1}, accounts(2), bob, store.ErrMemberLimit},
		{"a member's new device under the account limit", "a", []store.NewMember{bob2}, accounts(2), bob, nil},
		{"a member's new device at the device limit", "a", []store.NewMember{bob2}, devices(2), bob, store.ErrMemberLimit},
		{"a new device under the device limit", "a", []store.NewMember{bob2}, devices(3), bob, nil},
		{"a device already active counts once", "a", []store.NewMember{member("did:plc:bob", "d1")}, devices(2), bob, nil},
		{"two devices past the device limit", "a", []store.NewMember{bob2, c1}, store.MemberLimits{Accounts: 3, Devices: 3}, bob, store.ErrMemberLimit},
		{"no limit", "a", []store.NewMember{c1, d1}, store.MemberLimits{}, nil, nil},
		{"a member without the role", "a", []store.NewMember{c1}, store.MemberLimits{}, &store.Actor{Member: bob.Member, Roles: admin.Roles}, store.ErrRoleRequired},
		{"not a member", "a", []store.NewMember{c1}, store.MemberLimits{}, &store.Actor{Member: store.MemberCheck{MemberDIDs: []string{"did:plc:c#d1"}}}, store.ErrNotMember},
		{"unknown conversation", "zz", []store.NewMember{c1}, accounts(3), nil, store.ErrNotFound},
	} {
		if err := e.s.AdmitMembers(e.ctx, c.convo, c.add, c.limits, c.by); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// testAdmitMembersDeviceLimit: the operator's device-row limit holds for
// adds and invite joins racing one another (addMembers' and
// joinByInvite's forms, with no account limit), counted where no other
// membership change can commit until the transaction ends.
func testAdmitMembersDeviceLimit(t *testing.T, b Backend) {
	e := b.env(t)
	const limit = 3
	admin := &store.Actor{Member: store.MemberCheck{MemberDIDs: []string{"did:plc:alice#d1"}}, Roles: []store.Role{store.RoleAdmin}}
	e.raceToLimit("devices", limit, func(ctx context.Context, sw store.Social, convo, did string, j int) error {
		by := admin
		if j%2 == 1 {
			if _, err := sw.RedeemInvite(ctx, convo, convo, did, 0); err != nil {
				return err
			}
			by = nil
		}
		return sw.AdmitMembers(ctx, convo, []store.NewMember{member(did, "d1")}, store.MemberLimits{Devices: limit}, by)
	})
}

// raceToLimit races six joins of new accounts into a conversation of one
// account that has an unlimited invite, over 20 rounds, each in
// Idempotent's transaction: check(j) decides the j-th joiner's admission,
// and its AddMembers follows. Under a member limit of three, exactly two
// joins must get in each round, the others refused with ErrMemberLimit.
func (e *env) raceToLimit(prefix string, limit int, check func(ctx context.Context, sw store.Social, convo, did string, j int) error) {
	t := e.t
	t.Helper()
	const rounds, joiners = 20, 6
	for round := range rounds {
		convo := prefix + strconv.Itoa(round)
		e.newConvo(convo, "did:plc:alice")
		_, err := e.s.CreateInvite(e.ctx, store.Invite{ID: convo, ConvoID: convo, PSKHash: convo, CreatedBy: "did:plc:alice"}, nil)
		must(t, err, "create invite")
		var wg sync.WaitGroup
		errs := make([]error, joiners)
		for j := range joiners {
			wg.Add(1)
			go func() {
				defer wg.Done()
				did := "did:plc:j" + strconv.Itoa(j)
				errs[j] = e.inSocialTx("test.join", convo+did, func(ctx context.Context, sw store.Social) error {
					if err := check(ctx, sw, convo, did, j); err != nil {
						return err
					}
					_, err := sw.(store.Writer).AddMembers(ctx, convo, []store.NewMember{member(did, "d1")}, nil)
					return err
				})
			}()
		}
		wg.Wait()
		joined := 0
		for _, err := range errs {
			switch {
			case err == nil:
				joined++
			case !errors.Is(err, store.ErrMemberLimit):
				t.Fatalf("round %d: join: %v, want success or ErrMemberLimit", round, err)
			}
		}
		all, err := e.s.Members(e.ctx, []string{convo}, false)
		must(t, err, "members")
		if joined != limit-1 || len(all[convo]) != limit {
			t.Fatalf("round %d: %d joins succeeded and %d members are active under a limit of %d from one member; want %d and %d",
				round, joined, len(all[convo]), limit, limit-1, limit)
		}
	}
}
