package delivery_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/mlswire"
)

const day = 24 * time.Hour

func (e *env) publish(id who, kp testKeyPackage, key string) resp {
	return e.post(id, "publishKeyPackage", obj{"keyPackage": kp.b64(), "cipherSuite": suite.String(), "idempotencyKey": key})
}

func TestPublishKeyPackage(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		now := e.clock.Now()
		good := newKeyPackage(t, "did:plc:alice#a1", now, 30*day)
		r := e.publish(alice, good, "k1").must(t, http.StatusOK)
		if len(r.body) != 0 {
			t.Fatalf("publishKeyPackage output: %s", r.raw)
		}
		e.publish(alice, good, "k1").must(t, http.StatusOK)
		e.publish(alice, newKeyPackage(t, "did:plc:alice#a1", now, day), "k1").isErr(t, http.StatusUnprocessableEntity, "IdempotencyKeyReused")
		// P-256 packages verify too.
		p256 := newP256KeyPackage(t, "did:plc:alice#a1", now, day)
		e.post(alice, "publishKeyPackage", obj{"keyPackage": p256.b64(), "cipherSuite": mlswire.MLS128DHKEMP256AES128GCMSHA256P256.String(), "idempotencyKey": "p256"}).must(t, http.StatusOK)
		// A device-less caller may publish for its bare DID.
		e.publish(who{DID: alice.DID}, newKeyPackage(t, "did:plc:alice", now, day), "k2").must(t, http.StatusOK)

		tampered := newKeyPackage(t, "did:plc:alice#a1", now, day)
		tampered.data[len(tampered.data)-1] ^= 1
		wrongSuite := newKeyPackage(t, "did:plc:alice#a1", now, day)
		cases := []struct {
			name   string
			id     who
			body   obj
			status int
			err    string
		}{
			{"identity of another account", alice, obj{"keyPackage": newKeyPackage(t, "did:plc:bob#b1", now, day).b64(), "cipherSuite": suite.String(), "idempotencyKey": "x1"}, 403, "InvalidKeyPackage"},
			{"identity of another device", alice, obj{"keyPackage": newKeyPackage(t, "did:plc:alice#a2", now, day).b64(), "cipherSuite": suite.String(), "idempotencyKey": "x2"}, 403, "InvalidKeyPackage"},
			{"identity with a prefix", alice, obj{"keyPackage": newKeyPackage(t, "did:plc:alicex", now, day).b64(), "cipherSuite": suite.String(), "idempotencyKey": "x3"}, 403, "InvalidKeyPackage"},
			{"bad signature", alice, obj{"keyPackage": tampered.b64(), "cipherSuite": suite.String(), "idempotencyKey": "x4"}, 400, "InvalidKeyPackage"},
			{"expired", alice, obj{"keyPackage": newKeyPackage(t, "did:plc:alice#a1", now, -time.Minute).b64(), "cipherSuite": suite.String(), "idempotencyKey": "x5"}, 400, "InvalidKeyPackage"},
			{"not a key package", alice, obj{"keyPackage": base64.StdEncoding.EncodeToString([]byte("hello")), "cipherSuite": suite.String(), "idempotencyKey": "x6"}, 400, "InvalidKeyPackage"},
			{"suite mismatch", alice, obj{"keyPackage": wrongSuite.b64(), "cipherSuite": mlswire.MLS128DHKEMP256AES128GCMSHA256P256.String(), "idempotencyKey": "x7"}, 400, "InvalidCipherSuite"},
			{"unknown suite", alice, obj{"keyPackage": wrongSuite.b64(), "cipherSuite": "MLS_nope", "idempotencyKey": "x8"}, 400, "InvalidCipherSuite"},
			{"expires too far", alice, obj{"keyPackage": wrongSuite.b64(), "cipherSuite": suite.String(), "idempotencyKey": "x9", "expires": now.Add(100 * day).Format(time.RFC3339)}, 400, "ExpirationTooFar"},
			{"expires not a datetime", alice, obj{"keyPackage": wrongSuite.b64(), "cipherSuite": suite.String(), "idempotencyKey": "x10", "expires": "tomorrow"}, 400, "InvalidRequest"},
			{"no idempotency key", alice, obj{"keyPackage": wrongSuite.b64(), "cipherSuite": suite.String()}, 400, "IdempotencyKeyRequired"},
			{"no key package", alice, obj{"cipherSuite": suite.String(), "idempotencyKey": "x11"}, 400, "InvalidRequest"},
			{"oversize", alice, obj{"keyPackage": string(make([]byte, 70000)), "cipherSuite": suite.String(), "idempotencyKey": "x12"}, 400, "InvalidRequest"},
			{"bad base64", alice, obj{"keyPackage": "%%%", "cipherSuite": suite.String(), "idempotencyKey": "x13"}, 400, "InvalidRequest"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) { e.post(tc.id, "publishKeyPackage", tc.body).isErr(t, tc.status, tc.err) })
		}
		st := e.get(alice, "getKeyPackageStats", nil).must(t, http.StatusOK)
		if st.body["available"] != float64(3) || st.body["total"] != float64(3) || st.body["needsReplenish"] != true || st.body["threshold"] != float64(10) {
			t.Fatalf("stats after refusals: %s", st.raw)
		}
	})
}

