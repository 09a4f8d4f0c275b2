package store

import (
	"context"
	"time"
)

// Ban is an account barred from this service, known only by the keyed hash
// of its DID.
type Ban struct {
	// Hash is the keyed hash of the DID (internal/redact), never the DID.
	Hash string
	// CreatedAt is when the ban was added, truncated to BucketInterval.
	CreatedAt time.Time
}

// Bans stores account bans.
type Bans interface {
	// AddBan bars the account with this DID hash. added is false if it was
	// already barred (the ban is unchanged).
	AddBan(ctx context.Context, hash string) (added bool, err error)
	// RemoveBan lifts a ban. removed is false if there was none.
	RemoveBan(ctx context.Context, hash string) (removed bool, err error)
	// Bans lists every ban, oldest first.
	Bans(ctx context.Context) ([]Ban, error)
}
