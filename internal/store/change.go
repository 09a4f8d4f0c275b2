package store

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// ChangeSteps are the statements of a membership change or commit in one
// backend's SQL, all on one transaction. ApplyChange runs them in order;
// each backend writes only the statements.
type ChangeSteps interface {
	// AdvanceEpoch moves the conversation from epoch from to from+1 by
	// compare-and-swap, bumping the sequence counter for the commit and
	// the activity time, and returns the new epoch, the commit's seq and
	// the bucketed time it stored: ErrNotFound for an unknown
	// conversation, ErrStaleEpoch when it is not at from.
	AdvanceEpoch(ctx context.Context, convoID string, from int64) (epoch, seq int64, at time.Time, err error)
	// Touch bumps the activity time of a change without a commit and
	// returns the conversation's epoch: ErrNotFound for an unknown one.
	Touch(ctx context.Context, convoID string) (epoch int64, err error)
	// RemoveMembers marks as left every active row whose member or user
	// DID is in dids: ErrNotMember when there is none. With Removed, the
	// rows of every account left with no active row are marked removed.
	RemoveMembers(ctx context.Context, convoID string, dids []string, how Departure) error
	// AddMembers inserts active member rows and clears the removed mark
	// of every row of their accounts in the conversation.
	AddMembers(ctx context.Context, convoID string, add []NewMember) error
	// InsertCommit stores the commit's message row at seq, received at
	// at, and marks it the commit of epoch c.Epoch.
	InsertCommit(ctx context.Context, convoID string, seq int64, msgID string, c NewCommit, at time.Time) error
	// PutGroupInfo stores the conversation's GroupInfo for epoch.
	PutGroupInfo(ctx context.Context, convoID string, epoch int64, data []byte) error
	// PutWelcome stores a Welcome of epoch for its recipients.
	PutWelcome(ctx context.Context, convoID string, epoch int64, w NewWelcome) error
	// Event appends an event row and returns its cursor.
	Event(ctx context.Context, convoID string, kind EventKind, msgID string, epoch int64) (int64, error)
}

// ApplyChange applies a membership change, a commit, or both, through s:
// with a commit, the epoch's compare-and-swap first, so a losing commit
// changes nothing; then the member rows; then the commit's message, its
// GroupInfo and Welcome (only a winning commit's are stored); then the
// commit and membership events, in that order. how applies to remove.
func ApplyChange(ctx context.Context, s ChangeSteps, convoID string, add []NewMember, remove []string, how Departure, c *NewCommit) (Change, error) {
	var ch Change
	if c != nil {
		var err error
		if ch.Epoch, ch.Seq, ch.ReceivedAt, err = s.AdvanceEpoch(ctx, convoID, c.Epoch); err != nil {
			return Change{}, fmt.Errorf("commit for epoch %d: %w", c.Epoch, err)
		}
	} else {
		var err error
		if ch.Epoch, err = s.Touch(ctx, convoID); err != nil {
			return Change{}, fmt.Errorf("change members: %w", err)
		}
	}
	if len(remove) > 0 {
		if err := s.RemoveMembers(ctx, convoID, remove, how); err != nil {
			return Change{}, fmt.Errorf("remove members: %w", err)
		}
	}
	if err := s.AddMembers(ctx, convoID, add); err != nil {
		return Change{}, err
	}
	if c != nil {
		msgID := c.MsgID
		if msgID == "" {
			msgID = "commit-" + strconv.FormatInt(c.Epoch, 10)
		}
		if err := s.InsertCommit(ctx, convoID, ch.Seq, msgID, *c, ch.ReceivedAt); err != nil {
			return Change{}, err
		}
		if c.GroupInfo != nil {
			if err := s.PutGroupInfo(ctx, convoID, ch.Epoch, c.GroupInfo); err != nil {
				return Change{}, err
			}
		}
		if c.Welcome != nil {
			if err := s.PutWelcome(ctx, convoID, ch.Epoch, *c.Welcome); err != nil {
				return Change{}, err
			}
		}
		cur, err := s.Event(ctx, convoID, EventCommit, msgID, ch.Epoch)
		if err != nil {
			return Change{}, err
		}
		ch.Cursors = append(ch.Cursors, cur)
	}
	if len(add) > 0 || len(remove) > 0 {
		cur, err := s.Event(ctx, convoID, EventMembership, "", ch.Epoch)
		if err != nil {
			return Change{}, err
		}
		ch.Cursors = append(ch.Cursors, cur)
	}
	return ch, nil
}

// Departure says how a membership ended, which decides whether the
// account may come back through an invite that does not name it.
type Departure int

const (
	// Removed is a removal by another member (removeMember, or an admin's
	// leaveConvo naming someone else). The account may come back only if
	// a member adds it or an invite names its DID: an untargeted invite it
	// still holds is refused (ErrRemovedMember). It is the zero value so
	// that a caller that forgets to say fails closed.
	Removed Departure = iota
	// Left is a voluntary leave: an untargeted invite still works.
	Left
)
