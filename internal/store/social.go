package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors of the social interfaces.
var (
	// ErrLastAdmin means a role change would leave a conversation without
	// an admin.
	ErrLastAdmin = errors.New("store: last admin")
	// ErrNotPending means a report was already resolved or dismissed, or an
	// invite already revoked.
	ErrNotPending = errors.New("store: no longer pending")
	// ErrInviteUnusable means an invite cannot be redeemed: unknown, for
	// another DID, revoked, expired or used up. Which of these is not told,
	// so that a guesser learns nothing.
	ErrInviteUnusable = errors.New("store: invite unusable")
	// ErrRemovedMember means an invite that does not name the account was
	// offered by an account another member removed from the conversation:
	// removal sticks until a member adds it back or an invite names it.
	ErrRemovedMember = errors.New("store: account was removed from the conversation")
	// ErrMemberLimit means an add or a redemption would take the
	// conversation past the member limit it was given.
	ErrMemberLimit = errors.New("store: member limit reached")
	// ErrRoleRequired means the Actor of a write is an active member
	// without a role the write needs.
	ErrRoleRequired = errors.New("store: role required")
)

// Actor is who makes a social write, checked by the write in its own
// transaction (so a removal or demotion cannot land between the check and
// the write): an active membership matching Member, holding one of Roles
// when Roles is not empty. A nil *Actor is not checked (operator paths).
// It is never stored.
type Actor struct {
	Member MemberCheck
	Roles  []Role
}

// RoleGrant is a member's role with when and by whom it was granted.
type RoleGrant struct {
	ConvoID string
	UserDID string
	Role    Role
	// GrantedAt is when the role was granted, bucketed; zero for
	// RoleMember.
	GrantedAt time.Time
	// GrantedBy is the account DID of the member who granted it ("" for
	// RoleMember, and for the creator's admin role).
	GrantedBy string
}

// Roles records role grants. Who may grant what is the delivery layer's
// rule; the store only keeps a conversation from losing its last admin,
// atomically with the change.
type Roles interface {
	// GrantRole sets the role of every active device row of userDID and
	// records when and by which member it was granted (RoleMember clears
	// both). ErrNotFound for an unknown conversation, ErrNotMember if
	// userDID has no active row, ErrLastAdmin if the change would leave no
	// admin.
	GrantRole(ctx context.Context, g RoleGrant) (RoleGrant, error)
}

// Policy is a conversation's policy.
type Policy struct {
	ConvoID              string
	AllowInvites         bool
	AdminOnlyInvites     bool
	AllowMemberAdd       bool
	AllowMemberRemove    bool
	RequireAdminApproval bool
	MaxMembers           int
	// UpdatedAt is zero and UpdatedBy "" for a policy never updated.
	UpdatedAt time.Time
	UpdatedBy string
}

// Policies stores conversation policies.
//
// A policy read in a transaction (on the Writer Idempotent hands out)
// serializes with PutPolicy: until that transaction ends no change to the
// conversation's policy commits, so a write decided on the policy read (an
// invite's creation) never commits on a policy already replaced, and a
// read-modify-write of the policy loses no concurrent change.
type Policies interface {
	// Policy returns the stored policy; ErrNotFound if none was ever
	// stored (the caller applies its defaults).
	Policy(ctx context.Context, convoID string) (Policy, error)
	// PutPolicy stores p (UpdatedAt is set to now, bucketed) and returns
	// it. ErrNotFound for an unknown conversation.
	PutPolicy(ctx context.Context, p Policy) (Policy, error)
}

// Report statuses.
const (
	ReportPending   = "pending"
	ReportResolved  = "resolved"
	ReportDismissed = "dismissed"
)

// Report is a member report: routing metadata and a blob sealed to the
// conversation's admins. It never names the reporter.
type Report struct {
	ID        string
	ConvoID   string
	TargetDID string
	Category  string
	// Sealed is the client's ciphertext, stored and returned byte for byte.
	Sealed []byte
	Status string
	// Action is the resolution's action ("" while pending).
	Action     string
	CreatedAt  time.Time
	ResolvedAt time.Time
}

