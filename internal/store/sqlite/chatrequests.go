package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

var (
	_ store.ChatRequests = (*Store)(nil)
	_ store.ChatRequests = (*txWriter)(nil)
)

const chatRequestColumns = `id, sender_did, recipient_did, status, group_id, sealed_preview, message_count,
	created_at, expires_at, closed_at`

// scanChatRequest reads a row; a pending request past expiry at now reads
// as expired.
func scanChatRequest(sc interface{ Scan(...any) error }, now int64) (store.ChatRequest, error) {
	var r store.ChatRequest
	var created, expires int64
	var closed sql.NullInt64
	if err := sc.Scan(&r.ID, &r.SenderDID, &r.RecipientDID, &r.Status, &r.GroupID, &r.SealedPreview, &r.MessageCount,
		&created, &expires, &closed); err != nil {
		return store.ChatRequest{}, err
	}
	r.CreatedAt, r.ExpiresAt, r.ClosedAt = fromMS(created), fromMS(expires), fromNullMS(closed)
	if r.Status == store.ChatRequestPending && expires <= now {
		r.Status = store.ChatRequestExpired
	}
	return r, nil
}

// CreateChatRequest implements store.ChatRequests.
func (s *Store) CreateChatRequest(ctx context.Context, r store.ChatRequest, held []store.HeldMessage, blockHash []byte) (store.ChatRequest, error) {
	return inWriter(ctx, s, func(w *txWriter) (store.ChatRequest, error) { return w.CreateChatRequest(ctx, r, held, blockHash) })
}

// CreateChatRequest implements store.ChatRequests.
func (w *txWriter) CreateChatRequest(ctx context.Context, r store.ChatRequest, held []store.HeldMessage, blockHash []byte) (store.ChatRequest, error) {
	now := ms(w.now())
	var blocked int
	if err := w.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM chat_request_blocks WHERE block_hash = ?`, blockHash).Scan(&blocked); err != nil {
		return store.ChatRequest{}, fmt.Errorf("create chat request: read blocks: %w", err)
	}
	if blocked > 0 {
		return store.ChatRequest{}, fmt.Errorf("create chat request: %w", store.ErrChatBlocked)
	}
	rows, err := w.tx.QueryContext(ctx, `SELECT id FROM chat_requests WHERE sender_did = ? AND recipient_did = ? AND group_id = ?
		AND status = 'pending' AND expires_at <= ?`, r.SenderDID, r.RecipientDID, r.GroupID, now)
	if err != nil {
		return store.ChatRequest{}, fmt.Errorf("create chat request: %w", err)
	}
	var stale []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return store.ChatRequest{}, fmt.Errorf("create chat request: %w", err)
		}
		stale = append(stale, id)
	}
	rows.Close()
	for _, id := range stale {
		if err := w.closeChatRequest(ctx, id, store.ChatRequestExpired); err != nil {
			return store.ChatRequest{}, fmt.Errorf("create chat request: %w", err)
		}
	}
	r.Status, r.CreatedAt, r.ClosedAt, r.MessageCount = store.ChatRequestPending, store.Bucket(w.now()), time.Time{}, len(held)
	_, err = w.tx.ExecContext(ctx, `INSERT INTO chat_requests (`+chatRequestColumns+`) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, NULL)`,
		r.ID, r.SenderDID, r.RecipientDID, r.GroupID, r.SealedPreview, r.MessageCount, ms(r.CreatedAt), ms(r.ExpiresAt))
	if isUnique(err) {
		var dup int
		if qerr := w.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM chat_requests WHERE id = ?`, r.ID).Scan(&dup); qerr == nil && dup > 0 {
			return store.ChatRequest{}, fmt.Errorf("create chat request: %w", store.ErrConflict)
		}
		return store.ChatRequest{}, fmt.Errorf("create chat request: %w", store.ErrDuplicateRequest)
	}
	if err != nil {
		return store.ChatRequest{}, fmt.Errorf("create chat request: %w", err)
	}
	for i, m := range held {
		if _, err := w.tx.ExecContext(ctx, `INSERT INTO chat_request_messages (request_id, seq, ciphertext, padded_size, eph_pub_key)
			VALUES (?, ?, ?, ?, ?)`, r.ID, i+1, m.Ciphertext, m.PaddedSize, m.EphPubKey); err != nil {
			return store.ChatRequest{}, fmt.Errorf("create chat request: hold message: %w", err)
		}
	}
	r.ExpiresAt = fromMS(ms(r.ExpiresAt))
	return r, nil
}

