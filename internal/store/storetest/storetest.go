// Package storetest is the conformance suite every store.Store
// implementation must pass. Backends call Run from their own tests:
//
//	storetest.Run(t, storetest.Backend{NewData: ..., Open: ...})
//
// It is imported only from tests.
package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// Backend tells the suite how to make data and open stores on it.
type Backend struct {
	// NewData returns the address (file path, database URL) of fresh, empty
	// data for the calling test, cleaned up when it ends.
	NewData func(t *testing.T) string
	// Open opens a store on data, running migrations. The suite closes it.
	// It must be safe to call concurrently on the same data.
	Open func(ctx context.Context, data string, now func() time.Time) (store.Store, error)
	// Exec runs one SQL statement on data directly, behind the store's
	// back, for the audit log's tamper tests.
	Exec func(t *testing.T, data, stmt string)
}

// SchemaInspector is implemented by stores so the suite can check, by
// introspection, what the schema keeps.
type SchemaInspector interface {
	// TableColumns lists the columns of a table.
	TableColumns(ctx context.Context, table string) ([]string, error)
}

// Clock is a settable clock for deterministic retention and bucketing
// tests.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Epoch0 is where every test clock starts: an instant deliberately not on a
// 2 s boundary, so bucketing is visible.
var Epoch0 = time.Date(2026, 3, 1, 12, 0, 1, 700_000_000, time.UTC)

// env is one test's store and clock.
type env struct {
	t     *testing.T
	ctx   context.Context
	s     store.Store
	clock *Clock
	data  string
	b     Backend
}

func (b Backend) env(t *testing.T) *env {
	t.Helper()
	clock := NewClock(Epoch0)
	data := b.NewData(t)
	s, err := b.Open(t.Context(), data, clock.Now)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return &env{t: t, ctx: t.Context(), s: s, clock: clock, data: data, b: b}
}

// Run runs the whole suite against the backend.
func Run(t *testing.T, b Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"SchemaHasNoSender", testSchemaHasNoSender},
		{"MigrationsIdempotent", testMigrationsIdempotent},
		{"MigrationsConcurrent", testMigrationsConcurrent},
		{"CreateConvo", testCreateConvo},
		{"CreateConvoAtomic", testCreateConvoAtomic},
		{"SeqGaplessUnderConcurrency", testSeqGapless},
		{"AppendMessageRules", testAppendMessageRules},
		{"EpochCompareAndSwap", testEpochCAS},
		{"AddMembersAtomic", testAddMembersAtomic},
		{"RemoveAndRejoin", testRemoveAndRejoin},
		{"ActiveMemberCount", testActiveMemberCount},
		{"GroupInfo", testGroupInfo},
		{"Welcome", testWelcome},
		{"Idempotency", testIdempotency},
		{"IdempotencyConcurrentRetries", testIdempotencyConcurrent},
		{"KeyPackageSingleHandOut", testKeyPackageSingleHandOut},
		{"KeyPackageLastResort", testKeyPackageLastResort},
		{"KeyPackageCapAndExpiry", testKeyPackageCapAndExpiry},
		{"KeyPackageStatsAndSync", testKeyPackageStatsAndSync},
		{"KeyPackageByHash", testKeyPackageByHash},
		{"Devices", testDevices},
		{"KeyPackageStock", testKeyPackageStock},
		{"EventsAfterCursor", testEventsAfterCursor},
		{"ConvoPagination", testConvoPagination},
		{"MessagePagination", testMessagePagination},
		{"PurgeMessages", testPurgeMessages},
		{"PurgeEvents", testPurgeEvents},
		{"PurgeWelcomes", testPurgeWelcomes},
		{"PurgeKeyPackages", testPurgeKeyPackages},
		{"PurgeIdempotency", testPurgeIdempotency},
		{"TryLock", testTryLock},
		{"Traits", testTraits},
		{"AuditAppendAndQuery", testAuditAppendAndQuery},
		{"AuditConcurrentAppends", testAuditConcurrentAppends},
		{"AuditPrune", testAuditPrune},
		{"AuditTamper", testAuditTamper},
		{"Bans", testBans},
		{"AuditAndBanSchema", testAuditAndBanSchema},
		{"Roles", testRoles},
		{"Policies", testPolicies},
		{"PolicySerializesInvites", testPolicySerializesInvites},
		{"PolicyReadModifyWrite", testPolicyReadModifyWrite},
		{"Reports", testReports},
		{"Invites", testInvites},
		{"InviteAfterRemoval", testInviteAfterRemoval},
		{"RedemptionMemberLimit", testRedemptionMemberLimit},
		{"AdmitMembers", testAdmitMembers},
		{"AdmitMembersDeviceLimit", testAdmitMembersDeviceLimit},
		{"OptIns", testOptIns},
		{"SocialInIdempotent", testSocialInIdempotent},
		{"SocialActors", testSocialActors},
		{"SocialSchema", testSocialSchema},
		{"PendingAdditionsQueue", testPendingAdditionsQueue},
		{"PendingAdditionClaimConcurrent", testPendingAdditionClaimConcurrent},
		{"PendingAdditionComplete", testPendingAdditionComplete},
		{"NeedsRejoin", testNeedsRejoin},
		{"WelcomeKeys", testWelcomeKeys},
		{"DeviceRecoverySchema", testDeviceRecoverySchema},
		{"PushTokens", testPushTokens},
		{"PushTokenSchema", testPushTokenSchema},
		{"ChatRequests", testChatRequests},
		{"ChatRequestBlocks", testChatRequestBlocks},
		{"ChatRequestExpiry", testChatRequestExpiry},
		{"ChatRequestCloseConcurrent", testChatRequestCloseConcurrent},
		{"ChatRequestSettings", testChatRequestSettings},
		{"ChatRequestsInIdempotent", testChatRequestsInIdempotent},
		{"ChatRequestSchema", testChatRequestSchema},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, b)
		})
	}
}

