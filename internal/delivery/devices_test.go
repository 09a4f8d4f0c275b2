package delivery_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestDevices(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		now := e.clock.Now()
		anon := who{DID: alice.DID} // not yet bound to a device
		exp := now.Add(10 * day).Format(time.RFC3339)
		uuid := "6f1c7a52-7d5e-4b8e-9a57-2f8d7a3c1e01"
		reg := obj{
			"deviceName": "phone", "deviceUUID": uuid, "signaturePublicKey": b64bytes(randBytes(t, 32)),
			"keyPackages": []obj{
				{"keyPackage": newKeyPackage(t, alice.DID+"#"+uuid, now, 20*day).b64(), "cipherSuite": suite.String(), "expires": exp},
				{"keyPackage": newKeyPackage(t, alice.DID+"#"+uuid, now, 20*day).b64(), "cipherSuite": suite.String(), "expires": exp},
			},
		}
		r := e.post(anon, "registerDevice", reg).must(t, http.StatusOK)
		if r.body["deviceId"] != uuid || r.body["mlsDid"] != alice.DID+"#"+uuid || len(r.body["autoJoinedConvos"].([]any)) != 0 {
			t.Fatalf("registerDevice: %s", r.raw)
		}
		// Registering the same UUID again returns the same device.
		again := e.post(anon, "registerDevice", reg).must(t, http.StatusOK)
		if again.body["deviceId"] != uuid {
			t.Fatalf("re-registration: %s", again.raw)
		}
		// Without a UUID the server makes an id; packages must then be for
		// the bare DID (their device is unknown beforehand).
		r2 := e.post(anon, "registerDevice", obj{
			"deviceName": "laptop", "signaturePublicKey": b64bytes(randBytes(t, 32)),
			"keyPackages": []obj{{"keyPackage": newKeyPackage(t, alice.DID, now, 20*day).b64(), "cipherSuite": suite.String(), "expires": exp}},
		}).must(t, http.StatusOK)
		laptop := r2.body["deviceId"].(string)
		if len(laptop) != 36 {
			t.Fatalf("generated device id %q", laptop)
		}

		l := e.get(anon, "listDevices", nil).must(t, http.StatusOK)
		devs := l.body["devices"].([]any)
		if len(devs) != 2 {
			t.Fatalf("listDevices: %s", l.raw)
		}
		byID := map[string]map[string]any{}
		for _, d := range devs {
			d := d.(map[string]any)
			byID[d["deviceId"].(string)] = d
		}
		phone := byID[uuid]
		if phone["deviceName"] != "phone" || phone["credentialDid"] != alice.DID+"#"+uuid || phone["keyPackageCount"] != float64(2) ||
			phone["deviceUUID"] != uuid || phone["lastSeenAt"] == nil || phone["registeredAt"] == nil {
			t.Fatalf("deviceInfo: %v", phone)
		}
		if n := len(e.get(bob, "listDevices", nil).must(t, http.StatusOK).body["devices"].([]any)); n != 0 {
			t.Fatalf("bob sees %d devices", n)
		}

		bad := []struct {
			name string
			body obj
			err  string
		}{
			{"no name", obj{"deviceName": "", "signaturePublicKey": b64bytes(randBytes(t, 32)), "keyPackages": reg["keyPackages"]}, "InvalidDeviceName"},
			{"short key", obj{"deviceName": "x", "signaturePublicKey": b64bytes(randBytes(t, 31)), "keyPackages": reg["keyPackages"]}, "InvalidSignatureKey"},
			{"no packages", obj{"deviceName": "x", "signaturePublicKey": b64bytes(randBytes(t, 32)), "keyPackages": []obj{}}, "InvalidKeyPackages"},
			{"foreign package", obj{"deviceName": "x", "deviceUUID": "u2", "signaturePublicKey": b64bytes(randBytes(t, 32)), "keyPackages": []obj{
				{"keyPackage": newKeyPackage(t, bob.DID+"#u2", now, 20*day).b64(), "cipherSuite": suite.String(), "expires": exp}}}, "InvalidKeyPackages"},
			{"package of another device", obj{"deviceName": "x", "deviceUUID": "u3", "signaturePublicKey": b64bytes(randBytes(t, 32)), "keyPackages": []obj{
				{"keyPackage": newKeyPackage(t, alice.DID+"#u4", now, 20*day).b64(), "cipherSuite": suite.String(), "expires": exp}}}, "InvalidKeyPackages"},
		}
		for _, tc := range bad {
			t.Run(tc.name, func(t *testing.T) { e.post(anon, "registerDevice", tc.body).isErr(t, http.StatusBadRequest, tc.err) })
		}

		// getExpectedConversations: the phone is in one conversation.
		phoneID := who{DID: alice.DID, DeviceID: uuid}
		g := e.createConvo(t, phoneID, bob)
		x := e.get(phoneID, "getExpectedConversations", nil).must(t, http.StatusOK)
		convos := x.body["conversations"].([]any)
		if len(convos) != 1 {
			t.Fatalf("getExpectedConversations: %s", x.raw)
		}
		c := convos[0].(map[string]any)
		if c["convoId"] != g || c["memberCount"] != float64(2) || c["shouldBeInGroup"] != true || c["deviceInGroup"] != true {
			t.Fatalf("expectedConversation: %v", c)
		}
		y := e.get(phoneID, "getExpectedConversations", url.Values{"deviceId": {laptop}}).must(t, http.StatusOK)
		if y.body["conversations"].([]any)[0].(map[string]any)["deviceInGroup"] != false {
			t.Fatalf("laptop is not in the group: %s", y.raw)
		}

		d := e.post(anon, "deleteDevice", obj{"deviceId": uuid}).must(t, http.StatusOK)
		if d.body["deleted"] != true || d.body["keyPackagesDeleted"] != float64(2) {
			t.Fatalf("deleteDevice: %s", d.raw)
		}
		e.post(anon, "deleteDevice", obj{"deviceId": uuid}).isErr(t, http.StatusNotFound, "DeviceNotFound")
		e.post(bob, "deleteDevice", obj{"deviceId": laptop}).isErr(t, http.StatusNotFound, "DeviceNotFound")
		e.post(anon, "deleteDevice", obj{}).isErr(t, http.StatusBadRequest, "InvalidRequest")
	})
}

