package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// parsePSKHash reads a pskHash: the hex SHA-256 of an invite's pre-shared
// key (64 hex digits, either case), returned in lower case.
func parsePSKHash(s string) (string, error) {
	if len(s) != 2*sha256.Size {
		return "", ErrInvalidPSKHash
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", ErrInvalidPSKHash
	}
	return strings.ToLower(s), nil
}

type createInviteInput struct {
	ConvoID        string `json:"convoId"`
	PSKHash        string `json:"pskHash"`
	TargetDID      string `json:"targetDid"`
	ExpiresAt      string `json:"expiresAt"`
	MaxUses        *int   `json:"maxUses"`
	IdempotencyKey string `json:"idempotencyKey"`
}

// inviteView is the lexicon's createInvite#inviteView.
type inviteView struct {
	InviteID  string `json:"inviteId"`
	ConvoID   string `json:"convoId"`
	CreatedBy string `json:"createdBy"`
	CreatedAt string `json:"createdAt"`
	PSKHash   string `json:"pskHash"`
	TargetDID string `json:"targetDid,omitempty"`
	ExpiresAt string `json:"expiresAt,omitempty"`
	MaxUses   int    `json:"maxUses,omitempty"`
	UseCount  int    `json:"useCount"`
	IsRevoked bool   `json:"isRevoked"`
	RevokedAt string `json:"revokedAt,omitempty"`
	RevokedBy string `json:"revokedBy,omitempty"`
}

func newInviteView(inv store.Invite) inviteView {
	return inviteView{
		InviteID: inv.ID, ConvoID: inv.ConvoID, CreatedBy: inv.CreatedBy, CreatedAt: datetime(inv.CreatedAt),
		PSKHash: inv.PSKHash, TargetDID: inv.TargetDID, ExpiresAt: optDatetime(inv.ExpiresAt), MaxUses: inv.MaxUses,
		UseCount: inv.UseCount, IsRevoked: !inv.RevokedAt.IsZero(), RevokedAt: optDatetime(inv.RevokedAt), RevokedBy: inv.RevokedBy,
	}
}

type createInviteOutput struct {
	InviteID string     `json:"inviteId"`
	Invite   inviteView `json:"invite"`
}

// checkInviter applies the policy to an invite by the caller: invites must
// be on, and reserved to admins when adminOnlyInvites.
func (s *Service) checkInviter(ctx context.Context, convoID string, c call) error {
	me, err := s.member(ctx, convoID, c.id)
	if err != nil {
		return err
	}
	p, err := s.policy(ctx, s.cfg.Store, convoID)
	if err != nil {
		return err
	}
	if !p.AllowInvites {
		return ErrPolicyForbids
	}
	if p.AdminOnlyInvites && me.Role != store.RoleAdmin {
		return ErrNotAdmin
	}
	return nil
}

// createInvite serves blue.catbird.mls.createInvite. The server keeps the
// PSK's hash only; the key travels in the invite link. A conversation's
// PSK hash names one invite, so it is the idempotency key when the client
// gives none.
func (s *Service) createInvite(ctx context.Context, c call) (any, error) {
	var in createInviteInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := convoField(in.ConvoID); err != nil {
		return nil, err
	}
	hash, err := parsePSKHash(in.PSKHash)
	if err != nil {
		return nil, err
	}
	var target string
	if in.TargetDID != "" {
		if target, err = targetDID("targetDid", in.TargetDID); err != nil {
			return nil, err
		}
	}
	var expires time.Time
	if in.ExpiresAt != "" {
		if expires, err = parseDatetime("expiresAt", in.ExpiresAt); err != nil {
			return nil, err
		}
		if !expires.After(s.cfg.Now()) {
			return nil, badRequest("expiresAt must be in the future")
		}
	}
	maxUses := 0
	if in.MaxUses != nil {
		if *in.MaxUses < 1 || *in.MaxUses > 1<<20 {
			return nil, badRequest("maxUses must be between 1 and %d", 1<<20)
		}
		maxUses = *in.MaxUses
	}
	if err := maxLen("idempotencyKey", in.IdempotencyKey, 128); err != nil {
		return nil, err
	}
	convoID := normConvoID(in.ConvoID)
	key := in.IdempotencyKey
	if key == "" {
		key = "invite:" + convoID + ":" + hash
	}
	pre := func(ctx context.Context) error {
		if err := s.checkInviter(ctx, convoID, c); err != nil {
			return err
		}
		if target != "" {
			return s.checkOptIn(ctx, s.cfg.Store, []string{target})
		}
		return nil
	}
	in.ConvoID, in.PSKHash, in.TargetDID = convoID, hash, target
	return s.idempotent(ctx, c, key, in, "", pre, func(ctx context.Context, tx store.Writer) (any, error) {
		sw, err := social(tx)
		if err != nil {
			return nil, err
		}
		// The store checks the caller's membership, and the admin role
		// when the policy reserves invites, with the write: a removal
		// after pre's check refuses it. The policy is read here again,
		// in the transaction, where the store holds the conversation
		// against PutPolicy: a change turning invites off or reserving
		// them to admins commits either before this read, and is obeyed,
		// or after this invite.
		p, err := s.policy(ctx, sw, convoID)
		if err != nil {
			return nil, err
		}
		if !p.AllowInvites {
			return nil, ErrPolicyForbids
		}
		by := actor(c.id)
		if p.AdminOnlyInvites {
			by.Roles = []store.Role{store.RoleAdmin}
		}
		inv, err := sw.CreateInvite(ctx, store.Invite{ID: newID(), ConvoID: convoID, PSKHash: hash, CreatedBy: c.id.DID,
			TargetDID: target, ExpiresAt: expires, MaxUses: maxUses}, by)
		if errors.Is(err, store.ErrConflict) {
			return nil, ErrInvalidPSKHash
		}
		if err != nil {
			return nil, actorError(err)
		}
		return createInviteOutput{InviteID: inv.ID, Invite: newInviteView(inv)}, nil
	})
}

