package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cairn-chat/cairn-caddy/internal/audit"
	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// roleInput is the body of promoteAdmin, demoteAdmin, promoteModerator and
// demoteModerator.
type roleInput struct {
	ConvoID   string `json:"convoId"`
	TargetDID string `json:"targetDid"`
	// IdempotencyKey is an extension (the lexicons have none); see
	// changeRole for the key used without it.
	IdempotencyKey string `json:"idempotencyKey"`
}

type promoteOutput struct {
	OK         bool   `json:"ok"`
	PromotedAt string `json:"promotedAt"`
}

type okOutput struct {
	OK bool `json:"ok"`
}

// roleChange says what one of the four roster methods does.
type roleChange struct {
	// from is the role the target must hold (demotions) and to the role it
	// gets.
	from, to store.Role
	// promote is true for promotions, which only admins may make;
	// demotions may also be made by the target itself.
	promote bool
}

// promoteAdmin serves blue.catbird.mls.promoteAdmin.
func (s *Service) promoteAdmin(ctx context.Context, c call) (any, error) {
	return s.changeRole(ctx, c, roleChange{to: store.RoleAdmin, promote: true})
}

// demoteAdmin serves blue.catbird.mls.demoteAdmin.
func (s *Service) demoteAdmin(ctx context.Context, c call) (any, error) {
	return s.changeRole(ctx, c, roleChange{from: store.RoleAdmin, to: store.RoleMember})
}

// promoteModerator serves blue.catbird.mls.promoteModerator.
func (s *Service) promoteModerator(ctx context.Context, c call) (any, error) {
	return s.changeRole(ctx, c, roleChange{to: store.RoleModerator, promote: true})
}

// demoteModerator serves blue.catbird.mls.demoteModerator.
func (s *Service) demoteModerator(ctx context.Context, c call) (any, error) {
	return s.changeRole(ctx, c, roleChange{from: store.RoleModerator, to: store.RoleMember})
}

// changeRole applies a roster change under the server's rules: only admins
// promote (so moderators cannot), an admin or the target itself demotes,
// and the store refuses to demote the last admin atomically with the
// change. The encrypted roster itself travels in MLS application messages
// the server cannot read.
//
// The write is idempotent: under the client's idempotencyKey when given,
// else under a key derived from the request and the target's current
// grant, so that a retry of a write whose outcome was lost runs once, and
// a retry after it committed meets the lexicon's Already…/Not… error.
func (s *Service) changeRole(ctx context.Context, c call, rc roleChange) (any, error) {
	var in roleInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := convoField(in.ConvoID); err != nil {
		return nil, err
	}
	target, err := targetDID("targetDid", in.TargetDID)
	if err != nil {
		return nil, err
	}
	if err := maxLen("idempotencyKey", in.IdempotencyKey, 128); err != nil {
		return nil, err
	}
	convoID := normConvoID(in.ConvoID)
	self := target == c.id.DID
	var current store.Role
	check := func(ctx context.Context) error {
		me, err := s.member(ctx, convoID, c.id)
		if err != nil {
			return err
		}
		if me.Role != store.RoleAdmin && (rc.promote || !self) {
			return ErrNotAdmin
		}
		rows, err := s.targetRows(ctx, convoID, target)
		if err != nil {
			return err
		}
		current = rows[0].Role
		switch {
		case rc.promote && current == rc.to:
			return ErrAlreadyInRole
		case rc.to == store.RoleModerator && current == store.RoleAdmin:
			return ErrTargetIsAdmin
		case !rc.promote && current != rc.from:
			return ErrNotInRole
		}
		return nil
	}
	key := in.IdempotencyKey
	if key == "" {
		// The state read here names the key; check runs again below so a
		// refusal can still replay a recorded answer.
		if err := check(ctx); err != nil {
			return nil, err
		}
		sum := sha256.Sum256([]byte(c.nsid + "\x00" + convoID + "\x00" + target + "\x00" + string(current)))
		key = "role:" + hex.EncodeToString(sum[:16])
	}
	in.ConvoID, in.TargetDID = convoID, target
	out, err := s.idempotent(ctx, c, key, in, convoID, check, func(ctx context.Context, tx store.Writer) (any, error) {
		sw, err := social(tx)
		if err != nil {
			return nil, err
		}
		g, err := sw.GrantRole(ctx, store.RoleGrant{ConvoID: convoID, UserDID: target, Role: rc.to, GrantedBy: c.id.DID})
		if errors.Is(err, store.ErrNotMember) {
			return nil, ErrTargetNotMember
		}
		if err != nil {
			return nil, err
		}
		if rc.promote {
			return promoteOutput{OK: true, PromotedAt: datetime(g.GrantedAt)}, nil
		}
		return okOutput{OK: true}, nil
	})
	if err == nil {
		s.auditEvent(ctx, audit.TypeRoleChange, c.id.DID, target, convoID, map[string]any{"role": string(rc.to)})
	}
	return out, err
}

