package storetest

import (
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// testKeyPackageStock counts devices by their available normal packages:
// a registered device without packages and a drained device are empty
// (last-resort, consumed and expired packages do not count), a device
// below the threshold is low, one at it is neither.
func testKeyPackageStock(t *testing.T, b Backend) {
	e := b.env(t)
	stock := func() store.KeyPackageStock {
		t.Helper()
		s, err := e.s.KeyPackageStock(e.ctx, 3)
		must(t, err, "key package stock")
		return s
	}
	if got := stock(); got != (store.KeyPackageStock{}) {
		t.Errorf("empty store: %+v", got)
	}
	// did:plc:a's phone is registered and has published nothing.
	_, err := e.s.RegisterDevice(e.ctx, store.Device{OwnerDID: "did:plc:a", DeviceID: "phone", Name: "phone"}, 0)
	must(t, err, "register")
	// Its laptop (unregistered) holds three: at the threshold.
	e.publish("did:plc:a", "laptop", 3, "kp")
	// did:plc:b's device holds one normal package and a last resort.
	e.publish("did:plc:b", "d", 1, "kp")
	must(t, e.s.PutKeyPackage(e.ctx, e.keyPackage("did:plc:b", "d", "b-lr", true, 30*24*time.Hour), 0), "last resort")
	// did:plc:c's device has only a last resort and a package that expires.
	must(t, e.s.PutKeyPackage(e.ctx, e.keyPackage("did:plc:c", "d", "c-lr", true, 30*24*time.Hour), 0), "last resort")
	must(t, e.s.PutKeyPackage(e.ctx, e.keyPackage("did:plc:c", "d", "c-short", false, time.Hour), 0), "short-lived")
	if got, want := stock(), (store.KeyPackageStock{Devices: 4, Empty: 1, Low: 2}); got != want {
		t.Errorf("stock = %+v, want %+v", got, want)
	}
	e.clock.Advance(2 * time.Hour) // c's normal package expires
	// A claim drains b's device to its last resort.
	_, err = e.s.ClaimKeyPackages(e.ctx, []string{"did:plc:b"}, "")
	must(t, err, "claim")
	if got, want := stock(), (store.KeyPackageStock{Devices: 4, Empty: 3, Low: 0}); got != want {
		t.Errorf("after expiry and a claim: stock = %+v, want %+v", got, want)
	}
}
