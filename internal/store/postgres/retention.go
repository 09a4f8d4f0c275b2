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

func (s *Store) purge(ctx context.Context, what string, fn func(w *writer) (int64, error)) (int64, error) {
	var n int64
	err := s.inTx(ctx, func(w *writer) error {
		var err error
		n, err = fn(w)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("purge %s: %w", what, err)
	}
	return n, nil
}

// PurgeMessages implements store.Store.
func (s *Store) PurgeMessages(ctx context.Context, olderThan time.Duration) (int64, error) {
	now := s.now()
	return s.purge(ctx, "messages", func(w *writer) (int64, error) {
		return affected(w.q.Exec(ctx, `DELETE FROM messages
			WHERE received_bucket < $1 OR (expires_at IS NOT NULL AND expires_at <= $2)`, now.Add(-olderThan), now))
	})
}

// PurgeEvents implements store.Store. It deletes a prefix of the stream (up
// to the newest cursor older than the cutoff) so the horizon stays exact.
func (s *Store) PurgeEvents(ctx context.Context, olderThan time.Duration) (int64, error) {
	cutoff := s.now().Add(-olderThan)
	return s.purge(ctx, "events", func(w *writer) (int64, error) {
		var through *int64
		if err := w.q.QueryRow(ctx, `SELECT MAX(cursor) FROM events WHERE created_bucket < $1`, cutoff).Scan(&through); err != nil {
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
		n, err := affected(w.q.Exec(ctx, `DELETE FROM welcome_recipients
			WHERE consumed_at < $1 OR welcome_id IN (SELECT id FROM welcomes WHERE created_at < $2)`,
			now.Add(-consumedFor), now.Add(-unconsumedFor)))
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
	return s.purge(ctx, "key packages", func(w *writer) (int64, error) {
		n, err := affected(w.q.Exec(ctx, `DELETE FROM key_packages WHERE expires_at <= $1 OR consumed_at < $2`,
			now, now.Add(-consumedFor)))
		if err != nil || maxPerDevice <= 0 {
			return n, err
		}
		over, err := affected(w.q.Exec(ctx, `DELETE FROM key_packages WHERE ref IN (
			SELECT ref FROM (
				SELECT ref, ROW_NUMBER() OVER (PARTITION BY owner_did, device_id ORDER BY created_at DESC, ref DESC) AS rn
				FROM key_packages WHERE consumed_at IS NULL AND NOT last_resort
			) ranked WHERE rn > $1)`, maxPerDevice))
		return n + over, err
	})
}

// PurgeIdempotency implements store.Store.
func (s *Store) PurgeIdempotency(ctx context.Context, olderThan time.Duration) (int64, error) {
	cutoff := s.now().Add(-olderThan)
	return s.purge(ctx, "idempotency records", func(w *writer) (int64, error) {
		return affected(w.q.Exec(ctx, `DELETE FROM idempotency WHERE created_at < $1`, cutoff))
	})
}