// ChatRequest implements store.ChatRequests.
func (s *Store) ChatRequest(ctx context.Context, id string) (store.ChatRequest, error) {
	r, err := readChatRequest(ctx, s.r, id, ms(s.now()))
	return r, classify(err)
}

// ChatRequest implements store.ChatRequests.
func (w *txWriter) ChatRequest(ctx context.Context, id string) (store.ChatRequest, error) {
	return readChatRequest(ctx, w.tx, id, ms(w.now()))
}

func readChatRequest(ctx context.Context, q rowQuerier, id string, now int64) (store.ChatRequest, error) {
	r, err := scanChatRequest(q.QueryRowContext(ctx, `SELECT `+chatRequestColumns+` FROM chat_requests WHERE id = ?`, id), now)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ChatRequest{}, fmt.Errorf("read chat request: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.ChatRequest{}, fmt.Errorf("read chat request: %w", err)
	}
	return r, nil
}

// ChatRequestsFor implements store.ChatRequests.
func (s *Store) ChatRequestsFor(ctx context.Context, recipientDID, status, before string, limit int) ([]store.ChatRequest, error) {
	out, err := readChatRequestsFor(ctx, s.r, recipientDID, status, before, limit, ms(s.now()))
	return out, classify(err)
}

// ChatRequestsFor implements store.ChatRequests.
func (w *txWriter) ChatRequestsFor(ctx context.Context, recipientDID, status, before string, limit int) ([]store.ChatRequest, error) {
	return readChatRequestsFor(ctx, w.tx, recipientDID, status, before, limit, ms(w.now()))
}

