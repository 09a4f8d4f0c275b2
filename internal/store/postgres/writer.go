package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// writer implements store.Writer on a querier: a transaction, or the pool
// for single-statement writes.
type writer struct {
	q   querier
	now func() time.Time
}

var _ store.Writer = (*writer)(nil)

// AppendMessage implements store.Writer. It is one statement: alone it
// runs autocommitted on the pool, one round trip; appends that arrive
// together commit together (see appendBatcher).
func (s *Store) AppendMessage(ctx context.Context, m store.NewMessage) (store.Message, error) {
	return s.appends.append(ctx, m)
}

// TouchDevice implements store.Writer. It is one autocommitted statement.
func (s *Store) TouchDevice(ctx context.Context, ownerDID, deviceID string) error {
	return classifyCommit((&writer{q: s.pool, now: s.now}).TouchDevice(ctx, ownerDID, deviceID))
}

func (w *writer) bucket() time.Time { return store.Bucket(w.now()) }

func (w *writer) event(ctx context.Context, convoID string, kind store.EventKind, msgID string, epoch int64) (int64, error) {
	var cursor int64
	err := w.q.QueryRow(ctx, `INSERT INTO events (convo_id, kind, message_id, epoch, created_bucket)
		VALUES ($1, $2, $3, $4, $5) RETURNING cursor`,
		convoID, string(kind), nullString(msgID), epoch, w.bucket()).Scan(&cursor)
	if err != nil {
		return 0, fmt.Errorf("insert %s event: %w", kind, err)
	}
	return cursor, nil
}

// CreateConvo implements store.Writer.
func (w *writer) CreateConvo(ctx context.Context, c store.NewConvo) (store.Convo, error) {
	now := w.bucket()
	_, err := w.q.Exec(ctx, `INSERT INTO convos (id, creator_did, cipher_suite, name, description, epoch, last_seq, created_at, last_activity_at)
		VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7)`,
		c.ID, c.CreatorDID, c.CipherSuite, c.Name, c.Description, c.Epoch, now)
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

// memberCheckSQL is store.MemberCheck as an SQL condition on the
// parameters convo, dids (member DIDs) and user (a user DID any of whose
// rows will do, or the empty string): one probe of each index, rather than
// an OR that the planner may answer by scanning the conversation's members.
func memberCheckSQL(convo, dids, user string) string {
	return `(EXISTS (SELECT 1 FROM members WHERE convo_id = ` + convo + ` AND member_did = ANY(` + dids + `) AND left_at IS NULL)
	OR (` + user + ` <> '' AND EXISTS (SELECT 1 FROM members WHERE user_did = ` + user + ` AND convo_id = ` + convo + ` AND left_at IS NULL)))`
}

// appendMessageSQL bumps the counter (row-locking the conversation), then
// inserts the message and its event from the bumped row, in one statement.
// The event's cursor is drawn only after the lock is held. With $8 set, the
// bump needs an active membership ($8: member DIDs, $9: a user DID any of
// whose rows will do, or the empty string). A taken msg_id holds the bump
// back too, so the statement returns no row rather than failing, which
// would abort a transaction it shares with other appends; a concurrent
// append of the same msg_id can still fail on the unique index.
var appendMessageSQL = `WITH c AS (
	UPDATE convos SET last_seq = last_seq + 1, last_activity_at = $7
	WHERE id = $1 AND epoch >= $2 AND ($8::text[] IS NULL OR ` + memberCheckSQL("$1", "$8", "$9") + `)
		AND NOT EXISTS (SELECT 1 FROM messages WHERE convo_id = $1 AND msg_id = $3)
	RETURNING id, last_seq
), m AS (
	INSERT INTO messages (convo_id, seq, epoch, msg_id, ciphertext, padded_size, received_bucket, expires_at)
	SELECT id, last_seq, $2, $3, $4, $5, $7, $6 FROM c
), e AS (
	INSERT INTO events (convo_id, kind, message_id, epoch, created_bucket)
	SELECT id, 'message', $3, $2, $7 FROM c
	RETURNING cursor
)
SELECT c.last_seq, e.cursor FROM c, e`

// AppendMessage implements store.Writer.
func (w *writer) AppendMessage(ctx context.Context, m store.NewMessage) (store.Message, error) {
	b := w.bucket()
	var seq, cursor int64
	err := w.q.QueryRow(ctx, appendMessageSQL, appendArgs(m, b)...).Scan(&seq, &cursor)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Message{}, fmt.Errorf("append message: %w", w.whyNotAppended(ctx, m))
	}
	if isUnique(err) {
		return store.Message{}, fmt.Errorf("append message: message id taken: %w", store.ErrConflict)
	}
	if err != nil {
		return store.Message{}, fmt.Errorf("append message: %w", err)
	}
	return appended(m, seq, cursor, b), nil
}

