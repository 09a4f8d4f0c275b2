package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// convoView is blue.catbird.mls.defs#convoView.
type convoView struct {
	GroupID       string         `json:"groupId"`
	Creator       string         `json:"creator"`
	Members       []memberView   `json:"members"`
	Epoch         int64          `json:"epoch"`
	CipherSuite   string         `json:"cipherSuite"`
	CreatedAt     string         `json:"createdAt"`
	LastMessageAt string         `json:"lastMessageAt,omitempty"`
	Metadata      *convoMetadata `json:"metadata,omitempty"`
}

// convoMetadata is blue.catbird.mls.defs#convoMetadata.
type convoMetadata struct {
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
}

// memberView is blue.catbird.mls.defs#memberView.
type memberView struct {
	DID         string `json:"did"`
	UserDID     string `json:"userDid"`
	DeviceID    string `json:"deviceId,omitempty"`
	JoinedAt    string `json:"joinedAt"`
	IsAdmin     bool   `json:"isAdmin"`
	IsModerator bool   `json:"isModerator"`
}

func newConvoView(c store.Convo, members []store.Member) convoView {
	v := convoView{
		GroupID: c.ID, Creator: c.CreatorDID, Members: make([]memberView, 0, len(members)),
		Epoch: c.Epoch, CipherSuite: c.CipherSuite, CreatedAt: datetime(c.CreatedAt),
		LastMessageAt: optDatetime(c.LastActivityAt),
	}
	if c.Name != "" || c.Description != "" {
		v.Metadata = &convoMetadata{Name: c.Name, Description: c.Description}
	}
	for _, m := range members {
		v.Members = append(v.Members, memberView{
			DID: m.MemberDID, UserDID: m.UserDID, DeviceID: m.DeviceID, JoinedAt: datetime(m.JoinedAt),
			IsAdmin: m.Role == store.RoleAdmin, IsModerator: m.Role == store.RoleModerator,
		})
	}
	return v
}

// keyPackageHashEntry is createConvo/addMembers #keyPackageHashEntry.
type keyPackageHashEntry struct {
	DID  string `json:"did"`
	Hash string `json:"hash"`
}

type createConvoInput struct {
	GroupID          string                `json:"groupId"`
	IdempotencyKey   string                `json:"idempotencyKey"`
	CipherSuite      string                `json:"cipherSuite"`
	InitialMembers   []string              `json:"initialMembers"`
	WelcomeMessage   string                `json:"welcomeMessage"`
	KeyPackageHashes []keyPackageHashEntry `json:"keyPackageHashes"`
	Metadata         *convoMetadata        `json:"metadata"`
	CurrentEpoch     *int64                `json:"currentEpoch"`
}

