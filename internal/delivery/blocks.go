package delivery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/blocks"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// BlockSource reads Bluesky block relations (blocks.Source implements it).
type BlockSource interface {
	// Among returns the blocks between accounts of dids, either way;
	// blocks.ErrUnavailable if they could not be read.
	Among(ctx context.Context, dids []string) ([]blocks.Relation, error)
	// Between returns the blocks, either way, between an account of added
	// and an account of added or existing: all an add must know, at a cost
	// linear in the conversation's size rather than quadratic.
	// blocks.ErrUnavailable if they could not be read.
	Between(ctx context.Context, added, existing []string) ([]blocks.Relation, error)
	// Verify reads, bypassing any cache, whether blocker blocks blocked
	// (through the record uri when given).
	Verify(ctx context.Context, blocker, blocked, uri string) (blocks.Relation, bool, error)
}

// Sentinel errors of the block methods. mapError names them per lexicon.
var (
	// ErrBlocked means an add would put a blocker and the account it
	// blocks in one conversation.
	ErrBlocked = errors.New("delivery: a block separates accounts to be in one conversation")
	// ErrBlockSourceUnavailable means block records could not be read and
	// the operator chose to refuse adds then (the default).
	ErrBlockSourceUnavailable = errors.New("delivery: block source unavailable")
	// ErrBlockNotVerified means handleBlockChange's block (or its removal)
	// is not what the blocker's repository holds.
	ErrBlockNotVerified = errors.New("delivery: block not verified")
)

// maxBlockDIDs is checkBlocks' cap on DIDs (the lexicon's maxLength).
const maxBlockDIDs = 100

// blockError names the block sentinels for nsid; ok is false for any other
// error.
func blockError(nsid string, err error) (status int, name, msg string, ok bool) {
	switch {
	case errors.Is(err, ErrBlocked) && nsid == Namespace+"createConvo":
		return http.StatusForbidden, "MutualBlockDetected", "accounts to be in this conversation block one another on Bluesky", true
	case errors.Is(err, ErrBlocked):
		return http.StatusForbidden, "BlockedByMember", "an account to be added blocks, or is blocked by, a member or another account being added (Bluesky social graph)", true
	case errors.Is(err, ErrBlockSourceUnavailable):
		return http.StatusServiceUnavailable, "BlueskyServiceUnavailable", "block records could not be read from the accounts' servers; retry later", true
	case errors.Is(err, ErrBlockNotVerified):
		return http.StatusBadRequest, "BlockNotVerified", "the blocker's repository does not hold this block (or still holds a removed one)", true
	}
	return 0, "", "", false
}

// blockRoutes adds the block methods (issue 14) to the route table.
func (s *Service) blockRoutes(m map[string]method) {
	m[Namespace+"checkBlocks"] = method{typ: xrpc.Query, handle: s.checkBlocks}
	m[Namespace+"getBlockStatus"] = method{typ: xrpc.Query, handle: s.getBlockStatus}
	m[Namespace+"handleBlockChange"] = method{typ: xrpc.Procedure, bodyLimit: s.cfg.MaxBodyBytes, handle: s.handleBlockChange}
}

// relations reads the blocks among users. Without a configured source it
// finds none. A source failure is ErrBlockSourceUnavailable.
func (s *Service) relations(ctx context.Context, users []string) ([]blocks.Relation, error) {
	if s.cfg.Blocks == nil || len(users) < 2 {
		return nil, nil
	}
	rs, err := s.cfg.Blocks.Among(ctx, users)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %w", ErrBlockSourceUnavailable, err)
	}
	return rs, nil
}

// checkBlocksOnAdd refuses an add that would put a blocker and the account
// it blocks in one conversation: a block between a new account and a
// member, or between two new accounts. Blocks between existing members are
// not this add's business (getBlockStatus shows them). When the source is
// down the add is refused unless Config.BlocksFailOpen.
func (s *Service) checkBlocksOnAdd(ctx context.Context, existing, added []string) error {
	if s.cfg.Blocks == nil || len(added) == 0 {
		return nil
	}
	rs, err := s.cfg.Blocks.Between(ctx, added, existing)
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil && s.cfg.BlocksFailOpen {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBlockSourceUnavailable, err)
	}
	if len(rs) > 0 {
		return ErrBlocked
	}
	return nil
}