type listInvitesOutput struct {
	Invites []inviteView `json:"invites"`
}

// listInvites serves blue.catbird.mls.listInvites to admins.
func (s *Service) listInvites(ctx context.Context, c call) (any, error) {
	convoID, err := convoParam(c.params)
	if err != nil {
		return nil, err
	}
	includeRevoked := false
	switch v, err := c.params.str("includeRevoked", 5); {
	case err != nil:
		return nil, err
	case v == "true":
		includeRevoked = true
	case v != "" && v != "false":
		return nil, badRequest("includeRevoked must be true or false")
	}
	if err := s.requireAdmin(ctx, convoID, c); err != nil {
		return nil, err
	}
	invites, err := s.cfg.Store.Invites(ctx, convoID, includeRevoked)
	if err != nil {
		return nil, fmt.Errorf("list invites: %w", err)
	}
	out := listInvitesOutput{Invites: make([]inviteView, 0, len(invites))}
	for _, inv := range invites {
		out.Invites = append(out.Invites, newInviteView(inv))
	}
	return out, nil
}

type revokeInviteInput struct {
	InviteID       string `json:"inviteId"`
	IdempotencyKey string `json:"idempotencyKey"`
}

type revokeInviteOutput struct {
	Success bool `json:"success"`
}

// revokeInvite serves blue.catbird.mls.revokeInvite to admins of the
// invite's conversation. An invite is revoked once, so its id is the
// idempotency key when the client gives none.
func (s *Service) revokeInvite(ctx context.Context, c call) (any, error) {
	var in revokeInviteInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := required("inviteId", in.InviteID); err != nil {
		return nil, err
	}
	if err := maxLen("inviteId", in.InviteID, 64); err != nil {
		return nil, err
	}
	if err := maxLen("idempotencyKey", in.IdempotencyKey, 128); err != nil {
		return nil, err
	}
	key := in.IdempotencyKey
	if key == "" {
		key = "revoke:" + in.InviteID
	}
	pre := func(ctx context.Context) error {
		inv, err := s.cfg.Store.Invite(ctx, in.InviteID)
		if errors.Is(err, store.ErrNotFound) {
			return ErrInviteNotFound
		}
		if err != nil {
			return fmt.Errorf("read invite: %w", err)
		}
		if err := s.requireAdmin(ctx, inv.ConvoID, c); err != nil {
			if errors.Is(err, store.ErrNotMember) || errors.Is(err, store.ErrNotFound) {
				return ErrInviteNotFound
			}
			return err
		}
		if !inv.RevokedAt.IsZero() {
			return ErrNotPending
		}
		return nil
	}
	return s.idempotent(ctx, c, key, in.InviteID, "", pre, func(ctx context.Context, tx store.Writer) (any, error) {
		sw, err := social(tx)
		if err != nil {
			return nil, err
		}
		_, err = sw.RevokeInvite(ctx, in.InviteID, c.id.DID, actor(c.id, store.RoleAdmin))
		switch {
		case errors.Is(err, store.ErrNotPending):
			return nil, ErrNotPending
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrNotMember):
			return nil, ErrInviteNotFound
		case errors.Is(err, store.ErrRoleRequired):
			return nil, ErrNotAdmin
		case err != nil:
			return nil, err
		}
		return revokeInviteOutput{Success: true}, nil
	})
}

