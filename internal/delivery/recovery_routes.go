package delivery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// The lexicons' fixed times of the device and recovery flows.
const (
	// ClaimTTL is how long a claim on a pending device addition holds
	// (claimPendingDeviceAddition: "Claim expires after 60 seconds").
	ClaimTTL = 60 * time.Second
	// WelcomeReservationTTL is how long validateWelcome reserves a key
	// package for the Welcome being processed (its lexicon: 5 minutes).
	WelcomeReservationTTL = 5 * time.Minute
	// DefaultPendingAdditionTTL is how long a pending device addition or
	// rejoin request waits for a member before the retention worker
	// deletes it.
	DefaultPendingAdditionTTL = 7 * 24 * time.Hour
)

// recoveryRoutes are the methods of devices and recovery (docs/devices.md):
// rejoin, re-addition and external commits, the pending device additions,
// Welcome validation and key package history.
func (s *Service) recoveryRoutes(small, msg int64) map[string]method {
	q := func(h func(context.Context, call) (any, error)) method {
		return method{typ: xrpc.Query, handle: h}
	}
	p := func(limit int64, h func(context.Context, call) (any, error)) method {
		return method{typ: xrpc.Procedure, bodyLimit: limit, handle: h}
	}
	return map[string]method{
		Namespace + "requestRejoin":                 p(small, s.requestRejoin),
		Namespace + "rejoin":                        p(small, s.requestRejoin),
		Namespace + "readdition":                    p(small, s.readdition),
		Namespace + "processExternalCommit":         p(int64(s.cfg.MaxMessageBytes)*8/3+small, s.processExternalCommit), // commit and group info
		Namespace + "groupInfoRefresh":              p(small, s.groupInfoRefresh),
		Namespace + "getPendingDeviceAdditions":     q(s.getPendingDeviceAdditions),
		Namespace + "claimPendingDeviceAddition":    p(small, s.claimPendingDeviceAddition),
		Namespace + "completePendingDeviceAddition": p(small, s.completePendingDeviceAddition),
		Namespace + "validateDeviceState":           q(s.validateDeviceState),
		Namespace + "validateWelcome":               p(msg, s.validateWelcome),
		Namespace + "invalidateWelcome":             p(small, s.invalidateWelcome),
		Namespace + "getKeyPackageHistory":          q(s.getKeyPackageHistory),
	}
}

// newRequestID returns a random id for a pending addition (128 bits, hex).
func newRequestID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random request id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// needDevice refuses a caller not bound to a device: rejoining and
// re-addition are per device.
func needDevice(id caller.Identity) error {
	if id.DeviceID == "" {
		return xrpc.Errorf(http.StatusBadRequest, "InvalidRequest",
			"this method acts for one device: name it in the token's issuer #fragment or the X-Device-ID header")
	}
	return nil
}

// registeredDevice refuses a device the caller's account has not
// registered: only a device of the same account may rejoin its
// conversations. A caller without a device is its own (device-less)
// member and passes.
func (s *Service) registeredDevice(ctx context.Context, id caller.Identity) error {
	if id.DeviceID == "" {
		return nil
	}
	ds, err := s.cfg.Store.Devices(ctx, id.DID)
	if err != nil {
		return fmt.Errorf("list devices: %w", err)
	}
	for _, d := range ds {
		if d.DeviceID == id.DeviceID {
			return nil
		}
	}
	return ErrDeviceNotRegistered
}

// accountMembers returns the conversation's active rows and whether the
// caller's account has one of them: the rule getGroupInfo follows for who
// may see the group, and the one every rejoin path follows. ErrNotFound
// for an unknown conversation.
func (s *Service) accountMembers(ctx context.Context, convoID, did string) (others int, err error) {
	if _, err := s.cfg.Store.Convo(ctx, convoID); err != nil {
		return 0, fmt.Errorf("read convo: %w", err)
	}
	all, err := s.cfg.Store.Members(ctx, []string{convoID}, false)
	if err != nil {
		return 0, fmt.Errorf("list members: %w", err)
	}
	known := false
	for _, m := range all[convoID] {
		if m.UserDID == did {
			known = true
		}
	}
	if !known {
		return 0, fmt.Errorf("account: %w", store.ErrNotMember)
	}
	return len(all[convoID]), nil
}

