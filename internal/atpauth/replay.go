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
//
// A store can lose its memory: the in-memory store at every process start,
// Redis when it restarts without persistence, fails over to a replica that
// missed writes, or is flushed. Each call therefore also reports since when
// the store's memory is whole, and the Verifier refuses tokens issued before
// then, which may already have been used.
type ReplayStore interface {
	// Remember records key as used until the time until, and reports
	// whether it was fresh (not already recorded and unexpired) and since
	// when the store's memory is whole. An error means the outcome is
	// unknown; Verify then refuses the token with ErrReplayUnavailable.
	Remember(ctx context.Context, key string, until time.Time) (Recall, error)
}

// Recall is what a ReplayStore reports for one key.
type Recall struct {
	// Fresh reports that the key was not already recorded (or had
	// expired).
	Fresh bool
	// Since is when the store's memory began: every key remembered since
	// then is recorded until it expires, and the outcome of this call is
	// ordered after that point. A key remembered before Since may have
	// been lost, so a token issued before it may have been used already.
	Since time.Time
}
