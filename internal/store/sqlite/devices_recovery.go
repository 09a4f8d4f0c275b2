package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

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

func scanPending(row interface{ Scan(...any) error }) (store.PendingAddition, error) {
	var p store.PendingAddition
	var rejoin int
	var status string
	var claimedUntil sql.NullInt64
	var created, expires int64
	if err := row.Scan(&p.ID, &p.ConvoID, &p.UserDID, &p.DeviceID, &rejoin, &p.KeyPackageRef, &status,
		&p.ClaimedBy, &claimedUntil, &created, &expires, &p.DeviceName); err != nil {
		return store.PendingAddition{}, err
	}
	p.Rejoin, p.Status = rejoin == 1, store.PendingStatus(status)
	p.ClaimedUntil = fromNullMS(claimedUntil)
	p.CreatedAt, p.ExpiresAt = fromMS(created), fromMS(expires)
	return p, nil
}

// accountActive reports whether userDID has an active row in the
// conversation.
func accountActive(ctx context.Context, tx writeTx, convoID, userDID string) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM members WHERE convo_id = ? AND user_did = ? AND left_at IS NULL LIMIT 1`,
		convoID, userDID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("account of the device: %w", store.ErrNotMember)
	}
	if err != nil {
		return fmt.Errorf("read membership: %w", err)
	}
	return nil
}

// queueAddition inserts or refreshes a pending addition inside tx. A live
// claim is left as it is.
func (s *Store) queueAddition(ctx context.Context, tx writeTx, p store.NewPendingAddition) (store.PendingAddition, error) {
	now := s.now()
	rejoin := 0
	if p.Rejoin {
		rejoin = 1
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO pending_device_additions
		(id, convo_id, user_did, device_id, rejoin, key_package_ref, status, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)
		ON CONFLICT (convo_id, user_did, device_id) DO UPDATE SET
			rejoin = excluded.rejoin,
			key_package_ref = excluded.key_package_ref,
			status = 'pending', claimed_by = '', claimed_until = NULL,
			expires_at = excluded.expires_at
		WHERE NOT (pending_device_additions.status = 'in_progress' AND pending_device_additions.claimed_until > ?)`,
		p.ID, p.ConvoID, p.UserDID, p.DeviceID, rejoin, p.KeyPackageRef, ms(store.Bucket(now)), ms(now.Add(p.TTL)), ms(now))
	if err != nil {
		return store.PendingAddition{}, fmt.Errorf("queue device addition: %w", err)
	}
	row, err := scanPending(tx.QueryRowContext(ctx, `SELECT `+pendingColumns+pendingFrom+`
		WHERE p.convo_id = ? AND p.user_did = ? AND p.device_id = ?`, p.ConvoID, p.UserDID, p.DeviceID))
	if err != nil {
		return store.PendingAddition{}, fmt.Errorf("read queued device addition: %w", err)
	}
	return row.Lapsed(now), nil
}

// QueueDeviceAddition implements store.PendingDevices.
func (s *Store) QueueDeviceAddition(ctx context.Context, p store.NewPendingAddition) (out store.PendingAddition, err error) {
	err = s.write(ctx, func(tx writeTx) error {
		if err := accountActive(ctx, tx, p.ConvoID, p.UserDID); err != nil {
			return err
		}
		var flagged int
		member := store.PendingAddition{UserDID: p.UserDID, DeviceID: p.DeviceID}.MemberDID()
		err := tx.QueryRowContext(ctx, `SELECT needs_rejoin FROM members WHERE convo_id = ? AND member_did = ? AND left_at IS NULL`,
			p.ConvoID, member).Scan(&flagged)
		switch {
		case err == nil && flagged == 0:
			return fmt.Errorf("queue device addition: %w", store.ErrAlreadyMember)
		case err != nil && !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("read device membership: %w", err)
		}
		out, err = s.queueAddition(ctx, tx, p)
		return err
	})
	return out, err
}

