package store

import (
	"context"
	"errors"
	"fmt"
)

// TxFunc runs fn on a Writer bound to one new transaction, committing when
// fn returns nil and rolling back otherwise.
type TxFunc func(ctx context.Context, fn func(Writer) error) error

// TxWriter implements Writer for a backend's Store by running each write in
// its own transaction. Backends embed it and define themselves only the
// writes they run differently (a single autocommitted statement, say).
type TxWriter struct {
	inTx TxFunc
}

// NewTxWriter returns a TxWriter running writes through inTx.
func NewTxWriter(inTx TxFunc) TxWriter { return TxWriter{inTx: inTx} }

// run runs one write returning a value in its own transaction.
func run[T any](ctx context.Context, t TxWriter, write func(Writer) (T, error)) (out T, err error) {
	err = t.inTx(ctx, func(w Writer) error {
		out, err = write(w)
		return err
	})
	return out, err
}

// CreateConvo implements Writer.
func (t TxWriter) CreateConvo(ctx context.Context, c NewConvo) (Convo, error) {
	return run(ctx, t, func(w Writer) (Convo, error) { return w.CreateConvo(ctx, c) })
}

// AppendMessage implements Writer.
func (t TxWriter) AppendMessage(ctx context.Context, m NewMessage) (Message, error) {
	return run(ctx, t, func(w Writer) (Message, error) { return w.AppendMessage(ctx, m) })
}

// AppendCommit implements Writer.
func (t TxWriter) AppendCommit(ctx context.Context, convoID string, c NewCommit) (Change, error) {
	return run(ctx, t, func(w Writer) (Change, error) { return w.AppendCommit(ctx, convoID, c) })
}

// AddMembers implements Writer.
func (t TxWriter) AddMembers(ctx context.Context, convoID string, members []NewMember, c *NewCommit) (Change, error) {
	return run(ctx, t, func(w Writer) (Change, error) { return w.AddMembers(ctx, convoID, members, c) })
}

// RemoveMembers implements Writer.
func (t TxWriter) RemoveMembers(ctx context.Context, convoID string, dids []string, how Departure, c *NewCommit) (Change, error) {
	return run(ctx, t, func(w Writer) (Change, error) { return w.RemoveMembers(ctx, convoID, dids, how, c) })
}

// SetRole implements Writer.
func (t TxWriter) SetRole(ctx context.Context, convoID, userDID string, role Role) error {
	return t.inTx(ctx, func(w Writer) error { return w.SetRole(ctx, convoID, userDID, role) })
}

// PutGroupInfo implements Writer.
func (t TxWriter) PutGroupInfo(ctx context.Context, convoID string, epoch int64, data []byte) error {
	return t.inTx(ctx, func(w Writer) error { return w.PutGroupInfo(ctx, convoID, epoch, data) })
}

// ConfirmWelcome implements Writer.
func (t TxWriter) ConfirmWelcome(ctx context.Context, convoID string, recipients []string) error {
	return t.inTx(ctx, func(w Writer) error { return w.ConfirmWelcome(ctx, convoID, recipients) })
}

// PutKeyPackage implements Writer.
func (t TxWriter) PutKeyPackage(ctx context.Context, kp KeyPackage, maxPerDevice int) error {
	return t.inTx(ctx, func(w Writer) error { return w.PutKeyPackage(ctx, kp, maxPerDevice) })
}

// ClaimKeyPackages implements Writer.
func (t TxWriter) ClaimKeyPackages(ctx context.Context, ownerDIDs []string, cipherSuite string) ([]KeyPackage, error) {
	return run(ctx, t, func(w Writer) ([]KeyPackage, error) { return w.ClaimKeyPackages(ctx, ownerDIDs, cipherSuite) })
}

// SyncKeyPackages implements Writer.
func (t TxWriter) SyncKeyPackages(ctx context.Context, ownerDID, deviceID string, keep []string) (KeyPackageSync, error) {
	return run(ctx, t, func(w Writer) (KeyPackageSync, error) { return w.SyncKeyPackages(ctx, ownerDID, deviceID, keep) })
}

// RegisterDevice implements Writer. A device that already exists writes
// nothing: the empty transaction commits, and ErrDeviceExists comes back
// with the existing device.
func (t TxWriter) RegisterDevice(ctx context.Context, d Device, maxDevices int) (out Device, err error) {
	var existing bool
	err = t.inTx(ctx, func(w Writer) error {
		out, err = w.RegisterDevice(ctx, d, maxDevices)
		if errors.Is(err, ErrDeviceExists) {
			existing = true
			return nil
		}
		return err
	})
	if err == nil && existing {
		err = fmt.Errorf("register device: %w", ErrDeviceExists)
	}
	return out, err
}

// DeleteDevice implements Writer.
func (t TxWriter) DeleteDevice(ctx context.Context, ownerDID, deviceID string) (int, error) {
	return run(ctx, t, func(w Writer) (int, error) { return w.DeleteDevice(ctx, ownerDID, deviceID) })
}

// TouchDevice implements Writer.
func (t TxWriter) TouchDevice(ctx context.Context, ownerDID, deviceID string) error {
	return t.inTx(ctx, func(w Writer) error { return w.TouchDevice(ctx, ownerDID, deviceID) })
}

var _ Writer = TxWriter{}