func TestKeyPackageCapAndBatch(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b.open, func(c *deliveryConfig) { c.MaxKeyPackagesPerDevice = 3 })
			now := e.clock.Now()
			exp := now.Add(10 * day).Format(time.RFC3339)
			item := func(identity string) obj {
				return obj{"keyPackage": newKeyPackage(t, identity, now, 20*day).b64(), "cipherSuite": suite.String(), "expires": exp}
			}
			r := e.post(alice, "publishKeyPackages", obj{"keyPackages": []obj{
				item("did:plc:alice#a1"), item("did:plc:bob#b1"), item("did:plc:alice#a1"), {"keyPackage": "x"},
			}}).must(t, http.StatusOK)
			if r.body["succeeded"] != float64(2) || r.body["failed"] != float64(2) {
				t.Fatalf("batch: %s", r.raw)
			}
			errs := r.body["errors"].([]any)
			if errs[0].(map[string]any)["index"] != float64(1) || errs[1].(map[string]any)["index"] != float64(3) {
				t.Fatalf("batch errors: %s", r.raw)
			}
			e.publish(alice, newKeyPackage(t, "did:plc:alice#a1", now, day), "third").must(t, http.StatusOK)
			e.publish(alice, newKeyPackage(t, "did:plc:alice#a1", now, day), "fourth").isErr(t, http.StatusBadRequest, "TooManyKeyPackages")
			var many []obj
			for range 101 {
				many = append(many, obj{"keyPackage": "x", "cipherSuite": suite.String(), "expires": exp})
			}
			e.post(alice, "publishKeyPackages", obj{"keyPackages": many}).isErr(t, http.StatusBadRequest, "BatchTooLarge")
			e.post(alice, "publishKeyPackages", obj{"keyPackages": []obj{}}).isErr(t, http.StatusBadRequest, "InvalidRequest")
		})
	}
}

func TestGetKeyPackages(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		now := e.clock.Now()
		// alice has two devices with two packages each.
		for i, dev := range []who{{DID: alice.DID, DeviceID: "a1"}, {DID: alice.DID, DeviceID: "a2"}} {
			for j := range 2 {
				e.publish(dev, newKeyPackage(t, alice.DID+"#"+dev.DeviceID, now, 10*day), string(rune('a'+i*2+j))).must(t, http.StatusOK)
			}
		}
		seenRefs := map[string]bool{}
		for round := range 3 {
			r := e.get(bob, "getKeyPackages", url.Values{"dids": {alice.DID, carol.DID, alice.DID}}).must(t, http.StatusOK)
			kps := r.body["keyPackages"].([]any)
			want := 2
			if round == 2 {
				want = 0
			}
			if len(kps) != want {
				t.Fatalf("round %d: %d packages, want %d: %s", round, len(kps), want, r.raw)
			}
			devices := map[string]bool{}
			for _, k := range kps {
				k := k.(map[string]any)
				if k["did"] != alice.DID || k["cipherSuite"] != suite.String() || k["keyPackage"] == "" {
					t.Fatalf("keyPackageRef: %v", k)
				}
				ref := k["keyPackageHash"].(string)
				if seenRefs[ref] {
					t.Fatalf("package %s handed out twice", ref)
				}
				seenRefs[ref] = true
				data, err := base64.RawURLEncoding.DecodeString(k["keyPackage"].(string))
				if err != nil {
					t.Fatal(err)
				}
				kp, err := mlswire.ParseKeyPackage(data)
				if err != nil {
					t.Fatal(err)
				}
				id, _ := kp.Credential().BasicIdentity()
				if devices[string(id)] {
					t.Fatalf("two packages for device %s in one call", id)
				}
				devices[string(id)] = true
			}
			missing := r.body["missing"].([]any)
			if round < 2 && (len(missing) != 1 || missing[0] != carol.DID) {
				t.Fatalf("missing: %v", missing)
			}
			if round == 2 && len(missing) != 2 {
				t.Fatalf("missing after depletion: %v", missing)
			}
		}
		var tooMany url.Values = url.Values{}
		for i := range 101 {
			tooMany.Add("dids", "did:plc:x"+string(rune('a'+i%26))+string(rune('a'+i/26)))
		}
		e.get(bob, "getKeyPackages", tooMany).isErr(t, http.StatusBadRequest, "TooManyDids")
		e.get(bob, "getKeyPackages", url.Values{"dids": {"not-a-did"}}).isErr(t, http.StatusBadRequest, "InvalidDid")
		e.get(bob, "getKeyPackages", nil).isErr(t, http.StatusBadRequest, "InvalidRequest")
		e.get(bob, "getKeyPackages", url.Values{"dids": {alice.DID}, "cipherSuite": {"nope"}}).isErr(t, http.StatusBadRequest, "InvalidCipherSuite")

		// Stats and status for the owner.
		st := e.get(alice, "getKeyPackageStats", nil).must(t, http.StatusOK)
		if st.body["available"] != float64(0) || st.body["consumed"] != float64(4) || st.body["consumedLast24h"] != float64(4) ||
			st.body["needsReplenish"] != true || st.body["averageDailyConsumption"] != float64(57) {
			t.Fatalf("stats: %s", st.raw)
		}
		e.get(alice, "getKeyPackageStats", url.Values{"did": {bob.DID}}).isErr(t, http.StatusForbidden, "Unauthorized")
		e.get(alice, "getKeyPackageStats", url.Values{"did": {"nope"}}).isErr(t, http.StatusBadRequest, "InvalidDid")
		var refs []string
		cursor := ""
		for range 5 {
			q := url.Values{"limit": {"3"}}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			s := e.get(alice, "getKeyPackageStatus", q).must(t, http.StatusOK)
			if s.body["totalUploaded"] != float64(4) || s.body["consumed"] != float64(4) {
				t.Fatalf("status: %s", s.raw)
			}
			for _, p := range s.body["consumedPackages"].([]any) {
				p := p.(map[string]any)
				if p["consumedAt"] == nil {
					t.Fatalf("consumedPackageView: %v", p)
				}
				refs = append(refs, p["keyPackageHash"].(string))
			}
			cursor, _ = s.body["cursor"].(string)
			if cursor == "" {
				break
			}
		}
		if len(refs) != 4 {
			t.Fatalf("consumed history: %v", refs)
		}
		e.get(alice, "getKeyPackageStatus", url.Values{"limit": {"0"}}).isErr(t, http.StatusBadRequest, "InvalidRequest")
		e.get(alice, "getKeyPackageStatus", url.Values{"cursor": {"garbage!"}}).isErr(t, http.StatusBadRequest, "InvalidCursor")
	})
}

