package atpauth

import (
	"context"
	"time"
)

// ReplayStore remembers used token IDs. Verify calls Remember once per
// otherwise valid token, after the signature and every claim check.
//
// Implementations must be safe for concurrent use, and must be atomic across
// every Verifier that shares them: of two concurrent Remember calls with the
// same key, exactly one reports fresh.
type ReplayStore interface {
	// Remember records key as used until the time until, and reports
	// whether it was fresh (not already recorded and unexpired). An error
	// means the outcome is unknown; Verify then refuses the token with
	// ErrReplayUnavailable.
	Remember(ctx context.Context, key string, until time.Time) (fresh bool, err error)
}
