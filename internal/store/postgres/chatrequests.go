package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

var (
	_ store.ChatRequests = (*Store)(nil)
	_ store.ChatRequests = (*writer)(nil)
)

const chatRequestColumns = `id, sender_did, recipient_did, status, group_id, sealed_preview, message_count,
	created_at, expires_at, closed_at`

// scanChatRequest reads a row; a pending request past expiry at now reads
// as expired.
func scanChatRequest(sc interface{ Scan(...any) error }, now time.Time) (store.ChatRequest, error) {
	var r store.ChatRequest
	var closed *time.Time
	if err := sc.Scan(&r.ID, &r.SenderDID, &r.RecipientDID, &r.Status, &r.GroupID, &r.SealedPreview, &r.MessageCount,
		&r.CreatedAt, &r.ExpiresAt, &closed); err != nil {
		return store.ChatRequest{}, err
	}
	r.CreatedAt, r.ExpiresAt, r.ClosedAt = r.CreatedAt.UTC(), r.ExpiresAt.UTC(), fromNull(closed)
	if r.Status == store.ChatRequestPending && !r.ExpiresAt.After(now) {
		r.Status = store.ChatRequestExpired
	}
	return r, nil
}

// ids collects a query's single text column.
func ids(rows pgx.Rows, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// CreateChatRequest implements store.ChatRequests.
func (s *Store) CreateChatRequest(ctx context.Context, r store.ChatRequest, held []store.HeldMessage, blockHash []byte) (store.ChatRequest, error) {
	return inTxValue(ctx, s, func(w *writer) (store.ChatRequest, error) { return w.CreateChatRequest(ctx, r, held, blockHash) })
}

// CreateChatRequest implements store.ChatRequests. The insert skips any
// conflict, so a concurrent duplicate waits for the first and then finds
// it, without aborting the transaction.
func (w *writer) CreateChatRequest(ctx context.Context, r store.ChatRequest, held []store.HeldMessage, blockHash []byte) (store.ChatRequest, error) {
	now := w.now().UTC()
	var blocked bool
	if err := w.q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM chat_request_blocks WHERE block_hash = $1)`, blockHash).Scan(&blocked); err != nil {
		return store.ChatRequest{}, fmt.Errorf("create chat request: read blocks: %w", err)
	}
	if blocked {
		return store.ChatRequest{}, fmt.Errorf("create chat request: %w", store.ErrChatBlocked)
	}
	stale, err := ids(w.q.Query(ctx, `SELECT id FROM chat_requests WHERE sender_did = $1 AND recipient_did = $2 AND group_id = $3
		AND status = 'pending' AND expires_at <= $4 FOR UPDATE`, r.SenderDID, r.RecipientDID, r.GroupID, now))
	if err != nil {
		return store.ChatRequest{}, fmt.Errorf("create chat request: %w", err)
	}
	for _, id := range stale {
		if err := w.closeChatRequest(ctx, id, store.ChatRequestExpired); err != nil {
			return store.ChatRequest{}, fmt.Errorf("create chat request: %w", err)
		}
	}
	r.Status, r.CreatedAt, r.ClosedAt, r.MessageCount = store.ChatRequestPending, w.bucket(), time.Time{}, len(held)
	r.ExpiresAt = r.ExpiresAt.UTC()
	tag, err := w.q.Exec(ctx, `INSERT INTO chat_requests (`+chatRequestColumns+`) VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8, NULL)
		ON CONFLICT DO NOTHING`,
		r.ID, r.SenderDID, r.RecipientDID, r.GroupID, r.SealedPreview, r.MessageCount, r.CreatedAt, r.ExpiresAt)
	if err != nil {
		return store.ChatRequest{}, fmt.Errorf("create chat request: %w", err)
	}
	if tag.RowsAffected() == 0 {
		var taken bool
		if err := w.q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM chat_requests WHERE id = $1)`, r.ID).Scan(&taken); err != nil {
			return store.ChatRequest{}, fmt.Errorf("create chat request: %w", err)
		}
		if taken {
			return store.ChatRequest{}, fmt.Errorf("create chat request: %w", store.ErrConflict)
		}
		return store.ChatRequest{}, fmt.Errorf("create chat request: %w", store.ErrDuplicateRequest)
	}
	for i, m := range held {
		if _, err := w.q.Exec(ctx, `INSERT INTO chat_request_messages (request_id, seq, ciphertext, padded_size, eph_pub_key)
			VALUES ($1, $2, $3, $4, $5)`, r.ID, i+1, m.Ciphertext, m.PaddedSize, m.EphPubKey); err != nil {
			return store.ChatRequest{}, fmt.Errorf("create chat request: hold message: %w", err)
		}
	}
	return r, nil
}

