package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// txWriter implements store.Writer on one transaction of the writer
// connection.
type txWriter struct {
	tx  writeTx
	now func() time.Time
}

var _ store.Writer = (*txWriter)(nil)

func (w *txWriter) bucket() int64 { return ms(store.Bucket(w.now())) }

func (w *txWriter) event(ctx context.Context, convoID string, kind store.EventKind, msgID string, epoch int64) (int64, error) {
	var cursor int64
	err := w.tx.QueryRowContext(ctx, `INSERT INTO events (convo_id, kind, message_id, epoch, created_bucket)
		VALUES (?, ?, ?, ?, ?) RETURNING cursor`,
		convoID, string(kind), nullString(msgID), epoch, w.bucket()).Scan(&cursor)
	if err != nil {
		return 0, fmt.Errorf("insert %s event: %w", kind, err)
	}
	return cursor, nil
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// CreateConvo implements store.Writer.
func (w *txWriter) CreateConvo(ctx context.Context, c store.NewConvo) (store.Convo, error) {
	now := store.Bucket(w.now())
	_, err := w.tx.ExecContext(ctx, `INSERT INTO convos (id, creator_did, cipher_suite, name, description, epoch, last_seq, created_at, last_activity_at)
		VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)`,
		c.ID, c.CreatorDID, c.CipherSuite, c.Name, c.Description, c.Epoch, ms(now), ms(now))
	if isUnique(err) {
		return store.Convo{}, fmt.Errorf("create convo: %w", store.ErrConflict)
	}
	if err != nil {
		return store.Convo{}, fmt.Errorf("create convo: %w", err)
	}
	if err := w.addMembers(ctx, c.ID, c.Members); err != nil {
		return store.Convo{}, err
	}
	if c.Welcome != nil {
		if err := w.putWelcome(ctx, c.ID, c.Epoch, *c.Welcome); err != nil {
			return store.Convo{}, err
		}
	}
	if c.GroupInfo != nil {
		if err := w.upsertGroupInfo(ctx, c.ID, c.Epoch, c.GroupInfo); err != nil {
			return store.Convo{}, err
		}
	}
	if _, err := w.event(ctx, c.ID, store.EventMembership, "", c.Epoch); err != nil {
		return store.Convo{}, err
	}
	return store.Convo{
		ID: c.ID, CreatorDID: c.CreatorDID, CipherSuite: c.CipherSuite, Name: c.Name, Description: c.Description,
		Epoch: c.Epoch, CreatedAt: now, LastActivityAt: now,
	}, nil
}

// AppendMessage implements store.Writer.
func (w *txWriter) AppendMessage(ctx context.Context, m store.NewMessage) (store.Message, error) {
	b := w.bucket()
	if m.Member != nil {
		if err := w.requireMember(ctx, m.ConvoID, *m.Member); err != nil {
			return store.Message{}, fmt.Errorf("append message: %w", err)
		}
	}
	var seq int64
	err := w.tx.QueryRowContext(ctx, `UPDATE convos SET last_seq = last_seq + 1, last_activity_at = ?
		WHERE id = ? AND epoch >= ? RETURNING last_seq`, b, m.ConvoID, m.Epoch).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := w.convoEpoch(ctx, m.ConvoID); err != nil {
			return store.Message{}, fmt.Errorf("append message: %w", err)
		}
		return store.Message{}, fmt.Errorf("append message: %w", store.ErrFutureEpoch)
	}
	if err != nil {
		return store.Message{}, fmt.Errorf("append message: bump seq: %w", err)
	}
	if err := w.insertMessage(ctx, m.ConvoID, seq, m.Epoch, m.MsgID, m.Ciphertext, m.PaddedSize, b, m.ExpiresAt); err != nil {
		return store.Message{}, err
	}
	cursor, err := w.event(ctx, m.ConvoID, store.EventMessage, m.MsgID, m.Epoch)
	if err != nil {
		return store.Message{}, err
	}
	return store.Message{
		ConvoID: m.ConvoID, Seq: seq, Epoch: m.Epoch, MsgID: m.MsgID, Ciphertext: m.Ciphertext,
		PaddedSize: m.PaddedSize, ReceivedAt: fromMS(b), ExpiresAt: m.ExpiresAt, Cursor: cursor,
	}, nil
}

