package store

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Sentinel errors of pending device additions.
var (
	// ErrClaimedByOther means another member holds an unexpired claim on a
	// pending device addition.
	ErrClaimedByOther = errors.New("store: pending addition claimed by another member")
	// ErrNotClaimed means the caller does not hold the claim it tried to
	// complete.
	ErrNotClaimed = errors.New("store: pending addition not claimed by caller")
)

// PendingStatus is the state of a pending device addition.
type PendingStatus string

// Pending addition states. A completed addition is deleted by
// CompletePendingAddition; PendingStatusCompleted marks one whose device
// was added (by a commit that added it, or an external commit) before its
// claimer completed it.
const (
	PendingStatusPending    PendingStatus = "pending"
	PendingStatusInProgress PendingStatus = "in_progress"
	PendingStatusCompleted  PendingStatus = "completed"
)

// PendingAddition is a device waiting to be added to a conversation by one
// of its members: a new device of a member's account, or a device that
// lost its state and asked to be re-added (Rejoin). It names the device to
// add, never who asked.
type PendingAddition struct {
	ID       string
	ConvoID  string
	UserDID  string
	DeviceID string
	// Rejoin is true when the device asked to be re-added (requestRejoin,
	// readdition) rather than being new.
	Rejoin bool
	// KeyPackageRef is the package to add the device with: the rejoin
	// request's fresh package, or the one chosen at the first claim; ""
	// until then.
	KeyPackageRef string
	Status        PendingStatus
	// ClaimedBy is the account DID of the member holding the claim, while
	// it is held (Status in_progress and ClaimedUntil in the future).
	ClaimedBy    string
	ClaimedUntil time.Time
	CreatedAt    time.Time
	// ExpiresAt is when the retention worker deletes the request.
	ExpiresAt time.Time
	// DeviceName is the device's registered name (reads only).
	DeviceName string
}

// MemberDID is the MLS identity of the device to add.
func (p PendingAddition) MemberDID() string {
	if p.DeviceID == "" {
		return p.UserDID
	}
	return p.UserDID + "#" + p.DeviceID
}

// Lapsed returns p as it reads at now: a claim that ran out is reported
// as pending, without a holder, as the interface promises.
func (p PendingAddition) Lapsed(now time.Time) PendingAddition {
	if p.Status == PendingStatusInProgress && !p.ClaimedUntil.After(now) {
		p.Status, p.ClaimedBy, p.ClaimedUntil = PendingStatusPending, "", time.Time{}
	}
	return p
}

// UserOfMember is the account DID of a member DID (did or did#device).
func UserOfMember(memberDID string) string {
	u, _, _ := strings.Cut(memberDID, "#")
	return u
}

// NewPendingAddition describes a device to queue for addition.
type NewPendingAddition struct {
	ID       string
	ConvoID  string
	UserDID  string
	DeviceID string
	Rejoin   bool
	// KeyPackageRef, when set, is the package members must add the device
	// with (a rejoin request's fresh package).
	KeyPackageRef string
	// TTL is how long the request waits before the retention worker
	// deletes it; a refresh extends it.
	TTL time.Duration
}

// ClaimedAddition is the outcome of a successful claim: the addition and
// the key package to add its device with.
type ClaimedAddition struct {
	Addition   PendingAddition
	KeyPackage KeyPackage
}

// PendingDevices is the queue of devices waiting to be added to
// conversations (blue.catbird.mls.getPendingDeviceAdditions and the claim
// and complete methods). Exactly one member holds a claim at a time; a
// claim lapses at its ClaimedUntil.
type PendingDevices interface {
	// QueueDeviceAddition queues a device for addition, or refreshes the
	// request for the same device and conversation (keeping its id, taking
	// the new KeyPackageRef and expiry, and reopening a completed one); a
	// live claim is left alone. ErrNotMember when the
	// device's account has no active member row in the conversation (only
	// a member's own devices are queued), ErrAlreadyMember when the device
	// is an active member that does not need to rejoin.
	QueueDeviceAddition(ctx context.Context, p NewPendingAddition) (PendingAddition, error)
	// PendingAdditions lists the unexpired, uncompleted additions of the
	// conversations where viewerDID has an active member row (only those
	// in convoIDs when it is not empty), oldest first, at most limit. A
	// lapsed claim is reported as pending.
	PendingAdditions(ctx context.Context, viewerDID string, convoIDs []string, limit int) ([]PendingAddition, error)
	// PendingAddition returns one addition; ErrNotFound if there is none.
	PendingAddition(ctx context.Context, id string) (PendingAddition, error)
	// ClaimPendingAddition gives claimerDID the claim on the addition for
	// ttl, atomically: when it is pending, its claim lapsed, or
	// claimerDID already holds it. It picks the key package to add the
	// device with in the same transaction (the one recorded, else one of
	// the device's available packages, consumed for the conversation).
	// ErrNotFound for an unknown, expired or completed addition,
	// ErrClaimedByOther (with Addition naming the holder) when another
	// member holds it, ErrKeyPackageNotFound when the device has no
	// package to be added with (nothing is claimed then).
	ClaimPendingAddition(ctx context.Context, id, claimerDID string, ttl time.Duration) (ClaimedAddition, error)
	// CompletePendingAddition deletes an addition claimerDID claimed once
	// its device is an active member. ErrNotFound for an unknown
	// addition, ErrNotClaimed when claimerDID does not hold (or last held)
	// the claim, ErrNotMember (with the addition) when the device is not
	// yet an active member of the conversation.
	CompletePendingAddition(ctx context.Context, id, claimerDID string) (PendingAddition, error)
}
