package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// The social interfaces (store.Social) are defined on writer, over a
// querier: the Store's writes each run in a transaction of their own, its
// reads on the pool, and the writer Idempotent hands out runs both on its
// transaction.

// inTxValue runs fn in a fresh transaction and returns its value.
func inTxValue[T any](ctx context.Context, s *Store, fn func(w *writer) (T, error)) (out T, err error) {
	err = s.inTx(ctx, func(w *writer) error {
		out, err = fn(w)
		return err
	})
	return out, err
}

// reader is a writer over the pool, for the Store's reads.
func (s *Store) reader() *writer { return &writer{q: s.pool, now: s.now} }

// GrantRole implements store.Roles.
func (s *Store) GrantRole(ctx context.Context, g store.RoleGrant) (store.RoleGrant, error) {
	return inTxValue(ctx, s, func(w *writer) (store.RoleGrant, error) { return w.GrantRole(ctx, g) })
}

// convoLock is a statement that locks a conversation's row until the
// transaction ends. The conversation-scoped social writes serialize on
// that row: the writes that must exclude one another take forUpdate, the
// checks that must only not be overtaken take forShare.
type convoLock string

const (
	forShare  convoLock = `SELECT 1 FROM convos WHERE id = $1 FOR SHARE`
	forUpdate convoLock = `SELECT 1 FROM convos WHERE id = $1 FOR UPDATE`
)

// lockConvo takes lock on the conversation's row; store.ErrNotFound if
// there is none.
func (w *writer) lockConvo(ctx context.Context, convoID string, lock convoLock) error {
	var one int
	err := w.q.QueryRow(ctx, string(lock), convoID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("lock convo: %w", err)
	}
	return nil
}

// GrantRole implements store.Roles. The conversation row is locked first,
// so two admins demoting each other cannot both pass the last-admin check.
func (w *writer) GrantRole(ctx context.Context, g store.RoleGrant) (store.RoleGrant, error) {
	if err := w.lockConvo(ctx, g.ConvoID, forUpdate); err != nil {
		return store.RoleGrant{}, fmt.Errorf("grant role: %w", err)
	}
	var current string
	err := w.q.QueryRow(ctx, `SELECT role FROM members WHERE convo_id = $1 AND user_did = $2 AND left_at IS NULL LIMIT 1`,
		g.ConvoID, g.UserDID).Scan(&current)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.RoleGrant{}, fmt.Errorf("grant role: %w", store.ErrNotMember)
	}
	if err != nil {
		return store.RoleGrant{}, fmt.Errorf("grant role: %w", err)
	}
	if store.Role(current) == store.RoleAdmin && g.Role != store.RoleAdmin {
		var others int
		if err := w.q.QueryRow(ctx, `SELECT COUNT(*) FROM members WHERE convo_id = $1 AND user_did <> $2 AND role = 'admin' AND left_at IS NULL`,
			g.ConvoID, g.UserDID).Scan(&others); err != nil {
			return store.RoleGrant{}, fmt.Errorf("grant role: count admins: %w", err)
		}
		if others == 0 {
			return store.RoleGrant{}, fmt.Errorf("grant role: %w", store.ErrLastAdmin)
		}
	}
	if g.Role == store.RoleMember {
		g.GrantedAt, g.GrantedBy = time.Time{}, ""
	} else {
		g.GrantedAt = w.bucket()
	}
	if _, err := w.q.Exec(ctx, `UPDATE members SET role = $1, role_granted_at = $2, role_granted_by = $3
		WHERE convo_id = $4 AND user_did = $5 AND left_at IS NULL`,
		string(g.Role), nullTime(g.GrantedAt), nullString(g.GrantedBy), g.ConvoID, g.UserDID); err != nil {
		return store.RoleGrant{}, fmt.Errorf("grant role: %w", err)
	}
	return g, nil
}

const policyColumns = `convo_id, allow_invites, admin_only_invites, allow_member_add, allow_member_remove,
	require_admin_approval, max_members, updated_at, updated_by`

