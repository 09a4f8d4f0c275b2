package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

var _ store.PushTokens = (*Store)(nil)

// PutPushToken implements store.PushTokens. The insert selects the device
// row, so a device that is not registered inserts nothing.
func (s *Store) PutPushToken(ctx context.Context, t store.PushToken) error {
	n, err := affected(s.pool.Exec(ctx, `INSERT INTO push_tokens (owner_did, device_id, provider, sealed_token, registered_at)
		SELECT owner_did, device_id, $1, $2, $3 FROM devices WHERE owner_did = $4 AND device_id = $5
		ON CONFLICT (owner_did, device_id) DO UPDATE SET provider = excluded.provider,
			sealed_token = excluded.sealed_token, registered_at = excluded.registered_at`,
		t.Provider, t.Sealed, store.Bucket(s.now()), t.OwnerDID, t.DeviceID))
	if err != nil {
		return fmt.Errorf("put push token: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("put push token: device: %w", store.ErrNotFound)
	}
	return nil
}

// DeletePushToken implements store.PushTokens.
func (s *Store) DeletePushToken(ctx context.Context, ownerDID, deviceID string) (bool, error) {
	n, err := affected(s.pool.Exec(ctx, `DELETE FROM push_tokens WHERE owner_did = $1 AND device_id = $2`, ownerDID, deviceID))
	if err != nil {
		return false, fmt.Errorf("delete push token: %w", err)
	}
	return n == 1, nil
}

// PushTargets implements store.PushTokens.
func (s *Store) PushTargets(ctx context.Context, convoIDs []string) ([]store.PushToken, error) {
	if len(convoIDs) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT p.owner_did, p.device_id, p.provider, p.sealed_token
		FROM members m JOIN push_tokens p ON p.owner_did = m.user_did AND (m.device_id = '' OR p.device_id = m.device_id)
		WHERE m.left_at IS NULL AND m.convo_id = ANY($1)
		ORDER BY p.owner_did, p.device_id`, convoIDs)
	if err != nil {
		return nil, fmt.Errorf("push targets: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.PushToken, error) {
		var t store.PushToken
		err := r.Scan(&t.OwnerDID, &t.DeviceID, &t.Provider, &t.Sealed)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("push targets: %w", err)
	}
	return out, nil
}
