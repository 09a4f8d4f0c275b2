package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// The social interfaces (store.Social): the Store's writes each run in a
// transaction of the writer and its reads on the read pool; the txWriter
// Idempotent hands out runs both on its transaction, so a read there sees
// the transaction's own writes.

// rowQuerier is what the reads need: a write transaction or the read pool.
type rowQuerier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// inWriter runs fn on a fresh write transaction and returns its value.
func inWriter[T any](ctx context.Context, s *Store, fn func(w *txWriter) (T, error)) (out T, err error) {
	err = s.withWriter(ctx, func(w *txWriter) error {
		out, err = fn(w)
		return err
	})
	return out, err
}

// GrantRole implements store.Roles.
func (s *Store) GrantRole(ctx context.Context, g store.RoleGrant) (store.RoleGrant, error) {
	return inWriter(ctx, s, func(w *txWriter) (store.RoleGrant, error) { return w.GrantRole(ctx, g) })
}

// GrantRole implements store.Roles.
func (w *txWriter) GrantRole(ctx context.Context, g store.RoleGrant) (store.RoleGrant, error) {
	if _, err := w.convoEpoch(ctx, g.ConvoID); err != nil {
		return store.RoleGrant{}, fmt.Errorf("grant role: %w", err)
	}
	var current string
	err := w.tx.QueryRowContext(ctx, `SELECT role FROM members WHERE convo_id = ? AND user_did = ? AND left_at IS NULL LIMIT 1`,
		g.ConvoID, g.UserDID).Scan(&current)
	if errors.Is(err, sql.ErrNoRows) {
		return store.RoleGrant{}, fmt.Errorf("grant role: %w", store.ErrNotMember)
	}
	if err != nil {
		return store.RoleGrant{}, fmt.Errorf("grant role: %w", err)
	}
	if store.Role(current) == store.RoleAdmin && g.Role != store.RoleAdmin {
		var others int
		if err := w.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM members WHERE convo_id = ? AND user_did <> ? AND role = 'admin' AND left_at IS NULL`,
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
		g.GrantedAt = store.Bucket(w.now())
	}
	if _, err := w.tx.ExecContext(ctx, `UPDATE members SET role = ?, role_granted_at = ?, role_granted_by = ?
		WHERE convo_id = ? AND user_did = ? AND left_at IS NULL`,
		string(g.Role), msOrNull(g.GrantedAt), nullString(g.GrantedBy), g.ConvoID, g.UserDID); err != nil {
		return store.RoleGrant{}, fmt.Errorf("grant role: %w", err)
	}
	return g, nil
}

const policyColumns = `convo_id, allow_invites, admin_only_invites, allow_member_add, allow_member_remove,
	require_admin_approval, max_members, updated_at, updated_by`

// Policy implements store.Policies.
func (s *Store) Policy(ctx context.Context, convoID string) (store.Policy, error) {
	p, err := readPolicy(ctx, s.r, convoID)
	return p, classify(err)
}

// Policy implements store.Policies. Read in a write transaction, it needs
// no lock to serialize with PutPolicy (store.Policies asks for that): the
// one writer connection runs every write transaction's statements in turn
// (see committer.run), each from BEGIN IMMEDIATE to commit, so no policy
// change lands between this read and the write it decides.
// testPolicySerializesInvites in storetest holds this.
func (w *txWriter) Policy(ctx context.Context, convoID string) (store.Policy, error) {
	return readPolicy(ctx, w.tx, convoID)
}

func readPolicy(ctx context.Context, q rowQuerier, convoID string) (store.Policy, error) {
	var p store.Policy
	var updated int64
	err := q.QueryRowContext(ctx, `SELECT `+policyColumns+` FROM convo_policies WHERE convo_id = ?`, convoID).Scan(
		&p.ConvoID, &p.AllowInvites, &p.AdminOnlyInvites, &p.AllowMemberAdd, &p.AllowMemberRemove,
		&p.RequireAdminApproval, &p.MaxMembers, &updated, &p.UpdatedBy)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Policy{}, fmt.Errorf("read policy: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Policy{}, fmt.Errorf("read policy: %w", err)
	}
	p.UpdatedAt = fromMS(updated)
	return p, nil
}

// PutPolicy implements store.Policies.
func (s *Store) PutPolicy(ctx context.Context, p store.Policy) (store.Policy, error) {
	return inWriter(ctx, s, func(w *txWriter) (store.Policy, error) { return w.PutPolicy(ctx, p) })
}

// PutPolicy implements store.Policies.
func (w *txWriter) PutPolicy(ctx context.Context, p store.Policy) (store.Policy, error) {
	if _, err := w.convoEpoch(ctx, p.ConvoID); err != nil {
		return store.Policy{}, fmt.Errorf("put policy: %w", err)
	}
	p.UpdatedAt = store.Bucket(w.now())
	_, err := w.tx.ExecContext(ctx, `INSERT INTO convo_policies (`+policyColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (convo_id) DO UPDATE SET allow_invites = excluded.allow_invites, admin_only_invites = excluded.admin_only_invites,
			allow_member_add = excluded.allow_member_add, allow_member_remove = excluded.allow_member_remove,
			require_admin_approval = excluded.require_admin_approval, max_members = excluded.max_members,
			updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
		p.ConvoID, p.AllowInvites, p.AdminOnlyInvites, p.AllowMemberAdd, p.AllowMemberRemove,
		p.RequireAdminApproval, p.MaxMembers, ms(p.UpdatedAt), p.UpdatedBy)
	if err != nil {
		return store.Policy{}, fmt.Errorf("put policy: %w", err)
	}
	return p, nil
}

const reportColumns = `id, convo_id, target_did, category, sealed, status, action, created_at, resolved_at`

func scanReport(sc interface{ Scan(...any) error }) (store.Report, error) {
	var r store.Report
	var created int64
	var resolved sql.NullInt64
	if err := sc.Scan(&r.ID, &r.ConvoID, &r.TargetDID, &r.Category, &r.Sealed, &r.Status, &r.Action, &created, &resolved); err != nil {
		return store.Report{}, err
	}
	r.CreatedAt, r.ResolvedAt = fromMS(created), fromNullMS(resolved)
	return r, nil
}

// requireActor checks by (nil: nothing to check) in the conversation. The
// write transaction holds SQLite's write lock from its start (BEGIN
// IMMEDIATE), so no membership change or role grant can land between
// this check and the write.
func (w *txWriter) requireActor(ctx context.Context, convoID string, by *store.Actor) error {
	if by == nil {
		return nil
	}
	if err := w.requireMember(ctx, convoID, by.Member); err != nil {
		return err
	}
	if len(by.Roles) == 0 {
		return nil
	}
	roles := make([]string, 0, len(by.Roles))
	for _, r := range by.Roles {
		roles = append(roles, string(r))
	}
	var ok bool
	err := w.tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM members WHERE convo_id = ?1
			AND member_did IN (SELECT value FROM json_each(?2)) AND left_at IS NULL AND role IN (SELECT value FROM json_each(?4)))
		OR (?3 <> '' AND EXISTS (SELECT 1 FROM members WHERE user_did = ?3 AND convo_id = ?1 AND left_at IS NULL
			AND role IN (SELECT value FROM json_each(?4))))`,
		convoID, jsonList(by.Member.MemberDIDs), by.Member.AnyRowOf, jsonList(roles)).Scan(&ok)
	if err != nil {
		return fmt.Errorf("check role: %w", err)
	}
	if !ok {
		return store.ErrRoleRequired
	}
	return nil
}

// AddReport implements store.Reports.
func (s *Store) AddReport(ctx context.Context, r store.Report, by *store.Actor) (store.Report, error) {
	return inWriter(ctx, s, func(w *txWriter) (store.Report, error) { return w.AddReport(ctx, r, by) })
}

// AddReport implements store.Reports.
func (w *txWriter) AddReport(ctx context.Context, r store.Report, by *store.Actor) (store.Report, error) {
	if _, err := w.convoEpoch(ctx, r.ConvoID); err != nil {
		return store.Report{}, fmt.Errorf("add report: %w", err)
	}
	if err := w.requireActor(ctx, r.ConvoID, by); err != nil {
		return store.Report{}, fmt.Errorf("add report: %w", err)
	}
	r.Status, r.Action, r.CreatedAt, r.ResolvedAt = store.ReportPending, "", store.Bucket(w.now()), time.Time{}
	_, err := w.tx.ExecContext(ctx, `INSERT INTO reports (`+reportColumns+`) VALUES (?, ?, ?, ?, ?, ?, '', ?, NULL)`,
		r.ID, r.ConvoID, r.TargetDID, r.Category, r.Sealed, r.Status, ms(r.CreatedAt))
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
	r, err := readReport(ctx, s.r, id)
	return r, classify(err)
}

// Report implements store.Reports.
func (w *txWriter) Report(ctx context.Context, id string) (store.Report, error) {
	return readReport(ctx, w.tx, id)
}

func readReport(ctx context.Context, q rowQuerier, id string) (store.Report, error) {
	r, err := scanReport(q.QueryRowContext(ctx, `SELECT `+reportColumns+` FROM reports WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Report{}, fmt.Errorf("read report: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Report{}, fmt.Errorf("read report: %w", err)
	}
	return r, nil
}

// Reports implements store.Reports.
func (s *Store) Reports(ctx context.Context, convoID, status string, limit int) ([]store.Report, error) {
	out, err := readReports(ctx, s.r, convoID, status, limit)
	return out, classify(err)
}

// Reports implements store.Reports.
func (w *txWriter) Reports(ctx context.Context, convoID, status string, limit int) ([]store.Report, error) {
	return readReports(ctx, w.tx, convoID, status, limit)
}

func readReports(ctx context.Context, q rowQuerier, convoID, status string, limit int) ([]store.Report, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+reportColumns+` FROM reports WHERE convo_id = ? AND (? = '' OR status = ?)
		ORDER BY created_at DESC, id DESC LIMIT ?`, convoID, status, status, clampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("list reports: %w", err)
	}
	defer rows.Close()
	out := []store.Report{}
	for rows.Next() {
		r, err := scanReport(rows)
		if err != nil {
			return nil, fmt.Errorf("list reports: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list reports: %w", err)
	}
	return out, nil
}

// ResolveReport implements store.Reports.
func (s *Store) ResolveReport(ctx context.Context, id, status, action string, by *store.Actor) (store.Report, error) {
	return inWriter(ctx, s, func(w *txWriter) (store.Report, error) { return w.ResolveReport(ctx, id, status, action, by) })
}

// ResolveReport implements store.Reports.
func (w *txWriter) ResolveReport(ctx context.Context, id, status, action string, by *store.Actor) (store.Report, error) {
	if by != nil {
		cur, err := readReport(ctx, w.tx, id)
		if err != nil {
			return store.Report{}, fmt.Errorf("resolve report: %w", err)
		}
		if err := w.requireActor(ctx, cur.ConvoID, by); err != nil {
			return store.Report{}, fmt.Errorf("resolve report: %w", err)
		}
	}
	r, err := scanReport(w.tx.QueryRowContext(ctx, `UPDATE reports SET status = ?, action = ?, resolved_at = ?
		WHERE id = ? AND status = 'pending' RETURNING `+reportColumns, status, action, ms(store.Bucket(w.now())), id))
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := readReport(ctx, w.tx, id); err != nil {
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
	st, err := readReportStats(ctx, s.r, convoID, since)
	return st, classify(err)
}

// ReportStats implements store.Reports.
func (w *txWriter) ReportStats(ctx context.Context, convoID string, since time.Time) (store.ReportStats, error) {
	return readReportStats(ctx, w.tx, convoID, since)
}

func readReportStats(ctx context.Context, q rowQuerier, convoID string, since time.Time) (store.ReportStats, error) {
	rows, err := q.QueryContext(ctx, `SELECT category, status, action, COUNT(*), COALESCE(SUM(resolved_at - created_at), 0)
		FROM reports WHERE (? = '' OR convo_id = ?) AND created_at >= ? GROUP BY category, status, action`,
		convoID, convoID, ms(since))
	if err != nil {
		return store.ReportStats{}, fmt.Errorf("report stats: %w", err)
	}
	defer rows.Close()
	var groups []store.ReportGroup
	for rows.Next() {
		var g store.ReportGroup
		var total int64
		if err := rows.Scan(&g.Category, &g.Status, &g.Action, &g.Count, &total); err != nil {
			return store.ReportStats{}, fmt.Errorf("report stats: %w", err)
		}
		g.ResolutionTime = time.Duration(total) * time.Millisecond
		groups = append(groups, g)
	}
	if err := rows.Err(); err != nil {
		return store.ReportStats{}, fmt.Errorf("report stats: %w", err)
	}
	return store.SumReportGroups(groups), nil
}

const inviteColumns = `id, convo_id, psk_hash, created_by, target_did, created_at, expires_at, max_uses, use_count, revoked_at, revoked_by`

func scanInvite(sc interface{ Scan(...any) error }) (store.Invite, error) {
	var inv store.Invite
	var created int64
	var expires, revoked sql.NullInt64
	if err := sc.Scan(&inv.ID, &inv.ConvoID, &inv.PSKHash, &inv.CreatedBy, &inv.TargetDID, &created, &expires,
		&inv.MaxUses, &inv.UseCount, &revoked, &inv.RevokedBy); err != nil {
		return store.Invite{}, err
	}
	inv.CreatedAt, inv.ExpiresAt, inv.RevokedAt = fromMS(created), fromNullMS(expires), fromNullMS(revoked)
	return inv, nil
}

// CreateInvite implements store.Invites.
func (s *Store) CreateInvite(ctx context.Context, inv store.Invite, by *store.Actor) (store.Invite, error) {
	return inWriter(ctx, s, func(w *txWriter) (store.Invite, error) { return w.CreateInvite(ctx, inv, by) })
}

// CreateInvite implements store.Invites.
func (w *txWriter) CreateInvite(ctx context.Context, inv store.Invite, by *store.Actor) (store.Invite, error) {
	if _, err := w.convoEpoch(ctx, inv.ConvoID); err != nil {
		return store.Invite{}, fmt.Errorf("create invite: %w", err)
	}
	if err := w.requireActor(ctx, inv.ConvoID, by); err != nil {
		return store.Invite{}, fmt.Errorf("create invite: %w", err)
	}
	inv.CreatedAt, inv.UseCount, inv.RevokedAt, inv.RevokedBy = store.Bucket(w.now()), 0, time.Time{}, ""
	_, err := w.tx.ExecContext(ctx, `INSERT INTO invites (`+inviteColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, '')`,
		inv.ID, inv.ConvoID, inv.PSKHash, inv.CreatedBy, inv.TargetDID, ms(inv.CreatedAt), msOrNull(inv.ExpiresAt), inv.MaxUses)
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
	inv, err := readInvite(ctx, s.r, id)
	return inv, classify(err)
}

// Invite implements store.Invites.
func (w *txWriter) Invite(ctx context.Context, id string) (store.Invite, error) {
	return readInvite(ctx, w.tx, id)
}

func readInvite(ctx context.Context, q rowQuerier, id string) (store.Invite, error) {
	inv, err := scanInvite(q.QueryRowContext(ctx, `SELECT `+inviteColumns+` FROM invites WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Invite{}, fmt.Errorf("read invite: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Invite{}, fmt.Errorf("read invite: %w", err)
	}
	return inv, nil
}

// Invites implements store.Invites.
func (s *Store) Invites(ctx context.Context, convoID string, includeRevoked bool) ([]store.Invite, error) {
	out, err := readInvites(ctx, s.r, convoID, includeRevoked)
	return out, classify(err)
}

// Invites implements store.Invites.
func (w *txWriter) Invites(ctx context.Context, convoID string, includeRevoked bool) ([]store.Invite, error) {
	return readInvites(ctx, w.tx, convoID, includeRevoked)
}

func readInvites(ctx context.Context, q rowQuerier, convoID string, includeRevoked bool) ([]store.Invite, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+inviteColumns+` FROM invites WHERE convo_id = ? AND (? OR revoked_at IS NULL)
		ORDER BY created_at DESC, id DESC`, convoID, includeRevoked)
	if err != nil {
		return nil, fmt.Errorf("list invites: %w", err)
	}
	defer rows.Close()
	out := []store.Invite{}
	for rows.Next() {
		inv, err := scanInvite(rows)
		if err != nil {
			return nil, fmt.Errorf("list invites: %w", err)
		}
		out = append(out, inv)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list invites: %w", err)
	}
	return out, nil
}

// RevokeInvite implements store.Invites.
func (s *Store) RevokeInvite(ctx context.Context, id, revokedBy string, by *store.Actor) (store.Invite, error) {
	return inWriter(ctx, s, func(w *txWriter) (store.Invite, error) { return w.RevokeInvite(ctx, id, revokedBy, by) })
}

// RevokeInvite implements store.Invites.
func (w *txWriter) RevokeInvite(ctx context.Context, id, revokedBy string, by *store.Actor) (store.Invite, error) {
	if by != nil {
		cur, err := readInvite(ctx, w.tx, id)
		if err != nil {
			return store.Invite{}, fmt.Errorf("revoke invite: %w", err)
		}
		if err := w.requireActor(ctx, cur.ConvoID, by); err != nil {
			return store.Invite{}, fmt.Errorf("revoke invite: %w", err)
		}
	}
	inv, err := scanInvite(w.tx.QueryRowContext(ctx, `UPDATE invites SET revoked_at = ?, revoked_by = ?
		WHERE id = ? AND revoked_at IS NULL RETURNING `+inviteColumns, ms(store.Bucket(w.now())), revokedBy, id))
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := readInvite(ctx, w.tx, id); err != nil {
			return store.Invite{}, fmt.Errorf("revoke invite: %w", err)
		}
		return store.Invite{}, fmt.Errorf("revoke invite: %w", store.ErrNotPending)
	}
	if err != nil {
		return store.Invite{}, fmt.Errorf("revoke invite: %w", err)
	}
	return inv, nil
}

// RedeemInvite implements store.Invites.
func (s *Store) RedeemInvite(ctx context.Context, convoID, pskHash, redeemerDID string, maxMembers int) (store.Invite, error) {
	return inWriter(ctx, s, func(w *txWriter) (store.Invite, error) {
		return w.RedeemInvite(ctx, convoID, pskHash, redeemerDID, maxMembers)
	})
}

// RedeemInvite implements store.Invites. The members counted against
// maxMembers need no lock to stay the members until the redemption
// commits: the one writer runs write transactions in turn (see Policy).
func (w *txWriter) RedeemInvite(ctx context.Context, convoID, pskHash, redeemerDID string, maxMembers int) (store.Invite, error) {
	var removed bool
	if err := w.tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM members WHERE convo_id = ? AND user_did = ? AND removed = 1)`,
		convoID, redeemerDID).Scan(&removed); err != nil {
		return store.Invite{}, fmt.Errorf("redeem invite: read removal: %w", err)
	}
	if err := w.memberLimit(ctx, convoID, countAccounts, []string{redeemerDID}, maxMembers); err != nil {
		return store.Invite{}, fmt.Errorf("redeem invite: %w", err)
	}
	inv, err := scanInvite(w.tx.QueryRowContext(ctx, `UPDATE invites SET use_count = use_count + 1
		WHERE convo_id = ?1 AND psk_hash = ?2 AND revoked_at IS NULL
			AND ((target_did = '' AND NOT ?5) OR target_did = ?3)
			AND (expires_at IS NULL OR expires_at > ?4)
			AND (max_uses = 0 OR use_count < max_uses)
		RETURNING `+inviteColumns, convoID, pskHash, redeemerDID, ms(w.now()), removed))
	if errors.Is(err, sql.ErrNoRows) && removed {
		return store.Invite{}, fmt.Errorf("redeem invite: %w", store.ErrRemovedMember)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return store.Invite{}, fmt.Errorf("redeem invite: %w", store.ErrInviteUnusable)
	}
	if err != nil {
		return store.Invite{}, fmt.Errorf("redeem invite: %w", err)
	}
	return inv, nil
}

// AdmitMembers implements store.Admissions.
func (s *Store) AdmitMembers(ctx context.Context, convoID string, add []store.NewMember, limits store.MemberLimits, by *store.Actor) error {
	_, err := inWriter(ctx, s, func(w *txWriter) (struct{}, error) {
		return struct{}{}, w.AdmitMembers(ctx, convoID, add, limits, by)
	})
	return err
}

// AdmitMembers implements store.Admissions. What it checks needs no lock
// to hold until the add commits: the one writer runs write transactions
// in turn (see Policy).
func (w *txWriter) AdmitMembers(ctx context.Context, convoID string, add []store.NewMember, limits store.MemberLimits, by *store.Actor) error {
	if _, err := w.convoEpoch(ctx, convoID); err != nil {
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
func (w *txWriter) memberLimit(ctx context.Context, convoID string, what counted, adding []string, limit int) error {
	if limit <= 0 {
		return nil
	}
	var n int
	if err := w.tx.QueryRowContext(ctx, `SELECT count(*) FROM (
			SELECT `+string(what)+` FROM members WHERE convo_id = ?1 AND left_at IS NULL
			UNION SELECT value FROM json_each(?2))`,
		convoID, jsonList(adding)).Scan(&n); err != nil {
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
	return inWriter(ctx, s, func(w *txWriter) (time.Time, error) { return w.OptIn(ctx, did) })
}

// OptIn implements store.OptIns.
func (w *txWriter) OptIn(ctx context.Context, did string) (time.Time, error) {
	var at int64
	err := w.tx.QueryRowContext(ctx, `INSERT INTO opt_ins (did, opted_in_at) VALUES (?, ?)
		ON CONFLICT (did) DO UPDATE SET did = excluded.did RETURNING opted_in_at`, did, w.bucket()).Scan(&at)
	if err != nil {
		return time.Time{}, fmt.Errorf("opt in: %w", err)
	}
	return fromMS(at), nil
}

// OptOut implements store.OptIns.
func (s *Store) OptOut(ctx context.Context, did string) (bool, error) {
	return inWriter(ctx, s, func(w *txWriter) (bool, error) { return w.OptOut(ctx, did) })
}

// OptOut implements store.OptIns.
func (w *txWriter) OptOut(ctx context.Context, did string) (bool, error) {
	n, err := affected(w.tx.ExecContext(ctx, `DELETE FROM opt_ins WHERE did = ?`, did))
	if err != nil {
		return false, fmt.Errorf("opt out: %w", err)
	}
	return n > 0, nil
}

// OptedIn implements store.OptIns.
func (s *Store) OptedIn(ctx context.Context, dids []string) (map[string]time.Time, error) {
	out, err := readOptedIn(ctx, s.r, dids)
	return out, classify(err)
}

// OptedIn implements store.OptIns.
func (w *txWriter) OptedIn(ctx context.Context, dids []string) (map[string]time.Time, error) {
	return readOptedIn(ctx, w.tx, dids)
}

func readOptedIn(ctx context.Context, q rowQuerier, dids []string) (map[string]time.Time, error) {
	rows, err := q.QueryContext(ctx, `SELECT did, opted_in_at FROM opt_ins WHERE did IN (SELECT value FROM json_each(?))`, jsonList(dids))
	if err != nil {
		return nil, fmt.Errorf("read opt-ins: %w", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var did string
		var at int64
		if err := rows.Scan(&did, &at); err != nil {
			return nil, fmt.Errorf("read opt-ins: %w", err)
		}
		out[did] = fromMS(at)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read opt-ins: %w", err)
	}
	return out, nil
}

var (
	_ store.Social = (*Store)(nil)
	_ store.Social = (*txWriter)(nil)
)
