package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

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

func orEmpty(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

const convoColumns = `c.id, c.creator_did, c.cipher_suite, c.name, c.description, c.epoch, c.last_seq, c.created_at, c.last_activity_at`

func scanConvo(sc interface{ Scan(...any) error }) (store.Convo, error) {
	var c store.Convo
	if err := sc.Scan(&c.ID, &c.CreatorDID, &c.CipherSuite, &c.Name, &c.Description, &c.Epoch, &c.LastSeq, &c.CreatedAt, &c.LastActivityAt); err != nil {
		return store.Convo{}, err
	}
	c.CreatedAt, c.LastActivityAt = utc(c.CreatedAt), utc(c.LastActivityAt)
	return c, nil
}

// Convo implements store.Store.
func (s *Store) Convo(ctx context.Context, id string) (store.Convo, error) {
	c, err := scanConvo(s.pool.QueryRow(ctx, `SELECT `+convoColumns+` FROM convos c WHERE c.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
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
	rows, err := s.pool.Query(ctx, `SELECT `+convoColumns+` FROM convos c
		WHERE EXISTS (SELECT 1 FROM members m WHERE m.convo_id = c.id AND m.user_did = $1 AND m.left_at IS NULL)
		AND (NOT $2 OR (c.last_activity_at, c.id) < ($3, $4))
		ORDER BY c.last_activity_at DESC, c.id DESC LIMIT $5`,
		userDID, ok, cur.At, cur.ID, limit+1)
	if err != nil {
		return nil, "", errorf("list convos: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Convo, error) { return scanConvo(r) })
	if err != nil {
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
	var left *time.Time
	var role string
	if err := sc.Scan(&m.ConvoID, &m.MemberDID, &m.UserDID, &m.DeviceID, &role, &m.JoinedAt, &left, &m.Removed); err != nil {
		return store.Member{}, err
	}
	m.Role, m.JoinedAt, m.LeftAt = store.Role(role), utc(m.JoinedAt), fromNull(left)
	return m, nil
}

// Members implements store.Store.
func (s *Store) Members(ctx context.Context, convoIDs []string, includeLeft bool) (map[string][]store.Member, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+memberColumns+` FROM members m
		WHERE m.convo_id = ANY($1) AND ($2 OR m.left_at IS NULL)
		ORDER BY m.convo_id, m.joined_at, m.member_did`, orEmpty(convoIDs), includeLeft)
	if err != nil {
		return nil, errorf("list members: %w", err)
	}
	ms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Member, error) { return scanMember(r) })
	if err != nil {
		return nil, errorf("list members: %w", err)
	}
	out := map[string][]store.Member{}
	for _, m := range ms {
		out[m.ConvoID] = append(out[m.ConvoID], m)
	}
	return out, nil
}

// ActiveMemberCount implements store.Store. The primary key's convo_id
// prefix finds the rows.
func (s *Store) ActiveMemberCount(ctx context.Context, convoID string) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM members WHERE convo_id = $1 AND left_at IS NULL`, convoID).Scan(&n)
	if err != nil {
		return 0, errorf("count members: %w", err)
	}
	return n, nil
}

// ActiveMember implements store.Store.
func (s *Store) ActiveMember(ctx context.Context, convoID, memberDID string) (store.Member, error) {
	var mdid, udid, dev, role *string
	var joined *time.Time
	err := s.pool.QueryRow(ctx, `SELECT m.member_did, m.user_did, m.device_id, m.role, m.joined_at
		FROM convos c LEFT JOIN members m ON m.convo_id = c.id AND m.member_did = $1 AND m.left_at IS NULL
		WHERE c.id = $2`, memberDID, convoID).Scan(&mdid, &udid, &dev, &role, &joined)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Member{}, errorf("read member: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Member{}, errorf("read member: %w", err)
	}
	if mdid == nil {
		return store.Member{}, errorf("read member: %w", store.ErrNotMember)
	}
	return store.Member{ConvoID: convoID, MemberDID: *mdid, UserDID: *udid, DeviceID: *dev,
		Role: store.Role(*role), JoinedAt: fromNull(joined)}, nil
}

// UserConvos implements store.Store.
func (s *Store) UserConvos(ctx context.Context, userDID string) ([]store.UserConvo, error) {
	rows, err := s.pool.Query(ctx, `SELECT m.convo_id, m.member_did, c.name, c.last_activity_at,
			(SELECT COUNT(*) FROM members a WHERE a.convo_id = m.convo_id AND a.left_at IS NULL)
		FROM members m JOIN convos c ON c.id = m.convo_id
		WHERE m.user_did = $1 AND m.left_at IS NULL
		ORDER BY c.last_activity_at DESC, m.convo_id, m.member_did`, userDID)
	if err != nil {
		return nil, errorf("list user convos: %w", err)
	}
	defer rows.Close()
	var out []store.UserConvo
	for rows.Next() {
		var uc store.UserConvo
		var member string
		if err := rows.Scan(&uc.ConvoID, &member, &uc.Name, &uc.LastActivityAt, &uc.MemberCount); err != nil {
			return nil, errorf("list user convos: %w", err)
		}
		if n := len(out); n > 0 && out[n-1].ConvoID == uc.ConvoID {
			out[n-1].MemberDIDs = append(out[n-1].MemberDIDs, member)
			continue
		}
		uc.LastActivityAt, uc.MemberDIDs = utc(uc.LastActivityAt), []string{member}
		out = append(out, uc)
	}
	if err := rows.Err(); err != nil {
		return nil, errorf("list user convos: %w", err)
	}
	return out, nil
}

const messageColumns = `m.convo_id, m.seq, m.epoch, m.msg_id, m.ciphertext, m.padded_size, m.received_bucket, m.expires_at,
	EXISTS (SELECT 1 FROM commits k WHERE k.convo_id = m.convo_id AND k.seq = m.seq)`

func scanMessage(sc interface{ Scan(...any) error }) (store.Message, error) {
	var m store.Message
	var exp *time.Time
	if err := sc.Scan(&m.ConvoID, &m.Seq, &m.Epoch, &m.MsgID, &m.Ciphertext, &m.PaddedSize, &m.ReceivedAt, &exp, &m.IsCommit); err != nil {
		return store.Message{}, err
	}
	m.ReceivedAt, m.ExpiresAt = utc(m.ReceivedAt), fromNull(exp)
	return m, nil
}

// Messages implements store.Store.
func (s *Store) Messages(ctx context.Context, convoID string, sinceSeq int64, limit int) (store.MessagePage, error) {
	limit = clampLimit(limit)
	var page store.MessagePage
	// One round trip: the page, then the counter. The counter is read by
	// the second statement, after the rows (each statement of a batch
	// takes its own snapshot under READ COMMITTED), so it is never below
	// a returned seq.
	q := &pgx.Batch{}
	q.Queue(`SELECT `+messageColumns+` FROM messages m
		WHERE m.convo_id = $1 AND m.seq > $2 ORDER BY m.seq LIMIT $3`, convoID, sinceSeq, limit)
	q.Queue(`SELECT last_seq, epoch FROM convos WHERE id = $1`, convoID)
	results := s.pool.SendBatch(ctx, q)
	defer results.Close()
	rows, err := results.Query()
	if err != nil {
		return page, errorf("list messages: %w", err)
	}
	page.Messages, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Message, error) { return scanMessage(r) })
	if err != nil {
		return page, errorf("list messages: %w", err)
	}
	err = results.QueryRow().Scan(&page.ConvoLastSeq, &page.ConvoEpoch)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.MessagePage{}, errorf("list messages: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.MessagePage{}, errorf("list messages: %w", err)
	}
	if err := results.Close(); err != nil {
		return store.MessagePage{}, errorf("list messages: %w", err)
	}
	if len(page.Messages) == 0 {
		page.Messages = nil
	}
	return page, nil
}

