package delivery_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/delivery"
	"github.com/cairn-chat/cairn-caddy/internal/push"
)

func TestDeviceTokens(t *testing.T) {
	keys, err := push.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := push.NewSealer(keys.Seal)
	if err != nil {
		t.Fatal(err)
	}
	apnsTok := strings.Repeat("0f", 32)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b.open, func(c *delivery.Config) { c.PushSealer = sealer })
			e.register(t, alice)
			g := e.createConvo(t, alice, bob)

			e.post(alice, "registerDeviceToken", obj{"deviceId": alice.DeviceID, "pushToken": apnsTok, "platform": "ios", "deviceName": "phone"}).must(t, http.StatusOK)
			targets, err := e.store.PushTargets(t.Context(), []string{g})
			if err != nil || len(targets) != 1 || targets[0].DeviceID != alice.DeviceID || targets[0].Provider != push.ProviderAPNs {
				t.Fatalf("targets %v, %v", targets, err)
			}
			if bytes.Contains(targets[0].Sealed, []byte(apnsTok)) {
				t.Fatal("the token is stored in the clear")
			}
			if got, err := sealer.Open(alice.DID, alice.DeviceID, push.ProviderAPNs, targets[0].Sealed); err != nil || string(got) != apnsTok {
				t.Fatalf("stored token opens to %q, %v", got, err)
			}

			// Refusals: someone else's device, an unregistered device, bad tokens.
			e.post(bob, "registerDeviceToken", obj{"deviceId": alice.DeviceID, "pushToken": apnsTok}).isErr(t, http.StatusNotFound, "DeviceNotFound")
			e.post(alice, "registerDeviceToken", obj{"deviceId": "nope", "pushToken": apnsTok}).isErr(t, http.StatusNotFound, "DeviceNotFound")
			e.post(alice, "registerDeviceToken", obj{"deviceId": alice.DeviceID, "pushToken": "xyz"}).isErr(t, http.StatusBadRequest, "InvalidRequest")
			e.post(alice, "registerDeviceToken", obj{"deviceId": alice.DeviceID, "pushToken": apnsTok, "platform": "android"}).isErr(t, http.StatusBadRequest, "InvalidRequest")
			e.post(alice, "registerDeviceToken", obj{"pushToken": apnsTok}).isErr(t, http.StatusBadRequest, "InvalidRequest")
			e.post(alice, "registerDeviceToken", obj{"deviceId": 3, "pushToken": apnsTok}).isErr(t, http.StatusBadRequest, "InvalidRequest")

			// Unregistering succeeds, also a second time.
			e.post(alice, "unregisterDeviceToken", obj{"deviceId": alice.DeviceID}).must(t, http.StatusOK)
			e.post(alice, "unregisterDeviceToken", obj{"deviceId": alice.DeviceID}).must(t, http.StatusOK)
			if targets, _ := e.store.PushTargets(t.Context(), []string{g}); len(targets) != 0 {
				t.Fatalf("targets after unregister: %v", targets)
			}

			// deleteDevice takes the token with it.
			e.post(alice, "registerDeviceToken", obj{"deviceId": alice.DeviceID, "pushToken": apnsTok}).must(t, http.StatusOK)
			e.post(alice, "deleteDevice", obj{"deviceId": alice.DeviceID}).must(t, http.StatusOK)
			if targets, _ := e.store.PushTargets(t.Context(), []string{g}); len(targets) != 0 {
				t.Fatalf("targets after deleteDevice: %v", targets)
			}
		})
	}
	t.Run("not configured", func(t *testing.T) {
		e := newEnv(t, openSQLite)
		e.post(alice, "registerDeviceToken", obj{"deviceId": "a1", "pushToken": apnsTok}).isErr(t, http.StatusNotImplemented, "MethodNotImplemented")
		e.post(alice, "unregisterDeviceToken", obj{"deviceId": "a1"}).isErr(t, http.StatusNotImplemented, "MethodNotImplemented")
	})
}