// policyView is the lexicon's updatePolicy#policyView.
type policyView struct {
	ConvoID              string `json:"convoId"`
	AllowInvites         bool   `json:"allowInvites"`
	AdminOnlyInvites     bool   `json:"adminOnlyInvites"`
	AllowMemberAdd       bool   `json:"allowMemberAdd"`
	AllowMemberRemove    bool   `json:"allowMemberRemove"`
	RequireAdminApproval bool   `json:"requireAdminApproval"`
	MaxMembers           int    `json:"maxMembers"`
	UpdatedAt            string `json:"updatedAt"`
	UpdatedBy            string `json:"updatedBy,omitempty"`
}

type policyOutput struct {
	Policy policyView `json:"policy"`
}

// maxPolicyMembers is the lexicon's bound on maxMembers.
const maxPolicyMembers = 1000

// defaultPolicy is the policy of a conversation whose admins never set
// one: invites on and reserved to admins, any member may add, only admins
// remove, and the service's member limit.
func (s *Service) defaultPolicy(cv store.Convo) store.Policy {
	return store.Policy{
		ConvoID: cv.ID, AllowInvites: true, AdminOnlyInvites: true, AllowMemberAdd: true,
		MaxMembers: min(s.cfg.MaxMembers, maxPolicyMembers), UpdatedAt: cv.CreatedAt,
	}
}

// policy returns the conversation's policy, or its default.
func (s *Service) policy(ctx context.Context, r store.Policies, convoID string) (store.Policy, error) {
	p, err := r.Policy(ctx, convoID)
	if err == nil || !errors.Is(err, store.ErrNotFound) {
		return p, err
	}
	cv, err := s.cfg.Store.Convo(ctx, convoID)
	if err != nil {
		return store.Policy{}, fmt.Errorf("read convo: %w", err)
	}
	return s.defaultPolicy(cv), nil
}

func newPolicyView(p store.Policy) policyView {
	return policyView{
		ConvoID: p.ConvoID, AllowInvites: p.AllowInvites, AdminOnlyInvites: p.AdminOnlyInvites,
		AllowMemberAdd: p.AllowMemberAdd, AllowMemberRemove: p.AllowMemberRemove,
		RequireAdminApproval: p.RequireAdminApproval, MaxMembers: p.MaxMembers,
		UpdatedAt: datetime(p.UpdatedAt), UpdatedBy: p.UpdatedBy,
	}
}

// getPolicy serves blue.catbird.mls.getPolicy to any member.
func (s *Service) getPolicy(ctx context.Context, c call) (any, error) {
	convoID, err := convoParam(c.params)
	if err != nil {
		return nil, err
	}
	if _, err := s.member(ctx, convoID, c.id); err != nil {
		return nil, err
	}
	p, err := s.policy(ctx, s.cfg.Store, convoID)
	if err != nil {
		return nil, err
	}
	return policyOutput{Policy: newPolicyView(p)}, nil
}

type updatePolicyInput struct {
	ConvoID              string `json:"convoId"`
	AllowInvites         *bool  `json:"allowInvites"`
	AdminOnlyInvites     *bool  `json:"adminOnlyInvites"`
	AllowMemberAdd       *bool  `json:"allowMemberAdd"`
	AllowMemberRemove    *bool  `json:"allowMemberRemove"`
	RequireAdminApproval *bool  `json:"requireAdminApproval"`
	MaxMembers           *int   `json:"maxMembers"`
	IdempotencyKey       string `json:"idempotencyKey"`
}