// ChatRequest implements store.ChatRequests.
func (s *Store) ChatRequest(ctx context.Context, id string) (store.ChatRequest, error) {
	r, err := s.reader().ChatRequest(ctx, id)
	return r, classify(err)
}

// ChatRequest implements store.ChatRequests.
func (w *writer) ChatRequest(ctx context.Context, id string) (store.ChatRequest, error) {
	r, err := scanChatRequest(w.q.QueryRow(ctx, `SELECT `+chatRequestColumns+` FROM chat_requests WHERE id = $1`, id), w.now())
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ChatRequest{}, fmt.Errorf("read chat request: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.ChatRequest{}, fmt.Errorf("read chat request: %w", err)
	}
	return r, nil
}

// ChatRequestsFor implements store.ChatRequests.
func (s *Store) ChatRequestsFor(ctx context.Context, recipientDID, status, before string, limit int) ([]store.ChatRequest, error) {
	out, err := s.reader().ChatRequestsFor(ctx, recipientDID, status, before, limit)
	return out, classify(err)
}

// ChatRequestsFor implements store.ChatRequests.
func (w *writer) ChatRequestsFor(ctx context.Context, recipientDID, status, before string, limit int) ([]store.ChatRequest, error) {
	now := w.now().UTC()
	rows, err := w.q.Query(ctx, `SELECT `+chatRequestColumns+` FROM chat_requests WHERE recipient_did = $1
		AND CASE $2::text
			WHEN 'pending' THEN status = 'pending' AND expires_at > $3
			WHEN 'expired' THEN status = 'expired' OR (status = 'pending' AND expires_at <= $3)
			ELSE status = $2 END
		AND ($4 = '' OR id < $4)
		ORDER BY id DESC LIMIT $5`, recipientDID, status, now, before, limit)
	if err != nil {
		return nil, fmt.Errorf("list chat requests: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.ChatRequest, error) { return scanChatRequest(r, now) })
	if err != nil {
		return nil, fmt.Errorf("list chat requests: %w", err)
	}
	if out == nil {
		out = []store.ChatRequest{}
	}
	return out, nil
}

// PendingChatRequests implements store.ChatRequests.
func (s *Store) PendingChatRequests(ctx context.Context, recipientDID string) (int, time.Time, error) {
	n, latest, err := s.reader().PendingChatRequests(ctx, recipientDID)
	return n, latest, classify(err)
}

// PendingChatRequests implements store.ChatRequests.
func (w *writer) PendingChatRequests(ctx context.Context, recipientDID string) (int, time.Time, error) {
	var n int
	var latest *time.Time
	err := w.q.QueryRow(ctx, `SELECT COUNT(*), MAX(created_at) FROM chat_requests
		WHERE recipient_did = $1 AND status = 'pending' AND expires_at > $2`, recipientDID, w.now().UTC()).Scan(&n, &latest)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("count chat requests: %w", err)
	}
	return n, fromNull(latest), nil
}

// CloseChatRequest implements store.ChatRequests.
func (s *Store) CloseChatRequest(ctx context.Context, id, status string) (store.ChatRequest, []store.HeldMessage, error) {
	var held []store.HeldMessage
	r, err := inTxValue(ctx, s, func(w *writer) (store.ChatRequest, error) {
		r, h, err := w.CloseChatRequest(ctx, id, status)
		held = h
		return r, err
	})
	if err != nil {
		return store.ChatRequest{}, nil, err
	}
	return r, held, nil
}

// CloseChatRequest implements store.ChatRequests. The row lock makes
// concurrent answers to one request take turns: the second finds it
// closed.
func (w *writer) CloseChatRequest(ctx context.Context, id, status string) (store.ChatRequest, []store.HeldMessage, error) {
	r, err := scanChatRequest(w.q.QueryRow(ctx, `SELECT `+chatRequestColumns+` FROM chat_requests WHERE id = $1 FOR UPDATE`, id), w.now())
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.ChatRequest{}, nil, fmt.Errorf("close chat request: %w", store.ErrNotFound)
	case err != nil:
		return store.ChatRequest{}, nil, fmt.Errorf("close chat request: %w", err)
	case r.Status == store.ChatRequestExpired && r.ClosedAt.IsZero():
		return r, nil, fmt.Errorf("close chat request: %w", store.ErrExpired)
	case r.Status != store.ChatRequestPending:
		return r, nil, fmt.Errorf("close chat request: %w", store.ErrNotPending)
	}
	rows, err := w.q.Query(ctx, `SELECT seq, ciphertext, padded_size, eph_pub_key FROM chat_request_messages
		WHERE request_id = $1 ORDER BY seq`, id)
	if err != nil {
		return store.ChatRequest{}, nil, fmt.Errorf("close chat request: read held messages: %w", err)
	}
	held, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.HeldMessage, error) {
		var m store.HeldMessage
		err := row.Scan(&m.Seq, &m.Ciphertext, &m.PaddedSize, &m.EphPubKey)
		return m, err
	})
	if err != nil {
		return store.ChatRequest{}, nil, fmt.Errorf("close chat request: read held messages: %w", err)
	}
	if err := w.closeChatRequest(ctx, id, status); err != nil {
		return store.ChatRequest{}, nil, fmt.Errorf("close chat request: %w", err)
	}
	r.Status, r.SealedPreview, r.ClosedAt = status, nil, w.bucket()
	return r, held, nil
}