// inviteAdmits reports whether the caller, not a member, names by the
// pskHash parameter an invite of the conversation it could redeem now:
// one that is usable while the policy allows invites at all.
func (s *Service) inviteAdmits(ctx context.Context, convoID string, c call) (bool, error) {
	raw, err := c.params.str("pskHash", 64)
	if err != nil || raw == "" {
		return false, err
	}
	hash, err := parsePSKHash(raw)
	if err != nil {
		return false, err
	}
	p, err := s.policy(ctx, s.cfg.Store, convoID)
	if err != nil {
		return false, err
	}
	if !p.AllowInvites {
		return false, nil
	}
	// An account removed from the conversation may use only an invite
	// naming it (RedeemInvite's rule), so it is shown the GroupInfo only
	// for one.
	all, err := s.cfg.Store.Members(ctx, []string{convoID}, true)
	if err != nil {
		return false, fmt.Errorf("list members: %w", err)
	}
	removed := slices.ContainsFunc(all[convoID], func(m store.Member) bool { return m.UserDID == c.id.DID && m.Removed })
	invites, err := s.cfg.Store.Invites(ctx, convoID, false)
	if err != nil {
		return false, fmt.Errorf("list invites: %w", err)
	}
	now := s.cfg.Now()
	for _, inv := range invites {
		if inv.PSKHash == hash && ((inv.TargetDID == "" && !removed) || inv.TargetDID == c.id.DID) &&
			(inv.ExpiresAt.IsZero() || inv.ExpiresAt.After(now)) && (inv.MaxUses == 0 || inv.UseCount < inv.MaxUses) {
			return true, nil
		}
	}
	return false, nil
}

// joinByInvite serves blue.catbird.mls.processExternalCommit for joining
// with an invite (see processExternalCommit, which calls it when the body
// carries a psk): the caller, not yet a member, adds its own device to the
// group by an MLS external commit and proves the invite with its
// pre-shared key. In one transaction the invite's use is counted (refused
// if revoked, expired, used up or for another DID), the caller becomes a
// member and the commit advances the epoch by compare-and-swap. The policy
// (allowInvites, maxMembers) and the operator's opt-in rule apply; the
// policy as it stands in that transaction decides.
func (s *Service) joinByInvite(ctx context.Context, c call, in processExternalCommitInput) (any, error) {
	psk, err := base64Field("psk", in.PSK, 1024)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(psk)
	hash := hex.EncodeToString(sum[:])
	convoID := normConvoID(in.ConvoID)
	commit, err := s.externalCommit(c, convoID, in)
	if err != nil {
		return nil, err
	}
	key := in.IdempotencyKey
	if key == "" {
		key = "join:" + commit.MsgID
	}
	pre := func(ctx context.Context) error {
		if _, err := s.cfg.Store.Convo(ctx, convoID); err != nil {
			return fmt.Errorf("read convo: %w", err)
		}
		if _, err := s.member(ctx, convoID, c.id); err == nil {
			return store.ErrAlreadyMember
		} else if !errors.Is(err, store.ErrNotMember) {
			return err
		}
		p, err := s.policy(ctx, s.cfg.Store, convoID)
		if err != nil {
			return err
		}
		if !p.AllowInvites {
			return store.ErrInviteUnusable
		}
		users, err := s.convoUsers(ctx, convoID)
		if err != nil {
			return err
		}
		if len(users)+1 > p.MaxMembers {
			return ErrTooManyMembers
		}
		if err := s.checkOptIn(ctx, s.cfg.Store, []string{c.id.DID}); err != nil {
			return err
		}
		return s.checkBlocksOnAdd(ctx, users, []string{c.id.DID})
	}
	req := struct{ ConvoID, Commit, PSKHash string }{convoID, commit.MsgID, hash}
	return s.idempotent(ctx, c, key, req, convoID, pre, func(ctx context.Context, tx store.Writer) (any, error) {
		sw, err := social(tx)
		if err != nil {
			return nil, err
		}
		// pre's policy checks run again here, on the policy read in the
		// transaction, where the store holds the conversation against
		// PutPolicy and other joins: an updatePolicy turning invites off
		// or lowering maxMembers commits either before this read, and is
		// obeyed, or after this join. The store counts the members
		// against maxMembers, and checks the invite itself (revoked,
		// expired, used up, for another account), with the use. Opt-in
		// is read here again too, so an optOut that committed first
		// refuses the join, and the joiner's device is counted against
		// the operator's max_members (addJoiner).
		p, err := s.policy(ctx, sw, convoID)
		if err != nil {
			return nil, err
		}
		if !p.AllowInvites {
			return nil, store.ErrInviteUnusable
		}
		_, err = sw.RedeemInvite(ctx, convoID, hash, c.id.DID, p.MaxMembers)
		if errors.Is(err, store.ErrMemberLimit) {
			return nil, ErrTooManyMembers
		}
		if err != nil {
			return nil, err
		}
		if err := s.checkOptIn(ctx, sw, []string{c.id.DID}); err != nil {
			return nil, err
		}
		ch, err := s.addJoiner(ctx, tx, convoID, store.NewMember{MemberDID: memberDID(c.id), UserDID: c.id.DID, DeviceID: c.id.DeviceID}, commit)
		if err != nil {
			return nil, err
		}
		return processExternalCommitOutput{Epoch: ch.Epoch, RejoinedAt: datetime(ch.ReceivedAt)}, nil
	})
}
