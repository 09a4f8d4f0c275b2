package push

import (
	"context"
	"errors"
)

// ErrUnregistered means the provider says the token is no longer valid
// (the app was uninstalled, the subscription expired): the sender deletes
// it.
var ErrUnregistered = errors.New("push: token no longer registered")

// Provider sends one wake-up to one device token. Implementations are safe
// for concurrent use and bound each call with their own timeout as well as
// ctx.
type Provider interface {
	// Send wakes the device. ErrUnregistered when the provider says the
	// token is gone; any other error is a failure of this attempt.
	Send(ctx context.Context, token []byte) error
}

// ProviderFunc adapts a function to Provider.
type ProviderFunc func(ctx context.Context, token []byte) error

// Send implements Provider.
func (f ProviderFunc) Send(ctx context.Context, token []byte) error { return f(ctx, token) }

// wakePayload is the whole of what a UnifiedPush distributor and the
// device's push service carry: a constant, the same for every device and
// every conversation. The client learns what changed by syncing over its
// authenticated connection.
var wakePayload = []byte(`{"wake":1}`)