// blockRelationship is checkBlocks#blockRelationship.
type blockRelationship struct {
	BlockerDID string `json:"blockerDid"`
	BlockedDID string `json:"blockedDid"`
	CreatedAt  string `json:"createdAt"`
	BlockURI   string `json:"blockUri,omitempty"`
}

func newBlockViews(rs []blocks.Relation, keep func(blocks.Relation) bool) []blockRelationship {
	out := []blockRelationship{}
	for _, r := range rs {
		if keep != nil && !keep(r) {
			continue
		}
		created := r.CreatedAt
		if created.IsZero() {
			created = time.Unix(0, 0) // the record gave no valid date
		}
		v := blockRelationship{BlockerDID: r.Blocker, BlockedDID: r.Blocked, CreatedAt: datetime(created), BlockURI: r.URI}
		out = append(out, v)
	}
	return out
}

type checkBlocksOutput struct {
	Blocks    []blockRelationship `json:"blocks"`
	CheckedAt string              `json:"checkedAt"`
}

// checkBlocks serves blue.catbird.mls.checkBlocks for 2 to 100 DIDs. It
// answers only about the caller and the accounts the caller shares a
// conversation with: a block between two other accounts (two candidates, or
// strangers) is left out, so the method is no oracle on arbitrary pairs.
// A caller adding candidates to a conversation learns about the blocks
// between each candidate and the members, which is what the check is for.
func (s *Service) checkBlocks(ctx context.Context, c call) (any, error) {
	dids, err := c.params.list("dids", 1000, 2048)
	if err != nil {
		return nil, err
	}
	if len(dids) > maxBlockDIDs {
		return nil, xrpc.Errorf(http.StatusBadRequest, "TooManyDids", "dids takes at most %d DIDs", maxBlockDIDs)
	}
	if len(dids) < 2 {
		return nil, badRequest("parameter dids takes at least 2 DIDs")
	}
	for i, d := range dids {
		if !validDID(d, true) {
			return nil, xrpc.Errorf(http.StatusBadRequest, "InvalidDid", "dids holds an invalid DID")
		}
		dids[i], _ = splitDID(d)
	}
	related, err := s.relatedAccounts(ctx, c.id.DID)
	if err != nil {
		return nil, err
	}
	rs, err := s.relations(ctx, dids)
	if err != nil {
		return nil, err
	}
	keep := func(r blocks.Relation) bool { return related[r.Blocker] || related[r.Blocked] }
	return checkBlocksOutput{Blocks: newBlockViews(rs, keep), CheckedAt: datetime(s.cfg.Now())}, nil
}

// relatedAccounts returns the caller and every account it shares an active
// conversation with.
func (s *Service) relatedAccounts(ctx context.Context, userDID string) (map[string]bool, error) {
	related := map[string]bool{userDID: true}
	convos, err := s.cfg.Store.UserConvos(ctx, userDID)
	if err != nil {
		return nil, fmt.Errorf("list the caller's conversations: %w", err)
	}
	if len(convos) == 0 {
		return related, nil
	}
	ids := make([]string, 0, len(convos))
	for _, cv := range convos {
		ids = append(ids, cv.ConvoID)
	}
	members, err := s.cfg.Store.Members(ctx, ids, false)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	for _, ms := range members {
		for _, m := range ms {
			related[m.UserDID] = true
		}
	}
	return related, nil
}

type getBlockStatusOutput struct {
	ConvoID      string              `json:"convoId"`
	HasConflicts bool                `json:"hasConflicts"`
	Blocks       []blockRelationship `json:"blocks"`
	CheckedAt    string              `json:"checkedAt"`
	MemberCount  int                 `json:"memberCount"`
}