// closeChatRequest sets a request's status, clears its preview and
// deletes its held messages.
func (w *writer) closeChatRequest(ctx context.Context, id, status string) error {
	if _, err := w.q.Exec(ctx, `UPDATE chat_requests SET status = $1, sealed_preview = NULL, closed_at = $2 WHERE id = $3`,
		status, w.bucket(), id); err != nil {
		return err
	}
	_, err := w.q.Exec(ctx, `DELETE FROM chat_request_messages WHERE request_id = $1`, id)
	return err
}

// BlockChatSender implements store.ChatRequests.
func (s *Store) BlockChatSender(ctx context.Context, recipientDID, senderDID string, blockHash []byte) (int, error) {
	return inTxValue(ctx, s, func(w *writer) (int, error) { return w.BlockChatSender(ctx, recipientDID, senderDID, blockHash) })
}

// BlockChatSender implements store.ChatRequests.
func (w *writer) BlockChatSender(ctx context.Context, recipientDID, senderDID string, blockHash []byte) (int, error) {
	if _, err := w.q.Exec(ctx, `INSERT INTO chat_request_blocks (block_hash, created_at) VALUES ($1, $2)
		ON CONFLICT (block_hash) DO NOTHING`, blockHash, w.bucket()); err != nil {
		return 0, fmt.Errorf("block chat sender: %w", err)
	}
	pending, err := ids(w.q.Query(ctx, `SELECT id FROM chat_requests WHERE recipient_did = $1 AND sender_did = $2 AND status = 'pending'
		FOR UPDATE`, recipientDID, senderDID))
	if err != nil {
		return 0, fmt.Errorf("block chat sender: %w", err)
	}
	for _, id := range pending {
		if err := w.closeChatRequest(ctx, id, store.ChatRequestBlocked); err != nil {
			return 0, fmt.Errorf("block chat sender: %w", err)
		}
	}
	return len(pending), nil
}

