package observe

import (
	"context"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// writer measures the store's own writes.
type writer struct {
	w store.Writer
	o *observer
}

// CreateConvo implements store.Writer.
func (w writer) CreateConvo(ctx context.Context, c store.NewConvo) (store.Convo, error) {
	return call(ctx, w.o, "create_convo", func(ctx context.Context) (store.Convo, error) { return w.w.CreateConvo(ctx, c) })
}

// AppendMessage implements store.Writer.
func (w writer) AppendMessage(ctx context.Context, m store.NewMessage) (store.Message, error) {
	return call(ctx, w.o, "append_message", func(ctx context.Context) (store.Message, error) { return w.w.AppendMessage(ctx, m) })
}

// AppendCommit implements store.Writer.
func (w writer) AppendCommit(ctx context.Context, convoID string, c store.NewCommit) (store.Change, error) {
	return call(ctx, w.o, "append_commit", func(ctx context.Context) (store.Change, error) { return w.w.AppendCommit(ctx, convoID, c) })
}

// AddMembers implements store.Writer.
func (w writer) AddMembers(ctx context.Context, convoID string, members []store.NewMember, c *store.NewCommit) (store.Change, error) {
	return call(ctx, w.o, "add_members", func(ctx context.Context) (store.Change, error) { return w.w.AddMembers(ctx, convoID, members, c) })
}

// RemoveMembers implements store.Writer.
func (w writer) RemoveMembers(ctx context.Context, convoID string, dids []string, how store.Departure, c *store.NewCommit) (store.Change, error) {
	return call(ctx, w.o, "remove_members", func(ctx context.Context) (store.Change, error) { return w.w.RemoveMembers(ctx, convoID, dids, how, c) })
}

// SetRole implements store.Writer.
func (w writer) SetRole(ctx context.Context, convoID, userDID string, role store.Role) error {
	return exec(ctx, w.o, "set_role", func(ctx context.Context) error { return w.w.SetRole(ctx, convoID, userDID, role) })
}

// PutGroupInfo implements store.Writer.
func (w writer) PutGroupInfo(ctx context.Context, convoID string, epoch int64, data []byte) error {
	return exec(ctx, w.o, "put_group_info", func(ctx context.Context) error { return w.w.PutGroupInfo(ctx, convoID, epoch, data) })
}

// ConfirmWelcome implements store.Writer.
func (w writer) ConfirmWelcome(ctx context.Context, convoID string, recipients []string) error {
	return exec(ctx, w.o, "confirm_welcome", func(ctx context.Context) error { return w.w.ConfirmWelcome(ctx, convoID, recipients) })
}

// PutKeyPackage implements store.Writer.
func (w writer) PutKeyPackage(ctx context.Context, kp store.KeyPackage, maxPerDevice int) error {
	return exec(ctx, w.o, "put_key_package", func(ctx context.Context) error { return w.w.PutKeyPackage(ctx, kp, maxPerDevice) })
}

// ClaimKeyPackages implements store.Writer.
func (w writer) ClaimKeyPackages(ctx context.Context, ownerDIDs []string, cipherSuite string) ([]store.KeyPackage, error) {
	return call(ctx, w.o, "claim_key_packages", func(ctx context.Context) ([]store.KeyPackage, error) {
		return w.w.ClaimKeyPackages(ctx, ownerDIDs, cipherSuite)
	})
}

// SyncKeyPackages implements store.Writer.
func (w writer) SyncKeyPackages(ctx context.Context, ownerDID, deviceID string, keep []string) (store.KeyPackageSync, error) {
	return call(ctx, w.o, "sync_key_packages", func(ctx context.Context) (store.KeyPackageSync, error) {
		return w.w.SyncKeyPackages(ctx, ownerDID, deviceID, keep)
	})
}

// RegisterDevice implements store.Writer.
func (w writer) RegisterDevice(ctx context.Context, d store.Device, maxDevices int) (store.Device, error) {
	return call(ctx, w.o, "register_device", func(ctx context.Context) (store.Device, error) { return w.w.RegisterDevice(ctx, d, maxDevices) })
}

// DeleteDevice implements store.Writer.
func (w writer) DeleteDevice(ctx context.Context, ownerDID, deviceID string) (int, error) {
	return call(ctx, w.o, "delete_device", func(ctx context.Context) (int, error) { return w.w.DeleteDevice(ctx, ownerDID, deviceID) })
}

// TouchDevice implements store.Writer.
func (w writer) TouchDevice(ctx context.Context, ownerDID, deviceID string) error {
	return exec(ctx, w.o, "touch_device", func(ctx context.Context) error { return w.w.TouchDevice(ctx, ownerDID, deviceID) })
}

var _ store.Writer = writer{}