// appendArgs are appendMessageSQL's parameters for m, received in bucket.
func appendArgs(m store.NewMessage, bucket time.Time) []any {
	var members []string
	var anyRowOf string
	if m.Member != nil {
		members, anyRowOf = orEmpty(m.Member.MemberDIDs), m.Member.AnyRowOf
	}
	return []any{m.ConvoID, m.Epoch, m.MsgID, m.Ciphertext, m.PaddedSize, nullTime(m.ExpiresAt), bucket, members, anyRowOf}
}

// appended is the stored message m became, at seq and event cursor.
func appended(m store.NewMessage, seq, cursor int64, bucket time.Time) store.Message {
	return store.Message{
		ConvoID: m.ConvoID, Seq: seq, Epoch: m.Epoch, MsgID: m.MsgID, Ciphertext: m.Ciphertext,
		PaddedSize: m.PaddedSize, ReceivedAt: bucket, ExpiresAt: m.ExpiresAt, Cursor: cursor,
	}
}

// whyNotAppended tells which condition of appendMessageSQL held no row back.
func (w *writer) whyNotAppended(ctx context.Context, m store.NewMessage) error {
	if _, err := w.convoEpoch(ctx, m.ConvoID); err != nil {
		return err
	}
	if m.Member != nil {
		var ok bool
		err := w.q.QueryRow(ctx, `SELECT `+memberCheckSQL("$1", "$2", "$3"),
			m.ConvoID, orEmpty(m.Member.MemberDIDs), m.Member.AnyRowOf).Scan(&ok)
		if err != nil {
			return fmt.Errorf("check membership: %w", err)
		}
		if !ok {
			return store.ErrNotMember
		}
	}
	var taken bool
	if err := w.q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM messages WHERE convo_id = $1 AND msg_id = $2)`,
		m.ConvoID, m.MsgID).Scan(&taken); err != nil {
		return fmt.Errorf("check message id: %w", err)
	}
	if taken {
		return fmt.Errorf("message id taken: %w", store.ErrConflict)
	}
	return store.ErrFutureEpoch
}

func (w *writer) insertMessage(ctx context.Context, convoID string, seq, epoch int64, msgID string, data []byte, padded int64, bucket, expires time.Time) error {
	_, err := w.q.Exec(ctx, `INSERT INTO messages (convo_id, seq, epoch, msg_id, ciphertext, padded_size, received_bucket, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, convoID, seq, epoch, msgID, data, padded, bucket, nullTime(expires))
	if isUnique(err) {
		return fmt.Errorf("insert message: message id taken: %w", store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("insert message: %w", err)
	}
	return nil
}

func (w *writer) convoEpoch(ctx context.Context, convoID string) (int64, error) {
	var epoch int64
	err := w.q.QueryRow(ctx, `SELECT epoch FROM convos WHERE id = $1`, convoID).Scan(&epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, store.ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("read convo: %w", err)
	}
	return epoch, nil
}

// AppendCommit implements store.Writer.
func (w *writer) AppendCommit(ctx context.Context, convoID string, c store.NewCommit) (store.Change, error) {
	return store.ApplyChange(ctx, changeSteps{w}, convoID, nil, nil, store.Removed, &c)
}

// AddMembers implements store.Writer.
func (w *writer) AddMembers(ctx context.Context, convoID string, members []store.NewMember, c *store.NewCommit) (store.Change, error) {
	return store.ApplyChange(ctx, changeSteps{w}, convoID, members, nil, store.Removed, c)
}

// RemoveMembers implements store.Writer.
func (w *writer) RemoveMembers(ctx context.Context, convoID string, dids []string, how store.Departure, c *store.NewCommit) (store.Change, error) {
	if len(dids) == 0 {
		return store.Change{}, fmt.Errorf("remove members: no DIDs: %w", store.ErrNotMember)
	}
	return store.ApplyChange(ctx, changeSteps{w}, convoID, nil, dids, how, c)
}

// changeSteps are store.ChangeSteps (the one path for commits and
// membership changes) on the caller's transaction, in PostgreSQL.
type changeSteps struct{ w *writer }