// Policy implements store.Policies.
func (s *Store) Policy(ctx context.Context, convoID string) (store.Policy, error) {
	p, err := readPolicy(ctx, s.pool, convoID)
	return p, classify(err)
}

// Policy implements store.Policies. In a transaction the policy is read
// under the conversation row's exclusive lock, the one PutPolicy takes:
// a write decided on it (createInvite's) commits before any change to it
// can, and updatePolicy's read-modify-write loses no concurrent change. A
// shared lock would not do for the latter: two updates would each hold
// one and deadlock upgrading it.
func (w *writer) Policy(ctx context.Context, convoID string) (store.Policy, error) {
	if err := w.lockConvo(ctx, convoID, forUpdate); err != nil {
		return store.Policy{}, fmt.Errorf("read policy: %w", err)
	}
	return readPolicy(ctx, w.q, convoID)
}

func readPolicy(ctx context.Context, q querier, convoID string) (store.Policy, error) {
	var p store.Policy
	err := q.QueryRow(ctx, `SELECT `+policyColumns+` FROM convo_policies WHERE convo_id = $1`, convoID).Scan(
		&p.ConvoID, &p.AllowInvites, &p.AdminOnlyInvites, &p.AllowMemberAdd, &p.AllowMemberRemove,
		&p.RequireAdminApproval, &p.MaxMembers, &p.UpdatedAt, &p.UpdatedBy)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Policy{}, fmt.Errorf("read policy: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Policy{}, fmt.Errorf("read policy: %w", err)
	}
	p.UpdatedAt = p.UpdatedAt.UTC()
	return p, nil
}

// PutPolicy implements store.Policies.
func (s *Store) PutPolicy(ctx context.Context, p store.Policy) (store.Policy, error) {
	return inTxValue(ctx, s, func(w *writer) (store.Policy, error) { return w.PutPolicy(ctx, p) })
}

// PutPolicy implements store.Policies. It takes the conversation row's
// exclusive lock first, so it waits for every transaction that read the
// policy (see writer.Policy) or checked an actor (requireActor) to end,
// and none of them can act on the policy it replaces after it commits.
func (w *writer) PutPolicy(ctx context.Context, p store.Policy) (store.Policy, error) {
	if err := w.lockConvo(ctx, p.ConvoID, forUpdate); err != nil {
		return store.Policy{}, fmt.Errorf("put policy: %w", err)
	}
	p.UpdatedAt = w.bucket()
	_, err := w.q.Exec(ctx, `INSERT INTO convo_policies (`+policyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (convo_id) DO UPDATE SET allow_invites = excluded.allow_invites, admin_only_invites = excluded.admin_only_invites,
			allow_member_add = excluded.allow_member_add, allow_member_remove = excluded.allow_member_remove,
			require_admin_approval = excluded.require_admin_approval, max_members = excluded.max_members,
			updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
		p.ConvoID, p.AllowInvites, p.AdminOnlyInvites, p.AllowMemberAdd, p.AllowMemberRemove,
		p.RequireAdminApproval, p.MaxMembers, p.UpdatedAt, p.UpdatedBy)
	if err != nil {
		return store.Policy{}, fmt.Errorf("put policy: %w", err)
	}
	return p, nil
}

// requireActor checks by (nil: nothing to check) in the conversation.
// It share-locks the conversation row first: a membership change or a
// role grant updates or locks that row before it touches members, so one
// in flight is waited for and then seen by the check's own snapshot
// (READ COMMITTED takes one per statement), never slipped past.
func (w *writer) requireActor(ctx context.Context, convoID string, by *store.Actor) error {
	if by == nil {
		return nil
	}
	if err := w.lockConvo(ctx, convoID, forShare); err != nil {
		return err
	}
	var roles []string
	for _, r := range by.Roles {
		roles = append(roles, string(r))
	}
	var member, permitted bool
	err := w.q.QueryRow(ctx, `SELECT `+memberCheckSQL("$1", "$2", "$3")+`,
		EXISTS (SELECT 1 FROM members WHERE convo_id = $1 AND member_did = ANY($2) AND left_at IS NULL AND ($4::text[] IS NULL OR role = ANY($4)))
		OR ($3 <> '' AND EXISTS (SELECT 1 FROM members WHERE user_did = $3 AND convo_id = $1 AND left_at IS NULL AND ($4::text[] IS NULL OR role = ANY($4))))`,
		convoID, by.Member.MemberDIDs, by.Member.AnyRowOf, roles).Scan(&member, &permitted)
	switch {
	case err != nil:
		return fmt.Errorf("check actor: %w", err)
	case !member:
		return store.ErrNotMember
	case !permitted:
		return store.ErrRoleRequired
	}
	return nil
}

