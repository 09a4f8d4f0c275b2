package delivery

import (
	"context"
	"errors"
	"fmt"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// queueNewDevice queues a newly registered device for addition to every
// conversation its account is in, for the members to add
// (getPendingDeviceAdditions). A conversation the device is already in is
// skipped. Registration has committed by then: a failure here is reported,
// and registering the device again queues what is missing.
func (s *Service) queueNewDevice(ctx context.Context, did, deviceID string) error {
	convos, err := s.cfg.Store.UserConvos(ctx, did)
	if err != nil {
		return fmt.Errorf("list user convos: %w", err)
	}
	for _, uc := range convos {
		id, err := newRequestID()
		if err != nil {
			return err
		}
		_, err = s.cfg.Store.QueueDeviceAddition(ctx, store.NewPendingAddition{
			ID: id, ConvoID: uc.ConvoID, UserDID: did, DeviceID: deviceID, TTL: s.cfg.PendingAdditionTTL,
		})
		if err != nil && !errors.Is(err, store.ErrAlreadyMember) && !errors.Is(err, store.ErrNotMember) {
			return fmt.Errorf("queue device addition: %w", err)
		}
	}
	return nil
}

// pendingDeviceAdditionView is
// getPendingDeviceAdditions#pendingDeviceAddition.
type pendingDeviceAdditionView struct {
	ID                  string `json:"id"`
	ConvoID             string `json:"convoId"`
	UserDID             string `json:"userDid"`
	DeviceID            string `json:"deviceId"`
	DeviceName          string `json:"deviceName,omitempty"`
	DeviceCredentialDID string `json:"deviceCredentialDid"`
	Status              string `json:"status"`
	ClaimedBy           string `json:"claimedBy,omitempty"`
	CreatedAt           string `json:"createdAt"`
}

func newPendingView(p store.PendingAddition) pendingDeviceAdditionView {
	claimedBy, _ := splitDID(p.ClaimedBy)
	return pendingDeviceAdditionView{
		ID: p.ID, ConvoID: p.ConvoID, UserDID: p.UserDID, DeviceID: p.DeviceID, DeviceName: p.DeviceName,
		DeviceCredentialDID: p.MemberDID(), Status: string(p.Status), ClaimedBy: claimedBy, CreatedAt: datetime(p.CreatedAt),
	}
}

type getPendingDeviceAdditionsOutput struct {
	PendingAdditions []pendingDeviceAdditionView `json:"pendingAdditions"`
}

// getPendingDeviceAdditions lists the devices waiting to be added to the
// conversations the caller's account is in (new devices and rejoin
// requests), oldest first, without the caller's own device: a device
// cannot add itself.
func (s *Service) getPendingDeviceAdditions(ctx context.Context, c call) (any, error) {
	convoIDs, err := c.params.list("convoIds", 100, 128)
	if err != nil {
		return nil, err
	}
	for i := range convoIDs {
		convoIDs[i] = normConvoID(convoIDs[i])
	}
	limit, _, err := c.params.integer("limit", 1, 100, 50)
	if err != nil {
		return nil, err
	}
	ps, err := s.cfg.Store.PendingAdditions(ctx, c.id.DID, convoIDs, int(limit)+1)
	if err != nil {
		return nil, fmt.Errorf("list pending device additions: %w", err)
	}
	out := getPendingDeviceAdditionsOutput{PendingAdditions: make([]pendingDeviceAdditionView, 0, len(ps))}
	for _, p := range ps {
		if p.MemberDID() == memberDID(c.id) || len(out.PendingAdditions) == int(limit) {
			continue
		}
		out.PendingAdditions = append(out.PendingAdditions, newPendingView(p))
	}
	return out, nil
}

type pendingAdditionIDInput struct {
	PendingAdditionID string `json:"pendingAdditionId"`
	NewEpoch          *int64 `json:"newEpoch"`
}

type claimPendingDeviceAdditionOutput struct {
	Claimed             bool               `json:"claimed"`
	ConvoID             string             `json:"convoId,omitempty"`
	DeviceCredentialDID string             `json:"deviceCredentialDid,omitempty"`
	KeyPackage          *keyPackageRefView `json:"keyPackage,omitempty"`
	ClaimedBy           string             `json:"claimedBy,omitempty"`
}

// pendingAddition reads the addition a claim or completion names, for a
// caller who is a member of its conversation.
func (s *Service) pendingAddition(ctx context.Context, c call, in *pendingAdditionIDInput) (store.PendingAddition, error) {
	if err := decodeBody(c.body, in); err != nil {
		return store.PendingAddition{}, err
	}
	if err := required("pendingAdditionId", in.PendingAdditionID); err != nil {
		return store.PendingAddition{}, err
	}
	if err := maxLen("pendingAdditionId", in.PendingAdditionID, 64); err != nil {
		return store.PendingAddition{}, err
	}
	p, err := s.cfg.Store.PendingAddition(ctx, in.PendingAdditionID)
	if err != nil {
		return store.PendingAddition{}, err
	}
	if _, err := s.member(ctx, p.ConvoID, c.id); err != nil {
		return store.PendingAddition{}, err
	}
	return p, nil
}

// claimPendingDeviceAddition gives the caller's device the claim on a
// pending addition for ClaimTTL, with the key package to add the device
// with. Exactly one member device holds a claim at a time (the store
// decides atomically); another claimer learns who holds it. An unknown,
// expired or completed addition, and the caller's own device, are
// claimed=false.
func (s *Service) claimPendingDeviceAddition(ctx context.Context, c call) (any, error) {
	var in pendingAdditionIDInput
	p, err := s.pendingAddition(ctx, c, &in)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return claimPendingDeviceAdditionOutput{}, nil
	case err != nil:
		return nil, err
	case p.MemberDID() == memberDID(c.id):
		return claimPendingDeviceAdditionOutput{}, nil
	}
	got, err := s.cfg.Store.ClaimPendingAddition(ctx, p.ID, memberDID(c.id), ClaimTTL)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return claimPendingDeviceAdditionOutput{}, nil
	case errors.Is(err, store.ErrClaimedByOther):
		holder, _ := splitDID(got.Addition.ClaimedBy)
		return claimPendingDeviceAdditionOutput{ConvoID: p.ConvoID, DeviceCredentialDID: p.MemberDID(), ClaimedBy: holder}, nil
	case err != nil:
		return nil, fmt.Errorf("claim pending device addition: %w", err)
	}
	kp := got.KeyPackage
	return claimPendingDeviceAdditionOutput{
		Claimed: true, ConvoID: p.ConvoID, DeviceCredentialDID: p.MemberDID(),
		KeyPackage: &keyPackageRefView{DID: kp.OwnerDID, KeyPackage: encodeB64URL(kp.Data), KeyPackageHash: kp.Ref, CipherSuite: kp.CipherSuite},
	}, nil
}

