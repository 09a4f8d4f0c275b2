package observe

import (
	"context"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// QueueDeviceAddition implements store.PendingDevices.
func (s *Store) QueueDeviceAddition(ctx context.Context, p store.NewPendingAddition) (store.PendingAddition, error) {
	return call(ctx, s.o, "queue_device_addition", func(ctx context.Context) (store.PendingAddition, error) {
		return s.b.QueueDeviceAddition(ctx, p)
	})
}

// PendingAdditions implements store.PendingDevices.
func (s *Store) PendingAdditions(ctx context.Context, viewerDID string, convoIDs []string, limit int) ([]store.PendingAddition, error) {
	return call(ctx, s.o, "pending_additions", func(ctx context.Context) ([]store.PendingAddition, error) {
		return s.b.PendingAdditions(ctx, viewerDID, convoIDs, limit)
	})
}

// PendingAddition implements store.PendingDevices.
func (s *Store) PendingAddition(ctx context.Context, id string) (store.PendingAddition, error) {
	return call(ctx, s.o, "pending_addition", func(ctx context.Context) (store.PendingAddition, error) {
		return s.b.PendingAddition(ctx, id)
	})
}

// ClaimPendingAddition implements store.PendingDevices.
func (s *Store) ClaimPendingAddition(ctx context.Context, id, claimerDID string, ttl time.Duration) (store.ClaimedAddition, error) {
	return call(ctx, s.o, "claim_pending_addition", func(ctx context.Context) (store.ClaimedAddition, error) {
		return s.b.ClaimPendingAddition(ctx, id, claimerDID, ttl)
	})
}

// CompletePendingAddition implements store.PendingDevices.
func (s *Store) CompletePendingAddition(ctx context.Context, id, claimerDID string) (store.PendingAddition, error) {
	return call(ctx, s.o, "complete_pending_addition", func(ctx context.Context) (store.PendingAddition, error) {
		return s.b.CompletePendingAddition(ctx, id, claimerDID)
	})
}

// MarkNeedsRejoin implements store.Rejoins.
func (s *Store) MarkNeedsRejoin(ctx context.Context, queue *store.NewPendingAddition, convoID, memberDID string) (store.PendingAddition, error) {
	return call(ctx, s.o, "mark_needs_rejoin", func(ctx context.Context) (store.PendingAddition, error) {
		return s.b.MarkNeedsRejoin(ctx, queue, convoID, memberDID)
	})
}

// NeedsRejoin implements store.Rejoins.
func (s *Store) NeedsRejoin(ctx context.Context, userDID, memberDID string) ([]store.RejoinState, error) {
	return call(ctx, s.o, "needs_rejoin", func(ctx context.Context) ([]store.RejoinState, error) {
		return s.b.NeedsRejoin(ctx, userDID, memberDID)
	})
}

// ReserveWelcomeKey implements store.WelcomeKeys.
func (s *Store) ReserveWelcomeKey(ctx context.Context, ownerDID, ref string, digest []byte, ttl time.Duration) (time.Time, error) {
	return call(ctx, s.o, "reserve_welcome_key", func(ctx context.Context) (time.Time, error) {
		return s.b.ReserveWelcomeKey(ctx, ownerDID, ref, digest, ttl)
	})
}

// UseWelcomeKey implements store.WelcomeKeys.
func (s *Store) UseWelcomeKey(ctx context.Context, ownerDID, ref string) error {
	return exec(ctx, s.o, "use_welcome_key", func(ctx context.Context) error { return s.b.UseWelcomeKey(ctx, ownerDID, ref) })
}

// PutPushToken implements store.PushTokens.
func (s *Store) PutPushToken(ctx context.Context, t store.PushToken) error {
	return exec(ctx, s.o, "put_push_token", func(ctx context.Context) error { return s.b.PutPushToken(ctx, t) })
}

// DeletePushToken implements store.PushTokens.
func (s *Store) DeletePushToken(ctx context.Context, ownerDID, deviceID string) (bool, error) {
	return call(ctx, s.o, "delete_push_token", func(ctx context.Context) (bool, error) {
		return s.b.DeletePushToken(ctx, ownerDID, deviceID)
	})
}

// PushTargets implements store.PushTokens.
func (s *Store) PushTargets(ctx context.Context, convoIDs []string) ([]store.PushToken, error) {
	return call(ctx, s.o, "push_targets", func(ctx context.Context) ([]store.PushToken, error) {
		return s.b.PushTargets(ctx, convoIDs)
	})
}
