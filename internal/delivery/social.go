package delivery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/audit"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// Sentinel errors of the social methods (roles, policy, reports, invites,
// opt-in). mapError names them per lexicon.
var (
	// ErrAlreadyInRole means the target already holds the role.
	ErrAlreadyInRole = errors.New("delivery: target already holds the role")
	// ErrNotInRole means the target does not hold the role to remove.
	ErrNotInRole = errors.New("delivery: target does not hold the role")
	// ErrTargetIsAdmin means the target is an admin (who cannot be made
	// moderator or warned).
	ErrTargetIsAdmin = errors.New("delivery: target is an admin")
	// ErrCannotTargetSelf means a report named the caller.
	ErrCannotTargetSelf = errors.New("delivery: cannot target self")
	// ErrReportNotFound means no report by that id is visible to the caller.
	ErrReportNotFound = errors.New("delivery: report not found")
	// ErrInviteNotFound means no invite by that id is visible to the caller.
	ErrInviteNotFound = errors.New("delivery: invite not found")
	// ErrNotPending means a report was already resolved or an invite already
	// revoked.
	ErrNotPending = errors.New("delivery: already resolved or revoked")
	// ErrNotAuthorized means the caller may not read these statistics.
	ErrNotAuthorized = errors.New("delivery: not authorized")
	// ErrNoFields means updatePolicy named no policy field.
	ErrNoFields = errors.New("delivery: no policy field given")
	// ErrInvalidMaxMembers means a policy maxMembers below the current
	// member count.
	ErrInvalidMaxMembers = errors.New("delivery: maxMembers below the current member count")
	// ErrInvalidPSKHash means a pskHash is not 64 hex digits.
	ErrInvalidPSKHash = errors.New("delivery: invalid PSK hash")
	// ErrPolicyForbids means the conversation's policy does not allow the
	// caller this action (invites disabled, invites or removals reserved to
	// admins).
	ErrPolicyForbids = errors.New("delivery: the conversation's policy forbids this")
	// ErrNotOptedIn means the operator requires opt-in and an account to be
	// added has not opted in.
	ErrNotOptedIn = errors.New("delivery: account has not opted in")
)

// socialError names the social sentinels for nsid; ok is false for any
// other error.
func socialError(nsid string, err error) (status int, name, msg string, ok bool) {
	method := strings.TrimPrefix(nsid, Namespace)
	switch {
	case errors.Is(err, ErrAlreadyInRole) && method == "promoteAdmin":
		return http.StatusConflict, "AlreadyAdmin", "target is already an admin", true
	case errors.Is(err, ErrAlreadyInRole):
		return http.StatusConflict, "AlreadyModerator", "target is already a moderator", true
	case errors.Is(err, ErrNotInRole) && method == "demoteAdmin":
		return http.StatusBadRequest, "NotAdminTarget", "target is not an admin", true
	case errors.Is(err, ErrNotInRole):
		return http.StatusBadRequest, "NotModerator", "target is not a moderator", true
	case errors.Is(err, ErrTargetIsAdmin) && method == "warnMember":
		return http.StatusForbidden, "CannotWarnAdmin", "admins cannot be warned", true
	case errors.Is(err, ErrTargetIsAdmin):
		return http.StatusBadRequest, "IsAdmin", "target is an admin, which includes moderator rights", true
	case errors.Is(err, store.ErrLastAdmin):
		return http.StatusBadRequest, "LastAdmin", "cannot demote the conversation's last admin", true
	case errors.Is(err, ErrCannotTargetSelf):
		return http.StatusBadRequest, "CannotReportSelf", "cannot report yourself", true
	case errors.Is(err, ErrReportNotFound):
		return http.StatusNotFound, "ReportNotFound", "report not found", true
	case errors.Is(err, ErrInviteNotFound):
		return http.StatusNotFound, "InviteNotFound", "invite not found", true
	case errors.Is(err, ErrNotPending) && method == "revokeInvite":
		return http.StatusConflict, "AlreadyRevoked", "invite was already revoked", true
	case errors.Is(err, ErrNotPending):
		return http.StatusConflict, "AlreadyResolved", "report was already resolved", true
	case errors.Is(err, ErrNotAuthorized):
		return http.StatusForbidden, "NotAuthorized", "only the conversation's admins may read its statistics; server-wide figures are on the operator API", true
	case errors.Is(err, ErrNoFields):
		return http.StatusBadRequest, "NoFieldsProvided", "at least one policy field must be provided", true
	case errors.Is(err, ErrInvalidMaxMembers):
		return http.StatusBadRequest, "InvalidMaxMembers", "maxMembers is less than the current member count", true
	case errors.Is(err, ErrInvalidPSKHash):
		return http.StatusBadRequest, "InvalidPSKHash", "pskHash must be the hex SHA-256 of the pre-shared key", true
	case errors.Is(err, ErrNotOptedIn):
		return http.StatusForbidden, "NotOptedIn", "an account to be added has not opted in to MLS chat on this server", true
	case errors.Is(err, store.ErrRemovedMember):
		return http.StatusForbidden, "Unauthorized", "this account was removed from the conversation: only a member re-adding it or an invite naming it can bring it back", true
	case errors.Is(err, store.ErrInviteUnusable):
		return http.StatusForbidden, "Unauthorized", "no usable invite for this pre-shared key", true
	case errors.Is(err, ErrPolicyForbids) && method == "removeMember":
		return http.StatusForbidden, "NotAdmin", "the conversation's policy reserves removals to admins", true
	case errors.Is(err, ErrPolicyForbids) && method == "addMembers":
		return http.StatusForbidden, "NotAdmin", "the conversation's policy reserves adding members to admins", true
	case errors.Is(err, ErrPolicyForbids):
		return http.StatusForbidden, "Unauthorized", "the conversation's policy does not allow this", true
	case errors.Is(err, ErrNotAdmin) && (method == "updatePolicy" || method == "createInvite" || method == "listInvites" || method == "revokeInvite"):
		return http.StatusForbidden, "Unauthorized", "caller is not an admin of the conversation", true
	case errors.Is(err, ErrTargetNotMember) && (method == "reportMember" || method == "warnMember"):
		return http.StatusNotFound, "TargetNotMember", "target is not a member of the conversation", true
	}
	return 0, "", "", false
}