// Sentinel errors of the device and recovery methods.
var (
	// ErrDeviceNotRegistered means the caller's device is not one its
	// account registered.
	ErrDeviceNotRegistered = errors.New("delivery: device not registered to the account")
	// ErrNoActiveMembers means nobody else is left to re-add a device.
	ErrNoActiveMembers = errors.New("delivery: no active members")
	// ErrRecipientMismatch means a Welcome names a key package of another
	// of the caller's devices.
	ErrRecipientMismatch = errors.New("delivery: welcome is for another device")
)

// recoveryNames are the lexicon error names the recovery methods give the
// store's not-found and not-member outcomes, where they differ from the
// service's usual ConvoNotFound and NotMember.
var recoveryNames = map[string]struct{ notFound, notMember string }{
	Namespace + "requestRejoin":         {"ConvoNotFound", "ConvoNotFound"},
	Namespace + "rejoin":                {"ConvoNotFound", "ConvoNotFound"},
	Namespace + "readdition":            {"NotFound", "Unauthorized"},
	Namespace + "groupInfoRefresh":      {"ConversationNotFound", "Unauthorized"},
	Namespace + "processExternalCommit": {"ConvoNotFound", "Unauthorized"},
	Namespace + "invalidateWelcome":     {"NotFound", "Unauthorized"},
}

// recoveryError maps the outcomes of the device and recovery methods to
// their lexicons' error names, or returns nil for mapError's usual
// mapping. A removed account and one that never was a member get the same
// answer.
func recoveryError(nsid string, err error, e func(status int, name, msg string) *xrpc.Error) *xrpc.Error {
	names, renamed := recoveryNames[nsid]
	switch {
	case errors.Is(err, ErrDeviceNotRegistered):
		return e(http.StatusForbidden, "Unauthorized", "the device is not registered to the caller's account")
	case errors.Is(err, ErrNoActiveMembers):
		return e(http.StatusConflict, "NoActiveMembers", "no other active member can re-add the device")
	case errors.Is(err, ErrRecipientMismatch):
		return e(http.StatusForbidden, "RecipientMismatch", "the Welcome is for another device of the account")
	case errors.Is(err, store.ErrNotClaimed):
		return e(http.StatusForbidden, "NotClaimed", "the pending addition is not claimed by the caller's device")
	case errors.Is(err, store.ErrWelcomeKeyUsed):
		return e(http.StatusConflict, "KeyPackageAlreadyConsumed", "the Welcome's key package already brought its device into a group")
	case errors.Is(err, store.ErrWelcomeKeyReserved):
		return e(http.StatusConflict, "KeyPackageReserved", "the Welcome's key package is reserved by another Welcome")
	case errors.Is(err, ErrInvalidMessage) && nsid == Namespace+"processExternalCommit":
		return e(http.StatusBadRequest, "InvalidCommit", "the external commit is malformed, not an external commit, or for another group")
	case errors.Is(err, ErrIdentityMismatch) && nsid == Namespace+"processExternalCommit":
		return e(http.StatusForbidden, "Unauthorized", "the external commit's credential is not the caller")
	case errors.Is(err, ErrInvalidMessage) && nsid == Namespace+"validateWelcome":
		return e(http.StatusBadRequest, "InvalidWelcome", "the Welcome is malformed")
	case errors.Is(err, store.ErrKeyPackageNotFound) && nsid == Namespace+"validateWelcome":
		return e(http.StatusNotFound, "KeyPackageNotFound", "the Welcome names no key package of the caller")
	case errors.Is(err, ErrWelcomeNotFound) && nsid == Namespace+"invalidateWelcome":
		return e(http.StatusNotFound, "NotFound", "no unconsumed Welcome for the caller in this conversation")
	case !renamed:
		return nil
	case errors.Is(err, store.ErrNotMember) && names.notMember == "ConvoNotFound":
		return e(http.StatusNotFound, "ConvoNotFound", "conversation not found, or the caller's account is not a member")
	case errors.Is(err, store.ErrNotMember):
		return e(http.StatusForbidden, names.notMember, "the caller's account is not a member of the conversation")
	case errors.Is(err, store.ErrNotFound):
		return e(http.StatusNotFound, names.notFound, "conversation not found")
	}
	return nil
}
