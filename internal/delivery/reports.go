package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/audit"
	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// maxReportBytes is the lexicon's bound on a report's encryptedContent.
const maxReportBytes = 51200

// reportCategories are the lexicon's known categories, with the key each
// has in moderationStats.reportsByCategory. Other categories are
// refused: the category is the one field of a report the server reads.
var reportCategories = map[string]string{
	"harassment": "harassment", "spam": "spam", "hate_speech": "hateSpeech", "violence": "violence",
	"sexual_content": "sexualContent", "impersonation": "impersonation",
	"privacy_violation": "privacyViolation", "other": "otherCategory",
}

type reportMemberInput struct {
	ConvoID          string   `json:"convoId"`
	ReportedDID      string   `json:"reportedDid"`
	Category         string   `json:"category"`
	EncryptedContent lexBytes `json:"encryptedContent"`
	MessageIDs       []string `json:"messageIds"`
	IdempotencyKey   string   `json:"idempotencyKey"`
}

type reportMemberOutput struct {
	ReportID    string `json:"reportId"`
	SubmittedAt string `json:"submittedAt"`
}

// reportMember serves blue.catbird.mls.reportMember: any member files a
// report about another. The content is the client's ciphertext, sealed to
// the admins' report keys (docs/moderation.md); the server stores it byte
// for byte with the conversation, target and category, and nothing about
// the reporter. messageIds are accepted and not stored: they belong inside
// the ciphertext.
func (s *Service) reportMember(ctx context.Context, c call) (any, error) {
	var in reportMemberInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := convoField(in.ConvoID); err != nil {
		return nil, err
	}
	target, err := targetDID("reportedDid", in.ReportedDID)
	if err != nil {
		return nil, err
	}
	if _, ok := reportCategories[in.Category]; !ok {
		return nil, badRequest("category must be one of the lexicon's known values")
	}
	if len(in.EncryptedContent) == 0 {
		return nil, badRequest("encryptedContent is required")
	}
	if len(in.EncryptedContent) > maxReportBytes {
		return nil, errTooLarge("encryptedContent", maxReportBytes)
	}
	if len(in.MessageIDs) > 20 {
		return nil, badRequest("messageIds takes at most 20 ids")
	}
	if err := maxLen("idempotencyKey", in.IdempotencyKey, 128); err != nil {
		return nil, err
	}
	convoID := normConvoID(in.ConvoID)
	if target == c.id.DID {
		return nil, ErrCannotTargetSelf
	}
	// The same sealed blob about the same member is the same report: its
	// hash is the key when the client gives none.
	sum := sha256.Sum256(in.EncryptedContent)
	key := in.IdempotencyKey
	if key == "" {
		key = "report:" + convoID + ":" + target + ":" + hex.EncodeToString(sum[:16])
	}
	pre := func(ctx context.Context) error {
		if _, err := s.member(ctx, convoID, c.id); err != nil {
			return err
		}
		_, err := s.targetRows(ctx, convoID, target)
		return err
	}
	// The request hash covers the blob through its digest, not a copy.
	req := struct {
		ConvoID, Target, Category, Content string
	}{convoID, target, in.Category, hex.EncodeToString(sum[:])}
	return s.idempotent(ctx, c, key, req, "", pre, func(ctx context.Context, tx store.Writer) (any, error) {
		sw, err := social(tx)
		if err != nil {
			return nil, err
		}
		r, err := sw.AddReport(ctx, store.Report{ID: newID(), ConvoID: convoID, TargetDID: target, Category: in.Category, Sealed: in.EncryptedContent},
			actor(c.id))
		if err != nil {
			return nil, actorError(err)
		}
		return reportMemberOutput{ReportID: r.ID, SubmittedAt: datetime(r.CreatedAt)}, nil
	})
}

// reportView is the lexicon's getReports#reportView, without reporterDid
// (the server does not know it) and resolvedBy (the audit log keeps it,
// hashed).
type reportView struct {
	ID               string   `json:"id"`
	ReportedDID      string   `json:"reportedDid"`
	Category         string   `json:"category"`
	EncryptedContent lexBytes `json:"encryptedContent"`
	CreatedAt        string   `json:"createdAt"`
	Status           string   `json:"status"`
	ResolvedAt       string   `json:"resolvedAt,omitempty"`
}

type getReportsOutput struct {
	Reports []reportView `json:"reports"`
}

// requireAdmin returns nil if the caller is an admin of the conversation.
func (s *Service) requireAdmin(ctx context.Context, convoID string, c call) error {
	me, err := s.member(ctx, convoID, c.id)
	if err != nil {
		return err
	}
	if me.Role != store.RoleAdmin {
		return ErrNotAdmin
	}
	return nil
}

