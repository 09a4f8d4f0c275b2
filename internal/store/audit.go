package store

import (
	"context"
	"time"
)

// AuditLink is a position in the audit chain: a row's sequence number and
// MAC. The zero AuditLink is the chain's genesis.
type AuditLink struct {
	Seq int64
	MAC []byte
}

// AuditRecord is one row of the audit log. The store keeps it as given;
// what the fields mean, and the MAC, belong to internal/audit.
type AuditRecord struct {
	// Seq is the row's position in the chain: 1, 2, 3, … without gaps
	// (pruning removes a prefix only).
	Seq int64
	// Time is when the event happened, at millisecond precision.
	Time time.Time
	// Type is the event type, such as "ban.add".
	Type string
	// Actor is who acted: an operator's OIDC subject or static token name,
	// or the keyed hash of a user-side identity; "" for the service.
	Actor string
	// Target is what the event concerns (a keyed hash for an account).
	Target string
	// Metadata is a JSON object, stored byte for byte (the MAC covers it).
	Metadata []byte
	// IP is the client address, keyed-hashed or truncated, or "" (the
	// default: not recorded).
	IP string
	// MAC chains the row to the previous one.
	MAC []byte
}

// AuditFilter selects audit rows. The zero value selects every row, newest
// first.
type AuditFilter struct {
	// Types keeps rows whose type is one of these (all when empty).
	Types []string
	// Actor keeps rows with exactly this actor (all when empty).
	Actor string
	// Since and Until keep rows with Since <= Time < Until (unbounded when
	// zero).
	Since, Until time.Time
	// BeforeSeq keeps rows with Seq < BeforeSeq (0: no bound), for paging
	// newest first.
	BeforeSeq int64
	// AfterSeq keeps rows with Seq > AfterSeq, for walking the chain.
	AfterSeq int64
	// Ascending returns the oldest rows first; the default is newest first.
	Ascending bool
	// Limit caps the rows returned; <= 0 means 100.
	Limit int
}

// AuditLog is the storage of the tamper-evident audit log: an append-only
// chain of rows with a pruned prefix summarised by its anchor.
type AuditLog interface {
	// AppendAudit appends one row. It serialises appends across every node
	// sharing the store: seal is called with the chain's head (the newest
	// row, or the anchor when no row is left, or the genesis) while no
	// other append can run, and returns the row to insert with Seq
	// prev.Seq+1 and its MAC. An error from seal aborts the append.
	AppendAudit(ctx context.Context, seal func(prev AuditLink) (AuditRecord, error)) (AuditRecord, error)
	// AuditRecords returns the rows f selects, in seq order (descending
	// unless f.Ascending).
	AuditRecords(ctx context.Context, f AuditFilter) ([]AuditRecord, error)
	// AuditAnchor returns the link of the last pruned row: the chain
	// continues from it. Zero when nothing was pruned.
	AuditAnchor(ctx context.Context) (AuditLink, error)
	// PruneAudit deletes the prefix of the chain whose rows are older than
	// olderThan (up to the newest such row, in seq order) and moves the
	// anchor to the last row deleted, in the same transaction. It returns
	// how many rows went and the anchor after it.
	PruneAudit(ctx context.Context, olderThan time.Duration) (int64, AuditLink, error)
}
