package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// memberDID is the MLS identity of the caller's device: did#device, or the
// bare DID for a caller not bound to a device.
func memberDID(id caller.Identity) string {
	if id.DeviceID == "" {
		return id.DID
	}
	return id.DID + "#" + id.DeviceID
}

// member returns the caller's active member row in the conversation.
// Authorization matches both the user DID and the device: a caller bound
// to a device matches its own device row or a device-less row of its DID;
// a caller without a device matches any row of its DID. ErrNotFound for an
// unknown conversation, ErrNotMember otherwise.
func (s *Service) member(ctx context.Context, convoID string, id caller.Identity) (store.Member, error) {
	if id.DeviceID != "" {
		m, err := s.cfg.Store.ActiveMember(ctx, convoID, memberDID(id))
		if err == nil || !errors.Is(err, store.ErrNotMember) {
			return m, err
		}
	}
	m, err := s.cfg.Store.ActiveMember(ctx, convoID, id.DID)
	if err == nil || !errors.Is(err, store.ErrNotMember) || id.DeviceID != "" {
		return m, err
	}
	all, err := s.cfg.Store.Members(ctx, []string{convoID}, false)
	if err != nil {
		return store.Member{}, fmt.Errorf("list members: %w", err)
	}
	for _, m := range all[convoID] {
		if m.UserDID == id.DID {
			return m, nil
		}
	}
	return store.Member{}, fmt.Errorf("caller: %w", store.ErrNotMember)
}

// memberCheck is the store-side form of member's rule, for writes that
// check membership in the statement that writes.
func memberCheck(id caller.Identity) *store.MemberCheck {
	if id.DeviceID != "" {
		return &store.MemberCheck{MemberDIDs: []string{memberDID(id), id.DID}}
	}
	return &store.MemberCheck{MemberDIDs: []string{id.DID}, AnyRowOf: id.DID}
}

// actor is the caller as the store checks it in a social write's own
// transaction: memberCheck's rule, holding one of roles when any are given.
func actor(id caller.Identity, roles ...store.Role) *store.Actor {
	return &store.Actor{Member: *memberCheck(id), Roles: roles}
}

// actorError names a store's refusal of a social write's actor: a member
// without the role is ErrNotAdmin, as the handlers' own checks say.
func actorError(err error) error {
	if errors.Is(err, store.ErrRoleRequired) {
		return ErrNotAdmin
	}
	return err
}

// callerRows returns the member DIDs in the conversation that the caller
// may act as (its device row and device-less row, or every row of its
// DID for a caller without a device), for Welcome lookups.
func (s *Service) callerRows(ctx context.Context, convoID string, id caller.Identity) ([]string, error) {
	if id.DeviceID != "" {
		return []string{memberDID(id), id.DID}, nil
	}
	all, err := s.cfg.Store.Members(ctx, []string{convoID}, false)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	out := []string{id.DID}
	for _, m := range all[convoID] {
		if m.UserDID == id.DID && m.MemberDID != id.DID {
			out = append(out, m.MemberDID)
		}
	}
	return out, nil
}

// errProbe ends a replay probe's transaction without recording anything.
var errProbe = errors.New("delivery: replay probe")

// idempotent runs a write under the caller's idempotency key for the
// method. A retry with the same key and request returns the first
// response and runs nothing; a different request under the same key is
// 422 IdempotencyKeyReused. req is hashed (as JSON) to tell the two apart.
//
// convoID, when set, is reported to Config.OnChange after a write that
// ran (not after a replay).
//
// pre (may be nil) runs the checks that read the store before the write.
// If it refuses the request, the key is probed for a recorded response
// first: a retry must replay even when the first attempt changed what pre
// checks (a member who left is no longer a member).
func (s *Service) idempotent(ctx context.Context, c call, key string, req any, convoID string,
	pre func(ctx context.Context) error, fn func(ctx context.Context, tx store.Writer) (any, error)) (any, error) {
	canon, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("hash request: %w", err)
	}
	h := sha256.New()
	h.Write([]byte(c.nsid))
	h.Write([]byte{0})
	h.Write(canon)
	hash := h.Sum(nil)
	ik := store.IdempotencyKey{CallerDID: c.id.DID, NSID: c.nsid, Key: key}
	if pre != nil {
		if perr := pre(ctx); perr != nil {
			if s.mapError(c.nsid, perr).Status >= 500 {
				return nil, perr
			}
			resp, replayed, err := s.cfg.Store.Idempotent(ctx, ik, hash, func(context.Context, store.Writer) ([]byte, error) {
				return nil, errProbe
			})
			switch {
			case err == nil && replayed:
				return rawJSON(resp), nil
			case err == nil, errors.Is(err, errProbe):
				return nil, perr
			}
			return nil, err
		}
	}
	resp, replayed, err := s.cfg.Store.Idempotent(ctx, ik, hash,
		func(ctx context.Context, tx store.Writer) ([]byte, error) {
			out, err := fn(ctx, tx)
			if err != nil {
				return nil, &fnError{err: err}
			}
			b, err := encodeJSON(out)
			if err != nil {
				return nil, &fnError{err: fmt.Errorf("encode response: %w", err)}
			}
			return b, nil
		})
	if err != nil {
		return nil, err
	}
	if !replayed && convoID != "" && s.cfg.OnChange != nil {
		s.cfg.OnChange(ctx, convoID)
	}
	return rawJSON(resp), nil
}
