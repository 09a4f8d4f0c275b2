package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// queue queues user#device for addition to convo.
func (e *env) queue(convo, user, device string, ttl time.Duration) (store.PendingAddition, error) {
	return e.s.QueueDeviceAddition(e.ctx, store.NewPendingAddition{
		ID: fmt.Sprintf("pa-%s-%s-%s", convo, user, device), ConvoID: convo, UserDID: user, DeviceID: device, TTL: ttl})
}

// testPendingAdditionsQueue: only a member account's device is queued,
// never an active one; members of the conversation see it, others do not;
// queuing again refreshes the same request.
func testPendingAdditionsQueue(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("pq", "did:plc:alice", "did:plc:bob")
	e.newConvo("other", "did:plc:carol")
	p, err := e.queue("pq", "did:plc:alice", "d2", time.Hour)
	must(t, err, "queue a new device of a member")
	if p.Status != store.PendingStatusPending || p.MemberDID() != "did:plc:alice#d2" || p.Rejoin || !bucketed(p.CreatedAt) {
		t.Fatalf("queued %+v", p)
	}
	if _, err := e.queue("pq", "did:plc:carol", "d9", time.Hour); !errors.Is(err, store.ErrNotMember) {
		t.Fatalf("queue a device of a non-member account: %v, want ErrNotMember", err)
	}
	if _, err := e.queue("pq", "did:plc:bob", "d1", time.Hour); !errors.Is(err, store.ErrAlreadyMember) {
		t.Fatalf("queue an active device: %v, want ErrAlreadyMember", err)
	}
	again, err := e.s.QueueDeviceAddition(e.ctx, store.NewPendingAddition{ID: "another-id", ConvoID: "pq", UserDID: "did:plc:alice", DeviceID: "d2", TTL: time.Hour})
	must(t, err, "queue again")
	if again.ID != p.ID {
		t.Fatalf("queuing again made id %q, want the first %q", again.ID, p.ID)
	}
	for viewer, want := range map[string]int{"did:plc:bob": 1, "did:plc:alice": 1, "did:plc:carol": 0} {
		got, err := e.s.PendingAdditions(e.ctx, viewer, nil, 10)
		must(t, err, "list")
		if len(got) != want {
			t.Errorf("%s sees %d pending additions, want %d", viewer, len(got), want)
		}
	}
	got, err := e.s.PendingAdditions(e.ctx, "did:plc:bob", []string{"other"}, 10)
	must(t, err, "list filtered")
	if len(got) != 0 {
		t.Errorf("filter by another conversation returned %d", len(got))
	}
	if _, err := e.s.PendingAddition(e.ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown addition: %v, want ErrNotFound", err)
	}
}

