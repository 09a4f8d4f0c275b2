package delivery

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/cairn-chat/cairn-caddy/internal/mlswire"
	"github.com/cairn-chat/cairn-caddy/internal/store"
)

type requestRejoinInput struct {
	ConvoID    string `json:"convoId"`
	KeyPackage string `json:"keyPackage"`
	Reason     string `json:"reason"`
}

type requestRejoinOutput struct {
	RequestID string `json:"requestId"`
	Pending   bool   `json:"pending"`
}

// requestRejoin serves blue.catbird.mls.requestRejoin and rejoin (the two
// lexicons are the same request): a device that lost its MLS state hands
// in a fresh key package and asks to be re-added. Only a registered device
// of an account with an active row in the conversation may ask; the
// device's row is flagged needs_rejoin and a pending addition carrying
// the package is queued for the members (getPendingDeviceAdditions). It is
// naturally idempotent: asking again refreshes the one request per device
// and conversation. Requests are rate-limited per account by the api
// preset's rejoin zone and expire with Config.PendingAdditionTTL.
func (s *Service) requestRejoin(ctx context.Context, c call) (any, error) {
	var in requestRejoinInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := convoField(in.ConvoID); err != nil {
		return nil, err
	}
	if err := required("keyPackage", in.KeyPackage); err != nil {
		return nil, err
	}
	if err := maxLen("reason", in.Reason, 128); err != nil {
		return nil, err
	}
	convoID := normConvoID(in.ConvoID)
	if err := s.mayRejoin(ctx, c, convoID); err != nil {
		return nil, err
	}
	cv, err := s.cfg.Store.Convo(ctx, convoID)
	if err != nil {
		return nil, fmt.Errorf("read convo: %w", err)
	}
	kp, err := s.keyPackage(c.id, c.id.DeviceID, in.KeyPackage, cv.CipherSuite, "")
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Store.PutKeyPackage(ctx, kp, s.cfg.MaxKeyPackagesPerDevice); err != nil {
		return nil, fmt.Errorf("store rejoin key package: %w", err)
	}
	p, err := s.markNeedsRejoin(ctx, c, convoID, kp.Ref)
	if err != nil {
		return nil, err
	}
	return requestRejoinOutput{RequestID: p.ID, Pending: true}, nil
}

// mayRejoin is the rule of requestRejoin and readdition: the caller is a
// device its account registered, and the account has an active row in
// the conversation.
func (s *Service) mayRejoin(ctx context.Context, c call, convoID string) error {
	if err := needDevice(c.id); err != nil {
		return err
	}
	if _, err := s.accountMembers(ctx, convoID, c.id.DID); err != nil {
		return err
	}
	return s.registeredDevice(ctx, c.id)
}

// markNeedsRejoin flags the caller's device in the conversation and
// queues its re-addition (with ref, the package to add it with, if set).
func (s *Service) markNeedsRejoin(ctx context.Context, c call, convoID, ref string) (store.PendingAddition, error) {
	id, err := newRequestID()
	if err != nil {
		return store.PendingAddition{}, err
	}
	p, err := s.cfg.Store.MarkNeedsRejoin(ctx, &store.NewPendingAddition{
		ID: id, ConvoID: convoID, UserDID: c.id.DID, DeviceID: c.id.DeviceID, Rejoin: true,
		KeyPackageRef: ref, TTL: s.cfg.PendingAdditionTTL,
	}, convoID, memberDID(c.id))
	if err != nil {
		return store.PendingAddition{}, fmt.Errorf("queue rejoin: %w", err)
	}
	return p, nil
}

type readditionInput struct {
	ConvoID string `json:"convoId"`
}

type readditionOutput struct {
	Requested     bool `json:"requested"`
	ActiveMembers int  `json:"activeMembers"`
}

// readdition serves blue.catbird.mls.readdition: the last resort of a
// device whose Welcome and external commit both failed. Like requestRejoin
// it flags the device and queues its re-addition, without a package of its
// own: the member who claims it gets one of the device's freshly published
// packages. activeMembers counts the other active member rows, who see the
// request in getPendingDeviceAdditions.
func (s *Service) readdition(ctx context.Context, c call) (any, error) {
	var in readditionInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := convoField(in.ConvoID); err != nil {
		return nil, err
	}
	convoID := normConvoID(in.ConvoID)
	if err := s.mayRejoin(ctx, c, convoID); err != nil {
		return nil, err
	}
	all, err := s.cfg.Store.Members(ctx, []string{convoID}, false)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	others := 0
	for _, m := range all[convoID] {
		if m.MemberDID != memberDID(c.id) {
			others++
		}
	}
	if others == 0 {
		return nil, ErrNoActiveMembers
	}
	if _, err := s.markNeedsRejoin(ctx, c, convoID, ""); err != nil {
		return nil, err
	}
	return readditionOutput{Requested: true, ActiveMembers: others}, nil
}