func (s changeSteps) AdvanceEpoch(ctx context.Context, convoID string, from int64) (epoch, seq int64, at time.Time, err error) {
	at = s.w.bucket()
	err = s.w.q.QueryRow(ctx, `UPDATE convos SET epoch = epoch + 1, last_seq = last_seq + 1, last_activity_at = $1
		WHERE id = $2 AND epoch = $3 RETURNING epoch, last_seq`, at, convoID, from).Scan(&epoch, &seq)
	if errors.Is(err, pgx.ErrNoRows) {
		if _, err := s.w.convoEpoch(ctx, convoID); err != nil {
			return 0, 0, time.Time{}, err
		}
		return 0, 0, time.Time{}, store.ErrStaleEpoch
	}
	if err != nil {
		return 0, 0, time.Time{}, fmt.Errorf("advance epoch: %w", err)
	}
	return epoch, seq, at, nil
}

func (s changeSteps) Touch(ctx context.Context, convoID string) (int64, error) {
	var epoch int64
	err := s.w.q.QueryRow(ctx, `UPDATE convos SET last_activity_at = $1 WHERE id = $2 RETURNING epoch`, s.w.bucket(), convoID).Scan(&epoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, store.ErrNotFound
	}
	return epoch, err
}

func (s changeSteps) RemoveMembers(ctx context.Context, convoID string, dids []string, how store.Departure) error {
	tag, err := s.w.q.Exec(ctx, `UPDATE members SET left_at = $1, needs_rejoin = false
		WHERE convo_id = $2 AND left_at IS NULL AND (member_did = ANY($3) OR user_did = ANY($3))`,
		s.w.bucket(), convoID, dids)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotMember
	}
	if how == store.Removed {
		// Only an account this removal leaves with no active device was
		// removed from the conversation; one device removed from an
		// account that stays is not.
		if _, err := s.w.q.Exec(ctx, `UPDATE members SET removed = true WHERE convo_id = $1
			AND user_did IN (SELECT user_did FROM members WHERE convo_id = $1 AND (member_did = ANY($2) OR user_did = ANY($2)))
			AND user_did NOT IN (SELECT user_did FROM members WHERE convo_id = $1 AND left_at IS NULL)`, convoID, dids); err != nil {
			return fmt.Errorf("mark removed: %w", err)
		}
	}
	// A device of an account that is no longer in the conversation has
	// nobody to add it: its pending additions (and rejoin requests) go.
	if _, err := s.w.q.Exec(ctx, `DELETE FROM pending_device_additions WHERE convo_id = $1
		AND user_did NOT IN (SELECT user_did FROM members WHERE convo_id = $1 AND left_at IS NULL)`, convoID); err != nil {
		return fmt.Errorf("drop pending device additions: %w", err)
	}
	return nil
}

func (s changeSteps) AddMembers(ctx context.Context, convoID string, add []store.NewMember) error {
	return s.w.addMembers(ctx, convoID, add)
}