// updatePolicy serves blue.catbird.mls.updatePolicy to admins. A policy
// update is a state assignment: without a client idempotencyKey its key
// is derived from the request and the policy it applies to, so a retry
// of a change whose answer was lost replays it.
func (s *Service) updatePolicy(ctx context.Context, c call) (any, error) {
	var in updatePolicyInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := convoField(in.ConvoID); err != nil {
		return nil, err
	}
	if err := maxLen("idempotencyKey", in.IdempotencyKey, 128); err != nil {
		return nil, err
	}
	if in.AllowInvites == nil && in.AdminOnlyInvites == nil && in.AllowMemberAdd == nil &&
		in.AllowMemberRemove == nil && in.RequireAdminApproval == nil && in.MaxMembers == nil {
		return nil, ErrNoFields
	}
	if in.MaxMembers != nil && (*in.MaxMembers < 2 || *in.MaxMembers > maxPolicyMembers) {
		return nil, badRequest("maxMembers must be between 2 and %d", maxPolicyMembers)
	}
	convoID := normConvoID(in.ConvoID)
	var current store.Policy
	check := func(ctx context.Context) error {
		me, err := s.member(ctx, convoID, c.id)
		if err != nil {
			return err
		}
		if me.Role != store.RoleAdmin {
			return ErrNotAdmin
		}
		if current, err = s.policy(ctx, s.cfg.Store, convoID); err != nil {
			return err
		}
		if in.MaxMembers != nil {
			n, err := s.memberCount(ctx, convoID)
			if err != nil {
				return err
			}
			if *in.MaxMembers < n {
				return ErrInvalidMaxMembers
			}
		}
		return nil
	}
	key := in.IdempotencyKey
	if key == "" {
		if err := check(ctx); err != nil {
			return nil, err
		}
		state, err := json.Marshal(struct {
			Current store.Policy
			In      updatePolicyInput
		}{current, in})
		if err != nil {
			return nil, fmt.Errorf("hash policy: %w", err)
		}
		sum := sha256.Sum256(state)
		key = "policy:" + hex.EncodeToString(sum[:16])
	}
	in.ConvoID = convoID
	return s.idempotent(ctx, c, key, in, convoID, check, func(ctx context.Context, tx store.Writer) (any, error) {
		sw, err := social(tx)
		if err != nil {
			return nil, err
		}
		p, err := s.policy(ctx, sw, convoID)
		if err != nil {
			return nil, err
		}
		set := func(dst *bool, v *bool) {
			if v != nil {
				*dst = *v
			}
		}
		set(&p.AllowInvites, in.AllowInvites)
		set(&p.AdminOnlyInvites, in.AdminOnlyInvites)
		set(&p.AllowMemberAdd, in.AllowMemberAdd)
		set(&p.AllowMemberRemove, in.AllowMemberRemove)
		set(&p.RequireAdminApproval, in.RequireAdminApproval)
		if in.MaxMembers != nil {
			p.MaxMembers = *in.MaxMembers
		}
		p.UpdatedBy = c.id.DID
		if p, err = sw.PutPolicy(ctx, p); err != nil {
			return nil, err
		}
		return policyOutput{Policy: newPolicyView(p)}, nil
	})
}

// memberCount counts the conversation's members as accounts (a user with
// several devices is one member), which is what a policy's maxMembers
// bounds; Config.MaxMembers bounds device rows.
func (s *Service) memberCount(ctx context.Context, convoID string) (int, error) {
	users, err := s.convoUsers(ctx, convoID)
	return len(users), err
}

// convoUsers returns the distinct account DIDs of a conversation's active
// members.
func (s *Service) convoUsers(ctx context.Context, convoID string) ([]string, error) {
	all, err := s.cfg.Store.Members(ctx, []string{convoID}, false)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	seen := map[string]bool{}
	var users []string
	for _, m := range all[convoID] {
		if !seen[m.UserDID] {
			seen[m.UserDID] = true
			users = append(users, m.UserDID)
		}
	}
	return users, nil
}

