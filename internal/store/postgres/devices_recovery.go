package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

var (
	_ store.PendingDevices = (*Store)(nil)
	_ store.Rejoins        = (*Store)(nil)
	_ store.WelcomeKeys    = (*Store)(nil)
)

const pendingColumns = `p.id, p.convo_id, p.user_did, p.device_id, p.rejoin, p.key_package_ref, p.status,
	p.claimed_by, p.claimed_until, p.created_at, p.expires_at, COALESCE(d.name, '')`

const pendingFrom = ` FROM pending_device_additions p
	LEFT JOIN devices d ON d.owner_did = p.user_did AND d.device_id = p.device_id`

func scanPending(row pgx.Row) (store.PendingAddition, error) {
	var p store.PendingAddition
	var status string
	var claimedUntil *time.Time
	if err := row.Scan(&p.ID, &p.ConvoID, &p.UserDID, &p.DeviceID, &p.Rejoin, &p.KeyPackageRef, &status,
		&p.ClaimedBy, &claimedUntil, &p.CreatedAt, &p.ExpiresAt, &p.DeviceName); err != nil {
		return store.PendingAddition{}, err
	}
	p.Status, p.ClaimedUntil = store.PendingStatus(status), fromNull(claimedUntil)
	p.CreatedAt, p.ExpiresAt = utc(p.CreatedAt), utc(p.ExpiresAt)
	return p, nil
}

// accountActive reports whether userDID has an active row in the
// conversation.
func accountActive(ctx context.Context, q querier, convoID, userDID string) error {
	var one int
	err := q.QueryRow(ctx, `SELECT 1 FROM members WHERE convo_id = $1 AND user_did = $2 AND left_at IS NULL LIMIT 1`,
		convoID, userDID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("account of the device: %w", store.ErrNotMember)
	}
	if err != nil {
		return fmt.Errorf("read membership: %w", err)
	}
	return nil
}

// queueAddition inserts or refreshes a pending addition inside the
// transaction. A live claim is left as it is.
func (s *Store) queueAddition(ctx context.Context, q querier, p store.NewPendingAddition) (store.PendingAddition, error) {
	now := s.now()
	_, err := q.Exec(ctx, `INSERT INTO pending_device_additions
		(id, convo_id, user_did, device_id, rejoin, key_package_ref, status, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8)
		ON CONFLICT (convo_id, user_did, device_id) DO UPDATE SET
			rejoin = excluded.rejoin,
			key_package_ref = excluded.key_package_ref,
			status = 'pending', claimed_by = '', claimed_until = NULL,
			expires_at = excluded.expires_at
		WHERE NOT (pending_device_additions.status = 'in_progress' AND pending_device_additions.claimed_until > $9)`,
		p.ID, p.ConvoID, p.UserDID, p.DeviceID, p.Rejoin, p.KeyPackageRef, store.Bucket(now), now.Add(p.TTL), now)
	if err != nil {
		return store.PendingAddition{}, fmt.Errorf("queue device addition: %w", err)
	}
	row, err := scanPending(q.QueryRow(ctx, `SELECT `+pendingColumns+pendingFrom+`
		WHERE p.convo_id = $1 AND p.user_did = $2 AND p.device_id = $3`, p.ConvoID, p.UserDID, p.DeviceID))
	if err != nil {
		return store.PendingAddition{}, fmt.Errorf("read queued device addition: %w", err)
	}
	return row.Lapsed(now), nil
}

// QueueDeviceAddition implements store.PendingDevices.
func (s *Store) QueueDeviceAddition(ctx context.Context, p store.NewPendingAddition) (out store.PendingAddition, err error) {
	err = s.inTx(ctx, func(w *writer) error {
		if err := accountActive(ctx, w.q, p.ConvoID, p.UserDID); err != nil {
			return err
		}
		var flagged bool
		member := store.PendingAddition{UserDID: p.UserDID, DeviceID: p.DeviceID}.MemberDID()
		err := w.q.QueryRow(ctx, `SELECT needs_rejoin FROM members WHERE convo_id = $1 AND member_did = $2 AND left_at IS NULL`,
			p.ConvoID, member).Scan(&flagged)
		switch {
		case err == nil && !flagged:
			return fmt.Errorf("queue device addition: %w", store.ErrAlreadyMember)
		case err != nil && !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("read device membership: %w", err)
		}
		out, err = s.queueAddition(ctx, w.q, p)
		return err
	})
	return out, err
}