// requireMember returns ErrNotFound for an unknown conversation and
// ErrNotMember when check matches no active membership in it.
func (w *txWriter) requireMember(ctx context.Context, convoID string, check store.MemberCheck) error {
	var ok bool
	// One probe of each index, rather than an OR the planner may answer
	// by scanning the conversation's members.
	err := w.tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM members WHERE convo_id = ?1
			AND member_did IN (SELECT value FROM json_each(?2)) AND left_at IS NULL)
		OR (?3 <> '' AND EXISTS (SELECT 1 FROM members WHERE user_did = ?3 AND convo_id = ?1 AND left_at IS NULL))`,
		convoID, jsonList(check.MemberDIDs), check.AnyRowOf).Scan(&ok)
	if err != nil {
		return fmt.Errorf("check membership: %w", err)
	}
	if ok {
		return nil
	}
	if _, err := w.convoEpoch(ctx, convoID); err != nil {
		return err
	}
	return store.ErrNotMember
}

func (w *txWriter) insertMessage(ctx context.Context, convoID string, seq, epoch int64, msgID string, data []byte, padded, bucket int64, expires time.Time) error {
	_, err := w.tx.ExecContext(ctx, `INSERT INTO messages (convo_id, seq, epoch, msg_id, ciphertext, padded_size, received_bucket, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, convoID, seq, epoch, msgID, data, padded, bucket, msOrNull(expires))
	if isUnique(err) {
		return fmt.Errorf("insert message: message id taken: %w", store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("insert message: %w", err)
	}
	return nil
}

func (w *txWriter) convoEpoch(ctx context.Context, convoID string) (int64, error) {
	var epoch int64
	err := w.tx.QueryRowContext(ctx, `SELECT epoch FROM convos WHERE id = ?`, convoID).Scan(&epoch)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, store.ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("read convo: %w", err)
	}
	return epoch, nil
}

// AppendCommit implements store.Writer.
func (w *txWriter) AppendCommit(ctx context.Context, convoID string, c store.NewCommit) (store.Change, error) {
	return store.ApplyChange(ctx, changeSteps{w}, convoID, nil, nil, store.Removed, &c)
}

// AddMembers implements store.Writer.
func (w *txWriter) AddMembers(ctx context.Context, convoID string, members []store.NewMember, c *store.NewCommit) (store.Change, error) {
	return store.ApplyChange(ctx, changeSteps{w}, convoID, members, nil, store.Removed, c)
}

// RemoveMembers implements store.Writer.
func (w *txWriter) RemoveMembers(ctx context.Context, convoID string, dids []string, how store.Departure, c *store.NewCommit) (store.Change, error) {
	if len(dids) == 0 {
		return store.Change{}, fmt.Errorf("remove members: no DIDs: %w", store.ErrNotMember)
	}
	return store.ApplyChange(ctx, changeSteps{w}, convoID, nil, dids, how, c)
}

// changeSteps are store.ChangeSteps (the one path for commits and
// membership changes) on the caller's transaction, in SQLite.
type changeSteps struct{ w *txWriter }

func (s changeSteps) AdvanceEpoch(ctx context.Context, convoID string, from int64) (epoch, seq int64, at time.Time, err error) {
	b := s.w.bucket()
	err = s.w.tx.QueryRowContext(ctx, `UPDATE convos SET epoch = epoch + 1, last_seq = last_seq + 1, last_activity_at = ?
		WHERE id = ? AND epoch = ? RETURNING epoch, last_seq`, b, convoID, from).Scan(&epoch, &seq)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := s.w.convoEpoch(ctx, convoID); err != nil {
			return 0, 0, time.Time{}, err
		}
		return 0, 0, time.Time{}, store.ErrStaleEpoch
	}
	if err != nil {
		return 0, 0, time.Time{}, fmt.Errorf("advance epoch: %w", err)
	}
	return epoch, seq, fromMS(b), nil
}

func (s changeSteps) Touch(ctx context.Context, convoID string) (int64, error) {
	var epoch int64
	err := s.w.tx.QueryRowContext(ctx, `UPDATE convos SET last_activity_at = ? WHERE id = ? RETURNING epoch`, s.w.bucket(), convoID).Scan(&epoch)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, store.ErrNotFound
	}
	return epoch, err
}

