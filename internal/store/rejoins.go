package store

import "context"

// RejoinState is one of a device's member rows that needs rejoining.
type RejoinState struct {
	ConvoID string
	// Pending is true while a rejoin request (a pending addition) for
	// the device is queued in the conversation.
	Pending bool
}

// Rejoins is the needs_rejoin state of member rows: a device that lost its
// MLS state says so (requestRejoin, readdition, invalidateWelcome), and
// the flag stays until the device is in the group again: a commit that
// adds it (AddMembers, which may re-add a flagged active row and clears
// the flag) or its own external commit. RemoveMembers clears it too, so a
// removed account cannot come back through it.
type Rejoins interface {
	// MarkNeedsRejoin flags the device's active member row and, when
	// queue is set, queues its re-addition (QueueDeviceAddition with
	// Rejoin set), in one transaction. ErrNotMember when the device's
	// account has no active row in the conversation. A device without a
	// row of its own (a device of a member's account that never joined)
	// is only queued.
	MarkNeedsRejoin(ctx context.Context, queue *NewPendingAddition, convoID, memberDID string) (PendingAddition, error)
	// NeedsRejoin lists the conversations where the device (memberDID,
	// did#device) has an active row flagged needs_rejoin.
	NeedsRejoin(ctx context.Context, userDID, memberDID string) ([]RejoinState, error)
}