// createConvo creates the conversation with the caller's device as admin
// and the initial members, in one transaction.
func (s *Service) createConvo(ctx context.Context, c call) (any, error) {
	var in createConvoInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := required("groupId", in.GroupID); err != nil {
		return nil, err
	}
	if !validGroupID(in.GroupID) {
		return nil, badRequest("groupId must be hex, at most 128 characters")
	}
	if err := required("cipherSuite", in.CipherSuite); err != nil {
		return nil, err
	}
	if err := requireKey("idempotencyKey", in.IdempotencyKey, 128); err != nil {
		return nil, err
	}
	suite, ok := suiteByName(in.CipherSuite)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrInvalidCipherSuite, in.CipherSuite)
	}
	if len(in.InitialMembers) > 999 {
		return nil, fmt.Errorf("%w: at most 999 initial members", ErrTooManyMembers)
	}
	var name, desc string
	if in.Metadata != nil {
		name, desc = in.Metadata.Name, in.Metadata.Description
		if err := maxLen("metadata.name", name, 128); err != nil {
			return nil, err
		}
		if err := maxLen("metadata.description", desc, 512); err != nil {
			return nil, err
		}
	}
	if in.CurrentEpoch != nil && *in.CurrentEpoch < 0 {
		return nil, badRequest("currentEpoch must be at least 0")
	}
	convoID := normConvoID(in.GroupID)
	creator := memberDID(c.id)
	var others []string
	for _, d := range in.InitialMembers {
		if d != creator && d != c.id.DID {
			others = append(others, d)
		}
	}
	var members []store.NewMember
	var nc store.NewConvo
	pre := func(ctx context.Context) error {
		newMembers, err := s.newMembers(ctx, others, in.KeyPackageHashes, 999)
		if err != nil {
			return err
		}
		members = append([]store.NewMember{{MemberDID: creator, UserDID: c.id.DID, DeviceID: c.id.DeviceID, Role: store.RoleAdmin}}, newMembers...)
		if len(members) > s.cfg.MaxMembers {
			return ErrTooManyMembers
		}
		if err := s.checkOptIn(ctx, s.cfg.Store, memberUsers(newMembers)); err != nil {
			return err
		}
		if err := s.checkBlocksOnAdd(ctx, nil, memberUsers(members)); err != nil {
			return err
		}
		var welcome *store.NewWelcome
		if in.WelcomeMessage != "" {
			if welcome, err = s.welcome(in.WelcomeMessage, suite.String(), newMembers); err != nil {
				return err
			}
		}
		// The group's epoch is encrypted in the Welcome, so the server
		// cannot read it: take the client's value, or derive the usual one
		// (0 for a group alone, 1 after the commit that added the initial
		// members).
		epoch := int64(0)
		if welcome != nil {
			epoch = 1
		}
		if in.CurrentEpoch != nil {
			epoch = *in.CurrentEpoch
		}
		nc = store.NewConvo{
			ID: convoID, CreatorDID: c.id.DID, CipherSuite: suite.String(), Name: name, Description: desc,
			Epoch: epoch, Members: members, Welcome: welcome,
		}
		return nil
	}
	return s.idempotent(ctx, c, in.IdempotencyKey, in, convoID, pre, func(ctx context.Context, tx store.Writer) (any, error) {
		cv, err := tx.CreateConvo(ctx, nc)
		if err != nil {
			return nil, err
		}
		rows := make([]store.Member, len(members))
		for i, m := range members {
			rows[i] = store.Member{ConvoID: convoID, MemberDID: m.MemberDID, UserDID: m.UserDID, DeviceID: m.DeviceID, Role: m.WithDefaults().Role, JoinedAt: cv.CreatedAt}
		}
		return newConvoView(cv, rows), nil
	})
}

