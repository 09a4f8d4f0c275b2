package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// maxPage bounds every list read; the delivery layer applies the lexicon's
// smaller limits.
const maxPage = 1000

func clampLimit(limit int) int {
	if limit <= 0 || limit > maxPage {
		return maxPage
	}
	return limit
}

const convoColumns = `c.id, c.creator_did, c.cipher_suite, c.name, c.description, c.epoch, c.last_seq, c.created_at, c.last_activity_at`

func scanConvo(sc interface{ Scan(...any) error }) (store.Convo, error) {
	var c store.Convo
	var created, active int64
	if err := sc.Scan(&c.ID, &c.CreatorDID, &c.CipherSuite, &c.Name, &c.Description, &c.Epoch, &c.LastSeq, &created, &active); err != nil {
		return store.Convo{}, err
	}
	c.CreatedAt, c.LastActivityAt = fromMS(created), fromMS(active)
	return c, nil
}

// Convo implements store.Store.
func (s *Store) Convo(ctx context.Context, id string) (store.Convo, error) {
	c, err := scanConvo(s.r.QueryRowContext(ctx, `SELECT `+convoColumns+` FROM convos c WHERE c.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Convo{}, errorf("read convo: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Convo{}, errorf("read convo: %w", err)
	}
	return c, nil
}

// ConvosForUser implements store.Store.
func (s *Store) ConvosForUser(ctx context.Context, userDID, after string, limit int) ([]store.Convo, string, error) {
	limit = clampLimit(limit)
	cur, ok, err := store.DecodeCursor(after)
	if err != nil {
		return nil, "", err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+convoColumns+` FROM convos c
		WHERE EXISTS (SELECT 1 FROM members m WHERE m.convo_id = c.id AND m.user_did = ? AND m.left_at IS NULL)
		AND (? = 0 OR c.last_activity_at < ? OR (c.last_activity_at = ? AND c.id < ?))
		ORDER BY c.last_activity_at DESC, c.id DESC LIMIT ?`,
		userDID, ok, ms(cur.At), ms(cur.At), cur.ID, limit+1)
	if err != nil {
		return nil, "", errorf("list convos: %w", err)
	}
	defer rows.Close()
	var out []store.Convo
	for rows.Next() {
		c, err := scanConvo(rows)
		if err != nil {
			return nil, "", errorf("list convos: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, "", errorf("list convos: %w", err)
	}
	var next string
	if len(out) > limit {
		out = out[:limit]
		last := out[limit-1]
		next = store.EncodeCursor(store.PageCursor{At: last.LastActivityAt, ID: last.ID})
	}
	return out, next, nil
}

const memberColumns = `m.convo_id, m.member_did, m.user_did, m.device_id, m.role, m.joined_at, m.left_at, m.removed`

func scanMember(sc interface{ Scan(...any) error }) (store.Member, error) {
	var m store.Member
	var joined int64
	var left sql.NullInt64
	var role string
	if err := sc.Scan(&m.ConvoID, &m.MemberDID, &m.UserDID, &m.DeviceID, &role, &joined, &left, &m.Removed); err != nil {
		return store.Member{}, err
	}
	m.Role, m.JoinedAt, m.LeftAt = store.Role(role), fromMS(joined), fromNullMS(left)
	return m, nil
}

// Members implements store.Store.
func (s *Store) Members(ctx context.Context, convoIDs []string, includeLeft bool) (map[string][]store.Member, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+memberColumns+` FROM members m
		WHERE m.convo_id IN (SELECT value FROM json_each(?)) AND (? OR m.left_at IS NULL)
		ORDER BY m.convo_id, m.joined_at, m.member_did`, jsonList(convoIDs), includeLeft)
	if err != nil {
		return nil, errorf("list members: %w", err)
	}
	defer rows.Close()
	out := map[string][]store.Member{}
	for rows.Next() {
		m, err := scanMember(rows)
		if err != nil {
			return nil, errorf("list members: %w", err)
		}
		out[m.ConvoID] = append(out[m.ConvoID], m)
	}
	return out, rows.Err()
}

// ActiveMemberCount implements store.Store. The primary key's convo_id
// prefix finds the rows.
func (s *Store) ActiveMemberCount(ctx context.Context, convoID string) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM members WHERE convo_id = ? AND left_at IS NULL`, convoID).Scan(&n)
	if err != nil {
		return 0, errorf("count members: %w", err)
	}
	return n, nil
}

// ActiveMember implements store.Store.
func (s *Store) ActiveMember(ctx context.Context, convoID, memberDID string) (store.Member, error) {
	var cid, mdid, udid, dev, role sql.NullString
	var joined sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT c.id, m.member_did, m.user_did, m.device_id, m.role, m.joined_at
		FROM convos c LEFT JOIN members m ON m.convo_id = c.id AND m.member_did = ? AND m.left_at IS NULL
		WHERE c.id = ?`, memberDID, convoID).Scan(&cid, &mdid, &udid, &dev, &role, &joined)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Member{}, errorf("read member: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Member{}, errorf("read member: %w", err)
	}
	if !mdid.Valid {
		return store.Member{}, errorf("read member: %w", store.ErrNotMember)
	}
	return store.Member{ConvoID: convoID, MemberDID: mdid.String, UserDID: udid.String, DeviceID: dev.String,
		Role: store.Role(role.String), JoinedAt: fromNullMS(joined)}, nil
}

// UserConvos implements store.Store.
func (s *Store) UserConvos(ctx context.Context, userDID string) ([]store.UserConvo, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT m.convo_id, m.member_did, c.name, c.last_activity_at,
			(SELECT COUNT(*) FROM members a WHERE a.convo_id = m.convo_id AND a.left_at IS NULL)
		FROM members m JOIN convos c ON c.id = m.convo_id
		WHERE m.user_did = ? AND m.left_at IS NULL
		ORDER BY c.last_activity_at DESC, m.convo_id, m.member_did`, userDID)
	if err != nil {
		return nil, errorf("list user convos: %w", err)
	}
	defer rows.Close()
	var out []store.UserConvo
	for rows.Next() {
		var uc store.UserConvo
		var member string
		var active int64
		if err := rows.Scan(&uc.ConvoID, &member, &uc.Name, &active, &uc.MemberCount); err != nil {
			return nil, errorf("list user convos: %w", err)
		}
		if n := len(out); n > 0 && out[n-1].ConvoID == uc.ConvoID {
			out[n-1].MemberDIDs = append(out[n-1].MemberDIDs, member)
			continue
		}
		uc.LastActivityAt, uc.MemberDIDs = fromMS(active), []string{member}
		out = append(out, uc)
	}
	return out, rows.Err()
}

