package delivery_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/mlswire"
	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// cutStore applies a write and then, once armed, reports it as
// store.ErrOutcomeUnknown: what a client sees when the database's
// connection is lost after its COMMIT was applied.
type cutStore struct {
	store.Store
	armed atomic.Bool
}

func (c *cutStore) cut(err error) error {
	if err == nil && c.armed.CompareAndSwap(true, false) {
		return fmt.Errorf("commit: %w: unexpected EOF", store.ErrOutcomeUnknown)
	}
	return err
}

func (c *cutStore) Idempotent(ctx context.Context, key store.IdempotencyKey, hash []byte, fn func(context.Context, store.Writer) ([]byte, error)) ([]byte, bool, error) {
	resp, replayed, err := c.Store.Idempotent(ctx, key, hash, fn)
	return resp, replayed, c.cut(err)
}

func (c *cutStore) AppendMessage(ctx context.Context, m store.NewMessage) (store.Message, error) {
	out, err := c.Store.AppendMessage(ctx, m)
	return out, c.cut(err)
}

func (c *cutStore) AppendCommit(ctx context.Context, convoID string, nc store.NewCommit) (store.Change, error) {
	out, err := c.Store.AppendCommit(ctx, convoID, nc)
	return out, c.cut(err)
}

func (c *cutStore) PutKeyPackage(ctx context.Context, kp store.KeyPackage, maxPerDevice int) error {
	return c.cut(c.Store.PutKeyPackage(ctx, kp, maxPerDevice))
}

func (c *cutStore) RegisterDevice(ctx context.Context, d store.Device, maxDevices int) (store.Device, error) {
	out, err := c.Store.RegisterDevice(ctx, d, maxDevices)
	return out, c.cut(err)
}

func (c *cutStore) PutGroupInfo(ctx context.Context, convoID string, epoch int64, data []byte) error {
	return c.cut(c.Store.PutGroupInfo(ctx, convoID, epoch, data))
}

func (c *cutStore) ConfirmWelcome(ctx context.Context, convoID string, recipients []string) error {
	return c.cut(c.Store.ConfirmWelcome(ctx, convoID, recipients))
}

func (c *cutStore) DeleteDevice(ctx context.Context, ownerDID, deviceID string) (int, error) {
	n, err := c.Store.DeleteDevice(ctx, ownerDID, deviceID)
	return n, c.cut(err)
}

func (c *cutStore) SyncKeyPackages(ctx context.Context, ownerDID, deviceID string, keep []string) (store.KeyPackageSync, error) {
	out, err := c.Store.SyncKeyPackages(ctx, ownerDID, deviceID, keep)
	return out, c.cut(err)
}