func TestTooManyDevices(t *testing.T) {
	e := newEnv(t, openSQLite, func(c *deliveryConfig) { c.MaxDevices = 1 })
	now := e.clock.Now()
	reg := func(name string) resp {
		return e.post(alice, "registerDevice", obj{"deviceName": name, "signaturePublicKey": b64bytes(randBytes(t, 32)),
			"keyPackages": []obj{{"keyPackage": newKeyPackage(t, alice.DID, now, 20*day).b64(), "cipherSuite": suite.String(), "expires": now.Add(day).Format(time.RFC3339)}}})
	}
	reg("one").must(t, http.StatusOK)
	reg("two").isErr(t, http.StatusBadRequest, "TooManyDevices")
}

// TestDeviceLastSeen: a device's calls move its lastSeenAt, at most once an
// hour; calls without a device move nothing.
func TestDeviceLastSeen(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		now := e.clock.Now()
		uuid := "0b1d2c3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
		exp := now.Add(10 * day).Format(time.RFC3339)
		e.post(who{DID: alice.DID}, "registerDevice", obj{
			"deviceName": "phone", "deviceUUID": uuid, "signaturePublicKey": b64bytes(randBytes(t, 32)),
			"keyPackages": []obj{{"keyPackage": newKeyPackage(t, alice.DID+"#"+uuid, now, 20*day).b64(), "cipherSuite": suite.String(), "expires": exp}},
		}).must(t, http.StatusOK)
		lastSeen := func() string {
			t.Helper()
			for _, d := range e.get(who{DID: alice.DID}, "listDevices", nil).must(t, http.StatusOK).body["devices"].([]any) {
				if d := d.(map[string]any); d["deviceId"] == uuid {
					return d["lastSeenAt"].(string)
				}
			}
			t.Fatal("device not listed")
			return ""
		}
		registered := lastSeen()
		phone := who{DID: alice.DID, DeviceID: uuid}

		e.clock.Advance(3 * time.Hour)
		e.get(phone, "getConvos", nil).must(t, http.StatusOK)
		seen := lastSeen()
		if want := e.clock.Now().UTC().Truncate(2 * time.Second); seen == registered || !strings.HasPrefix(seen, want.Format("2006-01-02T15:04")) {
			t.Fatalf("lastSeenAt after a call 3 h later = %s (registered %s), want about %s", seen, registered, want)
		}
		e.clock.Advance(10 * time.Minute)
		e.get(phone, "getConvos", nil).must(t, http.StatusOK)
		if again := lastSeen(); again != seen {
			t.Fatalf("lastSeenAt moved within the hour: %s, then %s", seen, again)
		}
		e.clock.Advance(2 * time.Hour)
		e.get(who{DID: alice.DID}, "getConvos", nil).must(t, http.StatusOK)
		if again := lastSeen(); again != seen {
			t.Fatalf("a call without the device moved its lastSeenAt: %s, then %s", seen, again)
		}
		e.get(phone, "getConvos", nil).must(t, http.StatusOK)
		if again := lastSeen(); again == seen {
			t.Fatalf("lastSeenAt did not move after an hour: %s", again)
		}
	})
}