// getReports serves blue.catbird.mls.getReports to the conversation's
// admins.
func (s *Service) getReports(ctx context.Context, c call) (any, error) {
	convoID, err := convoParam(c.params)
	if err != nil {
		return nil, err
	}
	status, err := c.params.str("status", 16)
	if err != nil {
		return nil, err
	}
	switch status {
	case "", store.ReportPending, store.ReportResolved, store.ReportDismissed:
	default:
		return nil, badRequest("status must be pending, resolved or dismissed")
	}
	limit, _, err := c.params.integer("limit", 1, 100, 50)
	if err != nil {
		return nil, err
	}
	if err := s.requireAdmin(ctx, convoID, c); err != nil {
		return nil, err
	}
	reports, err := s.cfg.Store.Reports(ctx, convoID, status, int(limit))
	if err != nil {
		return nil, fmt.Errorf("list reports: %w", err)
	}
	out := getReportsOutput{Reports: make([]reportView, 0, len(reports))}
	for _, r := range reports {
		out.Reports = append(out.Reports, reportView{
			ID: r.ID, ReportedDID: r.TargetDID, Category: r.Category, EncryptedContent: r.Sealed,
			CreatedAt: datetime(r.CreatedAt), Status: r.Status, ResolvedAt: optDatetime(r.ResolvedAt),
		})
	}
	return out, nil
}

type resolveReportInput struct {
	ReportID string `json:"reportId"`
	Action   string `json:"action"`
	// Notes are validated and dropped: plaintext the server must not keep.
	Notes          string `json:"notes"`
	IdempotencyKey string `json:"idempotencyKey"`
}

// reportActions maps resolveReport's actions to the status they leave.
var reportActions = map[string]string{
	"removed_member": store.ReportResolved, "no_action": store.ReportResolved, "dismissed": store.ReportDismissed,
}

// resolveReport serves blue.catbird.mls.resolveReport to an admin of the
// report's conversation. A report is resolved once, so its id and the
// action are the idempotency key when the client gives none. notes are not kept.
func (s *Service) resolveReport(ctx context.Context, c call) (any, error) {
	var in resolveReportInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := required("reportId", in.ReportID); err != nil {
		return nil, err
	}
	if err := maxLen("reportId", in.ReportID, 64); err != nil {
		return nil, err
	}
	status, ok := reportActions[in.Action]
	if !ok {
		return nil, badRequest("action must be removed_member, dismissed or no_action")
	}
	if err := maxLen("notes", in.Notes, 1000); err != nil {
		return nil, err
	}
	if err := maxLen("idempotencyKey", in.IdempotencyKey, 128); err != nil {
		return nil, err
	}
	key := in.IdempotencyKey
	if key == "" {
		key = "resolve:" + in.ReportID + ":" + in.Action
	}
	var report store.Report
	pre := func(ctx context.Context) error {
		r, err := s.cfg.Store.Report(ctx, in.ReportID)
		if errors.Is(err, store.ErrNotFound) {
			return ErrReportNotFound
		}
		if err != nil {
			return fmt.Errorf("read report: %w", err)
		}
		// Someone outside the conversation learns nothing about its reports.
		if err := s.requireAdmin(ctx, r.ConvoID, c); err != nil {
			if errors.Is(err, store.ErrNotMember) || errors.Is(err, store.ErrNotFound) {
				return ErrReportNotFound
			}
			return err
		}
		if r.Status != store.ReportPending {
			return ErrNotPending
		}
		report = r
		return nil
	}
	req := struct{ ReportID, Action string }{in.ReportID, in.Action}
	out, err := s.idempotent(ctx, c, key, req, "", pre, func(ctx context.Context, tx store.Writer) (any, error) {
		sw, err := social(tx)
		if err != nil {
			return nil, err
		}
		_, err = sw.ResolveReport(ctx, in.ReportID, status, in.Action, actor(c.id, store.RoleAdmin))
		switch {
		case errors.Is(err, store.ErrNotPending):
			return nil, ErrNotPending
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrNotMember):
			return nil, ErrReportNotFound
		case errors.Is(err, store.ErrRoleRequired):
			return nil, ErrNotAdmin
		case err != nil:
			return nil, err
		}
		return okOutput{OK: true}, nil
	})
	if err == nil && report.ID != "" {
		s.auditEvent(ctx, audit.TypeReportResolve, c.id.DID, report.TargetDID, report.ConvoID, map[string]any{"action": in.Action})
	}
	return out, err
}

type warnMemberInput struct {
	ConvoID   string `json:"convoId"`
	MemberDID string `json:"memberDid"`
	// Reason is validated and dropped: the warning's text travels to the
	// member end-to-end encrypted, in an MLS message the warning admin's
	// client sends.
	Reason         string `json:"reason"`
	ExpiresAt      string `json:"expiresAt"`
	IdempotencyKey string `json:"idempotencyKey"`
}

