package delivery

import (
	"context"
	"errors"
	"fmt"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/store"
)

type getGroupInfoOutput struct {
	GroupInfo string `json:"groupInfo"`
	Epoch     int64  `json:"epoch"`
	ExpiresAt string `json:"expiresAt,omitempty"`
}

// getGroupInfo returns the cached GroupInfo to a current member. The
// lexicon also serves past members (for an external commit), but a
// GroupInfo carries the ratchet tree — the roster — and the material to
// rejoin by external commit: a member who was removed must learn neither.
// Rejoining goes through the rejoin flows, with approval, instead. The one
// non-member served is an invitee that names a usable invite by its
// pskHash parameter (an extension; see processExternalCommit). Error
// names are this lexicon's: NotFound, Unauthorized, GroupInfoUnavailable.
func (s *Service) getGroupInfo(ctx context.Context, c call) (any, error) {
	convoID, err := convoParam(c.params)
	if err != nil {
		return nil, err
	}
	if _, err := s.cfg.Store.Convo(ctx, convoID); err != nil {
		return nil, fmt.Errorf("read convo: %w", err)
	}
	active, err := s.cfg.Store.Members(ctx, []string{convoID}, false)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	known := false
	for _, m := range active[convoID] {
		if m.UserDID == c.id.DID {
			known = true
			break
		}
	}
	if !known {
		// An invitee about to redeem its invite by external commit
		// (processExternalCommit) names the invite by its pskHash.
		ok, err := s.inviteAdmits(ctx, convoID, c)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("group info: %w", store.ErrNotMember)
		}
	}
	gi, err := s.cfg.Store.GroupInfo(ctx, convoID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrGroupInfoUnavailable
	}
	if err != nil {
		return nil, fmt.Errorf("read group info: %w", err)
	}
	return getGroupInfoOutput{GroupInfo: encodeB64(gi.Data), Epoch: gi.Epoch, ExpiresAt: datetime(gi.UpdatedAt.Add(s.cfg.GroupInfoTTL))}, nil
}

type updateGroupInfoInput struct {
	ConvoID   string `json:"convoId"`
	GroupInfo string `json:"groupInfo"`
	Epoch     *int64 `json:"epoch"`
}

type updateGroupInfoOutput struct {
	Updated bool `json:"updated"`
}

// updateGroupInfo stores a member's GroupInfo for the conversation's
// current epoch. The GroupInfo's own group id and epoch must be the
// conversation's and the declared epoch; an epoch the conversation has
// left is 409 StaleEpoch. It is naturally idempotent (the lexicon has no
// key): storing the same GroupInfo twice changes nothing.
func (s *Service) updateGroupInfo(ctx context.Context, c call) (any, error) {
	var in updateGroupInfoInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := convoField(in.ConvoID); err != nil {
		return nil, err
	}
	if err := required("groupInfo", in.GroupInfo); err != nil {
		return nil, err
	}
	if in.Epoch == nil {
		return nil, badRequest("epoch is required")
	}
	if *in.Epoch < 0 {
		return nil, badRequest("epoch must be at least 0")
	}
	convoID := normConvoID(in.ConvoID)
	if _, err := s.member(ctx, convoID, c.id); err != nil {
		return nil, err
	}
	data, err := base64Field("groupInfo", in.GroupInfo, s.cfg.MaxMessageBytes)
	if err != nil {
		return nil, err
	}
	if _, err := checkGroupInfo(data, convoID, *in.Epoch); err != nil {
		return nil, err
	}
	if err := s.cfg.Store.PutGroupInfo(ctx, convoID, *in.Epoch, data); err != nil {
		return nil, fmt.Errorf("store group info: %w", err)
	}
	return updateGroupInfoOutput{Updated: true}, nil
}

type getWelcomeOutput struct {
	ConvoID string `json:"convoId"`
	Welcome string `json:"welcome"`
}

// getWelcome returns the newest unconsumed Welcome held for the caller.
func (s *Service) getWelcome(ctx context.Context, c call) (any, error) {
	convoID, err := convoParam(c.params)
	if err != nil {
		return nil, err
	}
	w, _, err := s.callerWelcome(ctx, convoID, c.id)
	if err != nil {
		return nil, err
	}
	return getWelcomeOutput{ConvoID: convoID, Welcome: encodeB64URL(w.Data)}, nil
}

// callerWelcome returns the newest unconsumed Welcome held for the
// caller, a member of the conversation, and the member rows it may act as
// (ErrWelcomeNotFound when there is none).
func (s *Service) callerWelcome(ctx context.Context, convoID string, id caller.Identity) (store.Welcome, []string, error) {
	if _, err := s.member(ctx, convoID, id); err != nil {
		return store.Welcome{}, nil, err
	}
	rows, err := s.callerRows(ctx, convoID, id)
	if err != nil {
		return store.Welcome{}, nil, err
	}
	w, err := s.cfg.Store.Welcome(ctx, convoID, rows)
	if errors.Is(err, store.ErrNotFound) {
		return store.Welcome{}, rows, ErrWelcomeNotFound
	}
	if err != nil {
		return store.Welcome{}, nil, fmt.Errorf("read welcome: %w", err)
	}
	return w, rows, nil
}

type confirmWelcomeInput struct {
	ConvoID      string `json:"convoId"`
	Success      *bool  `json:"success"`
	ErrorDetails string `json:"errorDetails"`
}

type confirmWelcomeOutput struct {
	Confirmed bool `json:"confirmed"`
}

// confirmWelcome marks the caller's Welcome consumed after it was
// processed, and the key package it was addressed to used (one Welcome
// per device: see validateWelcome). A failed processing leaves it
// available for another try.
// Confirming twice is harmless, so the method is naturally idempotent.
func (s *Service) confirmWelcome(ctx context.Context, c call) (any, error) {
	var in confirmWelcomeInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := convoField(in.ConvoID); err != nil {
		return nil, err
	}
	if in.Success == nil {
		return nil, badRequest("success is required")
	}
	if err := maxLen("errorDetails", in.ErrorDetails, 1024); err != nil {
		return nil, err
	}
	convoID := normConvoID(in.ConvoID)
	if !*in.Success {
		if _, err := s.member(ctx, convoID, c.id); err != nil {
			return nil, err
		}
	} else {
		// The Welcome's key package is used now: it brings its device in
		// once (validateWelcome refuses it afterwards).
		w, rows, err := s.callerWelcome(ctx, convoID, c.id)
		switch {
		case err == nil:
			if err := s.useWelcomeKeys(ctx, c.id, w.Data); err != nil {
				return nil, err
			}
		case !errors.Is(err, ErrWelcomeNotFound):
			return nil, err
		}
		if err := s.cfg.Store.ConfirmWelcome(ctx, convoID, rows); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("confirm welcome: %w", err)
		}
	}
	return confirmWelcomeOutput{Confirmed: true}, nil
}