type completePendingDeviceAdditionOutput struct {
	Success bool   `json:"success"`
	Error   string `json:"error,omitempty"`
}

// completePendingDeviceAddition closes an addition the caller's device
// claimed, once the device is in the conversation (added by addMembers
// with the claimed key package, or by its own external commit). Until
// then it is success=false with InvalidStatus:<status>; an addition that
// is gone (completed before) is PendingAdditionNotFound; one the caller
// does not hold is 403 NotClaimed.
func (s *Service) completePendingDeviceAddition(ctx context.Context, c call) (any, error) {
	var in pendingAdditionIDInput
	p, err := s.pendingAddition(ctx, c, &in)
	if errors.Is(err, store.ErrNotFound) {
		return completePendingDeviceAdditionOutput{Error: "PendingAdditionNotFound"}, nil
	}
	if err != nil {
		return nil, err
	}
	if in.NewEpoch == nil {
		return nil, badRequest("newEpoch is required")
	}
	if *in.NewEpoch < 0 {
		return nil, badRequest("newEpoch must be at least 0")
	}
	cv, err := s.cfg.Store.Convo(ctx, p.ConvoID)
	if err != nil {
		return nil, fmt.Errorf("read convo: %w", err)
	}
	if *in.NewEpoch > cv.Epoch {
		return nil, badRequest("newEpoch %d is ahead of the conversation's epoch", *in.NewEpoch)
	}
	done, err := s.cfg.Store.CompletePendingAddition(ctx, p.ID, memberDID(c.id))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return completePendingDeviceAdditionOutput{Error: "PendingAdditionNotFound"}, nil
	case errors.Is(err, store.ErrNotMember):
		return completePendingDeviceAdditionOutput{Error: "InvalidStatus:" + string(done.Status)}, nil
	case err != nil:
		return nil, err
	}
	return completePendingDeviceAdditionOutput{Success: true}, nil
}