// Helpers.

const suite = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func member(user, device string) store.NewMember {
	return store.NewMember{MemberDID: user + "#" + device, UserDID: user, DeviceID: device}
}

// newConvo creates a conversation whose members are the users' device "d1".
func (e *env) newConvo(id string, users ...string) store.Convo {
	e.t.Helper()
	var ms []store.NewMember
	for i, u := range users {
		m := member(u, "d1")
		if i == 0 {
			m.Role = store.RoleAdmin
		}
		ms = append(ms, m)
	}
	c, err := e.s.CreateConvo(e.ctx, store.NewConvo{ID: id, CreatorDID: users[0], CipherSuite: suite, Members: ms})
	must(e.t, err, "create convo "+id)
	return c
}

func (e *env) send(convo string, epoch int64, msgID string) store.Message {
	e.t.Helper()
	m, err := e.s.AppendMessage(e.ctx, store.NewMessage{ConvoID: convo, MsgID: msgID, Epoch: epoch,
		Ciphertext: padded(msgID), PaddedSize: 512})
	must(e.t, err, "append message "+msgID)
	return m
}

// bucketed reports whether t lies on a BucketInterval boundary (the test
// clock never does).
func bucketed(t time.Time) bool { return !t.IsZero() && t.Equal(store.Bucket(t)) }

func padded(s string) []byte {
	b := make([]byte, 512)
	copy(b, s)
	return b
}

func (e *env) allMessages(convo string) []store.Message {
	e.t.Helper()
	var out []store.Message
	var since int64
	for {
		p, err := e.s.Messages(e.ctx, convo, since, 100)
		must(e.t, err, "list messages")
		if len(p.Messages) == 0 {
			return out
		}
		out = append(out, p.Messages...)
		since = p.Messages[len(p.Messages)-1].Seq
	}
}

func (e *env) allEvents(convos ...string) []store.Event {
	e.t.Helper()
	var out []store.Event
	var after int64
	for {
		evs, err := e.s.EventsAfter(e.ctx, convos, after, 100)
		must(e.t, err, "list events")
		if len(evs) == 0 {
			return out
		}
		out = append(out, evs...)
		after = evs[len(evs)-1].Cursor
	}
}

func (e *env) keyPackage(owner, device, ref string, lastResort bool, ttl time.Duration) store.KeyPackage {
	return store.KeyPackage{Ref: ref, OwnerDID: owner, DeviceID: device, CipherSuite: suite,
		Data: []byte("kp-" + ref), ExpiresAt: e.clock.Now().Add(ttl), LastResort: lastResort}
}

func (e *env) publish(owner, device string, n int, prefix string) []string {
	e.t.Helper()
	var refs []string
	for i := range n {
		ref := fmt.Sprintf("%s-%s-%s-%03d", prefix, owner, device, i)
		must(e.t, e.s.PutKeyPackage(e.ctx, e.keyPackage(owner, device, ref, false, 30*24*time.Hour), 0), "publish key package")
		refs = append(refs, ref)
	}
	return refs
}
