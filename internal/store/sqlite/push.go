package sqlite

import (
	"context"
	"fmt"
	"strings"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

var _ store.PushTokens = (*Store)(nil)

// PutPushToken implements store.PushTokens. The insert selects the device
// row, so a device that is not registered inserts nothing.
func (s *Store) PutPushToken(ctx context.Context, t store.PushToken) error {
	var n int64
	err := s.write(ctx, func(tx writeTx) error {
		var err error
		n, err = affected(tx.ExecContext(ctx, `INSERT INTO push_tokens (owner_did, device_id, provider, sealed_token, registered_at)
			SELECT owner_did, device_id, ?, ?, ? FROM devices WHERE owner_did = ? AND device_id = ?
			ON CONFLICT (owner_did, device_id) DO UPDATE SET provider = excluded.provider,
				sealed_token = excluded.sealed_token, registered_at = excluded.registered_at`,
			t.Provider, t.Sealed, ms(store.Bucket(s.now())), t.OwnerDID, t.DeviceID))
		return err
	})
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
	var n int64
	err := s.write(ctx, func(tx writeTx) error {
		var err error
		n, err = affected(tx.ExecContext(ctx, `DELETE FROM push_tokens WHERE owner_did = ? AND device_id = ?`, ownerDID, deviceID))
		return err
	})
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
	args := make([]any, len(convoIDs))
	for i, id := range convoIDs {
		args[i] = id
	}
	rows, err := s.r.QueryContext(ctx, `SELECT DISTINCT p.owner_did, p.device_id, p.provider, p.sealed_token
		FROM members m JOIN push_tokens p ON p.owner_did = m.user_did AND (m.device_id = '' OR p.device_id = m.device_id)
		WHERE m.left_at IS NULL AND m.convo_id IN (`+strings.TrimSuffix(strings.Repeat("?,", len(convoIDs)), ",")+`)
		ORDER BY p.owner_did, p.device_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("push targets: %w", err)
	}
	defer rows.Close()
	var out []store.PushToken
	for rows.Next() {
		var t store.PushToken
		if err := rows.Scan(&t.OwnerDID, &t.DeviceID, &t.Provider, &t.Sealed); err != nil {
			return nil, fmt.Errorf("push targets: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("push targets: %w", err)
	}
	return out, nil
}