// MarkNeedsRejoin implements store.Rejoins.
func (s *Store) MarkNeedsRejoin(ctx context.Context, queue *store.NewPendingAddition, convoID, memberDID string) (out store.PendingAddition, err error) {
	err = s.write(ctx, func(tx writeTx) error {
		if err := accountActive(ctx, tx, convoID, store.UserOfMember(memberDID)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE members SET needs_rejoin = 1 WHERE convo_id = ? AND member_did = ? AND left_at IS NULL`,
			convoID, memberDID); err != nil {
			return fmt.Errorf("flag needs_rejoin: %w", err)
		}
		if queue == nil {
			return nil
		}
		out, err = s.queueAddition(ctx, tx, *queue)
		return err
	})
	return out, err
}

// NeedsRejoin implements store.Rejoins.
func (s *Store) NeedsRejoin(ctx context.Context, userDID, memberDID string) ([]store.RejoinState, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT m.convo_id, EXISTS (SELECT 1 FROM pending_device_additions p
			WHERE p.convo_id = m.convo_id AND p.user_did = m.user_did AND p.device_id = m.device_id
			AND p.status <> 'completed' AND p.expires_at > ?)
		FROM members m WHERE m.user_did = ? AND m.member_did = ? AND m.left_at IS NULL AND m.needs_rejoin = 1
		ORDER BY m.convo_id`, ms(s.now()), userDID, memberDID)
	if err != nil {
		return nil, errorf("read needs_rejoin: %w", err)
	}
	defer rows.Close()
	var out []store.RejoinState
	for rows.Next() {
		var r store.RejoinState
		var pending int
		if err := rows.Scan(&r.ConvoID, &pending); err != nil {
			return nil, errorf("read needs_rejoin: %w", err)
		}
		r.Pending = pending == 1
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, errorf("read needs_rejoin: %w", err)
	}
	return out, nil
}

// PendingAdditions implements store.PendingDevices.
func (s *Store) PendingAdditions(ctx context.Context, viewerDID string, convoIDs []string, limit int) ([]store.PendingAddition, error) {
	now := s.now()
	q := `SELECT ` + pendingColumns + pendingFrom + `
		WHERE p.status <> 'completed' AND p.expires_at > ?
		AND p.convo_id IN (SELECT convo_id FROM members WHERE user_did = ? AND left_at IS NULL)`
	args := []any{ms(now), viewerDID}
	if len(convoIDs) > 0 {
		q += ` AND p.convo_id IN (SELECT value FROM json_each(?))`
		args = append(args, jsonList(convoIDs))
	}
	q += ` ORDER BY p.created_at, p.id LIMIT ?`
	args = append(args, limit)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, errorf("list pending device additions: %w", err)
	}
	defer rows.Close()
	var out []store.PendingAddition
	for rows.Next() {
		p, err := scanPending(rows)
		if err != nil {
			return nil, errorf("list pending device additions: %w", err)
		}
		out = append(out, p.Lapsed(now))
	}
	if err := rows.Err(); err != nil {
		return nil, errorf("list pending device additions: %w", err)
	}
	return out, nil
}

// PendingAddition implements store.PendingDevices.
func (s *Store) PendingAddition(ctx context.Context, id string) (store.PendingAddition, error) {
	p, err := scanPending(s.r.QueryRowContext(ctx, `SELECT `+pendingColumns+pendingFrom+` WHERE p.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
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
func additionKeyPackage(ctx context.Context, tx writeTx, p store.PendingAddition, now time.Time) (store.KeyPackage, error) {
	const cols = `ref, owner_did, device_id, cipher_suite, data, created_at, expires_at, last_resort`
	scan := func(row *sql.Row) (store.KeyPackage, error) {
		var kp store.KeyPackage
		var created, expires int64
		var lastResort int
		err := row.Scan(&kp.Ref, &kp.OwnerDID, &kp.DeviceID, &kp.CipherSuite, &kp.Data, &created, &expires, &lastResort)
		kp.CreatedAt, kp.ExpiresAt, kp.LastResort = fromMS(created), fromMS(expires), lastResort == 1
		return kp, err
	}
	if p.KeyPackageRef != "" {
		kp, err := scan(tx.QueryRowContext(ctx, `SELECT `+cols+` FROM key_packages WHERE ref = ? AND owner_did = ?`, p.KeyPackageRef, p.UserDID))
		if err == nil {
			return kp, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return store.KeyPackage{}, fmt.Errorf("read key package: %w", err)
		}
	}
	kp, err := scan(tx.QueryRowContext(ctx, `SELECT `+cols+` FROM key_packages
		WHERE owner_did = ? AND device_id = ? AND consumed_at IS NULL AND expires_at > ? AND welcome_used_at IS NULL
		AND cipher_suite = (SELECT cipher_suite FROM convos WHERE id = ?)
		ORDER BY last_resort, created_at, ref LIMIT 1`, p.UserDID, p.DeviceID, ms(now), p.ConvoID))
	if errors.Is(err, sql.ErrNoRows) {
		return store.KeyPackage{}, fmt.Errorf("key package of the device to add: %w", store.ErrKeyPackageNotFound)
	}
	if err != nil {
		return store.KeyPackage{}, fmt.Errorf("pick key package: %w", err)
	}
	if !kp.LastResort {
		if _, err := tx.ExecContext(ctx, `UPDATE key_packages SET consumed_at = ?, used_in_convo = ? WHERE ref = ?`,
			ms(store.Bucket(now)), p.ConvoID, kp.Ref); err != nil {
			return store.KeyPackage{}, fmt.Errorf("consume key package: %w", err)
		}
	}
	return kp, nil
}

// ClaimPendingAddition implements store.PendingDevices. The single writer
// serialises claims.
func (s *Store) ClaimPendingAddition(ctx context.Context, id, claimerDID string, ttl time.Duration) (out store.ClaimedAddition, err error) {
	now := s.now()
	err = s.write(ctx, func(tx writeTx) error {
		p, err := scanPending(tx.QueryRowContext(ctx, `SELECT `+pendingColumns+pendingFrom+` WHERE p.id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) || (err == nil && (p.Status == store.PendingStatusCompleted || !p.ExpiresAt.After(now))) {
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
		kp, err := additionKeyPackage(ctx, tx, p, now)
		if err != nil {
			return err
		}
		until := now.Add(ttl)
		if _, err := tx.ExecContext(ctx, `UPDATE pending_device_additions
			SET status = 'in_progress', claimed_by = ?, claimed_until = ?, key_package_ref = ? WHERE id = ?`,
			claimerDID, ms(until), kp.Ref, id); err != nil {
			return fmt.Errorf("claim pending device addition: %w", err)
		}
		p.Status, p.ClaimedBy, p.ClaimedUntil, p.KeyPackageRef = store.PendingStatusInProgress, claimerDID, fromMS(ms(until)), kp.Ref
		out = store.ClaimedAddition{Addition: p, KeyPackage: kp}
		return nil
	})
	return out, err
}

// CompletePendingAddition implements store.PendingDevices.
func (s *Store) CompletePendingAddition(ctx context.Context, id, claimerDID string) (out store.PendingAddition, err error) {
	err = s.write(ctx, func(tx writeTx) error {
		p, err := scanPending(tx.QueryRowContext(ctx, `SELECT `+pendingColumns+pendingFrom+` WHERE p.id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("complete pending device addition: %w", store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("read pending device addition: %w", err)
		}
		out = p
		if p.ClaimedBy == "" || p.ClaimedBy != claimerDID {
			return fmt.Errorf("complete pending device addition: %w", store.ErrNotClaimed)
		}
		var flagged int
		err = tx.QueryRowContext(ctx, `SELECT needs_rejoin FROM members WHERE convo_id = ? AND member_did = ? AND left_at IS NULL`,
			p.ConvoID, p.MemberDID()).Scan(&flagged)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && flagged == 1) {
			return fmt.Errorf("complete pending device addition: device not added yet: %w", store.ErrNotMember)
		}
		if err != nil {
			return fmt.Errorf("read device membership: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM pending_device_additions WHERE id = ?`, id); err != nil {
			return fmt.Errorf("complete pending device addition: %w", err)
		}
		return nil
	})
	return out, err
}

// PurgePendingAdditions implements store.Purger.
func (s *Store) PurgePendingAdditions(ctx context.Context) (int64, error) {
	now := ms(s.now())
	return s.purge(ctx, "pending device additions", func(tx writeTx) (int64, error) {
		return affected(tx.ExecContext(ctx, `DELETE FROM pending_device_additions WHERE rowid IN (
			SELECT rowid FROM pending_device_additions WHERE expires_at <= ? LIMIT ?)`, now, s.purgeBatch))
	})
}

// ReserveWelcomeKey implements store.WelcomeKeys.
func (s *Store) ReserveWelcomeKey(ctx context.Context, ownerDID, ref string, digest []byte, ttl time.Duration) (until time.Time, err error) {
	now := s.now()
	until = fromMS(ms(now.Add(ttl)))
	err = s.write(ctx, func(tx writeTx) error {
		var held []byte
		var reserved, used sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT welcome_digest, welcome_reserved_until, welcome_used_at FROM key_packages
			WHERE ref = ? AND owner_did = ?`, ref, ownerDID).Scan(&held, &reserved, &used)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("reserve welcome key: %w", store.ErrKeyPackageNotFound)
		case err != nil:
			return fmt.Errorf("read key package: %w", err)
		case used.Valid:
			return fmt.Errorf("reserve welcome key: %w", store.ErrWelcomeKeyUsed)
		case reserved.Valid && reserved.Int64 > ms(now) && !bytes.Equal(held, digest):
			return fmt.Errorf("reserve welcome key: %w", store.ErrWelcomeKeyReserved)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE key_packages SET welcome_digest = ?, welcome_reserved_until = ? WHERE ref = ?`,
			digest, ms(until), ref); err != nil {
			return fmt.Errorf("reserve welcome key: %w", err)
		}
		return nil
	})
	return until, err
}

// UseWelcomeKey implements store.WelcomeKeys.
func (s *Store) UseWelcomeKey(ctx context.Context, ownerDID, ref string) error {
	return s.write(ctx, func(tx writeTx) error {
		n, err := affected(tx.ExecContext(ctx, `UPDATE key_packages SET welcome_used_at = ?
			WHERE ref = ? AND owner_did = ? AND welcome_used_at IS NULL`, ms(store.Bucket(s.now())), ref, ownerDID))
		if err != nil {
			return fmt.Errorf("use welcome key: %w", err)
		}
		if n == 1 {
			return nil
		}
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM key_packages WHERE ref = ? AND owner_did = ?`, ref, ownerDID).Scan(&one); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("use welcome key: %w", store.ErrKeyPackageNotFound)
			}
			return fmt.Errorf("read key package: %w", err)
		}
		return fmt.Errorf("use welcome key: %w", store.ErrWelcomeKeyUsed)
	})
}
