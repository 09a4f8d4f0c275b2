package store

import (
	"context"
	"errors"
	"time"
)

// Chat request statuses.
const (
	ChatRequestPending  = "pending"
	ChatRequestAccepted = "accepted"
	ChatRequestDeclined = "declined"
	ChatRequestBlocked  = "blocked"
	ChatRequestExpired  = "expired"
)

// Sentinel errors of ChatRequests.
var (
	// ErrDuplicateRequest means the sender already has a pending request
	// to the recipient (for the same group, if any).
	ErrDuplicateRequest = errors.New("store: a pending chat request exists")
	// ErrChatBlocked means the recipient blocked the sender's requests.
	ErrChatBlocked = errors.New("store: the recipient blocks this sender's chat requests")
	// ErrExpired means a pending chat request is past its expiry.
	ErrExpired = errors.New("store: expired")
)

// ChatRequest is a request to chat from an account the recipient shares
// no conversation with. It holds the routing the recipient needs to
// answer it (who asks, whom, for which group) and nothing the sender
// wrote except ciphertext and, when the operator allows previews, a
// preview sealed under a key the database does not hold.
type ChatRequest struct {
	// ID is a 32-digit lower-case hex identifier whose first 12 digits are
	// the bucketed creation time, so ids sort by age. A 1:1 request's
	// conversation, once accepted, has this id.
	ID           string
	SenderDID    string
	RecipientDID string
	// Status is one of the ChatRequest* statuses. A pending request past
	// ExpiresAt reads as expired before the retention worker closes it.
	Status string
	// GroupID names the existing conversation of a group invite; "" for a
	// 1:1 request.
	GroupID string
	// SealedPreview is the preview text sealed by the delivery layer; nil
	// without one, and once the request is closed.
	SealedPreview []byte
	// MessageCount is how many messages the request held when it was sent.
	MessageCount int
	CreatedAt    time.Time
	ExpiresAt    time.Time
	// ClosedAt is when it was accepted, declined, blocked or expired.
	ClosedAt time.Time
}

// HeldMessage is ciphertext a request holds until it is accepted.
type HeldMessage struct {
	// Seq numbers the request's messages from 1, in the order sent.
	Seq        int
	Ciphertext []byte
	PaddedSize int64
	EphPubKey  []byte
}

// ChatRequestSettings are an account's chat request preferences.
type ChatRequestSettings struct {
	DID                  string
	AllowFollowersBypass bool
	AllowFollowingBypass bool
	AutoExpireDays       int
}

// ChatRequests stores chat requests, their held messages, recipients'
// blocks of senders and recipients' settings. Both backends implement it
// on the Store and on the Writer Idempotency.Idempotent passes to its
// function, so an answer runs in the transaction of its idempotency
// record.
type ChatRequests interface {
	// CreateChatRequest stores r as pending, CreatedAt now (bucketed),
	// with its held messages numbered from 1. A pending request of the
	// same sender, recipient and group that is past its expiry is closed
	// as expired first. ErrChatBlocked if blockHash is recorded as
	// blocked, ErrDuplicateRequest if a pending request of the same
	// sender, recipient and group remains, ErrConflict if the id is taken.
	CreateChatRequest(ctx context.Context, r ChatRequest, held []HeldMessage, blockHash []byte) (ChatRequest, error)
	// ChatRequest returns one request; ErrNotFound if absent.
	ChatRequest(ctx context.Context, id string) (ChatRequest, error)
	// ChatRequestsFor lists the requests recipientDID received with
	// status, newest first, ids below before when it is not "", at most
	// limit.
	ChatRequestsFor(ctx context.Context, recipientDID, status, before string, limit int) ([]ChatRequest, error)
	// PendingChatRequests counts recipientDID's pending requests that are
	// not past expiry, with the creation time of the newest (zero if none).
	PendingChatRequests(ctx context.Context, recipientDID string) (count int, latest time.Time, err error)
	// CloseChatRequest moves a pending request to status (accepted,
	// declined or blocked) and returns it with the messages it held,
	// which it deletes, as it clears the sealed preview. ErrNotFound if
	// absent, ErrNotPending if already closed, ErrExpired if past its
	// expiry (the retention worker closes it).
	CloseChatRequest(ctx context.Context, id, status string) (ChatRequest, []HeldMessage, error)
	// BlockChatSender records blockHash as blocked and closes as blocked
	// every pending request senderDID sent recipientDID, returning how
	// many.
	BlockChatSender(ctx context.Context, recipientDID, senderDID string, blockHash []byte) (int, error)
	// ChatRequestSettings returns did's settings; ErrNotFound if it never
	// stored any (the caller applies the defaults).
	ChatRequestSettings(ctx context.Context, did string) (ChatRequestSettings, error)
	// PutChatRequestSettings stores s.
	PutChatRequestSettings(ctx context.Context, s ChatRequestSettings) (ChatRequestSettings, error)
}
