package observe

import (
	"context"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// GrantRole implements store.Roles.
func (s *Store) GrantRole(ctx context.Context, g store.RoleGrant) (store.RoleGrant, error) {
	return call(ctx, s.o, "grant_role", func(ctx context.Context) (store.RoleGrant, error) { return s.b.GrantRole(ctx, g) })
}

// Policy implements store.Policies.
func (s *Store) Policy(ctx context.Context, convoID string) (store.Policy, error) {
	return call(ctx, s.o, "policy", func(ctx context.Context) (store.Policy, error) { return s.b.Policy(ctx, convoID) })
}

// PutPolicy implements store.Policies.
func (s *Store) PutPolicy(ctx context.Context, p store.Policy) (store.Policy, error) {
	return call(ctx, s.o, "put_policy", func(ctx context.Context) (store.Policy, error) { return s.b.PutPolicy(ctx, p) })
}

// AddReport implements store.Reports.
func (s *Store) AddReport(ctx context.Context, r store.Report, actor *store.Actor) (store.Report, error) {
	return call(ctx, s.o, "add_report", func(ctx context.Context) (store.Report, error) { return s.b.AddReport(ctx, r, actor) })
}

// Report implements store.Reports.
func (s *Store) Report(ctx context.Context, id string) (store.Report, error) {
	return call(ctx, s.o, "report", func(ctx context.Context) (store.Report, error) { return s.b.Report(ctx, id) })
}

// Reports implements store.Reports.
func (s *Store) Reports(ctx context.Context, convoID, status string, limit int) ([]store.Report, error) {
	return call(ctx, s.o, "reports", func(ctx context.Context) ([]store.Report, error) {
		return s.b.Reports(ctx, convoID, status, limit)
	})
}

// ResolveReport implements store.Reports.
func (s *Store) ResolveReport(ctx context.Context, id, status, action string, actor *store.Actor) (store.Report, error) {
	return call(ctx, s.o, "resolve_report", func(ctx context.Context) (store.Report, error) {
		return s.b.ResolveReport(ctx, id, status, action, actor)
	})
}

// ReportStats implements store.Reports.
func (s *Store) ReportStats(ctx context.Context, convoID string, since time.Time) (store.ReportStats, error) {
	return call(ctx, s.o, "report_stats", func(ctx context.Context) (store.ReportStats, error) {
		return s.b.ReportStats(ctx, convoID, since)
	})
}

// CreateInvite implements store.Invites.
func (s *Store) CreateInvite(ctx context.Context, inv store.Invite, actor *store.Actor) (store.Invite, error) {
	return call(ctx, s.o, "create_invite", func(ctx context.Context) (store.Invite, error) { return s.b.CreateInvite(ctx, inv, actor) })
}

// Invite implements store.Invites.
func (s *Store) Invite(ctx context.Context, id string) (store.Invite, error) {
	return call(ctx, s.o, "invite", func(ctx context.Context) (store.Invite, error) { return s.b.Invite(ctx, id) })
}

// Invites implements store.Invites.
func (s *Store) Invites(ctx context.Context, convoID string, includeRevoked bool) ([]store.Invite, error) {
	return call(ctx, s.o, "invites", func(ctx context.Context) ([]store.Invite, error) {
		return s.b.Invites(ctx, convoID, includeRevoked)
	})
}

// RevokeInvite implements store.Invites.
func (s *Store) RevokeInvite(ctx context.Context, id, revokedBy string, actor *store.Actor) (store.Invite, error) {
	return call(ctx, s.o, "revoke_invite", func(ctx context.Context) (store.Invite, error) { return s.b.RevokeInvite(ctx, id, revokedBy, actor) })
}

// RedeemInvite implements store.Invites.
func (s *Store) RedeemInvite(ctx context.Context, convoID, pskHash, redeemerDID string, maxMembers int) (store.Invite, error) {
	return call(ctx, s.o, "redeem_invite", func(ctx context.Context) (store.Invite, error) {
		return s.b.RedeemInvite(ctx, convoID, pskHash, redeemerDID, maxMembers)
	})
}

// AdmitMembers implements store.Admissions.
func (s *Store) AdmitMembers(ctx context.Context, convoID string, add []store.NewMember, limits store.MemberLimits, actor *store.Actor) error {
	return exec(ctx, s.o, "admit_members", func(ctx context.Context) error {
		return s.b.AdmitMembers(ctx, convoID, add, limits, actor)
	})
}

// OptIn implements store.OptIns.
func (s *Store) OptIn(ctx context.Context, did string) (time.Time, error) {
	return call(ctx, s.o, "opt_in", func(ctx context.Context) (time.Time, error) { return s.b.OptIn(ctx, did) })
}

// OptOut implements store.OptIns.
func (s *Store) OptOut(ctx context.Context, did string) (bool, error) {
	return call(ctx, s.o, "opt_out", func(ctx context.Context) (bool, error) { return s.b.OptOut(ctx, did) })
}

// OptedIn implements store.OptIns.
func (s *Store) OptedIn(ctx context.Context, dids []string) (map[string]time.Time, error) {
	return call(ctx, s.o, "opted_in", func(ctx context.Context) (map[string]time.Time, error) { return s.b.OptedIn(ctx, dids) })
}
