package e2etest

import (
	"strings"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
)

// deviceSteps are the steps of test/mls/devices.mjs (docs/devices.md), in
// order. Each asserts inside the harness what it names: the rejoined and
// the added devices decrypt what follows with real MLS state, exactly one
// of two racing claimers gets the pending addition, the stale external
// commit and the missing Welcome are refused before readdition succeeds.
var deviceSteps = []string{
	"register devices and form a group of two devices",
	"a device that lost its state rejoins by external commit, then reads new messages",
	"a second device of a member is added through the pending-addition flow",
	"a reinstalled device whose Welcome and external commit both fail is re-added by readdition",
}

// TestDeviceRecoveryEndToEnd runs the device and recovery scenario with
// ts-mls clients against a real gateway, on SQLite and on PostgreSQL.
func TestDeviceRecoveryEndToEnd(t *testing.T) {
	for _, b := range []struct {
		name  string
		store func(t *testing.T) mlsStore
	}{{"sqlite", sqliteStore}, {"postgres", postgresStore}} {
		t.Run(b.name, func(t *testing.T) {
			requireMLSHarness(t)
			plc := atprototest.NewPLC(t)
			g, base := startMLSGateway(t, mlsCaddyfile, plc, b.store(t), []string{"CAIRN_LOG_HASH_KEY=" + strings.Repeat("e", 40)})
			runHarnessScript(t, harnessScript{name: "devices.mjs", members: 2, steps: deviceSteps}, plc, base, g, nil)
		})
	}
}