// socialRoutes adds the social methods (issue 14) to the route table.
func (s *Service) socialRoutes(m map[string]method) {
	small := s.cfg.MaxBodyBytes
	// A report carries at most 50 KiB of ciphertext, as base64.
	report := int64(maxReportBytes)*4/3 + small
	q := func(h func(context.Context, call) (any, error)) method {
		return method{typ: xrpc.Query, handle: h}
	}
	p := func(limit int64, h func(context.Context, call) (any, error)) method {
		return method{typ: xrpc.Procedure, bodyLimit: limit, handle: h}
	}
	for name, h := range map[string]method{
		"promoteAdmin":     p(small, s.promoteAdmin),
		"demoteAdmin":      p(small, s.demoteAdmin),
		"promoteModerator": p(small, s.promoteModerator),
		"demoteModerator":  p(small, s.demoteModerator),
		"getPolicy":        q(s.getPolicy),
		"updatePolicy":     p(small, s.updatePolicy),
		"reportMember":     p(report, s.reportMember),
		"getReports":       q(s.getReports),
		"resolveReport":    p(small, s.resolveReport),
		"warnMember":       p(small, s.warnMember),
		"getAdminStats":    q(s.getAdminStats),
		"createInvite":     p(small, s.createInvite),
		"listInvites":      q(s.listInvites),
		"revokeInvite":     p(small, s.revokeInvite),
		"optIn":            p(small, s.optIn),
		"optOut":           p(small, s.optOut),
		"getOptInStatus":   q(s.getOptInStatus),
	} {
		m[Namespace+name] = h
	}
}

// social returns the social interface of a Writer that Idempotent handed
// out; both backends implement it on their transactions.
func social(tx store.Writer) (store.Social, error) {
	sw, ok := tx.(store.Social)
	if !ok {
		return nil, fmt.Errorf("store writer %T does not implement store.Social", tx)
	}
	return sw, nil
}

// targetRows returns the active member rows of userDID in the
// conversation; ErrTargetNotMember if it has none.
func (s *Service) targetRows(ctx context.Context, convoID, userDID string) ([]store.Member, error) {
	all, err := s.cfg.Store.Members(ctx, []string{convoID}, false)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	var out []store.Member
	for _, m := range all[convoID] {
		if m.UserDID == userDID {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return nil, ErrTargetNotMember
	}
	return out, nil
}

// targetDID validates a DID field naming a member and returns its account
// DID (a device suffix is dropped: roles, reports and warnings are per
// account).
func targetDID(name, did string) (string, error) {
	if err := required(name, did); err != nil {
		return "", err
	}
	if !validDID(did, true) {
		return "", xrpc.Errorf(http.StatusBadRequest, "InvalidDid", "%s is not a valid DID", name)
	}
	user, _ := splitDID(did)
	return user, nil
}

// newID returns a random identifier: 16 bytes, hex.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// auditEvent records a moderation event with every identity hashed. It
// is best effort after the write committed: an audit outage is handed to
// Config.OnAuditError to log, and does not undo the action.
func (s *Service) auditEvent(ctx context.Context, typ, actorDID, targetDID, convoID string, meta map[string]any) {
	if s.cfg.Audit == nil || s.cfg.HashIdentity == nil {
		return
	}
	if meta == nil {
		meta = map[string]any{}
	}
	meta["convo"] = s.cfg.HashIdentity(convoID)
	e := audit.Event{Type: typ, Actor: s.cfg.HashIdentity(actorDID), Metadata: meta}
	if targetDID != "" {
		e.Target = s.cfg.HashIdentity(targetDID)
	}
	if err := s.cfg.Audit.Record(context.WithoutCancel(ctx), e); err != nil && s.cfg.OnAuditError != nil {
		s.cfg.OnAuditError(fmt.Errorf("audit %s: %w", typ, err))
	}
}

// parseDatetime reads a lexicon datetime (RFC 3339 with a time zone).
func parseDatetime(name, s string) (time.Time, error) {
	if len(s) > 64 {
		return time.Time{}, badRequest("%s is not a datetime", name)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, badRequest("%s is not an RFC 3339 datetime", name)
	}
	return t.UTC(), nil
}

// memberUsers returns the distinct account DIDs of members.
func memberUsers(members []store.NewMember) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range members {
		u := m.WithDefaults().UserDID
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out
}
