package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// purge runs batch in its own write transaction until it deletes fewer than
// the batch size, and returns the total.
func (s *Store) purge(ctx context.Context, what string, batch func(tx writeTx) (int64, error)) (int64, error) {
	var total int64
	for {
		var n int64
		err := s.write(ctx, func(tx writeTx) error {
			var err error
			n, err = batch(tx)
			return err
		})
		if err != nil {
			return total, fmt.Errorf("purge %s: %w", what, err)
		}
		total += n
		if n < int64(s.purgeBatch) {
			return total, nil
		}
	}
}

func affected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// PurgeMessages implements store.Store. Commit rows go with their message.
func (s *Store) PurgeMessages(ctx context.Context, olderThan time.Duration) (int64, error) {
	now := s.now()
	return s.purge(ctx, "messages", func(tx writeTx) (int64, error) {
		return affected(tx.ExecContext(ctx, `DELETE FROM messages WHERE rowid IN (
			SELECT rowid FROM messages WHERE received_bucket < ? OR (expires_at IS NOT NULL AND expires_at <= ?) LIMIT ?)`,
			ms(now.Add(-olderThan)), ms(now), s.purgeBatch))
	})
}

// PurgeEvents implements store.Store. Each batch deletes a prefix of the
// stream and advances the horizon in the same transaction, so the horizon
// is exact even if a purge stops half-way.
func (s *Store) PurgeEvents(ctx context.Context, olderThan time.Duration) (int64, error) {
	cutoff := ms(s.now().Add(-olderThan))
	return s.purge(ctx, "events", func(tx writeTx) (int64, error) {
		var through sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT MAX(cursor) FROM (
			SELECT cursor FROM events WHERE cursor <= (SELECT MAX(cursor) FROM events WHERE created_bucket < ?)
			ORDER BY cursor LIMIT ?)`, cutoff, s.purgeBatch).Scan(&through); err != nil {
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
	return s.purge(ctx, "welcomes", func(tx writeTx) (int64, error) {
		n, err := affected(tx.ExecContext(ctx, `DELETE FROM welcome_recipients WHERE rowid IN (
			SELECT rowid FROM welcome_recipients
			WHERE consumed_at < ? OR welcome_id IN (SELECT id FROM welcomes WHERE created_at < ?) LIMIT ?)`,
			ms(now.Add(-consumedFor)), ms(now.Add(-unconsumedFor)), s.purgeBatch))
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
	n, err := s.purge(ctx, "key packages", func(tx writeTx) (int64, error) {
		return affected(tx.ExecContext(ctx, `DELETE FROM key_packages WHERE rowid IN (
			SELECT rowid FROM key_packages WHERE expires_at <= ? OR consumed_at < ? LIMIT ?)`,
			ms(now), ms(now.Add(-consumedFor)), s.purgeBatch))
	})
	if err != nil || maxPerDevice <= 0 {
		return n, err
	}
	over, err := s.purge(ctx, "key packages over the device cap", func(tx writeTx) (int64, error) {
		return affected(tx.ExecContext(ctx, `DELETE FROM key_packages WHERE ref IN (
			SELECT ref FROM (
				SELECT ref, ROW_NUMBER() OVER (PARTITION BY owner_did, device_id ORDER BY created_at DESC, ref DESC) AS rn
				FROM key_packages WHERE consumed_at IS NULL AND last_resort = 0
			) WHERE rn > ? LIMIT ?)`, maxPerDevice, s.purgeBatch))
	})
	return n + over, err
}

// PurgeIdempotency implements store.Store.
func (s *Store) PurgeIdempotency(ctx context.Context, olderThan time.Duration) (int64, error) {
	cutoff := ms(s.now().Add(-olderThan))
	return s.purge(ctx, "idempotency records", func(tx writeTx) (int64, error) {
		return affected(tx.ExecContext(ctx, `DELETE FROM idempotency WHERE rowid IN (
			SELECT rowid FROM idempotency WHERE created_at < ? LIMIT ?)`, cutoff, s.purgeBatch))
	})
}