type warnMemberOutput struct {
	WarningID   string `json:"warningId"`
	DeliveredAt string `json:"deliveredAt"`
}

// warnMember serves blue.catbird.mls.warnMember to admins and moderators.
// The server keeps no warning row and no reason: the warning is an audit
// event with hashed identities, and its text goes to the member in an
// end-to-end encrypted message (docs/moderation.md).
func (s *Service) warnMember(ctx context.Context, c call) (any, error) {
	var in warnMemberInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := convoField(in.ConvoID); err != nil {
		return nil, err
	}
	target, err := targetDID("memberDid", in.MemberDID)
	if err != nil {
		return nil, err
	}
	if err := required("reason", in.Reason); err != nil {
		return nil, err
	}
	if err := maxLen("reason", in.Reason, 500); err != nil {
		return nil, err
	}
	var expires time.Time
	if in.ExpiresAt != "" {
		if expires, err = parseDatetime("expiresAt", in.ExpiresAt); err != nil {
			return nil, err
		}
	}
	if err := maxLen("idempotencyKey", in.IdempotencyKey, 128); err != nil {
		return nil, err
	}
	convoID := normConvoID(in.ConvoID)
	me, err := s.member(ctx, convoID, c.id)
	if err != nil {
		return nil, err
	}
	if me.Role != store.RoleAdmin && me.Role != store.RoleModerator {
		return nil, ErrNotAdmin
	}
	rows, err := s.targetRows(ctx, convoID, target)
	if err != nil {
		return nil, err
	}
	if rows[0].Role == store.RoleAdmin {
		return nil, ErrTargetIsAdmin
	}
	meta := map[string]any{}
	if !expires.IsZero() {
		meta["expires"] = datetime(expires)
	}
	s.auditEvent(ctx, audit.TypeMemberWarn, c.id.DID, target, convoID, meta)
	return warnMemberOutput{WarningID: newID(), DeliveredAt: datetime(s.cfg.Now())}, nil
}

type moderationStats struct {
	TotalReports               int            `json:"totalReports"`
	PendingReports             int            `json:"pendingReports"`
	ResolvedReports            int            `json:"resolvedReports"`
	TotalRemovals              int            `json:"totalRemovals"`
	BlockConflictsResolved     int            `json:"blockConflictsResolved"`
	ReportsByCategory          map[string]int `json:"reportsByCategory"`
	AverageResolutionTimeHours int            `json:"averageResolutionTimeHours"`
}

type getAdminStatsOutput struct {
	Stats       moderationStats `json:"stats"`
	GeneratedAt string          `json:"generatedAt"`
	ConvoID     string          `json:"convoId,omitempty"`
}

// NewModerationStats renders store counts as the lexicon's
// moderationStats, for getAdminStats and the operator API.
func NewModerationStats(st store.ReportStats) any {
	return newModerationStats(st)
}

func newModerationStats(st store.ReportStats) moderationStats {
	by := map[string]int{}
	for cat, n := range st.ByCategory {
		k, ok := reportCategories[cat]
		if !ok {
			k = "otherCategory"
		}
		by[k] += n
	}
	return moderationStats{
		TotalReports: st.Total, PendingReports: st.Pending, ResolvedReports: st.Resolved,
		TotalRemovals: st.Removals, ReportsByCategory: by,
		AverageResolutionTimeHours: int(st.ResolutionTime / time.Hour),
	}
}

// getAdminStats serves blue.catbird.mls.getAdminStats: aggregate counts of
// one conversation, to its admins only. Without convoId it is refused:
// server-wide figures are for operators (GET /operator/v1/moderation/stats on the
// operator API), never for an authenticated caller.
func (s *Service) getAdminStats(ctx context.Context, c call) (any, error) {
	convoID, err := c.params.str("convoId", 128)
	if err != nil {
		return nil, err
	}
	sinceStr, err := c.params.str("since", 64)
	if err != nil {
		return nil, err
	}
	var since time.Time
	if sinceStr != "" {
		if since, err = parseDatetime("since", sinceStr); err != nil {
			return nil, err
		}
	}
	if convoID == "" {
		return nil, ErrNotAuthorized
	}
	convoID = normConvoID(convoID)
	if err := s.requireAdmin(ctx, convoID, c); err != nil {
		if errors.Is(err, store.ErrNotMember) || errors.Is(err, ErrNotAdmin) {
			return nil, ErrNotAuthorized
		}
		return nil, err
	}
	st, err := s.cfg.Store.ReportStats(ctx, convoID, since)
	if err != nil {
		return nil, fmt.Errorf("report stats: %w", err)
	}
	return getAdminStatsOutput{Stats: newModerationStats(st), GeneratedAt: datetime(s.cfg.Now()), ConvoID: convoID}, nil
}