const reportColumns = `id, convo_id, target_did, category, sealed, status, action, created_at, resolved_at`

func scanReport(sc interface{ Scan(...any) error }) (store.Report, error) {
	var r store.Report
	var resolved *time.Time
	if err := sc.Scan(&r.ID, &r.ConvoID, &r.TargetDID, &r.Category, &r.Sealed, &r.Status, &r.Action, &r.CreatedAt, &resolved); err != nil {
		return store.Report{}, err
	}
	r.CreatedAt, r.ResolvedAt = r.CreatedAt.UTC(), fromNull(resolved)
	return r, nil
}

// AddReport implements store.Reports.
func (s *Store) AddReport(ctx context.Context, r store.Report, by *store.Actor) (store.Report, error) {
	return inTxValue(ctx, s, func(w *writer) (store.Report, error) { return w.AddReport(ctx, r, by) })
}

// AddReport implements store.Reports.
func (w *writer) AddReport(ctx context.Context, r store.Report, by *store.Actor) (store.Report, error) {
	if _, err := w.convoEpoch(ctx, r.ConvoID); err != nil {
		return store.Report{}, fmt.Errorf("add report: %w", err)
	}
	if err := w.requireActor(ctx, r.ConvoID, by); err != nil {
		return store.Report{}, fmt.Errorf("add report: %w", err)
	}
	r.Status, r.Action, r.CreatedAt, r.ResolvedAt = store.ReportPending, "", w.bucket(), time.Time{}
	_, err := w.q.Exec(ctx, `INSERT INTO reports (`+reportColumns+`) VALUES ($1, $2, $3, $4, $5, $6, '', $7, NULL)`,
		r.ID, r.ConvoID, r.TargetDID, r.Category, r.Sealed, r.Status, r.CreatedAt)
	if isUnique(err) {
		return store.Report{}, fmt.Errorf("add report: %w", store.ErrConflict)
	}
	if err != nil {
		return store.Report{}, fmt.Errorf("add report: %w", err)
	}
	return r, nil
}

// Report implements store.Reports.
func (s *Store) Report(ctx context.Context, id string) (store.Report, error) {
	r, err := s.reader().Report(ctx, id)
	return r, classify(err)
}