// testPendingAdditionClaimConcurrent: of many members claiming one
// addition at once, exactly one gets it, with one key package consumed;
// the claim lapses after its TTL and then goes to the next claimer, with
// the same package.
func testPendingAdditionClaimConcurrent(t *testing.T, b Backend) {
	e := b.env(t)
	users := []string{"did:plc:alice"}
	for i := range 12 {
		users = append(users, fmt.Sprintf("did:plc:m%02d", i))
	}
	e.newConvo("pc", users...)
	p, err := e.queue("pc", "did:plc:alice", "d2", time.Hour)
	must(t, err, "queue")
	if _, err := e.s.ClaimPendingAddition(e.ctx, p.ID, "did:plc:m00#d1", time.Minute); !errors.Is(err, store.ErrKeyPackageNotFound) {
		t.Fatalf("claim without a key package: %v, want ErrKeyPackageNotFound", err)
	}
	if got, _ := e.s.PendingAddition(e.ctx, p.ID); got.Status != store.PendingStatusPending {
		t.Fatalf("a failed claim left status %q", got.Status)
	}
	e.publish("did:plc:alice", "d2", 3, "pc")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var winners []string
	var refs []string
	start := make(chan struct{})
	for _, u := range users[1:] {
		wg.Go(func() {
			<-start
			got, err := e.s.ClaimPendingAddition(e.ctx, p.ID, u+"#d1", time.Minute)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners = append(winners, u)
				refs = append(refs, got.KeyPackage.Ref)
			case errors.Is(err, store.ErrClaimedByOther):
				if !strings.HasPrefix(got.Addition.ClaimedBy, "did:plc:m") {
					t.Errorf("refused claim names holder %q", got.Addition.ClaimedBy)
				}
			default:
				t.Errorf("claim: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d claimers won (%v), want exactly 1", len(winners), winners)
	}
	winner := winners[0] + "#d1"
	held, err := e.s.PendingAddition(e.ctx, p.ID)
	must(t, err, "read")
	if held.Status != store.PendingStatusInProgress || held.ClaimedBy != winner || held.KeyPackageRef != refs[0] {
		t.Fatalf("after the race: %+v, want in_progress by %s with %s", held, winner, refs[0])
	}
	st, err := e.s.KeyPackageStats(e.ctx, "did:plc:alice", "")
	must(t, err, "stats")
	if st.Available != 2 {
		t.Errorf("%d packages left, want 2: exactly one consumed by the claim", st.Available)
	}
	again, err := e.s.ClaimPendingAddition(e.ctx, p.ID, winner, time.Minute)
	must(t, err, "the holder claims again")
	if again.KeyPackage.Ref != refs[0] {
		t.Errorf("re-claim got package %s, want the same %s", again.KeyPackage.Ref, refs[0])
	}
	other := "did:plc:m11#d1"
	if other == winner {
		other = "did:plc:m10#d1"
	}
	e.clock.Advance(59 * time.Second)
	if _, err := e.s.ClaimPendingAddition(e.ctx, p.ID, other, time.Minute); !errors.Is(err, store.ErrClaimedByOther) {
		t.Fatalf("claim before the first lapsed: %v, want ErrClaimedByOther", err)
	}
	e.clock.Advance(2 * time.Second)
	if got, _ := e.s.PendingAddition(e.ctx, p.ID); got.Status != store.PendingStatusPending || got.ClaimedBy != "" {
		t.Errorf("a lapsed claim reads as %q by %q, want pending", got.Status, got.ClaimedBy)
	}
	next, err := e.s.ClaimPendingAddition(e.ctx, p.ID, other, time.Minute)
	must(t, err, "claim after the first lapsed")
	if next.KeyPackage.Ref != refs[0] || next.Addition.ClaimedBy != other {
		t.Errorf("second claim: %+v with %s, want %s's with %s", next.Addition, next.KeyPackage.Ref, other, refs[0])
	}
}

// testPendingAdditionComplete: only the claimer completes, and only once
// the device is in the conversation; adding the device marks the
// addition completed, which hides it.
func testPendingAdditionComplete(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("pd", "did:plc:alice", "did:plc:bob")
	p, err := e.queue("pd", "did:plc:alice", "d2", time.Hour)
	must(t, err, "queue")
	e.publish("did:plc:alice", "d2", 1, "pd")
	got, err := e.s.ClaimPendingAddition(e.ctx, p.ID, "did:plc:bob#d1", time.Minute)
	must(t, err, "claim")
	if _, err := e.s.CompletePendingAddition(e.ctx, p.ID, "did:plc:bob#d1"); !errors.Is(err, store.ErrNotMember) {
		t.Fatalf("complete before the device was added: %v, want ErrNotMember", err)
	}
	if _, err := e.s.CompletePendingAddition(e.ctx, p.ID, "did:plc:alice#d1"); !errors.Is(err, store.ErrNotClaimed) {
		t.Fatalf("complete by a member without the claim: %v, want ErrNotClaimed", err)
	}
	add := member("did:plc:alice", "d2")
	add.KeyPackageRef = got.KeyPackage.Ref
	_, err = e.s.AddMembers(e.ctx, "pd", []store.NewMember{add}, &store.NewCommit{Epoch: 0, Data: []byte("commit")})
	must(t, err, "add the device")
	if l, _ := e.s.PendingAdditions(e.ctx, "did:plc:bob", nil, 10); len(l) != 0 {
		t.Errorf("an added device is still listed: %+v", l)
	}
	if _, err := e.s.ClaimPendingAddition(e.ctx, p.ID, "did:plc:alice#d1", time.Minute); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("claim of a completed addition: %v, want ErrNotFound", err)
	}
	_, err = e.s.CompletePendingAddition(e.ctx, p.ID, "did:plc:bob#d1")
	must(t, err, "complete")
	if _, err := e.s.CompletePendingAddition(e.ctx, p.ID, "did:plc:bob#d1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("complete twice: %v, want ErrNotFound", err)
	}
}

// testNeedsRejoin: a flagged device is listed and can be re-added (its
// role kept); a removed account can neither be flagged nor keep its
// requests; expired requests are purged.
func testNeedsRejoin(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("nr", "did:plc:alice", "did:plc:bob")
	rq := &store.NewPendingAddition{ID: "rj-alice", ConvoID: "nr", UserDID: "did:plc:alice", DeviceID: "d1", Rejoin: true, KeyPackageRef: "fresh", TTL: time.Hour}
	p, err := e.s.MarkNeedsRejoin(e.ctx, rq, "nr", "did:plc:alice#d1")
	must(t, err, "mark needs_rejoin")
	if !p.Rejoin || p.KeyPackageRef != "fresh" {
		t.Fatalf("rejoin request %+v", p)
	}
	st, err := e.s.NeedsRejoin(e.ctx, "did:plc:alice", "did:plc:alice#d1")
	must(t, err, "needs rejoin")
	if len(st) != 1 || st[0] != (store.RejoinState{ConvoID: "nr", Pending: true}) {
		t.Fatalf("needs rejoin = %+v", st)
	}
	if _, err := e.s.AddMembers(e.ctx, "nr", []store.NewMember{member("did:plc:bob", "d1")}, nil); !errors.Is(err, store.ErrAlreadyMember) {
		t.Fatalf("re-adding an unflagged active device: %v, want ErrAlreadyMember", err)
	}
	_, err = e.s.AddMembers(e.ctx, "nr", []store.NewMember{member("did:plc:alice", "d1")}, nil)
	must(t, err, "re-add the flagged device")
	m, err := e.s.ActiveMember(e.ctx, "nr", "did:plc:alice#d1")
	must(t, err, "read member")
	if m.Role != store.RoleAdmin {
		t.Errorf("re-added admin has role %q", m.Role)
	}
	if st, _ := e.s.NeedsRejoin(e.ctx, "did:plc:alice", "did:plc:alice#d1"); len(st) != 0 {
		t.Errorf("needs_rejoin not cleared by the re-addition: %+v", st)
	}
	// A removed account: its requests go with it, and it cannot ask again.
	_, err = e.s.MarkNeedsRejoin(e.ctx, &store.NewPendingAddition{ID: "rj-bob", ConvoID: "nr", UserDID: "did:plc:bob", DeviceID: "d1", Rejoin: true, TTL: time.Hour}, "nr", "did:plc:bob#d1")
	must(t, err, "bob asks to rejoin")
	_, err = e.s.RemoveMembers(e.ctx, "nr", []string{"did:plc:bob"}, store.Removed, nil)
	must(t, err, "remove bob")
	if _, err := e.s.PendingAddition(e.ctx, "rj-bob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a removed account's rejoin request survives: %v", err)
	}
	if _, err := e.s.MarkNeedsRejoin(e.ctx, &store.NewPendingAddition{ID: "rj-bob2", ConvoID: "nr", UserDID: "did:plc:bob", DeviceID: "d1", Rejoin: true, TTL: time.Hour}, "nr", "did:plc:bob#d1"); !errors.Is(err, store.ErrNotMember) {
		t.Errorf("a removed account asks to rejoin: %v, want ErrNotMember", err)
	}
	if _, err := e.s.AddMembers(e.ctx, "nr", []store.NewMember{member("did:plc:bob", "d1")}, nil); err != nil {
		t.Errorf("an admin re-adding a removed account by a commit: %v", err)
	}
	// Expiry through the retention purge.
	_, err = e.queue("nr", "did:plc:alice", "d3", time.Hour)
	must(t, err, "queue")
	e.clock.Advance(59 * time.Minute)
	n, err := e.s.PurgePendingAdditions(e.ctx)
	must(t, err, "purge early")
	if n != 0 {
		t.Errorf("purged %d unexpired additions", n)
	}
	e.clock.Advance(2 * time.Minute)
	// alice's completed rejoin request and the queued d3 are both past
	// their hour.
	if n, err = e.s.PurgePendingAdditions(e.ctx); err != nil || n != 2 {
		t.Errorf("purge expired: %d, %v; want 2", n, err)
	}
}