func readChatRequestsFor(ctx context.Context, q rowQuerier, recipientDID, status, before string, limit int, now int64) ([]store.ChatRequest, error) {
	cond := `status = ?`
	args := []any{recipientDID, status}
	switch status {
	case store.ChatRequestPending:
		cond, args = `status = 'pending' AND expires_at > ?`, []any{recipientDID, now}
	case store.ChatRequestExpired:
		cond, args = `(status = 'expired' OR (status = 'pending' AND expires_at <= ?))`, []any{recipientDID, now}
	}
	if before != "" {
		cond += ` AND id < ?`
		args = append(args, before)
	}
	args = append(args, limit)
	rows, err := q.QueryContext(ctx, `SELECT `+chatRequestColumns+` FROM chat_requests WHERE recipient_did = ? AND `+cond+`
		ORDER BY id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("list chat requests: %w", err)
	}
	defer rows.Close()
	out := []store.ChatRequest{}
	for rows.Next() {
		r, err := scanChatRequest(rows, now)
		if err != nil {
			return nil, fmt.Errorf("list chat requests: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list chat requests: %w", err)
	}
	return out, nil
}

// PendingChatRequests implements store.ChatRequests.
func (s *Store) PendingChatRequests(ctx context.Context, recipientDID string) (int, time.Time, error) {
	n, latest, err := countPendingChatRequests(ctx, s.r, recipientDID, ms(s.now()))
	return n, latest, classify(err)
}

// PendingChatRequests implements store.ChatRequests.
func (w *txWriter) PendingChatRequests(ctx context.Context, recipientDID string) (int, time.Time, error) {
	return countPendingChatRequests(ctx, w.tx, recipientDID, ms(w.now()))
}

func countPendingChatRequests(ctx context.Context, q rowQuerier, recipientDID string, now int64) (int, time.Time, error) {
	var n int
	var latest sql.NullInt64
	err := q.QueryRowContext(ctx, `SELECT COUNT(*), MAX(created_at) FROM chat_requests
		WHERE recipient_did = ? AND status = 'pending' AND expires_at > ?`, recipientDID, now).Scan(&n, &latest)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("count chat requests: %w", err)
	}
	return n, fromNullMS(latest), nil
}

// CloseChatRequest implements store.ChatRequests.
func (s *Store) CloseChatRequest(ctx context.Context, id, status string) (store.ChatRequest, []store.HeldMessage, error) {
	var held []store.HeldMessage
	r, err := inWriter(ctx, s, func(w *txWriter) (store.ChatRequest, error) {
		r, h, err := w.CloseChatRequest(ctx, id, status)
		held = h
		return r, err
	})
	if err != nil {
		return store.ChatRequest{}, nil, err
	}
	return r, held, nil
}

// CloseChatRequest implements store.ChatRequests.
func (w *txWriter) CloseChatRequest(ctx context.Context, id, status string) (store.ChatRequest, []store.HeldMessage, error) {
	r, err := readChatRequest(ctx, w.tx, id, ms(w.now()))
	if err != nil {
		return store.ChatRequest{}, nil, fmt.Errorf("close chat request: %w", err)
	}
	var stored string
	if err := w.tx.QueryRowContext(ctx, `SELECT status FROM chat_requests WHERE id = ?`, id).Scan(&stored); err != nil {
		return store.ChatRequest{}, nil, fmt.Errorf("close chat request: %w", err)
	}
	switch {
	case stored != store.ChatRequestPending:
		return r, nil, fmt.Errorf("close chat request: %w", store.ErrNotPending)
	case r.Status == store.ChatRequestExpired:
		return r, nil, fmt.Errorf("close chat request: %w", store.ErrExpired)
	}
	rows, err := w.tx.QueryContext(ctx, `SELECT seq, ciphertext, padded_size, eph_pub_key FROM chat_request_messages
		WHERE request_id = ? ORDER BY seq`, id)
	if err != nil {
		return store.ChatRequest{}, nil, fmt.Errorf("close chat request: read held messages: %w", err)
	}
	var held []store.HeldMessage
	for rows.Next() {
		var m store.HeldMessage
		if err := rows.Scan(&m.Seq, &m.Ciphertext, &m.PaddedSize, &m.EphPubKey); err != nil {
			rows.Close()
			return store.ChatRequest{}, nil, fmt.Errorf("close chat request: read held messages: %w", err)
		}
		held = append(held, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return store.ChatRequest{}, nil, fmt.Errorf("close chat request: read held messages: %w", err)
	}
	if err := w.closeChatRequest(ctx, id, status); err != nil {
		return store.ChatRequest{}, nil, fmt.Errorf("close chat request: %w", err)
	}
	r.Status, r.SealedPreview, r.ClosedAt = status, nil, fromMS(w.bucket())
	return r, held, nil
}

// closeChatRequest sets a request's status, clears its preview and
// deletes its held messages.
func (w *txWriter) closeChatRequest(ctx context.Context, id, status string) error {
	if _, err := w.tx.ExecContext(ctx, `UPDATE chat_requests SET status = ?, sealed_preview = NULL, closed_at = ? WHERE id = ?`,
		status, w.bucket(), id); err != nil {
		return err
	}
	_, err := w.tx.ExecContext(ctx, `DELETE FROM chat_request_messages WHERE request_id = ?`, id)
	return err
}

// BlockChatSender implements store.ChatRequests.
func (s *Store) BlockChatSender(ctx context.Context, recipientDID, senderDID string, blockHash []byte) (int, error) {
	return inWriter(ctx, s, func(w *txWriter) (int, error) { return w.BlockChatSender(ctx, recipientDID, senderDID, blockHash) })
}

// BlockChatSender implements store.ChatRequests.
func (w *txWriter) BlockChatSender(ctx context.Context, recipientDID, senderDID string, blockHash []byte) (int, error) {
	if _, err := w.tx.ExecContext(ctx, `INSERT INTO chat_request_blocks (block_hash, created_at) VALUES (?, ?)
		ON CONFLICT (block_hash) DO NOTHING`, blockHash, w.bucket()); err != nil {
		return 0, fmt.Errorf("block chat sender: %w", err)
	}
	rows, err := w.tx.QueryContext(ctx, `SELECT id FROM chat_requests WHERE recipient_did = ? AND sender_did = ? AND status = 'pending'`,
		recipientDID, senderDID)
	if err != nil {
		return 0, fmt.Errorf("block chat sender: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("block chat sender: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	for _, id := range ids {
		if err := w.closeChatRequest(ctx, id, store.ChatRequestBlocked); err != nil {
			return 0, fmt.Errorf("block chat sender: %w", err)
		}
	}
	return len(ids), nil
}

// ChatRequestSettings implements store.ChatRequests.
func (s *Store) ChatRequestSettings(ctx context.Context, did string) (store.ChatRequestSettings, error) {
	st, err := readChatRequestSettings(ctx, s.r, did)
	return st, classify(err)
}

// ChatRequestSettings implements store.ChatRequests.
func (w *txWriter) ChatRequestSettings(ctx context.Context, did string) (store.ChatRequestSettings, error) {
	return readChatRequestSettings(ctx, w.tx, did)
}

func readChatRequestSettings(ctx context.Context, q rowQuerier, did string) (store.ChatRequestSettings, error) {
	st := store.ChatRequestSettings{DID: did}
	err := q.QueryRowContext(ctx, `SELECT allow_followers_bypass, allow_following_bypass, auto_expire_days
		FROM chat_request_settings WHERE did = ?`, did).Scan(&st.AllowFollowersBypass, &st.AllowFollowingBypass, &st.AutoExpireDays)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ChatRequestSettings{}, fmt.Errorf("read chat request settings: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.ChatRequestSettings{}, fmt.Errorf("read chat request settings: %w", err)
	}
	return st, nil
}

// PutChatRequestSettings implements store.ChatRequests.
func (s *Store) PutChatRequestSettings(ctx context.Context, st store.ChatRequestSettings) (store.ChatRequestSettings, error) {
	return inWriter(ctx, s, func(w *txWriter) (store.ChatRequestSettings, error) { return w.PutChatRequestSettings(ctx, st) })
}

// PutChatRequestSettings implements store.ChatRequests.
func (w *txWriter) PutChatRequestSettings(ctx context.Context, st store.ChatRequestSettings) (store.ChatRequestSettings, error) {
	_, err := w.tx.ExecContext(ctx, `INSERT INTO chat_request_settings (did, allow_followers_bypass, allow_following_bypass, auto_expire_days)
		VALUES (?, ?, ?, ?) ON CONFLICT (did) DO UPDATE SET allow_followers_bypass = excluded.allow_followers_bypass,
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
	now := s.now()
	expired, err := s.purge(ctx, "expired chat requests", func(tx writeTx) (int64, error) {
		w := &txWriter{tx: tx, now: s.now}
		rows, err := tx.QueryContext(ctx, `SELECT id FROM chat_requests WHERE status = 'pending' AND expires_at <= ? LIMIT ?`,
			ms(now), s.purgeBatch)
		if err != nil {
			return 0, err
		}
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return 0, err
			}
			ids = append(ids, id)
		}
		rows.Close()
		for _, id := range ids {
			if err := w.closeChatRequest(ctx, id, store.ChatRequestExpired); err != nil {
				return 0, err
			}
		}
		return int64(len(ids)), nil
	})
	if err != nil {
		return expired, err
	}
	deleted, err := s.purge(ctx, "closed chat requests", func(tx writeTx) (int64, error) {
		return affected(tx.ExecContext(ctx, `DELETE FROM chat_requests WHERE rowid IN (
			SELECT rowid FROM chat_requests WHERE status <> 'pending' AND closed_at < ? LIMIT ?)`, ms(now.Add(-closedFor)), s.purgeBatch))
	})
	return expired + deleted, err
}