// checkAdd applies the conversation's policy and the operator's opt-in
// rule to an add of newUsers by a member with role: a non-admin may add
// only when allowMemberAdd, and the accounts may not exceed maxMembers.
func (s *Service) checkAdd(ctx context.Context, convoID string, role store.Role, newUsers []string) error {
	p, err := s.policy(ctx, s.cfg.Store, convoID)
	if err != nil {
		return err
	}
	if role != store.RoleAdmin && !p.AllowMemberAdd {
		return ErrPolicyForbids
	}
	all, err := s.cfg.Store.Members(ctx, []string{convoID}, false)
	if err != nil {
		return fmt.Errorf("list members: %w", err)
	}
	users := map[string]bool{}
	var existing []string
	for _, m := range all[convoID] {
		if !users[m.UserDID] {
			existing = append(existing, m.UserDID)
		}
		users[m.UserDID] = true
	}
	for _, u := range newUsers {
		users[u] = true
	}
	if len(users) > p.MaxMembers {
		return ErrTooManyMembers
	}
	if err := s.checkOptIn(ctx, s.cfg.Store, newUsers); err != nil {
		return err
	}
	return s.checkBlocksOnAdd(ctx, existing, newUsers)
}

// admitAdd runs checkAdd's rules again in the add's transaction, on what
// the transaction reads: the policy, the caller's membership and role,
// the member count and the opt-ins, and holds the add to the operator's
// Config.MaxMembers device rows. The store holds the conversation there
// against PutPolicy, role grants and other membership changes, so an
// updatePolicy turning allowMemberAdd off or lowering maxMembers, a
// demotion or removal of the caller, or a concurrent add or join commits
// either before these reads, and is obeyed, or after this add. The
// errors are checkAdd's. Blocks are not read again: they live in other
// servers' repositories, where no transaction reaches.
func (s *Service) admitAdd(ctx context.Context, sw store.Social, convoID string, id caller.Identity, members []store.NewMember) error {
	p, err := s.policy(ctx, sw, convoID)
	if err != nil {
		return err
	}
	by := actor(id)
	if !p.AllowMemberAdd {
		by.Roles = []store.Role{store.RoleAdmin}
	}
	limits := store.MemberLimits{Accounts: p.MaxMembers, Devices: s.cfg.MaxMembers}
	switch err := sw.AdmitMembers(ctx, convoID, members, limits, by); {
	case errors.Is(err, store.ErrRoleRequired):
		return ErrPolicyForbids
	case errors.Is(err, store.ErrMemberLimit):
		return ErrTooManyMembers
	case err != nil:
		return err
	}
	return s.checkOptIn(ctx, sw, memberUsers(members))
}

// admitDevice holds a device joining by itself (an invite join, a new or
// returning device's external commit) to the operator's Config.MaxMembers
// device rows, in the join's transaction, where no other add or join can
// commit before it ends (see store.Admissions).
func (s *Service) admitDevice(ctx context.Context, sw store.Social, convoID string, m store.NewMember) error {
	err := sw.AdmitMembers(ctx, convoID, []store.NewMember{m}, store.MemberLimits{Devices: s.cfg.MaxMembers}, nil)
	if errors.Is(err, store.ErrMemberLimit) {
		return ErrTooManyMembers
	}
	return err
}

// checkOptIn refuses, when the operator requires opt-in, to add an
// account that has not opted in, by the opt-ins r holds (the store, or
// a write's transaction).
func (s *Service) checkOptIn(ctx context.Context, r store.OptIns, users []string) error {
	if !s.cfg.RequireOptIn || len(users) == 0 {
		return nil
	}
	in, err := r.OptedIn(ctx, users)
	if err != nil {
		return fmt.Errorf("read opt-ins: %w", err)
	}
	for _, u := range users {
		if _, ok := in[u]; !ok {
			return ErrNotOptedIn
		}
	}
	return nil
}

// checkRemove applies the conversation's policy to a removal by a member
// with role: admins always may; other members only when allowMemberRemove,
// and never an admin.
func (s *Service) checkRemove(ctx context.Context, convoID string, role store.Role, targetUser string) error {
	if role == store.RoleAdmin {
		return nil
	}
	p, err := s.policy(ctx, s.cfg.Store, convoID)
	if err != nil {
		return err
	}
	if !p.AllowMemberRemove {
		return ErrNotAdmin
	}
	rows, err := s.targetRows(ctx, convoID, targetUser)
	if errors.Is(err, ErrTargetNotMember) {
		return nil // the removal itself reports it
	}
	if err != nil {
		return err
	}
	if rows[0].Role == store.RoleAdmin {
		return ErrNotAdmin
	}
	return nil
}