func (s changeSteps) RemoveMembers(ctx context.Context, convoID string, dids []string, how store.Departure) error {
	list := jsonList(dids)
	res, err := s.w.tx.ExecContext(ctx, `UPDATE members SET left_at = ?, needs_rejoin = 0
		WHERE convo_id = ? AND left_at IS NULL
		AND (member_did IN (SELECT value FROM json_each(?)) OR user_did IN (SELECT value FROM json_each(?)))`,
		s.w.bucket(), convoID, list, list)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotMember
	}
	if how == store.Removed {
		// Only an account this removal leaves with no active device was
		// removed from the conversation; one device removed from an
		// account that stays is not.
		if _, err := s.w.tx.ExecContext(ctx, `UPDATE members SET removed = 1 WHERE convo_id = ?1
			AND user_did IN (SELECT user_did FROM members WHERE convo_id = ?1
				AND (member_did IN (SELECT value FROM json_each(?2)) OR user_did IN (SELECT value FROM json_each(?2))))
			AND user_did NOT IN (SELECT user_did FROM members WHERE convo_id = ?1 AND left_at IS NULL)`, convoID, list); err != nil {
			return fmt.Errorf("mark removed: %w", err)
		}
	}
	// A device of an account that is no longer in the conversation has
	// nobody to add it: its pending additions (and rejoin requests) go.
	if _, err := s.w.tx.ExecContext(ctx, `DELETE FROM pending_device_additions WHERE convo_id = ?
		AND user_did NOT IN (SELECT user_did FROM members WHERE convo_id = ? AND left_at IS NULL)`, convoID, convoID); err != nil {
		return fmt.Errorf("drop pending device additions: %w", err)
	}
	return nil
}

func (s changeSteps) AddMembers(ctx context.Context, convoID string, add []store.NewMember) error {
	return s.w.addMembers(ctx, convoID, add)
}

func (s changeSteps) InsertCommit(ctx context.Context, convoID string, seq int64, msgID string, c store.NewCommit, at time.Time) error {
	if err := s.w.insertMessage(ctx, convoID, seq, c.Epoch, msgID, c.Data, c.PaddedSize, ms(at), c.ExpiresAt); err != nil {
		return err
	}
	if _, err := s.w.tx.ExecContext(ctx, `INSERT INTO commits (convo_id, epoch, seq) VALUES (?, ?, ?)`, convoID, c.Epoch, seq); err != nil {
		return fmt.Errorf("insert commit: %w", err)
	}
	return nil
}

func (s changeSteps) PutGroupInfo(ctx context.Context, convoID string, epoch int64, data []byte) error {
	return s.w.upsertGroupInfo(ctx, convoID, epoch, data)
}

func (s changeSteps) PutWelcome(ctx context.Context, convoID string, epoch int64, wel store.NewWelcome) error {
	return s.w.putWelcome(ctx, convoID, epoch, wel)
}

func (s changeSteps) Event(ctx context.Context, convoID string, kind store.EventKind, msgID string, epoch int64) (int64, error) {
	return s.w.event(ctx, convoID, kind, msgID, epoch)
}

var _ store.ChangeSteps = changeSteps{}

