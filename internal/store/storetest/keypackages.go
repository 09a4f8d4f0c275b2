package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// testKeyPackageSingleHandOut races claimers: no normal package is handed
// out twice, no call gets two for one device, and once the normal packages
// run out every claimer gets the last-resort one.
func testKeyPackageSingleHandOut(t *testing.T, b Backend) {
	e := b.env(t)
	const perDevice = 15
	devices := []string{"phone", "laptop"}
	for _, d := range devices {
		e.publish("did:plc:bob", d, perDevice, "kp")
	}
	must(t, e.s.PutKeyPackage(e.ctx, e.keyPackage("did:plc:bob", "phone", "lr-phone", true, 30*24*time.Hour), 0), "last resort")
	const claimers, rounds = 8, 5
	var mu sync.Mutex
	handed := map[string]int{}
	lastResort := 0
	var wg sync.WaitGroup
	errs := make(chan error, claimers*rounds)
	start := make(chan struct{})
	for range claimers {
		wg.Go(func() {
			<-start
			for range rounds {
				kps, err := e.s.ClaimKeyPackages(e.ctx, []string{"did:plc:bob", "did:plc:bob", "did:plc:nobody"}, suite)
				if err != nil {
					errs <- err
					return
				}
				perCall := map[string]bool{}
				mu.Lock()
				for _, kp := range kps {
					if perCall[kp.DeviceID] {
						errs <- fmt.Errorf("two packages for device %s in one call", kp.DeviceID)
					}
					perCall[kp.DeviceID] = true
					if kp.OwnerDID != "did:plc:bob" || len(kp.Data) == 0 {
						errs <- fmt.Errorf("bad package %+v", kp)
					}
					if kp.LastResort {
						lastResort++
					} else {
						handed[kp.Ref]++
					}
				}
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for ref, n := range handed {
		if n > 1 {
			t.Errorf("package %s handed out %d times", ref, n)
		}
	}
	if len(handed) != perDevice*len(devices) {
		t.Errorf("%d normal packages handed out, want all %d", len(handed), perDevice*len(devices))
	}
	// 40 calls: the phone gave 15 normal, then the last resort 25 times.
	if lastResort != claimers*rounds-perDevice {
		t.Errorf("last resort handed out %d times, want %d", lastResort, claimers*rounds-perDevice)
	}
}

func testKeyPackageLastResort(t *testing.T, b Backend) {
	e := b.env(t)
	must(t, e.s.PutKeyPackage(e.ctx, e.keyPackage("did:plc:a", "d1", "lr-old", true, 90*24*time.Hour), 0), "last resort")
	must(t, e.s.PutKeyPackage(e.ctx, e.keyPackage("did:plc:a", "d1", "lr", true, 90*24*time.Hour), 0), "replacing last resort")
	e.publish("did:plc:a", "d1", 1, "kp")
	claim := func() []string {
		kps, err := e.s.ClaimKeyPackages(e.ctx, []string{"did:plc:a"}, suite)
		must(t, err, "claim")
		var refs []string
		for _, kp := range kps {
			refs = append(refs, kp.Ref)
		}
		return refs
	}
	tests := []struct {
		name string
		want []string
	}{
		{"normal first", []string{"kp-did:plc:a-d1-000"}},
		{"then last resort", []string{"lr"}},
		{"last resort is not consumed", []string{"lr"}},
	}
	for _, tc := range tests {
		if got := claim(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	st, err := e.s.KeyPackageStats(e.ctx, "did:plc:a", "")
	must(t, err, "stats")
	if st.Available != 0 || st.LastResort != 1 || st.Consumed != 1 || st.Total != 2 {
		t.Errorf("stats = %+v (the replaced last resort must be gone)", st)
	}
	// Other suites are filtered out.
	if kps, err := e.s.ClaimKeyPackages(e.ctx, []string{"did:plc:a"}, "MLS_128_DHKEMP256_AES128GCM_SHA256_P256"); err != nil || len(kps) != 0 {
		t.Errorf("other suite: %v %v", kps, err)
	}
}

func testKeyPackageCapAndExpiry(t *testing.T, b Backend) {
	e := b.env(t)
	const capacity = 3
	put := func(owner, dev, ref string, lastResort bool, ttl time.Duration) error {
		return e.s.PutKeyPackage(e.ctx, e.keyPackage(owner, dev, ref, lastResort, ttl), capacity)
	}
	tests := []struct {
		name       string
		owner, dev string
		ref        string
		lastResort bool
		want       error
	}{
		{"1", "did:plc:a", "d1", "r1", false, nil},
		{"2", "did:plc:a", "d1", "r2", false, nil},
		{"3", "did:plc:a", "d1", "r3", false, nil},
		{"over cap", "did:plc:a", "d1", "r4", false, store.ErrTooManyKeyPackages},
		{"last resort does not count", "did:plc:a", "d1", "lr", true, nil},
		{"other device has its own cap", "did:plc:a", "d2", "r5", false, nil},
		{"republish is a no-op", "did:plc:a", "d1", "r1", false, nil},
		{"ref owned by someone else", "did:plc:x", "d1", "r1", false, store.ErrConflict},
	}
	for _, tc := range tests {
		err := put(tc.owner, tc.dev, tc.ref, tc.lastResort, time.Hour)
		if !isErr(err, tc.want) && !(err == nil && tc.want == nil) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	// Claiming frees room under the cap.
	if _, err := e.s.ClaimKeyPackages(e.ctx, []string{"did:plc:a"}, suite); err != nil {
		t.Fatal(err)
	}
	must(t, put("did:plc:a", "d1", "r6", false, 2*time.Hour), "publish after claim")
	// Expired packages are never handed out and do not count.
	e.clock.Advance(time.Hour + time.Second)
	kps, err := e.s.ClaimKeyPackages(e.ctx, []string{"did:plc:a"}, suite)
	must(t, err, "claim after expiry")
	if len(kps) != 1 || kps[0].Ref != "r6" {
		t.Errorf("after expiry got %+v, want only r6", kps)
	}
	must(t, put("did:plc:a", "d1", "r7", false, time.Hour), "publish after expiry")
}

func testKeyPackageStatsAndSync(t *testing.T, b Backend) {
	e := b.env(t)
	e.publish("did:plc:a", "d1", 4, "kp")
	e.publish("did:plc:a", "d2", 3, "kp")
	must(t, e.s.PutKeyPackage(e.ctx, store.KeyPackage{Ref: "p256", OwnerDID: "did:plc:a", DeviceID: "d1",
		CipherSuite: "MLS_128_DHKEMP256_AES128GCM_SHA256_P256", Data: []byte("x"), ExpiresAt: e.clock.Now().Add(time.Hour)}, 0), "p256")
	for range 2 {
		_, err := e.s.ClaimKeyPackages(e.ctx, []string{"did:plc:a"}, suite)
		must(t, err, "claim")
		e.clock.Advance(25 * time.Hour)
	}
	st, err := e.s.KeyPackageStats(e.ctx, "did:plc:a", "")
	must(t, err, "stats")
	// 8 published; 4 claimed (2 per call); p256 expired after 50 h.
	want := store.KeyPackageStats{Available: 3, Total: 8, Consumed: 4, Consumed24h: 0, Consumed7d: 4}
	if st.Available != want.Available || st.Total != want.Total || st.Consumed != want.Consumed ||
		st.Consumed24h != want.Consumed24h || st.Consumed7d != want.Consumed7d || len(st.ByCipherSuite) != 2 {
		t.Errorf("stats = %+v, want %+v", st, want)
	}
	if st.OldestExpiry.IsZero() {
		t.Error("OldestExpiry unset")
	}
	onlySuite, err := e.s.KeyPackageStats(e.ctx, "did:plc:a", suite)
	must(t, err, "suite stats")
	if onlySuite.Total != 7 || len(onlySuite.ByCipherSuite) != 1 {
		t.Errorf("suite stats = %+v", onlySuite)
	}
	// Consumed packages page newest first.
	var pages [][]store.KeyPackage
	cursor := ""
	for {
		kps, next, err := e.s.ConsumedKeyPackages(e.ctx, "did:plc:a", cursor, 3)
		must(t, err, "consumed page")
		pages = append(pages, kps)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(pages) != 2 || len(pages[0]) != 3 || len(pages[1]) != 1 || pages[0][0].ConsumedAt.Before(pages[1][0].ConsumedAt) {
		t.Errorf("consumed pages = %+v", pages)
	}
	for _, kp := range append(pages[0], pages[1]...) {
		if !bucketed(kp.ConsumedAt) || !bucketed(kp.CreatedAt) {
			t.Errorf("package %s times not bucketed: created %v consumed %v", kp.Ref, kp.CreatedAt, kp.ConsumedAt)
		}
	}
	// Sync keeps what the client holds, deletes the rest of that device only.
	refs, err := e.s.AvailableKeyPackageRefs(e.ctx, "did:plc:a", "d1")
	must(t, err, "refs")
	if len(refs) != 2 {
		t.Fatalf("d1 refs = %v", refs)
	}
	res, err := e.s.SyncKeyPackages(e.ctx, "did:plc:a", "d1", []string{refs[0], "unknown"})
	must(t, err, "sync")
	if !slices.Equal(res.Remaining, refs[:1]) || len(res.Deleted) != 2 {
		t.Errorf("sync = %+v (deleted must include the expired p256 and %s)", res, refs[1])
	}
	if d2, _ := e.s.AvailableKeyPackageRefs(e.ctx, "did:plc:a", "d2"); len(d2) != 1 {
		t.Errorf("sync touched another device: %v", d2)
	}
}

func testDevices(t *testing.T, b Backend) {
	e := b.env(t)
	const maxDevices = 2
	phone := store.Device{OwnerDID: "did:plc:a", DeviceID: "dev-1", Name: "phone", UUID: "uuid-1", SignatureKey: []byte("k1")}
	got, err := e.s.RegisterDevice(e.ctx, phone, maxDevices)
	must(t, err, "register")
	if !got.RegisteredAt.Equal(store.Bucket(Epoch0)) {
		t.Errorf("RegisteredAt = %v", got.RegisteredAt)
	}
	again := phone
	again.DeviceID = "dev-other"
	existing, err := e.s.RegisterDevice(e.ctx, again, maxDevices)
	if !isErr(err, store.ErrDeviceExists) || existing.DeviceID != "dev-1" {
		t.Errorf("same UUID: %+v, %v; want dev-1, ErrDeviceExists", existing, err)
	}
	_, err = e.s.RegisterDevice(e.ctx, store.Device{OwnerDID: "did:plc:a", DeviceID: "dev-2", Name: "laptop"}, maxDevices)
	must(t, err, "second device")
	if _, err := e.s.RegisterDevice(e.ctx, store.Device{OwnerDID: "did:plc:a", DeviceID: "dev-3", Name: "tablet"}, maxDevices); !isErr(err, store.ErrTooManyDevices) {
		t.Errorf("third device: %v, want ErrTooManyDevices", err)
	}
	e.publish("did:plc:a", "dev-1", 3, "kp")
	e.clock.Advance(10 * time.Second)
	must(t, e.s.TouchDevice(e.ctx, "did:plc:a", "dev-1"), "touch")
	ds, err := e.s.Devices(e.ctx, "did:plc:a")
	must(t, err, "list")
	if len(ds) != 2 || ds[0].DeviceID != "dev-1" || ds[0].KeyPackages != 3 || ds[1].KeyPackages != 0 ||
		!ds[0].LastSeenAt.Equal(store.Bucket(e.clock.Now())) || string(ds[0].SignatureKey) != "k1" {
		t.Errorf("devices = %+v", ds)
	}
	n, err := e.s.DeleteDevice(e.ctx, "did:plc:a", "dev-1")
	must(t, err, "delete")
	if n != 3 {
		t.Errorf("deleted %d key packages, want 3", n)
	}
	if _, err := e.s.DeleteDevice(e.ctx, "did:plc:a", "dev-1"); !isErr(err, store.ErrNotFound) {
		t.Errorf("delete again: %v", err)
	}
	if _, err := e.s.DeleteDevice(e.ctx, "did:plc:other", "dev-2"); !isErr(err, store.ErrNotFound) {
		t.Errorf("delete someone else's device: %v", err)
	}
	if err := e.s.TouchDevice(e.ctx, "did:plc:a", "dev-1"); !isErr(err, store.ErrNotFound) {
		t.Errorf("touch deleted: %v", err)
	}
}

// testKeyPackageByHash names packages by their KeyPackageRef and by the
// SHA-256 of their bytes (the lexicon's keyPackageHash): both find the same
// package, of its owner only, consumed or not, and sync keeps a package the
// client names either way.
func testKeyPackageByHash(t *testing.T, b Backend) {
	e := b.env(t)
	refs := e.publish("did:plc:a", "d1", 3, "kp")
	e.publish("did:plc:b", "d1", 1, "kp")
	sum := func(ref string) string { return store.KeyPackageSHA256(e.keyPackage("", "", ref, false, 0).Data) }

	for _, name := range []string{refs[0], sum(refs[0])} {
		kp, err := e.s.KeyPackageByHash(e.ctx, "did:plc:a", name)
		must(t, err, "find by "+name)
		if kp.Ref != refs[0] || kp.DeviceID != "d1" || kp.OwnerDID != "did:plc:a" {
			t.Errorf("find by %s = %+v, want %s", name, kp, refs[0])
		}
	}
	for _, c := range []struct{ owner, name string }{
		{"did:plc:b", refs[0]}, {"did:plc:b", sum(refs[0])}, {"did:plc:a", sum("unknown")}, {"did:plc:a", ""},
	} {
		if _, err := e.s.KeyPackageByHash(e.ctx, c.owner, c.name); !errors.Is(err, store.ErrKeyPackageNotFound) {
			t.Errorf("find %s of %s: %v, want ErrKeyPackageNotFound", c.name, c.owner, err)
		}
	}

	claimed, err := e.s.ClaimKeyPackages(e.ctx, []string{"did:plc:a"}, suite)
	must(t, err, "claim")
	if len(claimed) != 1 {
		t.Fatalf("claimed %d packages", len(claimed))
	}
	kp, err := e.s.KeyPackageByHash(e.ctx, "did:plc:a", store.KeyPackageSHA256(claimed[0].Data))
	must(t, err, "find a consumed package by hash")
	if kp.Ref != claimed[0].Ref || kp.ConsumedAt.IsZero() {
		t.Errorf("consumed package found as %+v", kp)
	}

	left, err := e.s.AvailableKeyPackageRefs(e.ctx, "did:plc:a", "d1")
	must(t, err, "refs")
	if len(left) != 2 {
		t.Fatalf("available = %v", left)
	}
	res, err := e.s.SyncKeyPackages(e.ctx, "did:plc:a", "d1", []string{sum(left[0]), left[1]})
	must(t, err, "sync by hash and ref")
	if !slices.Equal(res.Remaining, left) || len(res.Deleted) != 0 {
		t.Errorf("sync naming one package by hash and one by ref = %+v, want both kept", res)
	}
	res, err = e.s.SyncKeyPackages(e.ctx, "did:plc:a", "d1", []string{sum(left[1])})
	must(t, err, "sync by hash")
	if !slices.Equal(res.Remaining, left[1:]) || !slices.Equal(res.Deleted, left[:1]) {
		t.Errorf("sync keeping one package by hash = %+v", res)
	}
}

// KeyPackageHashUpgrade checks migration 2 on a store that held key packages
// before it: undo rolls the data at path back to the schema before the
// migration (dropping the SHA-256 column and its record in
// schema_migrations); reopening must fill the column, so a package stored
// before the upgrade is found by the SHA-256 of its bytes.
func KeyPackageHashUpgrade(t *testing.T, b Backend, undo func(t *testing.T, data string)) {
	clock := NewClock(Epoch0)
	data := b.NewData(t)
	s, err := b.Open(t.Context(), data, clock.Now)
	must(t, err, "open")
	e := &env{t: t, ctx: t.Context(), s: s, clock: clock}
	refs := e.publish("did:plc:a", "d1", 2, "old")
	must(t, s.Close(), "close")
	undo(t, data)
	s, err = b.Open(t.Context(), data, clock.Now)
	must(t, err, "reopen")
	defer s.Close()
	for _, ref := range refs {
		kp, err := s.KeyPackageByHash(t.Context(), "did:plc:a", store.KeyPackageSHA256(e.keyPackage("", "", ref, false, 0).Data))
		if err != nil || kp.Ref != ref {
			t.Errorf("package %s stored before the upgrade: found %q, %v", ref, kp.Ref, err)
		}
	}
}