// getBlockStatus serves blue.catbird.mls.getBlockStatus: the blocks
// between a conversation's members, to its admins.
func (s *Service) getBlockStatus(ctx context.Context, c call) (any, error) {
	convoID, err := convoParam(c.params)
	if err != nil {
		return nil, err
	}
	me, err := s.member(ctx, convoID, c.id)
	if err != nil {
		return nil, err
	}
	if me.Role != store.RoleAdmin {
		return nil, ErrNotAdmin
	}
	users, err := s.convoUsers(ctx, convoID)
	if err != nil {
		return nil, err
	}
	rs, err := s.relations(ctx, users)
	if err != nil {
		return nil, err
	}
	return getBlockStatusOutput{
		ConvoID: convoID, HasConflicts: len(rs) > 0, Blocks: newBlockViews(rs, nil),
		CheckedAt: datetime(s.cfg.Now()), MemberCount: len(users),
	}, nil
}

type handleBlockChangeInput struct {
	BlockerDID string `json:"blockerDid"`
	BlockedDID string `json:"blockedDid"`
	Action     string `json:"action"`
	BlockURI   string `json:"blockUri"`
}

type affectedConvo struct {
	ConvoID       string `json:"convoId"`
	Action        string `json:"action"`
	AdminNotified bool   `json:"adminNotified"`
}

type handleBlockChangeOutput struct {
	AffectedConvos []affectedConvo `json:"affectedConvos"`
}

// handleBlockChange serves blue.catbird.mls.handleBlockChange. The caller
// must be the blocker; the block (or, for "removed", its absence) is read
// from the blocker's repository first. The answer lists only conversations
// the caller is in together with the blocked account. It writes nothing
// (block relations are not stored), so it takes no idempotency key: a
// retry gets the same answer.
func (s *Service) handleBlockChange(ctx context.Context, c call) (any, error) {
	var in handleBlockChangeInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	blocker, err := targetDID("blockerDid", in.BlockerDID)
	if err != nil {
		return nil, err
	}
	blocked, err := targetDID("blockedDid", in.BlockedDID)
	if err != nil {
		return nil, err
	}
	if in.Action != "created" && in.Action != "removed" {
		return nil, badRequest("action must be created or removed")
	}
	if err := maxLen("blockUri", in.BlockURI, 8192); err != nil {
		return nil, err
	}
	if blocker != c.id.DID {
		return nil, xrpc.Errorf(http.StatusForbidden, "BlockNotVerified", "blockerDid must be the caller: only the blocker reports its blocks")
	}
	if blocker == blocked {
		return nil, badRequest("blockerDid and blockedDid are the same account")
	}
	if in.BlockURI != "" {
		if repo, _, err := blocks.ParseBlockURI(in.BlockURI); err != nil || repo != blocker {
			return nil, ErrBlockNotVerified
		}
	}
	if s.cfg.Blocks == nil {
		return nil, fmt.Errorf("%w: no block source configured", ErrBlockSourceUnavailable)
	}
	_, found, err := s.cfg.Blocks.Verify(ctx, blocker, blocked, strings.TrimSpace(in.BlockURI))
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %w", ErrBlockSourceUnavailable, err)
	}
	if found != (in.Action == "created") {
		return nil, ErrBlockNotVerified
	}
	convos, err := s.cfg.Store.UserConvos(ctx, c.id.DID)
	if err != nil {
		return nil, fmt.Errorf("list the caller's conversations: %w", err)
	}
	out := handleBlockChangeOutput{AffectedConvos: []affectedConvo{}}
	if len(convos) == 0 {
		return out, nil
	}
	ids := make([]string, 0, len(convos))
	for _, cv := range convos {
		ids = append(ids, cv.ConvoID)
	}
	members, err := s.cfg.Store.Members(ctx, ids, false)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	action := "requires_resolution"
	if in.Action == "removed" {
		action = "no_action"
	}
	for _, id := range ids {
		if slices.ContainsFunc(members[id], func(m store.Member) bool { return m.UserDID == blocked }) {
			out.AffectedConvos = append(out.AffectedConvos, affectedConvo{ConvoID: id, Action: action})
		}
	}
	return out, nil
}