func (s changeSteps) InsertCommit(ctx context.Context, convoID string, seq int64, msgID string, c store.NewCommit, at time.Time) error {
	if err := s.w.insertMessage(ctx, convoID, seq, c.Epoch, msgID, c.Data, c.PaddedSize, at, c.ExpiresAt); err != nil {
		return err
	}
	if _, err := s.w.q.Exec(ctx, `INSERT INTO commits (convo_id, epoch, seq) VALUES ($1, $2, $3)`, convoID, c.Epoch, seq); err != nil {
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

func (w *writer) addMembers(ctx context.Context, convoID string, add []store.NewMember) error {
	now := w.bucket()
	for _, m := range add {
		m = m.WithDefaults()
		role, userDID := m.Role, m.UserDID
		tag, err := w.q.Exec(ctx, `INSERT INTO members (convo_id, member_did, user_did, device_id, role, joined_at, left_at)
			VALUES ($1, $2, $3, $4, $5, $6, NULL)
			ON CONFLICT (convo_id, member_did) DO UPDATE SET
				user_did = excluded.user_did, device_id = excluded.device_id,
				role = CASE WHEN members.left_at IS NULL THEN members.role ELSE excluded.role END,
				joined_at = excluded.joined_at, left_at = NULL, needs_rejoin = false
			WHERE members.left_at IS NOT NULL OR members.needs_rejoin`,
			convoID, m.MemberDID, userDID, m.DeviceID, string(role), now)
		if err != nil {
			return fmt.Errorf("add member: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("add member: %w", store.ErrAlreadyMember)
		}
		if _, err := w.q.Exec(ctx, `UPDATE members SET removed = false WHERE convo_id = $1 AND user_did = $2 AND removed`,
			convoID, userDID); err != nil {
			return fmt.Errorf("clear removed: %w", err)
		}
		if _, err := w.q.Exec(ctx, `UPDATE pending_device_additions SET status = 'completed'
			WHERE convo_id = $1 AND user_did = $2 AND device_id = $3`, convoID, userDID, m.DeviceID); err != nil {
			return fmt.Errorf("complete pending device addition: %w", err)
		}
		if m.KeyPackageRef != "" {
			tag, err := w.q.Exec(ctx, `UPDATE key_packages
				SET consumed_at = CASE WHEN last_resort THEN consumed_at ELSE COALESCE(consumed_at, $1) END,
					used_in_convo = $2
				WHERE ref = $3 AND owner_did = $4`, now, convoID, m.KeyPackageRef, userDID)
			if err != nil {
				return fmt.Errorf("mark key package used: %w", err)
			}
			if tag.RowsAffected() == 0 {
				return fmt.Errorf("mark key package used: %w", store.ErrKeyPackageNotFound)
			}
		}
	}
	return nil
}

func (w *writer) upsertGroupInfo(ctx context.Context, convoID string, epoch int64, data []byte) error {
	_, err := w.q.Exec(ctx, `INSERT INTO group_infos (convo_id, epoch, data, updated_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (convo_id) DO UPDATE SET epoch = excluded.epoch, data = excluded.data, updated_at = excluded.updated_at
		WHERE group_infos.epoch <= excluded.epoch`, convoID, epoch, data, w.bucket())
	if err != nil {
		return fmt.Errorf("store group info: %w", err)
	}
	return nil
}

func (w *writer) putWelcome(ctx context.Context, convoID string, epoch int64, wel store.NewWelcome) error {
	var id int64
	err := w.q.QueryRow(ctx, `INSERT INTO welcomes (convo_id, epoch, data, created_at) VALUES ($1, $2, $3, $4) RETURNING id`,
		convoID, epoch, wel.Data, w.bucket()).Scan(&id)
	if err != nil {
		return fmt.Errorf("store welcome: %w", err)
	}
	if len(wel.Recipients) > 0 {
		if _, err := w.q.Exec(ctx, `INSERT INTO welcome_recipients (welcome_id, recipient_did)
			SELECT $1, r FROM unnest($2::text[]) AS r ON CONFLICT DO NOTHING`, id, wel.Recipients); err != nil {
			return fmt.Errorf("store welcome recipients: %w", err)
		}
	}
	return nil
}

// SetRole implements store.Writer.
func (w *writer) SetRole(ctx context.Context, convoID, userDID string, role store.Role) error {
	tag, err := w.q.Exec(ctx, `UPDATE members SET role = $1 WHERE convo_id = $2 AND user_did = $3 AND left_at IS NULL`,
		string(role), convoID, userDID)
	if err != nil {
		return fmt.Errorf("set role: %w", err)
	}
	if tag.RowsAffected() == 0 {
		if _, err := w.convoEpoch(ctx, convoID); err != nil {
			return fmt.Errorf("set role: %w", err)
		}
		return fmt.Errorf("set role: %w", store.ErrNotMember)
	}
	return nil
}

// PutGroupInfo implements store.Writer. The conversation row is share-locked
// so a commit cannot move the epoch between the check and the write.
func (w *writer) PutGroupInfo(ctx context.Context, convoID string, epoch int64, data []byte) error {
	var cur int64
	err := w.q.QueryRow(ctx, `SELECT epoch FROM convos WHERE id = $1 FOR SHARE`, convoID).Scan(&cur)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("put group info: %w", store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("put group info: %w", err)
	}
	if cur != epoch {
		return fmt.Errorf("put group info for epoch %d, convo at %d: %w", epoch, cur, store.ErrStaleEpoch)
	}
	return w.upsertGroupInfo(ctx, convoID, epoch, data)
}

// ConfirmWelcome implements store.Writer.
func (w *writer) ConfirmWelcome(ctx context.Context, convoID string, recipients []string) error {
	tag, err := w.q.Exec(ctx, `UPDATE welcome_recipients SET consumed_at = $1
		WHERE consumed_at IS NULL AND recipient_did = ANY($2)
		AND welcome_id IN (SELECT id FROM welcomes WHERE convo_id = $3)`, w.bucket(), recipients, convoID)
	if err != nil {
		return fmt.Errorf("confirm welcome: %w", err)
	}
	if tag.RowsAffected() > 0 {
		return nil
	}
	var exists bool
	if err := w.q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM welcome_recipients r JOIN welcomes w ON w.id = r.welcome_id
		WHERE w.convo_id = $1 AND r.recipient_did = ANY($2))`, convoID, recipients).Scan(&exists); err != nil {
		return fmt.Errorf("confirm welcome: %w", err)
	}
	if !exists {
		return fmt.Errorf("confirm welcome: %w", store.ErrNotFound)
	}
	return nil // already confirmed: a retry
}
