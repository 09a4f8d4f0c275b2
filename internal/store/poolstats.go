package store

import "time"

// PoolStats is a snapshot of one connection pool of a store, for metrics.
// Counters (WaitCount, WaitDuration, Groups, GroupedWrites) only grow.
type PoolStats struct {
	// Pool names the pool: "main" for PostgreSQL's, "read" and "write" for
	// SQLite's reader pool and single writer.
	Pool string
	// Max is the pool's connection limit (0: unlimited); InUse and Idle
	// are its connections now.
	Max, InUse, Idle int
	// WaitCount counts acquisitions that had to wait for a connection, and
	// WaitDuration the time they waited.
	WaitCount    int64
	WaitDuration time.Duration
	// Groups and GroupedWrites count SQLite's group commits and the writes
	// they carried (GroupedWrites/Groups is the mean group size); zero for
	// PostgreSQL.
	Groups, GroupedWrites int64
}

// PoolStatser is implemented by stores that report their pools.
type PoolStatser interface {
	PoolStats() []PoolStats
}