func (w *txWriter) addMembers(ctx context.Context, convoID string, add []store.NewMember) error {
	now := w.bucket()
	for _, m := range add {
		m = m.WithDefaults()
		role, userDID := m.Role, m.UserDID
		// A row that left is re-added; an active row flagged needs_rejoin
		// (its device lost its state) is re-added keeping its role.
		res, err := w.tx.ExecContext(ctx, `INSERT INTO members (convo_id, member_did, user_did, device_id, role, joined_at, left_at)
			VALUES (?, ?, ?, ?, ?, ?, NULL)
			ON CONFLICT (convo_id, member_did) DO UPDATE SET
				user_did = excluded.user_did, device_id = excluded.device_id,
				role = CASE WHEN members.left_at IS NULL THEN members.role ELSE excluded.role END,
				joined_at = excluded.joined_at, left_at = NULL, needs_rejoin = 0
			WHERE members.left_at IS NOT NULL OR members.needs_rejoin = 1`,
			convoID, m.MemberDID, userDID, m.DeviceID, string(role), now)
		if err != nil {
			return fmt.Errorf("add member: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("add member: %w", store.ErrAlreadyMember)
		}
		if _, err := w.tx.ExecContext(ctx, `UPDATE members SET removed = 0 WHERE convo_id = ? AND user_did = ? AND removed = 1`,
			convoID, userDID); err != nil {
			return fmt.Errorf("clear removed: %w", err)
		}
		if _, err := w.tx.ExecContext(ctx, `UPDATE pending_device_additions SET status = 'completed'
			WHERE convo_id = ? AND user_did = ? AND device_id = ?`, convoID, userDID, m.DeviceID); err != nil {
			return fmt.Errorf("complete pending device addition: %w", err)
		}
		if m.KeyPackageRef != "" {
			res, err := w.tx.ExecContext(ctx, `UPDATE key_packages
				SET consumed_at = CASE WHEN last_resort = 1 THEN consumed_at ELSE COALESCE(consumed_at, ?) END,
					used_in_convo = ?
				WHERE ref = ? AND owner_did = ?`, now, convoID, m.KeyPackageRef, userDID)
			if err != nil {
				return fmt.Errorf("mark key package used: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return fmt.Errorf("mark key package used: %w", store.ErrKeyPackageNotFound)
			}
		}
	}
	return nil
}

func (w *txWriter) upsertGroupInfo(ctx context.Context, convoID string, epoch int64, data []byte) error {
	_, err := w.tx.ExecContext(ctx, `INSERT INTO group_infos (convo_id, epoch, data, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (convo_id) DO UPDATE SET epoch = excluded.epoch, data = excluded.data, updated_at = excluded.updated_at
		WHERE group_infos.epoch <= excluded.epoch`, convoID, epoch, data, w.bucket())
	if err != nil {
		return fmt.Errorf("store group info: %w", err)
	}
	return nil
}

func (w *txWriter) putWelcome(ctx context.Context, convoID string, epoch int64, wel store.NewWelcome) error {
	var id int64
	err := w.tx.QueryRowContext(ctx, `INSERT INTO welcomes (convo_id, epoch, data, created_at) VALUES (?, ?, ?, ?) RETURNING id`,
		convoID, epoch, wel.Data, w.bucket()).Scan(&id)
	if err != nil {
		return fmt.Errorf("store welcome: %w", err)
	}
	for _, r := range wel.Recipients {
		if _, err := w.tx.ExecContext(ctx, `INSERT INTO welcome_recipients (welcome_id, recipient_did) VALUES (?, ?)
			ON CONFLICT DO NOTHING`, id, r); err != nil {
			return fmt.Errorf("store welcome recipient: %w", err)
		}
	}
	return nil
}

// SetRole implements store.Writer.
func (w *txWriter) SetRole(ctx context.Context, convoID, userDID string, role store.Role) error {
	res, err := w.tx.ExecContext(ctx, `UPDATE members SET role = ? WHERE convo_id = ? AND user_did = ? AND left_at IS NULL`,
		string(role), convoID, userDID)
	if err != nil {
		return fmt.Errorf("set role: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := w.convoEpoch(ctx, convoID); err != nil {
			return fmt.Errorf("set role: %w", err)
		}
		return fmt.Errorf("set role: %w", store.ErrNotMember)
	}
	return nil
}

// PutGroupInfo implements store.Writer.
func (w *txWriter) PutGroupInfo(ctx context.Context, convoID string, epoch int64, data []byte) error {
	cur, err := w.convoEpoch(ctx, convoID)
	if err != nil {
		return fmt.Errorf("put group info: %w", err)
	}
	if cur != epoch {
		return fmt.Errorf("put group info for epoch %d, convo at %d: %w", epoch, cur, store.ErrStaleEpoch)
	}
	return w.upsertGroupInfo(ctx, convoID, epoch, data)
}

// ConfirmWelcome implements store.Writer.
func (w *txWriter) ConfirmWelcome(ctx context.Context, convoID string, recipients []string) error {
	list := jsonList(recipients)
	res, err := w.tx.ExecContext(ctx, `UPDATE welcome_recipients SET consumed_at = ?
		WHERE consumed_at IS NULL AND recipient_did IN (SELECT value FROM json_each(?))
		AND welcome_id IN (SELECT id FROM welcomes WHERE convo_id = ?)`, w.bucket(), list, convoID)
	if err != nil {
		return fmt.Errorf("confirm welcome: %w", err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	var n int
	if err := w.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM welcome_recipients r JOIN welcomes w ON w.id = r.welcome_id
		WHERE w.convo_id = ? AND r.recipient_did IN (SELECT value FROM json_each(?))`, convoID, list).Scan(&n); err != nil {
		return fmt.Errorf("confirm welcome: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("confirm welcome: %w", store.ErrNotFound)
	}
	return nil // already confirmed: a retry
}