// ChatRequestSettings implements store.ChatRequests.
func (s *Store) ChatRequestSettings(ctx context.Context, did string) (store.ChatRequestSettings, error) {
	st, err := s.reader().ChatRequestSettings(ctx, did)
	return st, classify(err)
}

// ChatRequestSettings implements store.ChatRequests.
func (w *writer) ChatRequestSettings(ctx context.Context, did string) (store.ChatRequestSettings, error) {
	st := store.ChatRequestSettings{DID: did}
	err := w.q.QueryRow(ctx, `SELECT allow_followers_bypass, allow_following_bypass, auto_expire_days
		FROM chat_request_settings WHERE did = $1`, did).Scan(&st.AllowFollowersBypass, &st.AllowFollowingBypass, &st.AutoExpireDays)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ChatRequestSettings{}, fmt.Errorf("read chat request settings: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.ChatRequestSettings{}, fmt.Errorf("read chat request settings: %w", err)
	}
	return st, nil
}

// PutChatRequestSettings implements store.ChatRequests.
func (s *Store) PutChatRequestSettings(ctx context.Context, st store.ChatRequestSettings) (store.ChatRequestSettings, error) {
	return inTxValue(ctx, s, func(w *writer) (store.ChatRequestSettings, error) { return w.PutChatRequestSettings(ctx, st) })
}

// PutChatRequestSettings implements store.ChatRequests.
func (w *writer) PutChatRequestSettings(ctx context.Context, st store.ChatRequestSettings) (store.ChatRequestSettings, error) {
	_, err := w.q.Exec(ctx, `INSERT INTO chat_request_settings (did, allow_followers_bypass, allow_following_bypass, auto_expire_days)
		VALUES ($1, $2, $3, $4) ON CONFLICT (did) DO UPDATE SET allow_followers_bypass = excluded.allow_followers_bypass,
			allow_following_bypass = excluded.allow_following_bypass, auto_expire_days = excluded.auto_expire_days`,
		st.DID, st.AllowFollowersBypass, st.AllowFollowingBypass, st.AutoExpireDays)
	if err != nil {
		return store.ChatRequestSettings{}, fmt.Errorf("put chat request settings: %w", err)
	}
	return st, nil
}

// PurgeChatRequests implements store.Purger: pending requests past expiry
// are closed as expired (their messages and previews deleted), then
// requests closed more than closedFor ago are deleted.
func (s *Store) PurgeChatRequests(ctx context.Context, closedFor time.Duration) (int64, error) {
	now := s.now().UTC()
	expired, err := s.purge(ctx, "expired chat requests", func(w *writer) (int64, error) {
		due, err := ids(w.q.Query(ctx, `SELECT id FROM chat_requests WHERE status = 'pending' AND expires_at <= $1
			LIMIT $2 FOR UPDATE SKIP LOCKED`, now, s.purgeBatch))
		if err != nil {
			return 0, err
		}
		for _, id := range due {
			if err := w.closeChatRequest(ctx, id, store.ChatRequestExpired); err != nil {
				return 0, err
			}
		}
		return int64(len(due)), nil
	})
	if err != nil {
		return expired, err
	}
	deleted, err := s.purge(ctx, "closed chat requests", func(w *writer) (int64, error) {
		return affected(w.q.Exec(ctx, `DELETE FROM chat_requests WHERE ctid = ANY (ARRAY(
			SELECT ctid FROM chat_requests WHERE status <> 'pending' AND closed_at < $1 LIMIT $2))`, now.Add(-closedFor), s.purgeBatch))
	})
	return expired + deleted, err
}