type processExternalCommitInput struct {
	ConvoID        string `json:"convoId"`
	ExternalCommit string `json:"externalCommit"`
	IdempotencyKey string `json:"idempotencyKey"`
	GroupInfo      string `json:"groupInfo"`
	// PSK is an invite's pre-shared key, base64 (an extension the
	// reference server also reads): its SHA-256 must be a usable invite's
	// pskHash, and the commit then joins by invite (joinByInvite).
	PSK string `json:"psk"`
}

type processExternalCommitOutput struct {
	Epoch      int64  `json:"epoch"`
	RejoinedAt string `json:"rejoinedAt"`
}

// parseExternalCommit parses an external commit of the conversation (RFC
// 9420 §12.4.3.2): a PublicMessage commit of the group from a
// new_member_commit sender, with an ExternalInit proposal and the path
// that carries the joiner's leaf. It returns the epoch the commit was made
// in and the identity of the joiner's basic credential.
func parseExternalCommit(data []byte, convoID string) (int64, []byte, error) {
	m, err := mlswire.ParseMessage(data)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	if m.WireFormat != mlswire.WireFormatPublicMessage || m.PublicMessage == nil {
		return 0, nil, fmt.Errorf("%w: an external commit is a PublicMessage, not %v", ErrInvalidMessage, m.WireFormat)
	}
	fc := &m.PublicMessage.Content
	if !bytes.Equal(fc.GroupID, groupIDBytes(convoID)) {
		return 0, nil, fmt.Errorf("%w: group id does not match the conversation", ErrInvalidMessage)
	}
	if fc.ContentType != mlswire.ContentTypeCommit || fc.Commit == nil {
		return 0, nil, fmt.Errorf("%w: content type %v is not a commit", ErrInvalidMessage, fc.ContentType)
	}
	if fc.Sender.Type != mlswire.SenderTypeNewMemberCommit {
		return 0, nil, fmt.Errorf("%w: sender type %v is not new_member_commit", ErrInvalidMessage, fc.Sender.Type)
	}
	externalInit := false
	for _, p := range fc.Commit.Proposals {
		if p.Type == mlswire.ProposalOrRefTypeProposal && p.Proposal != nil && p.Proposal.Type == mlswire.ProposalTypeExternalInit {
			externalInit = true
		}
	}
	if !externalInit {
		return 0, nil, fmt.Errorf("%w: an external commit needs an ExternalInit proposal", ErrInvalidMessage)
	}
	if fc.Commit.Path == nil {
		return 0, nil, fmt.Errorf("%w: an external commit needs a path", ErrInvalidMessage)
	}
	identity, ok := fc.Commit.Path.LeafNode.Credential.BasicIdentity()
	if !ok {
		return 0, nil, fmt.Errorf("%w: the joiner's credential is not a basic credential", ErrIdentityMismatch)
	}
	epoch, err := epochInt(fc.Epoch)
	if err != nil {
		return 0, nil, err
	}
	return epoch, identity, nil
}

// externalCommit reads the body's external commit for the caller: a real
// MLS external commit of the conversation (parseExternalCommit) whose
// joiner's basic credential is the caller, as did#device or bare did, and
// the GroupInfo, when given, of the epoch the commit makes. Both the join
// by invite and the rejoin come through here, so neither stores a commit
// the joiner did not make for itself.
//
// An invite's pre-shared key cannot be checked in the commit: a PSK
// proposal (RFC 9420 §12.4.3.2 allows them in an external commit) names
// the key by an application-chosen psk_id and injects it into the key
// schedule, which the server never computes. The key is checked by its
// hash against the invite instead (joinByInvite).
func (s *Service) externalCommit(c call, convoID string, in processExternalCommitInput) (*store.NewCommit, error) {
	data, err := base64Field("externalCommit", in.ExternalCommit, s.cfg.MaxMessageBytes)
	if err != nil {
		return nil, err
	}
	epoch, identity, err := parseExternalCommit(data, convoID)
	if err != nil {
		return nil, err
	}
	if string(identity) != memberDID(c.id) && string(identity) != c.id.DID {
		return nil, fmt.Errorf("%w: the joiner's credential is not the caller", ErrIdentityMismatch)
	}
	// The message id of a commit is derived from its bytes: a member who
	// could predict it could block the commit by taking the id first.
	sum := sha256.Sum256(data)
	commit := &store.NewCommit{
		Epoch: epoch, MsgID: "commit-" + hex.EncodeToString(sum[:8]), Data: data,
		PaddedSize: int64(len(data)), ExpiresAt: s.expiry(),
	}
	if in.GroupInfo != "" {
		gi, err := base64Field("groupInfo", in.GroupInfo, s.cfg.MaxMessageBytes)
		if err != nil {
			return nil, err
		}
		if _, err := checkGroupInfo(gi, convoID, epoch+1); err != nil {
			return nil, err
		}
		commit.GroupInfo = gi
	}
	return commit, nil
}

