package storetest

import (
	"slices"
	"strings"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

func (e *env) device(owner, id string) {
	e.t.Helper()
	_, err := e.s.RegisterDevice(e.ctx, store.Device{OwnerDID: owner, DeviceID: id, Name: id}, 10)
	must(e.t, err, "register device "+owner+"/"+id)
}

func targetNames(ts []store.PushToken) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.OwnerDID+"/"+t.DeviceID+"/"+t.Provider+"/"+string(t.Sealed))
	}
	return out
}

// testPushTokens: a token needs a registered device, replaces the
// previous one, is listed once per device for the conversations its
// device (or account, for a row without a device) belongs to, and goes
// with the device.
func testPushTokens(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("p1", "did:plc:alice", "did:plc:bob")
	e.newConvo("p2", "did:plc:alice", "did:plc:carol")
	e.device("did:plc:alice", "d1")
	e.device("did:plc:alice", "d2")
	e.device("did:plc:bob", "d1")
	e.device("did:plc:carol", "d1")
	e.device("did:plc:dave", "d1")

	if err := e.s.PutPushToken(e.ctx, store.PushToken{OwnerDID: "did:plc:alice", DeviceID: "nope", Provider: "apns", Sealed: []byte("x")}); !isErr(err, store.ErrNotFound) {
		t.Fatalf("token of an unregistered device: %v, want ErrNotFound", err)
	}
	put := func(owner, dev, provider, sealed string) {
		t.Helper()
		must(t, e.s.PutPushToken(e.ctx, store.PushToken{OwnerDID: owner, DeviceID: dev, Provider: provider, Sealed: []byte(sealed)}), "put token")
	}
	put("did:plc:alice", "d1", "apns", "old")
	put("did:plc:alice", "d1", "unifiedpush", "a1")
	put("did:plc:alice", "d2", "apns", "a2") // d2 has no member row: not woken
	put("did:plc:bob", "d1", "apns", "b1")
	put("did:plc:carol", "d1", "apns", "c1")
	put("did:plc:dave", "d1", "apns", "x1") // in no conversation

	got, err := e.s.PushTargets(e.ctx, []string{"p1", "p2"})
	must(t, err, "push targets")
	want := []string{"did:plc:alice/d1/unifiedpush/a1", "did:plc:bob/d1/apns/b1", "did:plc:carol/d1/apns/c1"}
	if !slices.Equal(targetNames(got), want) {
		t.Errorf("targets of p1,p2 = %v, want %v (each device once)", targetNames(got), want)
	}
	got, err = e.s.PushTargets(e.ctx, []string{"p1"})
	must(t, err, "push targets")
	if want := []string{"did:plc:alice/d1/unifiedpush/a1", "did:plc:bob/d1/apns/b1"}; !slices.Equal(targetNames(got), want) {
		t.Errorf("targets of p1 = %v, want %v", targetNames(got), want)
	}

	// A member who left is not woken.
	_, err = e.s.RemoveMembers(e.ctx, "p1", []string{"did:plc:bob#d1"}, store.Removed, nil)
	must(t, err, "remove bob")
	got, err = e.s.PushTargets(e.ctx, []string{"p1"})
	must(t, err, "push targets")
	if want := []string{"did:plc:alice/d1/unifiedpush/a1"}; !slices.Equal(targetNames(got), want) {
		t.Errorf("targets after bob left = %v, want %v", targetNames(got), want)
	}

	ok, err := e.s.DeletePushToken(e.ctx, "did:plc:carol", "d1")
	must(t, err, "delete token")
	if !ok {
		t.Error("delete an existing token reported none")
	}
	if ok, _ := e.s.DeletePushToken(e.ctx, "did:plc:carol", "d1"); ok {
		t.Error("second delete reported a token")
	}

	// Deleting the device deletes its token.
	_, err = e.s.DeleteDevice(e.ctx, "did:plc:alice", "d1")
	must(t, err, "delete device")
	got, err = e.s.PushTargets(e.ctx, []string{"p1", "p2"})
	must(t, err, "push targets")
	if len(got) != 0 {
		t.Errorf("targets after the device was deleted = %v, want none", targetNames(got))
	}
	e.device("did:plc:alice", "d1")
	if ok, _ := e.s.DeletePushToken(e.ctx, "did:plc:alice", "d1"); ok {
		t.Error("a re-registered device inherited its old token")
	}
}

// testPushTokenSchema: the push table keeps the device, the provider and
// the sealed token, nothing about conversations or senders.
func testPushTokenSchema(t *testing.T, b Backend) {
	e := b.env(t)
	insp, ok := e.s.(SchemaInspector)
	if !ok {
		t.Fatalf("%T does not implement storetest.SchemaInspector", e.s)
	}
	got, err := insp.TableColumns(e.ctx, "push_tokens")
	must(t, err, "introspect")
	slices.Sort(got)
	want := []string{"device_id", "owner_did", "provider", "registered_at", "sealed_token"}
	if !slices.Equal(got, want) {
		t.Errorf("push_tokens columns = %v, want exactly %v", got, want)
	}
	for _, c := range got {
		for _, bad := range []string{"sender", "convo", "ip", "name", "hint"} {
			if strings.Contains(c, bad) {
				t.Errorf("push_tokens has column %q", c)
			}
		}
	}
}
