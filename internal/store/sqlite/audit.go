package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

var (
	_ store.AuditLog = (*Store)(nil)
	_ store.Bans     = (*Store)(nil)
)

// auditHead reads the chain's head inside a write transaction: the newest
// row, else the anchor.
func auditHead(ctx context.Context, tx writeTx) (store.AuditLink, error) {
	var head store.AuditLink
	err := tx.QueryRowContext(ctx, `SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&head.Seq, &head.MAC)
	if errors.Is(err, sql.ErrNoRows) {
		err = tx.QueryRowContext(ctx, `SELECT seq, mac FROM audit_anchor WHERE id = 1`).Scan(&head.Seq, &head.MAC)
	}
	if err != nil {
		return store.AuditLink{}, fmt.Errorf("read audit chain head: %w", err)
	}
	return head, nil
}

// AppendAudit implements store.AuditLog. The single writer connection
// serialises appends.
func (s *Store) AppendAudit(ctx context.Context, seal func(prev store.AuditLink) (store.AuditRecord, error)) (store.AuditRecord, error) {
	var rec store.AuditRecord
	err := s.write(ctx, func(tx writeTx) error {
		head, err := auditHead(ctx, tx)
		if err != nil {
			return err
		}
		if rec, err = seal(head); err != nil {
			return err
		}
		if rec.Seq != head.Seq+1 {
			return fmt.Errorf("append audit: seal returned seq %d after %d", rec.Seq, head.Seq)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO audit_log (seq, at, event_type, actor, target, metadata, ip, mac)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			rec.Seq, ms(rec.Time), rec.Type, rec.Actor, rec.Target, string(rec.Metadata), rec.IP, rec.MAC)
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
	if len(f.Types) > 0 {
		where = append(where, "event_type IN ("+strings.TrimSuffix(strings.Repeat("?,", len(f.Types)), ",")+")")
		for _, t := range f.Types {
			args = append(args, t)
		}
	}
	if f.Actor != "" {
		where, args = append(where, "actor = ?"), append(args, f.Actor)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "at >= ?"), append(args, ms(f.Since))
	}
	if !f.Until.IsZero() {
		where, args = append(where, "at < ?"), append(args, ms(f.Until))
	}
	if f.BeforeSeq > 0 {
		where, args = append(where, "seq < ?"), append(args, f.BeforeSeq)
	}
	if f.AfterSeq > 0 {
		where, args = append(where, "seq > ?"), append(args, f.AfterSeq)
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
	q += " LIMIT ?"
	args = append(args, limit)
	rows, err := s.r.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer rows.Close()
	var out []store.AuditRecord
	for rows.Next() {
		var r store.AuditRecord
		var at int64
		var meta string
		if err := rows.Scan(&r.Seq, &at, &r.Type, &r.Actor, &r.Target, &meta, &r.IP, &r.MAC); err != nil {
			return nil, fmt.Errorf("read audit log: %w", err)
		}
		r.Time, r.Metadata = fromMS(at), []byte(meta)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return out, nil
}

// AuditAnchor implements store.AuditLog.
func (s *Store) AuditAnchor(ctx context.Context) (store.AuditLink, error) {
	var a store.AuditLink
	if err := s.r.QueryRowContext(ctx, `SELECT seq, mac FROM audit_anchor WHERE id = 1`).Scan(&a.Seq, &a.MAC); err != nil {
		return store.AuditLink{}, fmt.Errorf("read audit anchor: %w", err)
	}
	return a, nil
}

// PruneAudit implements store.AuditLog. Each batch deletes a prefix and
// moves the anchor in the same transaction.
func (s *Store) PruneAudit(ctx context.Context, olderThan time.Duration) (int64, store.AuditLink, error) {
	cutoff := ms(s.now().Add(-olderThan))
	var anchor store.AuditLink
	n, err := s.purge(ctx, "audit log", func(tx writeTx) (int64, error) {
		var through sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT MAX(seq) FROM (
			SELECT seq FROM audit_log WHERE seq <= (SELECT MAX(seq) FROM audit_log WHERE at < ?)
			ORDER BY seq LIMIT ?)`, cutoff, s.purgeBatch).Scan(&through); err != nil {
			return 0, err
		}
		if !through.Valid {
			return 0, nil
		}
		var mac []byte
		if err := tx.QueryRowContext(ctx, `SELECT mac FROM audit_log WHERE seq = ?`, through.Int64).Scan(&mac); err != nil {
			return 0, err
		}
		n, err := affected(tx.ExecContext(ctx, `DELETE FROM audit_log WHERE seq <= ?`, through.Int64))
		if err != nil {
			return 0, err
		}
		_, err = tx.ExecContext(ctx, `UPDATE audit_anchor SET seq = ?, mac = ? WHERE id = 1`, through.Int64, mac)
		return n, err
	})
	if err != nil {
		return n, store.AuditLink{}, err
	}
	if anchor, err = s.AuditAnchor(ctx); err != nil {
		return n, store.AuditLink{}, err
	}
	return n, anchor, nil
}

// AddBan implements store.Bans.
func (s *Store) AddBan(ctx context.Context, hash string) (bool, error) {
	var n int64
	err := s.write(ctx, func(tx writeTx) error {
		var err error
		n, err = affected(tx.ExecContext(ctx, `INSERT INTO bans (did_hash, created_at) VALUES (?, ?) ON CONFLICT (did_hash) DO NOTHING`,
			hash, ms(store.Bucket(s.now()))))
		return err
	})
	if err != nil {
		return false, fmt.Errorf("add ban: %w", err)
	}
	return n == 1, nil
}

// RemoveBan implements store.Bans.
func (s *Store) RemoveBan(ctx context.Context, hash string) (bool, error) {
	var n int64
	err := s.write(ctx, func(tx writeTx) error {
		var err error
		n, err = affected(tx.ExecContext(ctx, `DELETE FROM bans WHERE did_hash = ?`, hash))
		return err
	})
	if err != nil {
		return false, fmt.Errorf("remove ban: %w", err)
	}
	return n == 1, nil
}

// Bans implements store.Bans.
func (s *Store) Bans(ctx context.Context) ([]store.Ban, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT did_hash, created_at FROM bans ORDER BY created_at, did_hash`)
	if err != nil {
		return nil, fmt.Errorf("list bans: %w", err)
	}
	defer rows.Close()
	var out []store.Ban
	for rows.Next() {
		var b store.Ban
		var at int64
		if err := rows.Scan(&b.Hash, &at); err != nil {
			return nil, fmt.Errorf("list bans: %w", err)
		}
		b.CreatedAt = fromMS(at)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list bans: %w", err)
	}
	return out, nil
}
