package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

func (s *Store) purge(ctx context.Context, what string, fn func(tx *sql.Tx) (int64, error)) (int64, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		n, err = fn(tx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("purge %s: %w", what, err)
	}
	return n, nil
}

func affected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// PurgeMessages implements store.Store.
func (s *Store) PurgeMessages(ctx context.Context, olderThan time.Duration) (int64, error) {
	now := s.now()
	return s.purge(ctx, "messages", func(tx *sql.Tx) (int64, error) {
		return affected(tx.ExecContext(ctx, `DELETE FROM messages
			WHERE received_bucket < ? OR (expires_at IS NOT NULL AND expires_at <= ?)`, ms(now.Add(-olderThan)), ms(now)))
	})
}

// PurgeEvents implements store.Store. It deletes a prefix of the stream (up
// to the newest cursor older than the cutoff) so the horizon stays exact.
func (s *Store) PurgeEvents(ctx context.Context, olderThan time.Duration) (int64, error) {
	cutoff := ms(s.now().Add(-olderThan))
	return s.purge(ctx, "events", func(tx *sql.Tx) (int64, error) {
		var through sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT MAX(cursor) FROM events WHERE created_bucket < ?`, cutoff).Scan(&through); err != nil {
			return 0, err
		}
		if !through.Valid {
			return 0, nil
		}
		n, err := affected(tx.ExecContext(ctx, `DELETE FROM events WHERE cursor <= ?`, through.Int64))
		if err != nil {
			return 0, err
		}
		_, err = tx.ExecContext(ctx, `UPDATE event_horizon SET purged_through = MAX(purged_through, ?) WHERE id = 1`, through.Int64)
		return n, err
	})
}

// PurgeWelcomes implements store.Store. It counts recipient deliveries
// deleted; Welcome bodies go when no recipient is left.
func (s *Store) PurgeWelcomes(ctx context.Context, consumedFor, unconsumedFor time.Duration) (int64, error) {
	now := s.now()
	return s.purge(ctx, "welcomes", func(tx *sql.Tx) (int64, error) {
		n, err := affected(tx.ExecContext(ctx, `DELETE FROM welcome_recipients
			WHERE consumed_at < ? OR welcome_id IN (SELECT id FROM welcomes WHERE created_at < ?)`,
			ms(now.Add(-consumedFor)), ms(now.Add(-unconsumedFor))))
		if err != nil {
			return 0, err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM welcomes
			WHERE NOT EXISTS (SELECT 1 FROM welcome_recipients r WHERE r.welcome_id = welcomes.id)`)
		return n, err
	})
}

// PurgeKeyPackages implements store.Store.
func (s *Store) PurgeKeyPackages(ctx context.Context, consumedFor time.Duration, maxPerDevice int) (int64, error) {
	now := s.now()
	return s.purge(ctx, "key packages", func(tx *sql.Tx) (int64, error) {
		n, err := affected(tx.ExecContext(ctx, `DELETE FROM key_packages WHERE expires_at <= ? OR consumed_at < ?`,
			ms(now), ms(now.Add(-consumedFor))))
		if err != nil || maxPerDevice <= 0 {
			return n, err
		}
		over, err := affected(tx.ExecContext(ctx, `DELETE FROM key_packages WHERE ref IN (
			SELECT ref FROM (
				SELECT ref, ROW_NUMBER() OVER (PARTITION BY owner_did, device_id ORDER BY created_at DESC, ref DESC) AS rn
				FROM key_packages WHERE consumed_at IS NULL AND last_resort = 0
			) WHERE rn > ?)`, maxPerDevice))
		return n + over, err
	})
}

// PurgeIdempotency implements store.Store.
func (s *Store) PurgeIdempotency(ctx context.Context, olderThan time.Duration) (int64, error) {
	cutoff := ms(s.now().Add(-olderThan))
	return s.purge(ctx, "idempotency records", func(tx *sql.Tx) (int64, error) {
		return affected(tx.ExecContext(ctx, `DELETE FROM idempotency WHERE created_at < ?`, cutoff))
	})
}
