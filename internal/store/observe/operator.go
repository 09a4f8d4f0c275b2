package observe

import (
	"context"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// AppendAudit implements store.AuditLog.
func (s *Store) AppendAudit(ctx context.Context, seal func(prev store.AuditLink) (store.AuditRecord, error)) (store.AuditRecord, error) {
	return call(ctx, s.o, "append_audit", func(ctx context.Context) (store.AuditRecord, error) { return s.b.AppendAudit(ctx, seal) })
}

// AuditRecords implements store.AuditLog.
func (s *Store) AuditRecords(ctx context.Context, f store.AuditFilter) ([]store.AuditRecord, error) {
	return call(ctx, s.o, "audit_records", func(ctx context.Context) ([]store.AuditRecord, error) { return s.b.AuditRecords(ctx, f) })
}

// AuditAnchor implements store.AuditLog.
func (s *Store) AuditAnchor(ctx context.Context) (store.AuditLink, error) {
	return call(ctx, s.o, "audit_anchor", s.b.AuditAnchor)
}

// PruneAudit implements store.AuditLog.
func (s *Store) PruneAudit(ctx context.Context, olderThan time.Duration) (n int64, anchor store.AuditLink, err error) {
	ctx, end := s.o.start(ctx, "prune_audit")
	n, anchor, err = s.b.PruneAudit(ctx, olderThan)
	return n, anchor, end(err)
}

// AddBan implements store.Bans.
func (s *Store) AddBan(ctx context.Context, hash string) (bool, error) {
	return call(ctx, s.o, "add_ban", func(ctx context.Context) (bool, error) { return s.b.AddBan(ctx, hash) })
}

// RemoveBan implements store.Bans.
func (s *Store) RemoveBan(ctx context.Context, hash string) (bool, error) {
	return call(ctx, s.o, "remove_ban", func(ctx context.Context) (bool, error) { return s.b.RemoveBan(ctx, hash) })
}

// Bans implements store.Bans.
func (s *Store) Bans(ctx context.Context) ([]store.Ban, error) {
	return call(ctx, s.o, "bans", s.b.Bans)
}