const messageColumns = `m.convo_id, m.seq, m.epoch, m.msg_id, m.ciphertext, m.padded_size, m.received_bucket, m.expires_at,
	EXISTS (SELECT 1 FROM commits k WHERE k.convo_id = m.convo_id AND k.seq = m.seq)`

func scanMessage(sc interface{ Scan(...any) error }) (store.Message, error) {
	var m store.Message
	var recv int64
	var exp sql.NullInt64
	if err := sc.Scan(&m.ConvoID, &m.Seq, &m.Epoch, &m.MsgID, &m.Ciphertext, &m.PaddedSize, &recv, &exp, &m.IsCommit); err != nil {
		return store.Message{}, err
	}
	m.ReceivedAt, m.ExpiresAt = fromMS(recv), fromNullMS(exp)
	return m, nil
}

// Messages implements store.Store.
func (s *Store) Messages(ctx context.Context, convoID string, sinceSeq int64, limit int) (store.MessagePage, error) {
	limit = clampLimit(limit)
	var page store.MessagePage
	rows, err := s.r.QueryContext(ctx, `SELECT `+messageColumns+` FROM messages m
		WHERE m.convo_id = ? AND m.seq > ? ORDER BY m.seq LIMIT ?`, convoID, sinceSeq, limit)
	if err != nil {
		return page, errorf("list messages: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return page, errorf("list messages: %w", err)
		}
		page.Messages = append(page.Messages, m)
	}
	if err := rows.Err(); err != nil {
		return page, errorf("list messages: %w", err)
	}
	// Read the counter after the rows, so it is never below a returned seq.
	err = s.r.QueryRowContext(ctx, `SELECT last_seq, epoch FROM convos WHERE id = ?`, convoID).Scan(&page.ConvoLastSeq, &page.ConvoEpoch)
	if errors.Is(err, sql.ErrNoRows) {
		return store.MessagePage{}, errorf("list messages: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.MessagePage{}, errorf("list messages: %w", err)
	}
	return page, nil
}

// Message implements store.Store.
func (s *Store) Message(ctx context.Context, convoID, msgID string) (store.Message, error) {
	m, err := scanMessage(s.r.QueryRowContext(ctx, `SELECT `+messageColumns+` FROM messages m
		WHERE m.convo_id = ? AND m.msg_id = ?`, convoID, msgID))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Message{}, errorf("read message: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Message{}, errorf("read message: %w", err)
	}
	return m, nil
}

// MessagesByID implements store.Store.
func (s *Store) MessagesByID(ctx context.Context, convoID string, msgIDs []string) ([]store.Message, error) {
	if len(msgIDs) == 0 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+messageColumns+` FROM messages m
		WHERE m.convo_id = ? AND m.msg_id IN (SELECT value FROM json_each(?)) ORDER BY m.seq`, convoID, jsonList(msgIDs))
	if err != nil {
		return nil, errorf("read messages by id: %w", err)
	}
	defer rows.Close()
	var out []store.Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, errorf("read messages by id: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Commits implements store.Store.
func (s *Store) Commits(ctx context.Context, convoID string, fromEpoch, toEpoch int64) ([]store.Commit, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT k.convo_id, k.epoch, k.seq, m.msg_id, m.ciphertext, m.received_bucket
		FROM commits k JOIN messages m ON m.convo_id = k.convo_id AND m.seq = k.seq
		WHERE k.convo_id = ? AND k.epoch >= ? AND (? < 0 OR k.epoch <= ?)
		ORDER BY k.epoch LIMIT ?`, convoID, fromEpoch, toEpoch, toEpoch, maxPage)
	if err != nil {
		return nil, errorf("list commits: %w", err)
	}
	defer rows.Close()
	var out []store.Commit
	for rows.Next() {
		var c store.Commit
		var at int64
		if err := rows.Scan(&c.ConvoID, &c.Epoch, &c.Seq, &c.MsgID, &c.Data, &at); err != nil {
			return nil, errorf("list commits: %w", err)
		}
		c.CreatedAt = fromMS(at)
		out = append(out, c)
	}
	return out, rows.Err()
}

// GroupInfo implements store.Store.
func (s *Store) GroupInfo(ctx context.Context, convoID string) (store.GroupInfo, error) {
	g := store.GroupInfo{ConvoID: convoID}
	var at int64
	err := s.r.QueryRowContext(ctx, `SELECT epoch, data, updated_at FROM group_infos WHERE convo_id = ?`, convoID).Scan(&g.Epoch, &g.Data, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return store.GroupInfo{}, errorf("read group info: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.GroupInfo{}, errorf("read group info: %w", err)
	}
	g.UpdatedAt = fromMS(at)
	return g, nil
}

// Welcome implements store.Store.
func (s *Store) Welcome(ctx context.Context, convoID string, recipients []string) (store.Welcome, error) {
	w := store.Welcome{ConvoID: convoID}
	var at int64
	err := s.r.QueryRowContext(ctx, `SELECT w.id, w.epoch, w.data, w.created_at
		FROM welcomes w JOIN welcome_recipients r ON r.welcome_id = w.id
		WHERE w.convo_id = ? AND r.consumed_at IS NULL AND r.recipient_did IN (SELECT value FROM json_each(?))
		ORDER BY w.id DESC LIMIT 1`, convoID, jsonList(recipients)).Scan(&w.ID, &w.Epoch, &w.Data, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Welcome{}, errorf("read welcome: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Welcome{}, errorf("read welcome: %w", err)
	}
	w.CreatedAt = fromMS(at)
	return w, nil
}

// KeyPackageStats implements store.Store.
func (s *Store) KeyPackageStats(ctx context.Context, ownerDID, cipherSuite string) (store.KeyPackageStats, error) {
	now := s.now()
	rows, err := s.r.QueryContext(ctx, `SELECT cipher_suite,
			SUM(consumed_at IS NULL AND last_resort = 0 AND expires_at > ?1),
			SUM(consumed_at IS NULL AND last_resort = 1 AND expires_at > ?1),
			COUNT(*),
			SUM(consumed_at IS NOT NULL),
			SUM(consumed_at IS NOT NULL AND consumed_at >= ?2),
			SUM(consumed_at IS NOT NULL AND consumed_at >= ?3),
			MIN(CASE WHEN consumed_at IS NULL AND last_resort = 0 AND expires_at > ?1 THEN expires_at END)
		FROM key_packages WHERE owner_did = ?4 AND (?5 = '' OR cipher_suite = ?5)
		GROUP BY cipher_suite ORDER BY cipher_suite`,
		ms(now), ms(now.Add(-24*time.Hour)), ms(now.Add(-7*24*time.Hour)), ownerDID, cipherSuite)
	if err != nil {
		return store.KeyPackageStats{}, errorf("key package stats: %w", err)
	}
	defer rows.Close()
	var st store.KeyPackageStats
	for rows.Next() {
		var suite string
		var avail, lr, total, consumed, c24, c7 int
		var oldest sql.NullInt64
		if err := rows.Scan(&suite, &avail, &lr, &total, &consumed, &c24, &c7, &oldest); err != nil {
			return store.KeyPackageStats{}, errorf("key package stats: %w", err)
		}
		st.Available += avail
		st.LastResort += lr
		st.Total += total
		st.Consumed += consumed
		st.Consumed24h += c24
		st.Consumed7d += c7
		if o := fromNullMS(oldest); !o.IsZero() && (st.OldestExpiry.IsZero() || o.Before(st.OldestExpiry)) {
			st.OldestExpiry = o
		}
		st.ByCipherSuite = append(st.ByCipherSuite, store.CipherSuiteStats{CipherSuite: suite, Available: avail, Consumed: consumed})
	}
	return st, rows.Err()
}

// ConsumedKeyPackages implements store.Store.
func (s *Store) ConsumedKeyPackages(ctx context.Context, ownerDID, after string, limit int) ([]store.KeyPackage, string, error) {
	limit = clampLimit(limit)
	cur, ok, err := store.DecodeCursor(after)
	if err != nil {
		return nil, "", err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+kpColumns+` FROM key_packages
		WHERE owner_did = ? AND consumed_at IS NOT NULL
		AND (? = 0 OR consumed_at < ? OR (consumed_at = ? AND ref < ?))
		ORDER BY consumed_at DESC, ref DESC LIMIT ?`, ownerDID, ok, ms(cur.At), ms(cur.At), cur.ID, limit+1)
	if err != nil {
		return nil, "", errorf("list consumed key packages: %w", err)
	}
	defer rows.Close()
	var out []store.KeyPackage
	for rows.Next() {
		kp, err := scanKeyPackage(rows)
		if err != nil {
			return nil, "", errorf("list consumed key packages: %w", err)
		}
		out = append(out, kp)
	}
	if err := rows.Err(); err != nil {
		return nil, "", errorf("list consumed key packages: %w", err)
	}
	var next string
	if len(out) > limit {
		out = out[:limit]
		next = store.EncodeCursor(store.PageCursor{At: out[limit-1].ConsumedAt, ID: out[limit-1].Ref})
	}
	return out, next, nil
}

// AvailableKeyPackageRefs implements store.Store.
func (s *Store) AvailableKeyPackageRefs(ctx context.Context, ownerDID, deviceID string) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT ref FROM key_packages
		WHERE owner_did = ? AND device_id = ? AND consumed_at IS NULL AND expires_at > ? ORDER BY ref`,
		ownerDID, deviceID, ms(s.now()))
	if err != nil {
		return nil, errorf("list key package refs: %w", err)
	}
	refs, err := collectStrings(rows)
	if err != nil {
		return nil, errorf("list key package refs: %w", err)
	}
	return refs, nil
}

// KeyPackageByHash implements store.Store.
func (s *Store) KeyPackageByHash(ctx context.Context, ownerDID, hash string) (store.KeyPackage, error) {
	kp, err := scanKeyPackage(s.r.QueryRowContext(ctx, `SELECT `+kpColumns+` FROM key_packages
		WHERE owner_did = ?1 AND (ref = ?2 OR data_sha256 = ?2)
		ORDER BY ref = ?2 DESC, ref LIMIT 1`, ownerDID, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return store.KeyPackage{}, errorf("find key package: %w", store.ErrKeyPackageNotFound)
	}
	if err != nil {
		return store.KeyPackage{}, errorf("find key package: %w", err)
	}
	return kp, nil
}

// Devices implements store.Store.
func (s *Store) Devices(ctx context.Context, ownerDID string) ([]store.Device, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+deviceColumns+`,
			(SELECT COUNT(*) FROM key_packages k WHERE k.owner_did = d.owner_did AND k.device_id = d.device_id
				AND k.consumed_at IS NULL AND k.last_resort = 0 AND k.expires_at > ?)
		FROM devices d WHERE d.owner_did = ? ORDER BY d.registered_at, d.device_id`, ms(s.now()), ownerDID)
	if err != nil {
		return nil, errorf("list devices: %w", err)
	}
	defer rows.Close()
	var out []store.Device
	for rows.Next() {
		var n int
		d, err := scanDevice(rows, &n)
		if err != nil {
			return nil, errorf("list devices: %w", err)
		}
		d.KeyPackages = n
		out = append(out, d)
	}
	return out, rows.Err()
}

// EventsAfter implements store.Store.
func (s *Store) EventsAfter(ctx context.Context, convoIDs []string, after int64, limit int) ([]store.Event, error) {
	if len(convoIDs) == 0 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT cursor, convo_id, kind, message_id, epoch, created_bucket FROM events
		WHERE convo_id IN (SELECT value FROM json_each(?)) AND cursor > ? ORDER BY cursor LIMIT ?`,
		jsonList(convoIDs), after, clampLimit(limit))
	if err != nil {
		return nil, errorf("list events: %w", err)
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		var e store.Event
		var kind string
		var msg sql.NullString
		var epoch sql.NullInt64
		var at int64
		if err := rows.Scan(&e.Cursor, &e.ConvoID, &kind, &msg, &epoch, &at); err != nil {
			return nil, errorf("list events: %w", err)
		}
		e.Kind, e.MessageID, e.Epoch, e.CreatedAt = store.EventKind(kind), msg.String, epoch.Int64, fromMS(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// EventHorizon implements store.Store.
func (s *Store) EventHorizon(ctx context.Context) (store.EventHorizon, error) {
	var purged int64
	var latest sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT h.purged_through, (SELECT MAX(cursor) FROM events) FROM event_horizon h WHERE h.id = 1`).Scan(&purged, &latest)
	if err != nil {
		return store.EventHorizon{}, errorf("read event horizon: %w", err)
	}
	return store.EventHorizon{Oldest: purged + 1, Latest: max(purged, latest.Int64)}, nil
}
