package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func affected(tag pgconn.CommandTag, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// purge runs batch in its own transaction until it deletes fewer than
// the batch size, and returns the total.
func (s *Store) purge(ctx context.Context, what string, batch func(w *writer) (int64, error)) (int64, error) {
	var total int64
	for {
		var n int64
		err := s.inTx(ctx, func(w *writer) error {
			var err error
			n, err = batch(w)
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

// PurgeMessages implements store.Store. Commit rows go with their message.
func (s *Store) PurgeMessages(ctx context.Context, olderThan time.Duration) (int64, error) {
	now := s.now()
	return s.purge(ctx, "messages", func(w *writer) (int64, error) {
		return affected(w.q.Exec(ctx, `DELETE FROM messages WHERE ctid = ANY (ARRAY(
			SELECT ctid FROM messages WHERE received_bucket < $1 OR (expires_at IS NOT NULL AND expires_at <= $2) LIMIT $3))`,
			now.Add(-olderThan), now, s.purgeBatch))
	})
}

// PurgeEvents implements store.Store. Each batch deletes a prefix of the
// stream and advances the horizon in the same transaction, so the horizon
// is exact even if a purge stops half-way.
func (s *Store) PurgeEvents(ctx context.Context, olderThan time.Duration) (int64, error) {
	cutoff := s.now().Add(-olderThan)
	return s.purge(ctx, "events", func(w *writer) (int64, error) {
		var through *int64
		if err := w.q.QueryRow(ctx, `SELECT MAX(cursor) FROM (
			SELECT cursor FROM events WHERE cursor <= (SELECT MAX(cursor) FROM events WHERE created_bucket < $1)
			ORDER BY cursor LIMIT $2) b`, cutoff, s.purgeBatch).Scan(&through); err != nil {
			return 0, err
		}
		if through == nil {
			return 0, nil
		}
		n, err := affected(w.q.Exec(ctx, `DELETE FROM events WHERE cursor <= $1`, *through))
		if err != nil {
			return 0, err
		}
		_, err = w.q.Exec(ctx, `UPDATE event_horizon SET purged_through = GREATEST(purged_through, $1) WHERE id = 1`, *through)
		return n, err
	})
}

// PurgeWelcomes implements store.Store. It counts recipient deliveries
// deleted; Welcome bodies go when no recipient is left.
func (s *Store) PurgeWelcomes(ctx context.Context, consumedFor, unconsumedFor time.Duration) (int64, error) {
	now := s.now()
	return s.purge(ctx, "welcomes", func(w *writer) (int64, error) {
		n, err := affected(w.q.Exec(ctx, `DELETE FROM welcome_recipients WHERE ctid = ANY (ARRAY(
			SELECT ctid FROM welcome_recipients
			WHERE consumed_at < $1 OR welcome_id IN (SELECT id FROM welcomes WHERE created_at < $2) LIMIT $3))`,
			now.Add(-consumedFor), now.Add(-unconsumedFor), s.purgeBatch))
		if err != nil {
			return 0, err
		}
		_, err = w.q.Exec(ctx, `DELETE FROM welcomes w
			WHERE NOT EXISTS (SELECT 1 FROM welcome_recipients r WHERE r.welcome_id = w.id)`)
		return n, err
	})
}

// PurgeKeyPackages implements store.Store.
func (s *Store) PurgeKeyPackages(ctx context.Context, consumedFor time.Duration, maxPerDevice int) (int64, error) {
	now := s.now()
	n, err := s.purge(ctx, "key packages", func(w *writer) (int64, error) {
		return affected(w.q.Exec(ctx, `DELETE FROM key_packages WHERE ctid = ANY (ARRAY(
			SELECT ctid FROM key_packages WHERE expires_at <= $1 OR consumed_at < $2 LIMIT $3))`,
			now, now.Add(-consumedFor), s.purgeBatch))
	})
	if err != nil || maxPerDevice <= 0 {
		return n, err
	}
	over, err := s.purge(ctx, "key packages over the device cap", func(w *writer) (int64, error) {
		return affected(w.q.Exec(ctx, `DELETE FROM key_packages WHERE ref IN (
			SELECT ref FROM (
				SELECT ref, ROW_NUMBER() OVER (PARTITION BY owner_did, device_id ORDER BY created_at DESC, ref DESC) AS rn
				FROM key_packages WHERE consumed_at IS NULL AND NOT last_resort
			) ranked WHERE rn > $1 LIMIT $2)`, maxPerDevice, s.purgeBatch))
	})
	return n + over, err
}

// PurgeIdempotency implements store.Store.
func (s *Store) PurgeIdempotency(ctx context.Context, olderThan time.Duration) (int64, error) {
	cutoff := s.now().Add(-olderThan)
	return s.purge(ctx, "idempotency records", func(w *writer) (int64, error) {
		return affected(w.q.Exec(ctx, `DELETE FROM idempotency WHERE ctid = ANY (ARRAY(
			SELECT ctid FROM idempotency WHERE created_at < $1 LIMIT $2))`, cutoff, s.purgeBatch))
	})
}