// ReportStats are aggregate report counts.
type ReportStats struct {
	Total, Pending, Resolved int
	// Removals counts reports resolved with action "removed_member".
	Removals   int
	ByCategory map[string]int
	// ResolutionTime is the mean time from filing to resolution of the
	// resolved and dismissed reports (zero if none).
	ResolutionTime time.Duration
}

// Reports stores member reports.
type Reports interface {
	// AddReport stores r as pending with CreatedAt now (bucketed), if by
	// may (see Actor). ErrNotFound for an unknown conversation,
	// ErrNotMember or ErrRoleRequired for an actor that may not,
	// ErrConflict if the id is taken.
	AddReport(ctx context.Context, r Report, by *Actor) (Report, error)
	// Report returns one report; ErrNotFound if absent.
	Report(ctx context.Context, id string) (Report, error)
	// Reports returns the conversation's reports, newest first, only those
	// with status when it is not "", at most limit.
	Reports(ctx context.Context, convoID, status string, limit int) ([]Report, error)
	// ResolveReport sets a pending report's status and action and its
	// ResolvedAt to now, if by may in the report's conversation.
	// ErrNotFound if absent, ErrNotMember or ErrRoleRequired for an actor
	// that may not, ErrNotPending if it was not pending.
	ResolveReport(ctx context.Context, id, status, action string, by *Actor) (Report, error)
	// ReportStats counts the reports filed since since (zero: all) in the
	// conversation, or in every conversation when convoID is "".
	ReportStats(ctx context.Context, convoID string, since time.Time) (ReportStats, error)
}

// Invite is an invitation to join a conversation, known by the SHA-256
// of its pre-shared key.
type Invite struct {
	ID      string
	ConvoID string
	// PSKHash is the lower-case hex SHA-256 of the invite's pre-shared key.
	PSKHash string
	// CreatedBy is the account DID of the member who created it.
	CreatedBy string
	// TargetDID, when set, is the only account that may redeem it.
	TargetDID string
	CreatedAt time.Time
	// ExpiresAt is zero for no expiry.
	ExpiresAt time.Time
	// MaxUses is 0 for unlimited.
	MaxUses   int
	UseCount  int
	RevokedAt time.Time
	RevokedBy string
}

// Invites stores invites.
type Invites interface {
	// CreateInvite stores inv with CreatedAt now (bucketed), if by may.
	// ErrNotFound for an unknown conversation, ErrNotMember or
	// ErrRoleRequired for an actor that may not, ErrConflict if the id or
	// the conversation's PSK hash is taken.
	CreateInvite(ctx context.Context, inv Invite, by *Actor) (Invite, error)
	// Invite returns one invite; ErrNotFound if absent.
	Invite(ctx context.Context, id string) (Invite, error)
	// Invites lists the conversation's invites, newest first, revoked ones
	// only when includeRevoked.
	Invites(ctx context.Context, convoID string, includeRevoked bool) ([]Invite, error)
	// RevokeInvite revokes an invite, if by may in the invite's
	// conversation. ErrNotFound if absent, ErrNotMember or ErrRoleRequired
	// for an actor that may not, ErrNotPending if already revoked.
	RevokeInvite(ctx context.Context, id, revokedBy string, by *Actor) (Invite, error)
	// RedeemInvite counts one use of the conversation's invite whose PSK
	// hash is pskHash, for redeemerDID, atomically with its checks.
	// ErrInviteUnusable if there is none, it names another DID, or it is
	// revoked, expired at now or used up; ErrRemovedMember if another
	// member removed redeemerDID from the conversation (Departure Removed)
	// and no usable invite names redeemerDID; ErrMemberLimit if maxMembers
	// is above 0 and the conversation's active accounts other than
	// redeemerDID already number maxMembers or more. The count is taken
	// where no membership change or PutPolicy can commit until the
	// redemption's transaction ends, so redemptions and adds racing one
	// another never take the conversation past the limit.
	RedeemInvite(ctx context.Context, convoID, pskHash, redeemerDID string, maxMembers int) (Invite, error)
}