// MarkNeedsRejoin implements store.Rejoins.
func (s *Store) MarkNeedsRejoin(ctx context.Context, queue *store.NewPendingAddition, convoID, memberDID string) (out store.PendingAddition, err error) {
	err = s.inTx(ctx, func(w *writer) error {
		if err := accountActive(ctx, w.q, convoID, store.UserOfMember(memberDID)); err != nil {
			return err
		}
		if _, err := w.q.Exec(ctx, `UPDATE members SET needs_rejoin = true WHERE convo_id = $1 AND member_did = $2 AND left_at IS NULL`,
			convoID, memberDID); err != nil {
			return fmt.Errorf("flag needs_rejoin: %w", err)
		}
		if queue == nil {
			return nil
		}
		out, err = s.queueAddition(ctx, w.q, *queue)
		return err
	})
	return out, err
}

// NeedsRejoin implements store.Rejoins.
func (s *Store) NeedsRejoin(ctx context.Context, userDID, memberDID string) ([]store.RejoinState, error) {
	rows, err := s.pool.Query(ctx, `SELECT m.convo_id, EXISTS (SELECT 1 FROM pending_device_additions p
			WHERE p.convo_id = m.convo_id AND p.user_did = m.user_did AND p.device_id = m.device_id
			AND p.status <> 'completed' AND p.expires_at > $1)
		FROM members m WHERE m.user_did = $2 AND m.member_did = $3 AND m.left_at IS NULL AND m.needs_rejoin
		ORDER BY m.convo_id`, s.now(), userDID, memberDID)
	if err != nil {
		return nil, errorf("read needs_rejoin: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.RejoinState, error) {
		var st store.RejoinState
		err := r.Scan(&st.ConvoID, &st.Pending)
		return st, err
	})
	if err != nil {
		return nil, errorf("read needs_rejoin: %w", err)
	}
	return out, nil
}

// PendingAdditions implements store.PendingDevices.
func (s *Store) PendingAdditions(ctx context.Context, viewerDID string, convoIDs []string, limit int) ([]store.PendingAddition, error) {
	now := s.now()
	q := `SELECT ` + pendingColumns + pendingFrom + `
		WHERE p.status <> 'completed' AND p.expires_at > $1
		AND p.convo_id IN (SELECT convo_id FROM members WHERE user_did = $2 AND left_at IS NULL)`
	args := []any{now, viewerDID, limit}
	if len(convoIDs) > 0 {
		q += ` AND p.convo_id = ANY($4)`
		args = append(args, convoIDs)
	}
	q += ` ORDER BY p.created_at, p.id LIMIT $3`
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, errorf("list pending device additions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.PendingAddition, error) {
		p, err := scanPending(r)
		return p.Lapsed(now), err
	})
	if err != nil {
		return nil, errorf("list pending device additions: %w", err)
	}
	return out, nil
}

