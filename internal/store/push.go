package store

import "context"

// PushToken is a device's push registration. Token is sealed by the
// caller (internal/push) before it reaches the store and opened only by
// the push sender; the store never sees it in the clear.
type PushToken struct {
	OwnerDID string
	DeviceID string
	// Provider names the push service ("apns", "unifiedpush").
	Provider string
	// Sealed is the token, sealed under the push key.
	Sealed []byte
}

// PushTokens keeps the push tokens of registered devices. A token lives
// as long as its device: deleting the device deletes it.
type PushTokens interface {
	// PutPushToken registers or replaces the device's token. ErrNotFound
	// when the device is not registered.
	PutPushToken(ctx context.Context, t PushToken) error
	// DeletePushToken removes the device's token, reporting whether there
	// was one.
	DeletePushToken(ctx context.Context, ownerDID, deviceID string) (bool, error)
	// PushTargets lists the tokens of the devices that belong to the
	// conversations' current members: a member row of a device names that
	// device, a row without a device every device of its account. Each
	// device appears once, however many of the conversations it is in.
	PushTargets(ctx context.Context, convoIDs []string) ([]PushToken, error)
}