// Admissions checks an add of members to a conversation, in the
// transaction that adds them, where nothing can overtake the check.
type Admissions interface {
	// AdmitMembers checks that by may add (see Actor) and that the
	// conversation's active members together with add stay within limits:
	// at most limits.Accounts distinct accounts (an account already in it
	// counts once) and at most limits.Devices member rows (a device
	// already active in it counts once, so re-adding a device flagged
	// needs_rejoin adds none). ErrNotFound for an unknown conversation,
	// ErrNotMember or ErrRoleRequired for an actor that may not,
	// ErrMemberLimit past either limit. It writes nothing. On the Writer
	// Idempotent hands out, no membership change, role grant or PutPolicy
	// commits between the check and the end of the transaction, so adds,
	// joins and redemptions (RedeemInvite counts accounts the same way)
	// racing one another never take the conversation past a limit, and
	// the add that follows it in the transaction is decided on what it
	// checked.
	AdmitMembers(ctx context.Context, convoID string, add []NewMember, limits MemberLimits, by *Actor) error
}

// MemberLimits are the limits AdmitMembers holds a conversation to; 0 is
// no limit.
type MemberLimits struct {
	// Accounts bounds the distinct accounts of active members (a
	// policy's maxMembers).
	Accounts int
	// Devices bounds the active member rows, one per device (the
	// operator's max_members).
	Devices int
}

// AdmittedDIDs returns the account and member DIDs an add brings in, as
// AdmitMembers counts them against its limits (with NewMember's defaults
// applied).
func AdmittedDIDs(add []NewMember) (users, members []string) {
	users, members = make([]string, 0, len(add)), make([]string, 0, len(add))
	for _, m := range add {
		m = m.WithDefaults()
		users, members = append(users, m.UserDID), append(members, m.MemberDID)
	}
	return users, members
}

// OptIns stores which accounts opted in to MLS chat.
type OptIns interface {
	// OptIn records did as opted in (keeping the first time) and returns
	// when it opted in.
	OptIn(ctx context.Context, did string) (time.Time, error)
	// OptOut deletes the record; removed is false if there was none.
	OptOut(ctx context.Context, did string) (removed bool, err error)
	// OptedIn returns, for those of dids that opted in, when they did.
	OptedIn(ctx context.Context, dids []string) (map[string]time.Time, error)
}

// Social is the union of the social interfaces: role grants, policies,
// reports, invites, admissions and opt-ins. Both backends implement it on the Store
// and on the Writer Idempotency.Idempotent passes to its function, so a
// social write runs in the transaction of its idempotency record.
type Social interface {
	Roles
	Policies
	Reports
	Invites
	Admissions
	OptIns
}

// ReportGroup is one group of reports with the same category, status and
// action, as a backend counts them for SumReportGroups.
type ReportGroup struct {
	Category, Status, Action string
	Count                    int
	// ResolutionTime is the group's total time from filing to resolution.
	ResolutionTime time.Duration
}

// SumReportGroups folds per-group counts into ReportStats, the same way
// for every backend.
func SumReportGroups(groups []ReportGroup) ReportStats {
	st := ReportStats{ByCategory: map[string]int{}}
	var closed int
	var total time.Duration
	for _, g := range groups {
		st.Total += g.Count
		st.ByCategory[g.Category] += g.Count
		switch g.Status {
		case ReportPending:
			st.Pending += g.Count
		default:
			st.Resolved += g.Count
			closed += g.Count
			total += g.ResolutionTime
		}
		if g.Action == "removed_member" {
			st.Removals += g.Count
		}
	}
	if closed > 0 {
		st.ResolutionTime = total / time.Duration(closed)
	}
	return st
}