// PendingAddition implements store.PendingDevices.
func (s *Store) PendingAddition(ctx context.Context, id string) (store.PendingAddition, error) {
	p, err := scanPending(s.pool.QueryRow(ctx, `SELECT `+pendingColumns+pendingFrom+` WHERE p.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.PendingAddition{}, errorf("pending device addition: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.PendingAddition{}, errorf("read pending device addition: %w", err)
	}
	return p.Lapsed(s.now()), nil
}

// additionKeyPackage picks the package to add the addition's device with:
// the recorded one while it exists, else the device's oldest available
// normal package of the conversation's suite (consumed for the
// conversation), else its last-resort package.
func additionKeyPackage(ctx context.Context, q querier, p store.PendingAddition, now time.Time) (store.KeyPackage, error) {
	const cols = `ref, owner_did, device_id, cipher_suite, data, created_at, expires_at, last_resort`
	scan := func(row pgx.Row) (store.KeyPackage, error) {
		var kp store.KeyPackage
		err := row.Scan(&kp.Ref, &kp.OwnerDID, &kp.DeviceID, &kp.CipherSuite, &kp.Data, &kp.CreatedAt, &kp.ExpiresAt, &kp.LastResort)
		kp.CreatedAt, kp.ExpiresAt = utc(kp.CreatedAt), utc(kp.ExpiresAt)
		return kp, err
	}
	if p.KeyPackageRef != "" {
		kp, err := scan(q.QueryRow(ctx, `SELECT `+cols+` FROM key_packages WHERE ref = $1 AND owner_did = $2`, p.KeyPackageRef, p.UserDID))
		if err == nil {
			return kp, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return store.KeyPackage{}, fmt.Errorf("read key package: %w", err)
		}
	}
	kp, err := scan(q.QueryRow(ctx, `SELECT `+cols+` FROM key_packages
		WHERE owner_did = $1 AND device_id = $2 AND consumed_at IS NULL AND expires_at > $3 AND welcome_used_at IS NULL
		AND cipher_suite = (SELECT cipher_suite FROM convos WHERE id = $4)
		ORDER BY last_resort, created_at, ref LIMIT 1 FOR UPDATE`, p.UserDID, p.DeviceID, now, p.ConvoID))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.KeyPackage{}, fmt.Errorf("key package of the device to add: %w", store.ErrKeyPackageNotFound)
	}
	if err != nil {
		return store.KeyPackage{}, fmt.Errorf("pick key package: %w", err)
	}
	if !kp.LastResort {
		if _, err := q.Exec(ctx, `UPDATE key_packages SET consumed_at = $1, used_in_convo = $2 WHERE ref = $3`,
			store.Bucket(now), p.ConvoID, kp.Ref); err != nil {
			return store.KeyPackage{}, fmt.Errorf("consume key package: %w", err)
		}
	}
	return kp, nil
}

// ClaimPendingAddition implements store.PendingDevices. The addition's row
// is locked first, so concurrent claimers queue behind the first and see
// its claim.
func (s *Store) ClaimPendingAddition(ctx context.Context, id, claimerDID string, ttl time.Duration) (out store.ClaimedAddition, err error) {
	err = s.inTx(ctx, func(w *writer) error {
		now := s.now()
		p, err := scanPending(w.q.QueryRow(ctx, `SELECT `+pendingColumns+pendingFrom+` WHERE p.id = $1 FOR UPDATE OF p`, id))
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && (p.Status == store.PendingStatusCompleted || !p.ExpiresAt.After(now))) {
			return fmt.Errorf("claim pending device addition: %w", store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("read pending device addition: %w", err)
		}
		p = p.Lapsed(now)
		if p.Status == store.PendingStatusInProgress && p.ClaimedBy != claimerDID {
			out.Addition = p
			return fmt.Errorf("claim pending device addition: %w", store.ErrClaimedByOther)
		}
		kp, err := additionKeyPackage(ctx, w.q, p, now)
		if err != nil {
			return err
		}
		until := now.Add(ttl)
		if _, err := w.q.Exec(ctx, `UPDATE pending_device_additions
			SET status = 'in_progress', claimed_by = $1, claimed_until = $2, key_package_ref = $3 WHERE id = $4`,
			claimerDID, until, kp.Ref, id); err != nil {
			return fmt.Errorf("claim pending device addition: %w", err)
		}
		p.Status, p.ClaimedBy, p.ClaimedUntil, p.KeyPackageRef = store.PendingStatusInProgress, claimerDID, utc(until), kp.Ref
		out = store.ClaimedAddition{Addition: p, KeyPackage: kp}
		return nil
	})
	return out, err
}

// CompletePendingAddition implements store.PendingDevices.
func (s *Store) CompletePendingAddition(ctx context.Context, id, claimerDID string) (out store.PendingAddition, err error) {
	err = s.inTx(ctx, func(w *writer) error {
		p, err := scanPending(w.q.QueryRow(ctx, `SELECT `+pendingColumns+pendingFrom+` WHERE p.id = $1 FOR UPDATE OF p`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("complete pending device addition: %w", store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("read pending device addition: %w", err)
		}
		out = p
		if p.ClaimedBy == "" || p.ClaimedBy != claimerDID {
			return fmt.Errorf("complete pending device addition: %w", store.ErrNotClaimed)
		}
		var flagged bool
		err = w.q.QueryRow(ctx, `SELECT needs_rejoin FROM members WHERE convo_id = $1 AND member_did = $2 AND left_at IS NULL`,
			p.ConvoID, p.MemberDID()).Scan(&flagged)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && flagged) {
			return fmt.Errorf("complete pending device addition: device not added yet: %w", store.ErrNotMember)
		}
		if err != nil {
			return fmt.Errorf("read device membership: %w", err)
		}
		if _, err := w.q.Exec(ctx, `DELETE FROM pending_device_additions WHERE id = $1`, id); err != nil {
			return fmt.Errorf("complete pending device addition: %w", err)
		}
		return nil
	})
	return out, err
}

// PurgePendingAdditions implements store.Purger.
func (s *Store) PurgePendingAdditions(ctx context.Context) (int64, error) {
	now := s.now()
	return s.purge(ctx, "pending device additions", func(w *writer) (int64, error) {
		return affected(w.q.Exec(ctx, `DELETE FROM pending_device_additions WHERE ctid = ANY (ARRAY(
			SELECT ctid FROM pending_device_additions WHERE expires_at <= $1 LIMIT $2))`, now, s.purgeBatch))
	})
}

// ReserveWelcomeKey implements store.WelcomeKeys.
func (s *Store) ReserveWelcomeKey(ctx context.Context, ownerDID, ref string, digest []byte, ttl time.Duration) (until time.Time, err error) {
	err = s.inTx(ctx, func(w *writer) error {
		now := s.now()
		until = utc(now.Add(ttl))
		var held []byte
		var reserved, used *time.Time
		err := w.q.QueryRow(ctx, `SELECT welcome_digest, welcome_reserved_until, welcome_used_at FROM key_packages
			WHERE ref = $1 AND owner_did = $2 FOR UPDATE`, ref, ownerDID).Scan(&held, &reserved, &used)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("reserve welcome key: %w", store.ErrKeyPackageNotFound)
		case err != nil:
			return fmt.Errorf("read key package: %w", err)
		case used != nil:
			return fmt.Errorf("reserve welcome key: %w", store.ErrWelcomeKeyUsed)
		case reserved != nil && reserved.After(now) && !bytes.Equal(held, digest):
			return fmt.Errorf("reserve welcome key: %w", store.ErrWelcomeKeyReserved)
		}
		if _, err := w.q.Exec(ctx, `UPDATE key_packages SET welcome_digest = $1, welcome_reserved_until = $2 WHERE ref = $3`,
			digest, until, ref); err != nil {
			return fmt.Errorf("reserve welcome key: %w", err)
		}
		return nil
	})
	return until, err
}

// UseWelcomeKey implements store.WelcomeKeys.
func (s *Store) UseWelcomeKey(ctx context.Context, ownerDID, ref string) error {
	return s.inTx(ctx, func(w *writer) error {
		n, err := affected(w.q.Exec(ctx, `UPDATE key_packages SET welcome_used_at = $1
			WHERE ref = $2 AND owner_did = $3 AND welcome_used_at IS NULL`, store.Bucket(s.now()), ref, ownerDID))
		if err != nil {
			return fmt.Errorf("use welcome key: %w", err)
		}
		if n == 1 {
			return nil
		}
		var one int
		if err := w.q.QueryRow(ctx, `SELECT 1 FROM key_packages WHERE ref = $1 AND owner_did = $2`, ref, ownerDID).Scan(&one); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("use welcome key: %w", store.ErrKeyPackageNotFound)
			}
			return fmt.Errorf("read key package: %w", err)
		}
		return fmt.Errorf("use welcome key: %w", store.ErrWelcomeKeyUsed)
	})
}