// processExternalCommit serves blue.catbird.mls.processExternalCommit. With
// a psk in the body it is a join by invite (joinByInvite); otherwise a
// device joins (or, with MLS resync, rejoins) the group by itself from its
// GroupInfo. The commit is parsed and checked like any commit (group,
// epoch compare-and-swap, one commit per epoch) and more: the joiner's
// credential must be the caller (did or did#device), the device one the
// account registered, and the account must have an active row in the
// conversation, so a removed account cannot come back this way. The
// device's row is added (or re-added, clearing needs_rejoin) with the
// commit in one transaction, where a device without an active row counts
// against the operator's max_members (addJoiner); a device whose row is
// active and unflagged resyncs with the commit alone. groupInfo, when
// given, must be of the epoch the commit makes and is stored with it.
func (s *Service) processExternalCommit(ctx context.Context, c call) (any, error) {
	var in processExternalCommitInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := convoField(in.ConvoID); err != nil {
		return nil, err
	}
	if err := required("externalCommit", in.ExternalCommit); err != nil {
		return nil, err
	}
	if err := maxLen("idempotencyKey", in.IdempotencyKey, 128); err != nil {
		return nil, err
	}
	if in.PSK != "" {
		return s.joinByInvite(ctx, c, in)
	}
	convoID := normConvoID(in.ConvoID)
	commit, err := s.externalCommit(c, convoID, in)
	if err != nil {
		return nil, err
	}
	data, sum := commit.Data, sha256.Sum256(commit.Data)
	me := memberDID(c.id)
	key := in.IdempotencyKey
	if key == "" {
		key = "external:" + hex.EncodeToString(sum[:16])
	}
	resync := false
	pre := func(ctx context.Context) error {
		if _, err := s.accountMembers(ctx, convoID, c.id.DID); err != nil {
			return err
		}
		if err := s.registeredDevice(ctx, c.id); err != nil {
			return err
		}
		_, err := s.cfg.Store.ActiveMember(ctx, convoID, me)
		switch {
		case errors.Is(err, store.ErrNotMember):
			return nil
		case err != nil:
			return fmt.Errorf("read member: %w", err)
		}
		flagged, err := s.cfg.Store.NeedsRejoin(ctx, c.id.DID, me)
		if err != nil {
			return fmt.Errorf("read needs_rejoin: %w", err)
		}
		resync = true
		for _, f := range flagged {
			if f.ConvoID == convoID {
				resync = false
			}
		}
		return nil
	}
	req := struct {
		ConvoID string
		Commit  []byte
		Info    []byte
	}{convoID, data, commit.GroupInfo}
	return s.idempotent(ctx, c, key, req, convoID, pre, func(ctx context.Context, tx store.Writer) (any, error) {
		var ch store.Change
		var err error
		if resync {
			ch, err = tx.AppendCommit(ctx, convoID, *commit)
		} else {
			ch, err = s.addJoiner(ctx, tx, convoID, store.NewMember{MemberDID: me, UserDID: c.id.DID, DeviceID: c.id.DeviceID}, commit)
		}
		if err != nil {
			return nil, err
		}
		return processExternalCommitOutput{Epoch: ch.Epoch, RejoinedAt: datetime(s.cfg.Now())}, nil
	})
}

// addJoiner adds a device joining by its own external commit, once
// admitDevice admits it, in the join's transaction.
func (s *Service) addJoiner(ctx context.Context, tx store.Writer, convoID string, m store.NewMember, commit *store.NewCommit) (store.Change, error) {
	sw, err := social(tx)
	if err != nil {
		return store.Change{}, err
	}
	if err := s.admitDevice(ctx, sw, convoID, m); err != nil {
		return store.Change{}, err
	}
	return tx.AddMembers(ctx, convoID, []store.NewMember{m}, commit)
}

type groupInfoRefreshInput struct {
	ConvoID string `json:"convoId"`
}

type groupInfoRefreshOutput struct {
	Requested     bool `json:"requested"`
	ActiveMembers int  `json:"activeMembers"`
}

// groupInfoRefresh serves blue.catbird.mls.groupInfoRefresh for the
// accounts getGroupInfo serves (an active row in the conversation). The
// event stream carries only stored events, so no GroupInfoRefreshRequested
// event goes out (see DEVIATIONS); the request reports how many active
// member rows could answer, and members keep the GroupInfo fresh by
// storing one with every commit.
func (s *Service) groupInfoRefresh(ctx context.Context, c call) (any, error) {
	var in groupInfoRefreshInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := convoField(in.ConvoID); err != nil {
		return nil, err
	}
	n, err := s.accountMembers(ctx, normConvoID(in.ConvoID), c.id.DID)
	if err != nil {
		return nil, err
	}
	return groupInfoRefreshOutput{Requested: true, ActiveMembers: n}, nil
}
