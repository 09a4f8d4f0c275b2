package audit

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// Problem kinds Verify reports.
const (
	// ProblemAltered: the row's MAC does not match its content and the
	// previous row's MAC: it was changed, or inserted, without the key.
	ProblemAltered = "altered"
	// ProblemDeleted: rows are missing before this sequence number.
	ProblemDeleted = "deleted"
	// ProblemAnchor: the anchor (where the chain starts after pruning) is
	// not explained by any recorded prune: a prefix may have been deleted.
	ProblemAnchor = "anchor"
)

// Problem is the first break Verify found.
type Problem struct {
	// Seq is the first row affected: the altered row, or the first
	// missing one.
	Seq int64 `json:"seq"`
	// Kind is one of the Problem constants.
	Kind string `json:"kind"`
	// Detail says what was found, for an operator.
	Detail string `json:"detail"`
}

// Report is the outcome of Verify.
type Report struct {
	// Anchor is where the chain starts (the last pruned row; zero if none).
	Anchor store.AuditLink `json:"anchor"`
	// Rows counts the rows checked.
	Rows int64 `json:"rows"`
	// Head is the last row checked: note it, and compare later, to detect
	// the deletion of the newest rows.
	Head store.AuditLink `json:"head"`
	// Problem is the first break, or nil when the chain verifies.
	Problem *Problem `json:"problem,omitempty"`
}

// verifyPage is how many rows Verify reads at once.
const verifyPage = 1000

// Verify walks the chain from its anchor and reports the first row
// altered, inserted or deleted. progress, if set, is called after every
// page with the rows checked so far. An error means the chain could not be
// read, not that it is broken.
func (l *Log) Verify(ctx context.Context, progress func(rows int64)) (Report, error) {
	return Verify(ctx, l.store, l.key, progress)
}

// Verify is Log.Verify for a store and key without a Log (the offline
// `audit verify` command).
func Verify(ctx context.Context, s store.AuditLog, key []byte, progress func(rows int64)) (Report, error) {
	anchor, err := s.AuditAnchor(ctx)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Anchor: anchor, Head: anchor}
	prev := anchor
	var prunedThrough int64
	for {
		rows, err := s.AuditRecords(ctx, store.AuditFilter{AfterSeq: prev.Seq, Ascending: true, Limit: verifyPage})
		if err != nil {
			return rep, err
		}
		for _, r := range rows {
			if r.Seq != prev.Seq+1 {
				rep.Problem = &Problem{Seq: prev.Seq + 1, Kind: ProblemDeleted,
					Detail: fmt.Sprintf("rows %d to %d are missing: deleted", prev.Seq+1, r.Seq-1)}
				return rep, nil
			}
			if !hmac.Equal(r.MAC, MAC(key, prev.MAC, r)) {
				rep.Problem = &Problem{Seq: r.Seq, Kind: ProblemAltered,
					Detail: fmt.Sprintf("row %d does not match its MAC: altered, or inserted, without the audit key (or the key is not the one that wrote it)", r.Seq)}
				return rep, nil
			}
			if r.Type == TypeAuditPrune {
				var m struct {
					Through int64 `json:"through"`
				}
				if json.Unmarshal(r.Metadata, &m) == nil && m.Through > prunedThrough {
					prunedThrough = m.Through
				}
			}
			prev = store.AuditLink{Seq: r.Seq, MAC: r.MAC}
			rep.Rows++
			rep.Head = prev
		}
		if progress != nil {
			progress(rep.Rows)
		}
		if len(rows) < verifyPage {
			break
		}
	}
	if anchor.Seq > prunedThrough {
		rep.Problem = &Problem{Seq: anchor.Seq, Kind: ProblemAnchor,
			Detail: fmt.Sprintf("the chain starts after row %d, but no recorded prune reached it: older rows may have been deleted", anchor.Seq)}
	}
	return rep, nil
}

// ErrKeyMismatch means the newest audit row does not verify under this
// key: another key wrote it (a cluster node with its own key), or it was
// altered.
var ErrKeyMismatch = errors.New("the newest audit log row does not verify under this node's audit key")

// CheckKey verifies the newest row against its predecessor (or the
// anchor), so a node started with the wrong key is stopped before it
// writes rows no one can verify. An empty log passes.
func (l *Log) CheckKey(ctx context.Context) error {
	rows, err := l.store.AuditRecords(ctx, store.AuditFilter{Limit: 2})
	if err != nil {
		return fmt.Errorf("check the audit key: %w", err)
	}
	if len(rows) == 0 {
		return nil
	}
	var prev store.AuditLink
	if len(rows) == 2 && rows[1].Seq == rows[0].Seq-1 {
		prev = store.AuditLink{Seq: rows[1].Seq, MAC: rows[1].MAC}
	} else {
		if prev, err = l.store.AuditAnchor(ctx); err != nil {
			return fmt.Errorf("check the audit key: %w", err)
		}
		if prev.Seq != rows[0].Seq-1 {
			return nil // a gap: verification reports it; the key cannot be judged here
		}
	}
	if !hmac.Equal(rows[0].MAC, MAC(l.key, prev.MAC, rows[0])) {
		return ErrKeyMismatch
	}
	return nil
}