// Report implements store.Reports.
func (w *writer) Report(ctx context.Context, id string) (store.Report, error) {
	r, err := scanReport(w.q.QueryRow(ctx, `SELECT `+reportColumns+` FROM reports WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Report{}, fmt.Errorf("read report: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Report{}, fmt.Errorf("read report: %w", err)
	}
	return r, nil
}

// Reports implements store.Reports.
func (s *Store) Reports(ctx context.Context, convoID, status string, limit int) ([]store.Report, error) {
	out, err := s.reader().Reports(ctx, convoID, status, limit)
	return out, classify(err)
}

// Reports implements store.Reports.
func (w *writer) Reports(ctx context.Context, convoID, status string, limit int) ([]store.Report, error) {
	rows, err := w.q.Query(ctx, `SELECT `+reportColumns+` FROM reports WHERE convo_id = $1 AND ($2 = '' OR status = $2)
		ORDER BY created_at DESC, id DESC LIMIT $3`, convoID, status, clampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("list reports: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Report, error) { return scanReport(r) })
	if err != nil {
		return nil, fmt.Errorf("list reports: %w", err)
	}
	if out == nil {
		out = []store.Report{}
	}
	return out, nil
}

// ResolveReport implements store.Reports.
func (s *Store) ResolveReport(ctx context.Context, id, status, action string, by *store.Actor) (store.Report, error) {
	return inTxValue(ctx, s, func(w *writer) (store.Report, error) { return w.ResolveReport(ctx, id, status, action, by) })
}

// ResolveReport implements store.Reports.
func (w *writer) ResolveReport(ctx context.Context, id, status, action string, by *store.Actor) (store.Report, error) {
	if by != nil {
		cur, err := w.Report(ctx, id)
		if err != nil {
			return store.Report{}, fmt.Errorf("resolve report: %w", err)
		}
		if err := w.requireActor(ctx, cur.ConvoID, by); err != nil {
			return store.Report{}, fmt.Errorf("resolve report: %w", err)
		}
	}
	r, err := scanReport(w.q.QueryRow(ctx, `UPDATE reports SET status = $1, action = $2, resolved_at = $3
		WHERE id = $4 AND status = 'pending' RETURNING `+reportColumns, status, action, w.bucket(), id))
	if errors.Is(err, pgx.ErrNoRows) {
		if _, err := w.Report(ctx, id); err != nil {
			return store.Report{}, fmt.Errorf("resolve report: %w", err)
		}
		return store.Report{}, fmt.Errorf("resolve report: %w", store.ErrNotPending)
	}
	if err != nil {
		return store.Report{}, fmt.Errorf("resolve report: %w", err)
	}
	return r, nil
}

// ReportStats implements store.Reports.
func (s *Store) ReportStats(ctx context.Context, convoID string, since time.Time) (store.ReportStats, error) {
	st, err := s.reader().ReportStats(ctx, convoID, since)
	return st, classify(err)
}

// ReportStats implements store.Reports.
func (w *writer) ReportStats(ctx context.Context, convoID string, since time.Time) (store.ReportStats, error) {
	rows, err := w.q.Query(ctx, `SELECT category, status, action, COUNT(*),
			COALESCE(FLOOR(EXTRACT(EPOCH FROM SUM(resolved_at - created_at)) * 1000), 0)::BIGINT
		FROM reports WHERE ($1 = '' OR convo_id = $1) AND created_at >= $2 GROUP BY category, status, action`,
		convoID, since.UTC())
	if err != nil {
		return store.ReportStats{}, fmt.Errorf("report stats: %w", err)
	}
	groups, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.ReportGroup, error) {
		var g store.ReportGroup
		var total int64
		err := r.Scan(&g.Category, &g.Status, &g.Action, &g.Count, &total)
		g.ResolutionTime = time.Duration(total) * time.Millisecond
		return g, err
	})
	if err != nil {
		return store.ReportStats{}, fmt.Errorf("report stats: %w", err)
	}
	return store.SumReportGroups(groups), nil
}

const inviteColumns = `id, convo_id, psk_hash, created_by, target_did, created_at, expires_at, max_uses, use_count, revoked_at, revoked_by`

func scanInvite(sc interface{ Scan(...any) error }) (store.Invite, error) {
	var inv store.Invite
	var expires, revoked *time.Time
	if err := sc.Scan(&inv.ID, &inv.ConvoID, &inv.PSKHash, &inv.CreatedBy, &inv.TargetDID, &inv.CreatedAt, &expires,
		&inv.MaxUses, &inv.UseCount, &revoked, &inv.RevokedBy); err != nil {
		return store.Invite{}, err
	}
	inv.CreatedAt, inv.ExpiresAt, inv.RevokedAt = inv.CreatedAt.UTC(), fromNull(expires), fromNull(revoked)
	return inv, nil
}

// CreateInvite implements store.Invites.
func (s *Store) CreateInvite(ctx context.Context, inv store.Invite, by *store.Actor) (store.Invite, error) {
	return inTxValue(ctx, s, func(w *writer) (store.Invite, error) { return w.CreateInvite(ctx, inv, by) })
}

// CreateInvite implements store.Invites.
func (w *writer) CreateInvite(ctx context.Context, inv store.Invite, by *store.Actor) (store.Invite, error) {
	if _, err := w.convoEpoch(ctx, inv.ConvoID); err != nil {
		return store.Invite{}, fmt.Errorf("create invite: %w", err)
	}
	if err := w.requireActor(ctx, inv.ConvoID, by); err != nil {
		return store.Invite{}, fmt.Errorf("create invite: %w", err)
	}
	inv.CreatedAt, inv.UseCount, inv.RevokedAt, inv.RevokedBy = w.bucket(), 0, time.Time{}, ""
	inv.ExpiresAt = utc(inv.ExpiresAt)
	_, err := w.q.Exec(ctx, `INSERT INTO invites (`+inviteColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, NULL, '')`,
		inv.ID, inv.ConvoID, inv.PSKHash, inv.CreatedBy, inv.TargetDID, inv.CreatedAt, nullTime(inv.ExpiresAt), inv.MaxUses)
	if isUnique(err) {
		return store.Invite{}, fmt.Errorf("create invite: %w", store.ErrConflict)
	}
	if err != nil {
		return store.Invite{}, fmt.Errorf("create invite: %w", err)
	}
	return inv, nil
}

// Invite implements store.Invites.
func (s *Store) Invite(ctx context.Context, id string) (store.Invite, error) {
	inv, err := s.reader().Invite(ctx, id)
	return inv, classify(err)
}

// Invite implements store.Invites.
func (w *writer) Invite(ctx context.Context, id string) (store.Invite, error) {
	inv, err := scanInvite(w.q.QueryRow(ctx, `SELECT `+inviteColumns+` FROM invites WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Invite{}, fmt.Errorf("read invite: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Invite{}, fmt.Errorf("read invite: %w", err)
	}
	return inv, nil
}

// Invites implements store.Invites.
func (s *Store) Invites(ctx context.Context, convoID string, includeRevoked bool) ([]store.Invite, error) {
	out, err := s.reader().Invites(ctx, convoID, includeRevoked)
	return out, classify(err)
}

// Invites implements store.Invites.
func (w *writer) Invites(ctx context.Context, convoID string, includeRevoked bool) ([]store.Invite, error) {
	rows, err := w.q.Query(ctx, `SELECT `+inviteColumns+` FROM invites WHERE convo_id = $1 AND ($2 OR revoked_at IS NULL)
		ORDER BY created_at DESC, id DESC`, convoID, includeRevoked)
	if err != nil {
		return nil, fmt.Errorf("list invites: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Invite, error) { return scanInvite(r) })
	if err != nil {
		return nil, fmt.Errorf("list invites: %w", err)
	}
	if out == nil {
		out = []store.Invite{}
	}
	return out, nil
}

// RevokeInvite implements store.Invites.
func (s *Store) RevokeInvite(ctx context.Context, id, revokedBy string, by *store.Actor) (store.Invite, error) {
	return inTxValue(ctx, s, func(w *writer) (store.Invite, error) { return w.RevokeInvite(ctx, id, revokedBy, by) })
}

// RevokeInvite implements store.Invites.
func (w *writer) RevokeInvite(ctx context.Context, id, revokedBy string, by *store.Actor) (store.Invite, error) {
	if by != nil {
		cur, err := w.Invite(ctx, id)
		if err != nil {
			return store.Invite{}, fmt.Errorf("revoke invite: %w", err)
		}
		if err := w.requireActor(ctx, cur.ConvoID, by); err != nil {
			return store.Invite{}, fmt.Errorf("revoke invite: %w", err)
		}
	}
	inv, err := scanInvite(w.q.QueryRow(ctx, `UPDATE invites SET revoked_at = $1, revoked_by = $2
		WHERE id = $3 AND revoked_at IS NULL RETURNING `+inviteColumns, w.bucket(), revokedBy, id))
	if errors.Is(err, pgx.ErrNoRows) {
		if _, err := w.Invite(ctx, id); err != nil {
			return store.Invite{}, fmt.Errorf("revoke invite: %w", err)
		}
		return store.Invite{}, fmt.Errorf("revoke invite: %w", store.ErrNotPending)
	}
	if err != nil {
		return store.Invite{}, fmt.Errorf("revoke invite: %w", err)
	}
	return inv, nil
}

// RedeemInvite implements store.Invites. The conditional UPDATE takes the
// row lock, so concurrent redemptions never exceed max_uses.
func (s *Store) RedeemInvite(ctx context.Context, convoID, pskHash, redeemerDID string, maxMembers int) (store.Invite, error) {
	return inTxValue(ctx, s, func(w *writer) (store.Invite, error) {
		return w.RedeemInvite(ctx, convoID, pskHash, redeemerDID, maxMembers)
	})
}

// RedeemInvite implements store.Invites. The conversation row's exclusive
// lock comes first: every membership change (store.ApplyChange updates
// that row) and PutPolicy waits for this transaction, so the members
// counted against maxMembers stay the members until it commits, and the
// policy the caller read in it stays the policy. Exclusive, not shared:
// the join that follows advances the epoch on the same row, and two
// shared holders upgrading would deadlock.
func (w *writer) RedeemInvite(ctx context.Context, convoID, pskHash, redeemerDID string, maxMembers int) (store.Invite, error) {
	if err := w.lockConvo(ctx, convoID, forUpdate); errors.Is(err, store.ErrNotFound) {
		return store.Invite{}, fmt.Errorf("redeem invite: %w", store.ErrInviteUnusable)
	} else if err != nil {
		return store.Invite{}, fmt.Errorf("redeem invite: %w", err)
	}
	var removed bool
	if err := w.q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM members WHERE convo_id = $1 AND user_did = $2 AND removed)`,
		convoID, redeemerDID).Scan(&removed); err != nil {
		return store.Invite{}, fmt.Errorf("redeem invite: read removal: %w", err)
	}
	if err := w.memberLimit(ctx, convoID, countAccounts, []string{redeemerDID}, maxMembers); err != nil {
		return store.Invite{}, fmt.Errorf("redeem invite: %w", err)
	}
	inv, err := scanInvite(w.q.QueryRow(ctx, `UPDATE invites SET use_count = use_count + 1
		WHERE convo_id = $1 AND psk_hash = $2 AND revoked_at IS NULL
			AND ((target_did = '' AND NOT $5) OR target_did = $3)
			AND (expires_at IS NULL OR expires_at > $4)
			AND (max_uses = 0 OR use_count < max_uses)
		RETURNING `+inviteColumns, convoID, pskHash, redeemerDID, w.now().UTC(), removed))
	if errors.Is(err, pgx.ErrNoRows) && removed {
		return store.Invite{}, fmt.Errorf("redeem invite: %w", store.ErrRemovedMember)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Invite{}, fmt.Errorf("redeem invite: %w", store.ErrInviteUnusable)
	}
	if err != nil {
		return store.Invite{}, fmt.Errorf("redeem invite: %w", err)
	}
	return inv, nil
}

// AdmitMembers implements store.Admissions.
func (s *Store) AdmitMembers(ctx context.Context, convoID string, add []store.NewMember, limits store.MemberLimits, by *store.Actor) error {
	return s.inTx(ctx, func(w *writer) error { return w.AdmitMembers(ctx, convoID, add, limits, by) })
}

// AdmitMembers implements store.Admissions. It takes the conversation
// row's exclusive lock first, as RedeemInvite does and for the same
// reasons: no membership change, role grant or PutPolicy commits until
// the transaction ends, so what it checked stays true for the add that
// follows, and a concurrent add counts this one's members.
func (w *writer) AdmitMembers(ctx context.Context, convoID string, add []store.NewMember, limits store.MemberLimits, by *store.Actor) error {
	if err := w.lockConvo(ctx, convoID, forUpdate); err != nil {
		return fmt.Errorf("admit members: %w", err)
	}
	if err := w.requireActor(ctx, convoID, by); err != nil {
		return fmt.Errorf("admit members: %w", err)
	}
	users, devices := store.AdmittedDIDs(add)
	if err := w.memberLimit(ctx, convoID, countAccounts, users, limits.Accounts); err != nil {
		return fmt.Errorf("admit members: %w", err)
	}
	if err := w.memberLimit(ctx, convoID, countDevices, devices, limits.Devices); err != nil {
		return fmt.Errorf("admit members: %w", err)
	}
	return nil
}

// memberLimit is the member limit of AdmitMembers and RedeemInvite:
// store.ErrMemberLimit if limit is above 0 and the conversation's active
// accounts or devices (what) together with adding number more than limit.
// The caller holds the conversation row's exclusive lock.
func (w *writer) memberLimit(ctx context.Context, convoID string, what counted, adding []string, limit int) error {
	if limit <= 0 {
		return nil
	}
	var n int
	if err := w.q.QueryRow(ctx, `SELECT count(*) FROM (
			SELECT `+string(what)+` FROM members WHERE convo_id = $1 AND left_at IS NULL
			UNION SELECT unnest($2::text[])) AS counted`,
		convoID, adding).Scan(&n); err != nil {
		return fmt.Errorf("count members: %w", err)
	}
	if n > limit {
		return store.ErrMemberLimit
	}
	return nil
}

// counted is the members column a member limit counts the distinct
// values of: accounts (user_did) or devices (member_did, one row each).
type counted string

const (
	countAccounts counted = "user_did"
	countDevices  counted = "member_did"
)

// OptIn implements store.OptIns.
func (s *Store) OptIn(ctx context.Context, did string) (time.Time, error) {
	return inTxValue(ctx, s, func(w *writer) (time.Time, error) { return w.OptIn(ctx, did) })
}

// OptIn implements store.OptIns.
func (w *writer) OptIn(ctx context.Context, did string) (time.Time, error) {
	var at time.Time
	err := w.q.QueryRow(ctx, `INSERT INTO opt_ins (did, opted_in_at) VALUES ($1, $2)
		ON CONFLICT (did) DO UPDATE SET did = excluded.did RETURNING opted_in_at`, did, w.bucket()).Scan(&at)
	if err != nil {
		return time.Time{}, fmt.Errorf("opt in: %w", err)
	}
	return at.UTC(), nil
}

// OptOut implements store.OptIns.
func (s *Store) OptOut(ctx context.Context, did string) (bool, error) {
	return inTxValue(ctx, s, func(w *writer) (bool, error) { return w.OptOut(ctx, did) })
}

// OptOut implements store.OptIns.
func (w *writer) OptOut(ctx context.Context, did string) (bool, error) {
	tag, err := w.q.Exec(ctx, `DELETE FROM opt_ins WHERE did = $1`, did)
	if err != nil {
		return false, fmt.Errorf("opt out: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}

// OptedIn implements store.OptIns.
func (s *Store) OptedIn(ctx context.Context, dids []string) (map[string]time.Time, error) {
	out, err := s.reader().OptedIn(ctx, dids)
	return out, classify(err)
}

// OptedIn implements store.OptIns.
func (w *writer) OptedIn(ctx context.Context, dids []string) (map[string]time.Time, error) {
	rows, err := w.q.Query(ctx, `SELECT did, opted_in_at FROM opt_ins WHERE did = ANY($1)`, dids)
	if err != nil {
		return nil, fmt.Errorf("read opt-ins: %w", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var did string
		var at time.Time
		if err := rows.Scan(&did, &at); err != nil {
			return nil, fmt.Errorf("read opt-ins: %w", err)
		}
		out[did] = at.UTC()
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read opt-ins: %w", err)
	}
	return out, nil
}

var (
	_ store.Social = (*Store)(nil)
	_ store.Social = (*writer)(nil)
)