func TestSyncKeyPackages(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		now := e.clock.Now()
		a := newKeyPackage(t, "did:plc:alice#a1", now, 10*day)
		b := newKeyPackage(t, "did:plc:alice#a1", now, 10*day)
		e.publish(alice, a, "a").must(t, http.StatusOK)
		e.publish(alice, b, "b").must(t, http.StatusOK)
		r := e.post(alice, "syncKeyPackages", obj{"localHashes": []string{a.refHex()}, "deviceId": "a1"}).must(t, http.StatusOK)
		server := r.body["serverHashes"].([]any)
		if len(server) != 1 || server[0] != a.refHex() || r.body["deletedCount"] != float64(1) || r.body["orphanedCount"] != float64(1) ||
			r.body["remainingAvailable"] != float64(1) || r.body["deviceId"] != "a1" {
			t.Fatalf("syncKeyPackages: %s", r.raw)
		}
		again := e.post(alice, "syncKeyPackages", obj{"localHashes": []string{a.refHex()}, "deviceId": "a1"}).must(t, http.StatusOK)
		if again.body["deletedCount"] != float64(0) {
			t.Fatalf("sync retry: %s", again.raw)
		}
		e.post(alice, "syncKeyPackages", obj{"localHashes": []string{}}).isErr(t, http.StatusBadRequest, "InvalidRequest")
		e.post(alice, "syncKeyPackages", obj{"deviceId": "a1"}).isErr(t, http.StatusBadRequest, "InvalidRequest")
		e.post(alice, "syncKeyPackages", obj{"deviceId": "a1", "localHashes": make([]string, 201)}).isErr(t, http.StatusBadRequest, "InvalidRequest")
	})
}

func TestLastResortKeyPackage(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		now := e.clock.Now()
		normal := newKeyPackage(t, "did:plc:alice#a1", now, 10*day)
		last := newKeyPackage(t, "did:plc:alice#a1", now, 10*day, mlswire.Extension{Type: 0x000a})
		e.publish(alice, normal, "n").must(t, http.StatusOK)
		e.publish(alice, last, "l").must(t, http.StatusOK)
		// The normal package goes first, then the last-resort one, again
		// and again.
		for i, want := range []string{normal.refHex(), last.refHex(), last.refHex()} {
			r := e.get(bob, "getKeyPackages", url.Values{"dids": {alice.DID}}).must(t, http.StatusOK)
			kps := r.body["keyPackages"].([]any)
			if len(kps) != 1 || kps[0].(map[string]any)["keyPackageHash"] != want {
				t.Fatalf("claim %d: %s", i, r.raw)
			}
		}
	})
}