// testWelcomeKeys: a key package brings its device in through one Welcome:
// a reservation excludes other Welcomes until it lapses, and a used
// package is refused.
func testWelcomeKeys(t *testing.T, b Backend) {
	e := b.env(t)
	e.publish("did:plc:alice", "d1", 1, "wk")
	ref := "wk-did:plc:alice-d1-000"
	w1, w2 := []byte("welcome-1"), []byte("welcome-2")
	if _, err := e.s.ReserveWelcomeKey(e.ctx, "did:plc:bob", ref, w1, 5*time.Minute); !errors.Is(err, store.ErrKeyPackageNotFound) {
		t.Fatalf("reserve another account's package: %v, want ErrKeyPackageNotFound", err)
	}
	until, err := e.s.ReserveWelcomeKey(e.ctx, "did:plc:alice", ref, w1, 5*time.Minute)
	must(t, err, "reserve")
	if !until.After(e.clock.Now()) {
		t.Errorf("reserved until %v", until)
	}
	_, err = e.s.ReserveWelcomeKey(e.ctx, "did:plc:alice", ref, w1, 5*time.Minute)
	must(t, err, "reserve again for the same welcome")
	if _, err := e.s.ReserveWelcomeKey(e.ctx, "did:plc:alice", ref, w2, 5*time.Minute); !errors.Is(err, store.ErrWelcomeKeyReserved) {
		t.Fatalf("reserve for another welcome: %v, want ErrWelcomeKeyReserved", err)
	}
	e.clock.Advance(6 * time.Minute)
	_, err = e.s.ReserveWelcomeKey(e.ctx, "did:plc:alice", ref, w2, 5*time.Minute)
	must(t, err, "reserve after the first lapsed")
	must(t, e.s.UseWelcomeKey(e.ctx, "did:plc:alice", ref), "use")
	if err := e.s.UseWelcomeKey(e.ctx, "did:plc:alice", ref); !errors.Is(err, store.ErrWelcomeKeyUsed) {
		t.Errorf("use twice: %v, want ErrWelcomeKeyUsed", err)
	}
	if _, err := e.s.ReserveWelcomeKey(e.ctx, "did:plc:alice", ref, w2, 5*time.Minute); !errors.Is(err, store.ErrWelcomeKeyUsed) {
		t.Errorf("reserve a used package: %v, want ErrWelcomeKeyUsed", err)
	}
	if err := e.s.UseWelcomeKey(e.ctx, "did:plc:alice", "nope"); !errors.Is(err, store.ErrKeyPackageNotFound) {
		t.Errorf("use an unknown package: %v, want ErrKeyPackageNotFound", err)
	}
}

// testDeviceRecoverySchema: the pending additions table keeps exactly the
// device to add and the claim, nothing about who asked or sent anything.
func testDeviceRecoverySchema(t *testing.T, b Backend) {
	e := b.env(t)
	insp, ok := e.s.(SchemaInspector)
	if !ok {
		t.Fatalf("%T does not implement storetest.SchemaInspector", e.s)
	}
	got, err := insp.TableColumns(e.ctx, "pending_device_additions")
	must(t, err, "introspect")
	slices.Sort(got)
	want := []string{"claimed_by", "claimed_until", "convo_id", "created_at", "device_id", "expires_at", "id",
		"key_package_ref", "rejoin", "status", "user_did"}
	if !slices.Equal(got, want) {
		t.Errorf("pending_device_additions columns = %v, want exactly %v", got, want)
	}
	for _, c := range got {
		for _, bad := range []string{"sender", "author", "from", "ip", "reason", "requester"} {
			if strings.Contains(c, bad) {
				t.Errorf("pending_device_additions has column %q", c)
			}
		}
	}
}