// TestCutOffWritesResolveOnRetry: for every write method, a write that was
// applied but whose answer was lost with the connection is 503
// ServiceUnavailable with Retry-After and a message saying it may have
// been applied; repeating the same request then answers 200, and the
// write was applied exactly once (deleteDevice, which has no key, answers
// 404 DeviceNotFound: the device is gone either way, see docs/api.md).
func TestCutOffWritesResolveOnRetry(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			var cs *cutStore
			e := newEnv(t, func(t testing.TB, now func() time.Time) store.Store {
				cs = &cutStore{Store: b.open(t, now)}
				return cs
			})
			// retried posts body as id with the write cut off after it
			// applies, checks the 503, and returns the retry's answer.
			retried := func(id who, method string, body obj) resp {
				t.Helper()
				cs.armed.Store(true)
				r := e.post(id, method, body)
				if cs.armed.Load() {
					t.Fatalf("%s: the write never reached the store: %d %s", method, r.status, r.raw)
				}
				r.isErr(t, http.StatusServiceUnavailable, "ServiceUnavailable")
				if r.header.Get("Retry-After") == "" || !strings.Contains(errMsg(r), "may or may not") {
					t.Fatalf("%s cut off: Retry-After %q, message %q", method, r.header.Get("Retry-After"), errMsg(r))
				}
				return e.post(id, method, body).must(t, http.StatusOK)
			}
			epoch := func(g string) float64 {
				t.Helper()
				r := e.get(alice, "getEpoch", url.Values{"convoId": {g}}).must(t, http.StatusOK)
				return r.body["currentEpoch"].(float64)
			}

			// createConvo
			g := newGroup(t)
			retried(alice, "createConvo", obj{"groupId": g, "cipherSuite": suite.String(), "idempotencyKey": "create",
				"initialMembers": []string{bob.DID + "#" + bob.DeviceID}})
			if n := len(e.get(alice, "getConvos", nil).must(t, http.StatusOK).body["conversations"].([]any)); n != 1 {
				t.Fatalf("%d conversations after a retried createConvo, want 1", n)
			}

			// sendMessage, an application message
			sent := retried(alice, "sendMessage", obj{"convoId": g, "msgId": "01HZZZZZZZZZZZZZZZZZZZZZZA",
				"ciphertext": b64bytes(app(t, g, 0)), "epoch": 0, "paddedSize": 512})
			if sent.body["seq"] != float64(1) {
				t.Fatalf("retried sendMessage: %s, want seq 1", sent.raw)
			}

			// sendMessage, a commit: the retry finds it although the epoch
			// has moved on.
			c := retried(alice, "sendMessage", obj{"convoId": g, "msgId": "01HZZZZZZZZZZZZZZZZZZZZZZB",
				"ciphertext": b64bytes(framed(t, g, 0, mlswire.ContentTypeCommit, 512)), "epoch": 0, "paddedSize": 512})
			if c.body["seq"] != float64(2) || epoch(g) != 1 {
				t.Fatalf("retried commit: %s, epoch %v; want seq 2, epoch 1", c.raw, epoch(g))
			}

			// addMembers with its commit
			retried(alice, "addMembers", obj{"convoId": g, "didList": []string{carol.DID + "#" + carol.DeviceID},
				"idempotencyKey": "add-carol", "commit": b64(commit(t, g, 1))})
			if epoch(g) != 2 {
				t.Fatalf("epoch %v after a retried addMembers, want 2", epoch(g))
			}

			// removeMember with its commit
			retried(alice, "removeMember", obj{"convoId": g, "targetDid": carol.DID, "idempotencyKey": "rm-carol",
				"commit": b64(commit(t, g, 2))})
			if epoch(g) != 3 {
				t.Fatalf("epoch %v after a retried removeMember, want 3", epoch(g))
			}

			// leaveConvo, keyed by what it names
			retried(bob, "leaveConvo", obj{"convoId": g, "commit": b64(commit(t, g, 3))})
			if epoch(g) != 4 {
				t.Fatalf("epoch %v after a retried leaveConvo, want 4", epoch(g))
			}

			// updateGroupInfo
			retried(alice, "updateGroupInfo", obj{"convoId": g, "groupInfo": b64(groupInfo(t, g, 4)), "epoch": 4})

			// publishKeyPackage
			kp := newKeyPackage(t, eve.DID+"#"+eve.DeviceID, e.clock.Now(), 24*time.Hour)
			retried(eve, "publishKeyPackage", obj{"keyPackage": kp.b64(), "cipherSuite": suite.String(), "idempotencyKey": "kp"})
			stats := e.get(eve, "getKeyPackageStats", nil).must(t, http.StatusOK)
			if stats.body["available"] != float64(1) {
				t.Fatalf("key package stats after a retried publish: %s, want 1 available", stats.raw)
			}

			// publishKeyPackages: a cut-off item fails the batch, and the
			// retried batch stores each package once.
			exp := e.clock.Now().Add(10 * 24 * time.Hour).Format(time.RFC3339)
			var items []obj
			var refs []string
			for range 2 {
				k := newKeyPackage(t, eve.DID+"#"+eve.DeviceID, e.clock.Now(), 20*24*time.Hour)
				items = append(items, obj{"keyPackage": k.b64(), "cipherSuite": suite.String(), "expires": exp})
				refs = append(refs, k.refHex())
			}
			if r := retried(eve, "publishKeyPackages", obj{"keyPackages": items}); r.body["succeeded"] != float64(2) {
				t.Fatalf("retried publishKeyPackages: %s", r.raw)
			}
			if st := e.get(eve, "getKeyPackageStats", nil).must(t, http.StatusOK); st.body["available"] != float64(3) {
				t.Fatalf("key package stats after a retried batch: %s, want 3 available", st.raw)
			}

			// syncKeyPackages sets a state: the retry finds it set.
			r := retried(eve, "syncKeyPackages", obj{"localHashes": refs, "deviceId": eve.DeviceID})
			if r.body["remainingAvailable"] != float64(2) {
				t.Fatalf("retried syncKeyPackages: %s, want 2 remaining", r.raw)
			}

			// registerDevice
			uuid := "6f1c7a52-7d5e-4b8e-9a57-2f8d7a3c1e02"
			now := e.clock.Now()
			owner := who{DID: mallory.DID}
			retried(owner, "registerDevice", obj{"deviceName": "phone", "deviceUUID": uuid,
				"signaturePublicKey": b64bytes(randBytes(t, 32)),
				"keyPackages": []obj{{"keyPackage": newKeyPackage(t, mallory.DID+"#"+uuid, now, 20*24*time.Hour).b64(),
					"cipherSuite": suite.String(), "expires": now.Add(10 * 24 * time.Hour).Format(time.RFC3339)}}})
			devs := e.get(owner, "listDevices", nil).must(t, http.StatusOK)
			if list := devs.body["devices"].([]any); len(list) != 1 {
				t.Fatalf("devices after a retried registerDevice: %s, want 1", devs.raw)
			}
			if st := e.get(owner, "getKeyPackageStats", nil).must(t, http.StatusOK); st.body["available"] != float64(1) {
				t.Fatalf("key package stats after a retried registerDevice: %s, want 1 available", st.raw)
			}

			// deleteDevice has no key: its retry answers, as documented,
			// that the device is gone.
			cs.armed.Store(true)
			e.post(owner, "deleteDevice", obj{"deviceId": uuid}).isErr(t, http.StatusServiceUnavailable, "ServiceUnavailable")
			e.post(owner, "deleteDevice", obj{"deviceId": uuid}).isErr(t, http.StatusNotFound, "DeviceNotFound")
			if list := e.get(owner, "listDevices", nil).must(t, http.StatusOK).body["devices"].([]any); len(list) != 0 {
				t.Fatalf("%d devices after deleteDevice", len(list))
			}
		})
	}
}
