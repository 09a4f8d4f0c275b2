package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

var (
	_ store.AuditLog = (*Store)(nil)
	_ store.Bans     = (*Store)(nil)
)

// lockAuditChain locks the anchor row for the rest of the transaction and
// returns the chain's head: the newest row, else the anchor. Every append
// and prune takes this lock first, so one node at a time extends the chain.
func lockAuditChain(ctx context.Context, q querier) (store.AuditLink, error) {
	var anchor store.AuditLink
	if err := q.QueryRow(ctx, `SELECT seq, mac FROM audit_anchor WHERE id = 1 FOR UPDATE`).Scan(&anchor.Seq, &anchor.MAC); err != nil {
		return store.AuditLink{}, fmt.Errorf("lock audit chain: %w", err)
	}
	var head store.AuditLink
	err := q.QueryRow(ctx, `SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&head.Seq, &head.MAC)
	if errors.Is(err, pgx.ErrNoRows) {
		return anchor, nil
	}
	if err != nil {
		return store.AuditLink{}, fmt.Errorf("read audit chain head: %w", err)
	}
	return head, nil
}

// AppendAudit implements store.AuditLog.
func (s *Store) AppendAudit(ctx context.Context, seal func(prev store.AuditLink) (store.AuditRecord, error)) (store.AuditRecord, error) {
	var rec store.AuditRecord
	err := s.inTx(ctx, func(w *writer) error {
		head, err := lockAuditChain(ctx, w.q)
		if err != nil {
			return err
		}
		if rec, err = seal(head); err != nil {
			return err
		}
		if rec.Seq != head.Seq+1 {
			return fmt.Errorf("append audit: seal returned seq %d after %d", rec.Seq, head.Seq)
		}
		_, err = w.q.Exec(ctx, `INSERT INTO audit_log (seq, at, event_type, actor, target, metadata, ip, mac)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			rec.Seq, rec.Time, rec.Type, rec.Actor, rec.Target, string(rec.Metadata), rec.IP, rec.MAC)
		if err != nil {
			return fmt.Errorf("append audit: %w", err)
		}
		return nil
	})
	return rec, err
}

// AuditRecords implements store.AuditLog.
func (s *Store) AuditRecords(ctx context.Context, f store.AuditFilter) ([]store.AuditRecord, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if len(f.Types) > 0 {
		where = append(where, "event_type = ANY("+arg(f.Types)+")")
	}
	if f.Actor != "" {
		where = append(where, "actor = "+arg(f.Actor))
	}
	if !f.Since.IsZero() {
		where = append(where, "at >= "+arg(f.Since))
	}
	if !f.Until.IsZero() {
		where = append(where, "at < "+arg(f.Until))
	}
	if f.BeforeSeq > 0 {
		where = append(where, "seq < "+arg(f.BeforeSeq))
	}
	if f.AfterSeq > 0 {
		where = append(where, "seq > "+arg(f.AfterSeq))
	}
	q := `SELECT seq, at, event_type, actor, target, metadata, ip, mac FROM audit_log`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if f.Ascending {
		q += " ORDER BY seq ASC"
	} else {
		q += " ORDER BY seq DESC"
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q += " LIMIT " + arg(limit)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.AuditRecord, error) {
		var rec store.AuditRecord
		var meta string
		err := r.Scan(&rec.Seq, &rec.Time, &rec.Type, &rec.Actor, &rec.Target, &meta, &rec.IP, &rec.MAC)
		rec.Time, rec.Metadata = rec.Time.UTC(), []byte(meta)
		return rec, err
	})
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return out, nil
}

// AuditAnchor implements store.AuditLog.
func (s *Store) AuditAnchor(ctx context.Context) (store.AuditLink, error) {
	var a store.AuditLink
	if err := s.pool.QueryRow(ctx, `SELECT seq, mac FROM audit_anchor WHERE id = 1`).Scan(&a.Seq, &a.MAC); err != nil {
		return store.AuditLink{}, fmt.Errorf("read audit anchor: %w", err)
	}
	return a, nil
}

// PruneAudit implements store.AuditLog. Each batch locks the chain,
// deletes a prefix and moves the anchor in one transaction.
func (s *Store) PruneAudit(ctx context.Context, olderThan time.Duration) (int64, store.AuditLink, error) {
	cutoff := s.now().Add(-olderThan)
	n, err := s.purge(ctx, "audit log", func(w *writer) (int64, error) {
		if _, err := lockAuditChain(ctx, w.q); err != nil {
			return 0, err
		}
		var through *int64
		if err := w.q.QueryRow(ctx, `SELECT MAX(seq) FROM (
			SELECT seq FROM audit_log WHERE seq <= (SELECT MAX(seq) FROM audit_log WHERE at < $1)
			ORDER BY seq LIMIT $2) b`, cutoff, s.purgeBatch).Scan(&through); err != nil {
			return 0, err
		}
		if through == nil {
			return 0, nil
		}
		var mac []byte
		if err := w.q.QueryRow(ctx, `SELECT mac FROM audit_log WHERE seq = $1`, *through).Scan(&mac); err != nil {
			return 0, err
		}
		n, err := affected(w.q.Exec(ctx, `DELETE FROM audit_log WHERE seq <= $1`, *through))
		if err != nil {
			return 0, err
		}
		_, err = w.q.Exec(ctx, `UPDATE audit_anchor SET seq = $1, mac = $2 WHERE id = 1`, *through, mac)
		return n, err
	})
	if err != nil {
		return n, store.AuditLink{}, err
	}
	anchor, err := s.AuditAnchor(ctx)
	return n, anchor, err
}

// AddBan implements store.Bans.
func (s *Store) AddBan(ctx context.Context, hash string) (bool, error) {
	n, err := affected(s.pool.Exec(ctx, `INSERT INTO bans (did_hash, created_at) VALUES ($1, $2) ON CONFLICT (did_hash) DO NOTHING`,
		hash, store.Bucket(s.now())))
	if err != nil {
		return false, fmt.Errorf("add ban: %w", err)
	}
	return n == 1, nil
}

// RemoveBan implements store.Bans.
func (s *Store) RemoveBan(ctx context.Context, hash string) (bool, error) {
	n, err := affected(s.pool.Exec(ctx, `DELETE FROM bans WHERE did_hash = $1`, hash))
	if err != nil {
		return false, fmt.Errorf("remove ban: %w", err)
	}
	return n == 1, nil
}

// Bans implements store.Bans.
func (s *Store) Bans(ctx context.Context) ([]store.Ban, error) {
	rows, err := s.pool.Query(ctx, `SELECT did_hash, created_at FROM bans ORDER BY created_at, did_hash`)
	if err != nil {
		return nil, fmt.Errorf("list bans: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Ban, error) {
		var b store.Ban
		err := r.Scan(&b.Hash, &b.CreatedAt)
		b.CreatedAt = b.CreatedAt.UTC()
		return b, err
	})
	if err != nil {
		return nil, fmt.Errorf("list bans: %w", err)
	}
	return out, nil
}