// newMembers turns the DIDs to add and their key package hashes into
// member rows. A hash entry's did may name the device (did#device); for a
// bare user DID the device is found from the key package's owner record.
// A DID without a hash entry is added as given.
func (s *Service) newMembers(ctx context.Context, dids []string, hashes []keyPackageHashEntry, maxDIDs int) ([]store.NewMember, error) {
	if len(dids) > maxDIDs {
		return nil, fmt.Errorf("%w: at most %d DIDs", ErrTooManyMembers, maxDIDs)
	}
	if len(hashes) > maxDIDs*int(s.cfg.MaxDevices) {
		return nil, badRequest("too many keyPackageHashes")
	}
	users := map[string]bool{}
	for _, d := range dids {
		if !validDID(d, true) {
			return nil, xrpc.Errorf(http.StatusBadRequest, "InvalidDid", "invalid DID in member list")
		}
		u, _ := splitDID(d)
		users[u] = true
	}
	seen := map[string]bool{}
	covered := map[string]bool{}
	var out []store.NewMember
	add := func(m store.NewMember) error {
		if seen[m.MemberDID] {
			return badRequest("member %s listed twice", "DID")
		}
		seen[m.MemberDID] = true
		out = append(out, m)
		return nil
	}
	for _, h := range hashes {
		if !validDID(h.DID, true) {
			return nil, xrpc.Errorf(http.StatusBadRequest, "InvalidDid", "invalid DID in keyPackageHashes")
		}
		ref := strings.ToLower(h.Hash)
		if ref == "" || len(ref) > 128 || len(ref)%2 != 0 {
			return nil, badRequest("keyPackageHashes hash must be hex")
		}
		if _, err := hex.DecodeString(ref); err != nil {
			return nil, badRequest("keyPackageHashes hash must be hex")
		}
		user, device := splitDID(h.DID)
		if !users[user] {
			return nil, badRequest("keyPackageHashes names a DID that is not being added")
		}
		// The hash may be the KeyPackageRef or the lexicon's SHA-256 of
		// the package bytes; the member row and the Welcome check use the
		// KeyPackageRef, which is what a Welcome is addressed to.
		kp, err := s.cfg.Store.KeyPackageByHash(ctx, user, ref)
		switch {
		case err == nil:
			ref = kp.Ref
			if device == "" {
				device = kp.DeviceID
			}
		case !errors.Is(err, store.ErrKeyPackageNotFound):
			return nil, fmt.Errorf("find key package: %w", err)
		case device == "":
			return nil, fmt.Errorf("key package of a new member: %w", err)
		}
		mdid := user
		if device != "" {
			mdid = user + "#" + device
		}
		covered[user], covered[h.DID] = true, true
		if err := add(store.NewMember{MemberDID: mdid, UserDID: user, DeviceID: device, KeyPackageRef: ref}); err != nil {
			return nil, err
		}
	}
	for _, d := range dids {
		if covered[d] {
			continue
		}
		user, device := splitDID(d)
		if device == "" && covered[user] {
			continue
		}
		if err := add(store.NewMember{MemberDID: d, UserDID: user, DeviceID: device}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// welcome parses a Welcome for the conversation's suite, checks it is
// addressed to every named key package, and holds it for the new members.
func (s *Service) welcome(b64, suite string, members []store.NewMember) (*store.NewWelcome, error) {
	data, err := base64Field("welcomeMessage", b64, s.cfg.MaxMessageBytes)
	if err != nil {
		return nil, err
	}
	w, err := parseWelcome(data)
	if err != nil {
		return nil, err
	}
	if w.CipherSuite.String() != suite {
		return nil, fmt.Errorf("%w: welcome cipher suite differs from the conversation's", ErrInvalidMessage)
	}
	for _, m := range members {
		if m.KeyPackageRef == "" {
			continue
		}
		ref, _ := hex.DecodeString(m.KeyPackageRef)
		if !w.HasNewMember(ref) {
			return nil, fmt.Errorf("%w: welcome is not addressed to a named key package", ErrInvalidMessage)
		}
	}
	nw := &store.NewWelcome{Data: data}
	for _, m := range members {
		nw.Recipients = append(nw.Recipients, m.MemberDID)
	}
	return nw, nil
}

// commit decodes and checks an optional commit of the conversation.
func (s *Service) commit(name, b64, convoID string) (*store.NewCommit, error) {
	if b64 == "" {
		return nil, nil
	}
	data, err := base64Field(name, b64, s.cfg.MaxMessageBytes)
	if err != nil {
		return nil, err
	}
	epoch, err := parseCommit(data, convoID)
	if err != nil {
		return nil, err
	}
	// The message id of a commit is derived from its bytes: a member who
	// could predict it could block the commit by taking the id first.
	sum := sha256.Sum256(data)
	return &store.NewCommit{
		Epoch: epoch, MsgID: "commit-" + hex.EncodeToString(sum[:8]), Data: data,
		PaddedSize: int64(len(data)), ExpiresAt: s.expiry(),
	}, nil
}

// expiry is the expiry of a message stored now (zero: none).
func (s *Service) expiry() time.Time {
	if s.cfg.MessageTTL <= 0 {
		return time.Time{}
	}
	return s.cfg.Now().Add(s.cfg.MessageTTL)
}

type getConvosOutput struct {
	Conversations []convoView `json:"conversations"`
	Cursor        string      `json:"cursor,omitempty"`
}

// getConvos lists the caller's conversations, newest activity first.
func (s *Service) getConvos(ctx context.Context, c call) (any, error) {
	limit, _, err := c.params.integer("limit", 1, 100, 50)
	if err != nil {
		return nil, err
	}
	cursor, err := c.params.str("cursor", 512)
	if err != nil {
		return nil, err
	}
	convos, next, err := s.cfg.Store.ConvosForUser(ctx, c.id.DID, cursor, int(limit))
	if err != nil {
		return nil, fmt.Errorf("list convos: %w", err)
	}
	ids := make([]string, len(convos))
	for i, cv := range convos {
		ids[i] = cv.ID
	}
	members := map[string][]store.Member{}
	if len(ids) > 0 {
		if members, err = s.cfg.Store.Members(ctx, ids, false); err != nil {
			return nil, fmt.Errorf("list members: %w", err)
		}
	}
	out := getConvosOutput{Conversations: make([]convoView, 0, len(convos)), Cursor: next}
	for _, cv := range convos {
		out.Conversations = append(out.Conversations, newConvoView(cv, members[cv.ID]))
	}
	return out, nil
}

// convoParam reads the required convoId parameter.
func convoParam(p paramReader) (string, error) {
	id, err := p.reqStr("convoId", 128)
	return normConvoID(id), err
}

type getEpochOutput struct {
	ConvoID      string `json:"convoId"`
	CurrentEpoch int64  `json:"currentEpoch"`
}

// getEpoch reports the conversation's current epoch to a member.
func (s *Service) getEpoch(ctx context.Context, c call) (any, error) {
	convoID, err := convoParam(c.params)
	if err != nil {
		return nil, err
	}
	if _, err := s.member(ctx, convoID, c.id); err != nil {
		return nil, err
	}
	cv, err := s.cfg.Store.Convo(ctx, convoID)
	if err != nil {
		return nil, fmt.Errorf("read convo: %w", err)
	}
	return getEpochOutput{ConvoID: cv.ID, CurrentEpoch: cv.Epoch}, nil
}

type addMembersInput struct {
	ConvoID          string                `json:"convoId"`
	IdempotencyKey   string                `json:"idempotencyKey"`
	DIDList          []string              `json:"didList"`
	Commit           string                `json:"commit"`
	WelcomeMessage   string                `json:"welcomeMessage"`
	KeyPackageHashes []keyPackageHashEntry `json:"keyPackageHashes"`
}

type addMembersOutput struct {
	Success  bool  `json:"success"`
	NewEpoch int64 `json:"newEpoch"`
}

// addMembers adds members, with the commit that adds them and its Welcome,
// in one transaction. The Welcome is stored only if the commit wins its
// epoch. The policy, the caller's role, the member limit and opt-in are
// checked before and again in that transaction (admitAdd), which decides.
func (s *Service) addMembers(ctx context.Context, c call) (any, error) {
	var in addMembersInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := convoField(in.ConvoID); err != nil {
		return nil, err
	}
	if len(in.DIDList) == 0 {
		return nil, badRequest("didList is required")
	}
	if len(in.DIDList) > 50 {
		return nil, badRequest("didList takes at most 50 DIDs")
	}
	if err := requireKey("idempotencyKey", in.IdempotencyKey, 128); err != nil {
		return nil, err
	}
	if in.WelcomeMessage != "" && in.Commit == "" {
		return nil, badRequest("welcomeMessage requires the commit that adds the members")
	}
	convoID := normConvoID(in.ConvoID)
	commit, err := s.commit("commit", in.Commit, convoID)
	if err != nil {
		return nil, err
	}
	if err := s.admitGroup(ctx, convoID); err != nil {
		return nil, err
	}
	var members []store.NewMember
	pre := func(ctx context.Context) error {
		me, err := s.member(ctx, convoID, c.id)
		if err != nil {
			return err
		}
		cv, err := s.cfg.Store.Convo(ctx, convoID)
		if err != nil {
			return fmt.Errorf("read convo: %w", err)
		}
		if members, err = s.newMembers(ctx, in.DIDList, in.KeyPackageHashes, 50); err != nil {
			return err
		}
		if err := s.checkAdd(ctx, convoID, me.Role, memberUsers(members)); err != nil {
			return err
		}
		current, err := s.cfg.Store.Members(ctx, []string{convoID}, false)
		if err != nil {
			return fmt.Errorf("list members: %w", err)
		}
		// Counted as AdmitMembers counts them: a device already active
		// (one flagged needs_rejoin, re-added) adds no row.
		rows := map[string]bool{}
		for _, m := range current[convoID] {
			rows[m.MemberDID] = true
		}
		_, adding := store.AdmittedDIDs(members)
		for _, d := range adding {
			rows[d] = true
		}
		if len(rows) > s.cfg.MaxMembers {
			return ErrTooManyMembers
		}
		if in.WelcomeMessage != "" {
			if commit.Welcome, err = s.welcome(in.WelcomeMessage, cv.CipherSuite, members); err != nil {
				return err
			}
		}
		return nil
	}
	in.ConvoID = convoID
	return s.idempotent(ctx, c, in.IdempotencyKey, in, convoID, pre, func(ctx context.Context, tx store.Writer) (any, error) {
		sw, err := social(tx)
		if err != nil {
			return nil, err
		}
		if err := s.admitAdd(ctx, sw, convoID, c.id, members); err != nil {
			return nil, err
		}
		ch, err := tx.AddMembers(ctx, convoID, members, commit)
		if err != nil {
			return nil, err
		}
		return addMembersOutput{Success: true, NewEpoch: ch.Epoch}, nil
	})
}

type removeMemberInput struct {
	ConvoID        string `json:"convoId"`
	TargetDID      string `json:"targetDid"`
	IdempotencyKey string `json:"idempotencyKey"`
	Reason         string `json:"reason"`
	Commit         string `json:"commit"`
}

type removeMemberOutput struct {
	OK        bool  `json:"ok"`
	EpochHint int64 `json:"epochHint"`
}

// removeMember lets an admin remove another member (every device of a user
// DID, or one device DID), optionally with the Remove commit.
func (s *Service) removeMember(ctx context.Context, c call) (any, error) {
	var in removeMemberInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := convoField(in.ConvoID); err != nil {
		return nil, err
	}
	if err := required("targetDid", in.TargetDID); err != nil {
		return nil, err
	}
	if !validDID(in.TargetDID, true) {
		return nil, xrpc.Errorf(http.StatusBadRequest, "InvalidDid", "targetDid is not a valid DID")
	}
	if err := requireKey("idempotencyKey", in.IdempotencyKey, 26); err != nil {
		return nil, err
	}
	if err := maxLen("reason", in.Reason, 500); err != nil {
		return nil, err
	}
	convoID := normConvoID(in.ConvoID)
	if user, _ := splitDID(in.TargetDID); user == c.id.DID {
		return nil, ErrCannotRemoveSelf
	}
	commit, err := s.commit("commit", in.Commit, convoID)
	if err != nil {
		return nil, err
	}
	pre := func(ctx context.Context) error {
		me, err := s.member(ctx, convoID, c.id)
		if err != nil {
			return err
		}
		user, _ := splitDID(in.TargetDID)
		return s.checkRemove(ctx, convoID, me.Role, user)
	}
	in.ConvoID = convoID
	return s.idempotent(ctx, c, in.IdempotencyKey, in, convoID, pre, func(ctx context.Context, tx store.Writer) (any, error) {
		ch, err := tx.RemoveMembers(ctx, convoID, []string{in.TargetDID}, store.Removed, commit)
		if errors.Is(err, store.ErrNotMember) {
			return nil, ErrTargetNotMember
		}
		if err != nil {
			return nil, err
		}
		return removeMemberOutput{OK: true, EpochHint: ch.Epoch}, nil
	})
}

type leaveConvoInput struct {
	ConvoID   string `json:"convoId"`
	TargetDID string `json:"targetDid"`
	Commit    string `json:"commit"`
	// IdempotencyKey is an extension: the lexicon has none, so without it a
	// key is derived from the request.
	IdempotencyKey string `json:"idempotencyKey"`
}

// leaveConvo removes the caller (all its devices, or the one device DID
// named) from the conversation, optionally with the Remove commit.
func (s *Service) leaveConvo(ctx context.Context, c call) (any, error) {
	var in leaveConvoInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := convoField(in.ConvoID); err != nil {
		return nil, err
	}
	if in.TargetDID != "" && !validDID(in.TargetDID, true) {
		return nil, xrpc.Errorf(http.StatusBadRequest, "InvalidDid", "targetDid is not a valid DID")
	}
	if err := maxLen("idempotencyKey", in.IdempotencyKey, 128); err != nil {
		return nil, err
	}
	convoID := normConvoID(in.ConvoID)
	target := in.TargetDID
	if target == "" {
		target = c.id.DID
	}
	commit, err := s.commit("commit", in.Commit, convoID)
	if err != nil {
		return nil, err
	}
	key := in.IdempotencyKey
	if key == "" {
		sum := sha256.Sum256([]byte(in.Commit))
		key = "leave:" + convoID + ":" + target + ":" + hex.EncodeToString(sum[:16])
	}
	pre := func(ctx context.Context) error {
		me, err := s.member(ctx, convoID, c.id)
		if err != nil {
			return err
		}
		if user, _ := splitDID(target); user != c.id.DID && me.Role != store.RoleAdmin {
			return ErrNotAdmin
		}
		all, err := s.cfg.Store.Members(ctx, []string{convoID}, false)
		if err != nil {
			return fmt.Errorf("list members: %w", err)
		}
		remaining, matched := 0, 0
		for _, m := range all[convoID] {
			if m.MemberDID == target || m.UserDID == target {
				matched++
			} else {
				remaining++
			}
		}
		if matched == 0 {
			return ErrTargetNotMember
		}
		if remaining == 0 {
			return ErrLastMember
		}
		return nil
	}
	in.ConvoID, in.TargetDID = convoID, target
	// An admin naming someone else removes them; only the caller's own
	// departure is a leave, after which an untargeted invite still works.
	how := store.Removed
	if user, _ := splitDID(target); user == c.id.DID {
		how = store.Left
	}
	return s.idempotent(ctx, c, key, in, convoID, pre, func(ctx context.Context, tx store.Writer) (any, error) {
		ch, err := tx.RemoveMembers(ctx, convoID, []string{target}, how, commit)
		if errors.Is(err, store.ErrNotMember) {
			return nil, ErrTargetNotMember
		}
		if err != nil {
			return nil, err
		}
		return addMembersOutput{Success: true, NewEpoch: ch.Epoch}, nil
	})
}