// Message implements store.Store.
func (s *Store) Message(ctx context.Context, convoID, msgID string) (store.Message, error) {
	m, err := scanMessage(s.pool.QueryRow(ctx, `SELECT `+messageColumns+` FROM messages m
		WHERE m.convo_id = $1 AND m.msg_id = $2`, convoID, msgID))
	if errors.Is(err, pgx.ErrNoRows) {
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
	rows, err := s.pool.Query(ctx, `SELECT `+messageColumns+` FROM messages m
		WHERE m.convo_id = $1 AND m.msg_id = ANY($2) ORDER BY m.seq`, convoID, msgIDs)
	if err != nil {
		return nil, errorf("read messages by id: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Message, error) { return scanMessage(r) })
	if err != nil {
		return nil, errorf("read messages by id: %w", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// Commits implements store.Store.
func (s *Store) Commits(ctx context.Context, convoID string, fromEpoch, toEpoch int64) ([]store.Commit, error) {
	rows, err := s.pool.Query(ctx, `SELECT k.convo_id, k.epoch, k.seq, m.msg_id, m.ciphertext, m.received_bucket
		FROM commits k JOIN messages m ON m.convo_id = k.convo_id AND m.seq = k.seq
		WHERE k.convo_id = $1 AND k.epoch >= $2 AND ($3 < 0 OR k.epoch <= $3)
		ORDER BY k.epoch LIMIT $4`, convoID, fromEpoch, toEpoch, maxPage)
	if err != nil {
		return nil, errorf("list commits: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Commit, error) {
		var c store.Commit
		err := r.Scan(&c.ConvoID, &c.Epoch, &c.Seq, &c.MsgID, &c.Data, &c.CreatedAt)
		c.CreatedAt = utc(c.CreatedAt)
		return c, err
	})
	if err != nil {
		return nil, errorf("list commits: %w", err)
	}
	return out, nil
}

// GroupInfo implements store.Store.
func (s *Store) GroupInfo(ctx context.Context, convoID string) (store.GroupInfo, error) {
	g := store.GroupInfo{ConvoID: convoID}
	err := s.pool.QueryRow(ctx, `SELECT epoch, data, updated_at FROM group_infos WHERE convo_id = $1`, convoID).Scan(&g.Epoch, &g.Data, &g.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.GroupInfo{}, errorf("read group info: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.GroupInfo{}, errorf("read group info: %w", err)
	}
	g.UpdatedAt = utc(g.UpdatedAt)
	return g, nil
}

// Welcome implements store.Store.
func (s *Store) Welcome(ctx context.Context, convoID string, recipients []string) (store.Welcome, error) {
	w := store.Welcome{ConvoID: convoID}
	err := s.pool.QueryRow(ctx, `SELECT w.id, w.epoch, w.data, w.created_at
		FROM welcomes w JOIN welcome_recipients r ON r.welcome_id = w.id
		WHERE w.convo_id = $1 AND r.consumed_at IS NULL AND r.recipient_did = ANY($2)
		ORDER BY w.id DESC LIMIT 1`, convoID, orEmpty(recipients)).Scan(&w.ID, &w.Epoch, &w.Data, &w.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Welcome{}, errorf("read welcome: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Welcome{}, errorf("read welcome: %w", err)
	}
	w.CreatedAt = utc(w.CreatedAt)
	return w, nil
}

// KeyPackageStats implements store.Store.
func (s *Store) KeyPackageStats(ctx context.Context, ownerDID, cipherSuite string) (store.KeyPackageStats, error) {
	now := s.now()
	rows, err := s.pool.Query(ctx, `SELECT cipher_suite,
			COUNT(*) FILTER (WHERE consumed_at IS NULL AND NOT last_resort AND expires_at > $1),
			COUNT(*) FILTER (WHERE consumed_at IS NULL AND last_resort AND expires_at > $1),
			COUNT(*),
			COUNT(consumed_at),
			COUNT(*) FILTER (WHERE consumed_at >= $2),
			COUNT(*) FILTER (WHERE consumed_at >= $3),
			MIN(expires_at) FILTER (WHERE consumed_at IS NULL AND NOT last_resort AND expires_at > $1)
		FROM key_packages WHERE owner_did = $4 AND ($5 = '' OR cipher_suite = $5)
		GROUP BY cipher_suite ORDER BY cipher_suite`,
		now, now.Add(-24*time.Hour), now.Add(-7*24*time.Hour), ownerDID, cipherSuite)
	if err != nil {
		return store.KeyPackageStats{}, errorf("key package stats: %w", err)
	}
	defer rows.Close()
	var st store.KeyPackageStats
	for rows.Next() {
		var suite string
		var avail, lr, total, consumed, c24, c7 int
		var oldest *time.Time
		if err := rows.Scan(&suite, &avail, &lr, &total, &consumed, &c24, &c7, &oldest); err != nil {
			return store.KeyPackageStats{}, errorf("key package stats: %w", err)
		}
		st.Available += avail
		st.LastResort += lr
		st.Total += total
		st.Consumed += consumed
		st.Consumed24h += c24
		st.Consumed7d += c7
		if o := fromNull(oldest); !o.IsZero() && (st.OldestExpiry.IsZero() || o.Before(st.OldestExpiry)) {
			st.OldestExpiry = o
		}
		st.ByCipherSuite = append(st.ByCipherSuite, store.CipherSuiteStats{CipherSuite: suite, Available: avail, Consumed: consumed})
	}
	if err := rows.Err(); err != nil {
		return store.KeyPackageStats{}, errorf("key package stats: %w", err)
	}
	return st, nil
}

// ConsumedKeyPackages implements store.Store.
func (s *Store) ConsumedKeyPackages(ctx context.Context, ownerDID, after string, limit int) ([]store.KeyPackage, string, error) {
	limit = clampLimit(limit)
	cur, ok, err := store.DecodeCursor(after)
	if err != nil {
		return nil, "", err
	}
	// Cursors carry milliseconds; compare at that precision.
	rows, err := s.pool.Query(ctx, `SELECT `+kpColumns+` FROM key_packages
		WHERE owner_did = $1 AND consumed_at IS NOT NULL
		AND (NOT $2 OR (date_trunc('milliseconds', consumed_at), ref) < ($3, $4))
		ORDER BY date_trunc('milliseconds', consumed_at) DESC, ref DESC LIMIT $5`, ownerDID, ok, cur.At, cur.ID, limit+1)
	if err != nil {
		return nil, "", errorf("list consumed key packages: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.KeyPackage, error) { return scanKeyPackage(r) })
	if err != nil {
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
	rows, err := s.pool.Query(ctx, `SELECT ref FROM key_packages
		WHERE owner_did = $1 AND device_id = $2 AND consumed_at IS NULL AND expires_at > $3 ORDER BY ref`,
		ownerDID, deviceID, s.now())
	if err != nil {
		return nil, errorf("list key package refs: %w", err)
	}
	refs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, errorf("list key package refs: %w", err)
	}
	return refs, nil
}

// KeyPackageByHash implements store.Store.
func (s *Store) KeyPackageByHash(ctx context.Context, ownerDID, hash string) (store.KeyPackage, error) {
	kp, err := scanKeyPackage(s.pool.QueryRow(ctx, `SELECT `+kpColumns+` FROM key_packages
		WHERE owner_did = $1 AND (ref = $2 OR data_sha256 = $2)
		ORDER BY ref = $2 DESC, ref LIMIT 1`, ownerDID, hash))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.KeyPackage{}, errorf("find key package: %w", store.ErrKeyPackageNotFound)
	}
	if err != nil {
		return store.KeyPackage{}, errorf("find key package: %w", err)
	}
	return kp, nil
}

// Devices implements store.Store.
func (s *Store) Devices(ctx context.Context, ownerDID string) ([]store.Device, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+deviceColumns+`,
			(SELECT COUNT(*) FROM key_packages k WHERE k.owner_did = d.owner_did AND k.device_id = d.device_id
				AND k.consumed_at IS NULL AND NOT k.last_resort AND k.expires_at > $1)
		FROM devices d WHERE d.owner_did = $2 ORDER BY d.registered_at, d.device_id`, s.now(), ownerDID)
	if err != nil {
		return nil, errorf("list devices: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Device, error) {
		var n int
		d, err := scanDevice(r, &n)
		d.KeyPackages = n
		return d, err
	})
	if err != nil {
		return nil, errorf("list devices: %w", err)
	}
	return out, nil
}

// EventsAfter implements store.Store.
func (s *Store) EventsAfter(ctx context.Context, convoIDs []string, after int64, limit int) ([]store.Event, error) {
	if len(convoIDs) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT cursor, convo_id, kind, message_id, epoch, created_bucket FROM events
		WHERE convo_id = ANY($1) AND cursor > $2 ORDER BY cursor LIMIT $3`, convoIDs, after, clampLimit(limit))
	if err != nil {
		return nil, errorf("list events: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Event, error) {
		var e store.Event
		var kind string
		var msg *string
		var epoch *int64
		if err := r.Scan(&e.Cursor, &e.ConvoID, &kind, &msg, &epoch, &e.CreatedAt); err != nil {
			return e, err
		}
		e.Kind, e.CreatedAt = store.EventKind(kind), utc(e.CreatedAt)
		if msg != nil {
			e.MessageID = *msg
		}
		if epoch != nil {
			e.Epoch = *epoch
		}
		return e, nil
	})
	if err != nil {
		return nil, errorf("list events: %w", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// EventHorizon implements store.Store.
func (s *Store) EventHorizon(ctx context.Context) (store.EventHorizon, error) {
	var purged int64
	var latest *int64
	err := s.pool.QueryRow(ctx, `SELECT h.purged_through, (SELECT MAX(cursor) FROM events) FROM event_horizon h WHERE h.id = 1`).Scan(&purged, &latest)
	if err != nil {
		return store.EventHorizon{}, errorf("read event horizon: %w", err)
	}
	h := store.EventHorizon{Oldest: purged + 1, Latest: purged}
	if latest != nil && *latest > purged {
		h.Latest = *latest
	}
	return h, nil
}
