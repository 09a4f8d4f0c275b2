package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

const kpColumns = `ref, owner_did, device_id, cipher_suite, data, created_at, expires_at, last_resort, consumed_at, used_in_convo`

func scanKeyPackage(sc interface{ Scan(...any) error }) (store.KeyPackage, error) {
	var kp store.KeyPackage
	var created, expires int64
	var consumed sql.NullInt64
	var used sql.NullString
	if err := sc.Scan(&kp.Ref, &kp.OwnerDID, &kp.DeviceID, &kp.CipherSuite, &kp.Data, &created, &expires, &kp.LastResort, &consumed, &used); err != nil {
		return store.KeyPackage{}, err
	}
	kp.CreatedAt, kp.ExpiresAt, kp.ConsumedAt, kp.UsedInConvo = fromMS(created), fromMS(expires), fromNullMS(consumed), used.String
	return kp, nil
}

// PutKeyPackage implements store.Writer.
func (w *txWriter) PutKeyPackage(ctx context.Context, kp store.KeyPackage, maxPerDevice int) error {
	now := w.now()
	var owner string
	err := w.tx.QueryRowContext(ctx, `SELECT owner_did FROM key_packages WHERE ref = ?`, kp.Ref).Scan(&owner)
	switch {
	case err == nil && owner == kp.OwnerDID:
		return nil
	case err == nil:
		return fmt.Errorf("put key package: ref owned by another DID: %w", store.ErrConflict)
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("put key package: %w", err)
	}
	if kp.LastResort {
		if _, err := w.tx.ExecContext(ctx, `DELETE FROM key_packages
			WHERE owner_did = ? AND device_id = ? AND cipher_suite = ? AND last_resort = 1`,
			kp.OwnerDID, kp.DeviceID, kp.CipherSuite); err != nil {
			return fmt.Errorf("put key package: replace last resort: %w", err)
		}
	} else if maxPerDevice > 0 {
		var n int
		if err := w.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM key_packages
			WHERE owner_did = ? AND device_id = ? AND consumed_at IS NULL AND last_resort = 0 AND expires_at > ?`,
			kp.OwnerDID, kp.DeviceID, ms(now)).Scan(&n); err != nil {
			return fmt.Errorf("put key package: count: %w", err)
		}
		if n >= maxPerDevice {
			return fmt.Errorf("put key package: device holds %d: %w", n, store.ErrTooManyKeyPackages)
		}
	}
	_, err = w.tx.ExecContext(ctx, `INSERT INTO key_packages (ref, owner_did, device_id, cipher_suite, data, created_at, expires_at, last_resort, data_sha256)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		kp.Ref, kp.OwnerDID, kp.DeviceID, kp.CipherSuite, kp.Data, w.bucket(), ms(kp.ExpiresAt), kp.LastResort, store.KeyPackageSHA256(kp.Data))
	if err != nil {
		return fmt.Errorf("put key package: %w", err)
	}
	return nil
}

// ClaimKeyPackages implements store.Writer. The single writer connection
// makes each claim atomic.
func (w *txWriter) ClaimKeyPackages(ctx context.Context, ownerDIDs []string, cipherSuite string) ([]store.KeyPackage, error) {
	now, at := ms(w.now()), w.bucket()
	var out []store.KeyPackage
	seen := map[string]bool{}
	for _, owner := range ownerDIDs {
		if seen[owner] {
			continue
		}
		seen[owner] = true
		devices, err := w.availableDevices(ctx, owner, cipherSuite, now)
		if err != nil {
			return nil, err
		}
		for _, dev := range devices {
			kp, err := scanKeyPackage(w.tx.QueryRowContext(ctx, `UPDATE key_packages SET consumed_at = ?
				WHERE ref = (SELECT ref FROM key_packages
					WHERE owner_did = ? AND device_id = ? AND consumed_at IS NULL AND last_resort = 0 AND expires_at > ?
					AND (? = '' OR cipher_suite = ?)
					ORDER BY created_at, ref LIMIT 1)
				RETURNING `+kpColumns, at, owner, dev, now, cipherSuite, cipherSuite))
			if errors.Is(err, sql.ErrNoRows) {
				kp, err = scanKeyPackage(w.tx.QueryRowContext(ctx, `SELECT `+kpColumns+` FROM key_packages
					WHERE owner_did = ? AND device_id = ? AND consumed_at IS NULL AND last_resort = 1 AND expires_at > ?
					AND (? = '' OR cipher_suite = ?)
					ORDER BY created_at DESC, ref LIMIT 1`, owner, dev, now, cipherSuite, cipherSuite))
				if errors.Is(err, sql.ErrNoRows) {
					continue
				}
			}
			if err != nil {
				return nil, fmt.Errorf("claim key package: %w", err)
			}
			out = append(out, kp)
		}
	}
	return out, nil
}

func (w *txWriter) availableDevices(ctx context.Context, owner, suite string, now int64) ([]string, error) {
	rows, err := w.tx.QueryContext(ctx, `SELECT DISTINCT device_id FROM key_packages
		WHERE owner_did = ? AND consumed_at IS NULL AND expires_at > ? AND (? = '' OR cipher_suite = ?)
		ORDER BY device_id`, owner, now, suite, suite)
	if err != nil {
		return nil, fmt.Errorf("list key package devices: %w", err)
	}
	defer rows.Close()
	var devs []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, fmt.Errorf("list key package devices: %w", err)
		}
		devs = append(devs, d)
	}
	return devs, rows.Err()
}

// SyncKeyPackages implements store.Writer.
func (w *txWriter) SyncKeyPackages(ctx context.Context, ownerDID, deviceID string, keep []string) (store.KeyPackageSync, error) {
	var out store.KeyPackageSync
	rows, err := w.tx.QueryContext(ctx, `DELETE FROM key_packages
		WHERE owner_did = ?1 AND device_id = ?2 AND consumed_at IS NULL
		AND ref NOT IN (SELECT value FROM json_each(?3)) AND data_sha256 NOT IN (SELECT value FROM json_each(?3))
		RETURNING ref`, ownerDID, deviceID, jsonList(keep))
	if err != nil {
		return out, fmt.Errorf("sync key packages: %w", err)
	}
	out.Deleted, err = collectStrings(rows)
	if err != nil {
		return out, fmt.Errorf("sync key packages: %w", err)
	}
	rows, err = w.tx.QueryContext(ctx, `SELECT ref FROM key_packages
		WHERE owner_did = ? AND device_id = ? AND consumed_at IS NULL AND expires_at > ? ORDER BY ref`, ownerDID, deviceID, ms(w.now()))
	if err != nil {
		return out, fmt.Errorf("sync key packages: %w", err)
	}
	out.Remaining, err = collectStrings(rows)
	if err != nil {
		return out, fmt.Errorf("sync key packages: %w", err)
	}
	return out, nil
}

func collectStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// RegisterDevice implements store.Writer.
func (w *txWriter) RegisterDevice(ctx context.Context, d store.Device, maxDevices int) (store.Device, error) {
	if d.UUID != "" {
		existing, err := scanDevice(w.tx.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices d WHERE owner_did = ? AND uuid = ?`, d.OwnerDID, d.UUID))
		if err == nil {
			return existing, fmt.Errorf("register device: %w", store.ErrDeviceExists)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return store.Device{}, fmt.Errorf("register device: %w", err)
		}
	}
	if maxDevices > 0 {
		var n int
		if err := w.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM devices WHERE owner_did = ?`, d.OwnerDID).Scan(&n); err != nil {
			return store.Device{}, fmt.Errorf("register device: %w", err)
		}
		if n >= maxDevices {
			return store.Device{}, fmt.Errorf("register device: %w", store.ErrTooManyDevices)
		}
	}
	now := store.Bucket(w.now())
	d.RegisteredAt, d.LastSeenAt = now, now
	_, err := w.tx.ExecContext(ctx, `INSERT INTO devices (owner_did, device_id, name, uuid, signature_key, registered_at, last_seen_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, d.OwnerDID, d.DeviceID, d.Name, d.UUID, d.SignatureKey, ms(now), ms(now))
	if isUnique(err) {
		return store.Device{}, fmt.Errorf("register device: device id taken: %w", store.ErrConflict)
	}
	if err != nil {
		return store.Device{}, fmt.Errorf("register device: %w", err)
	}
	return d, nil
}

const deviceColumns = `d.owner_did, d.device_id, d.name, d.uuid, d.signature_key, d.registered_at, d.last_seen_at`

func scanDevice(sc interface{ Scan(...any) error }, extra ...any) (store.Device, error) {
	var d store.Device
	var reg, seen int64
	if err := sc.Scan(append([]any{&d.OwnerDID, &d.DeviceID, &d.Name, &d.UUID, &d.SignatureKey, &reg, &seen}, extra...)...); err != nil {
		return store.Device{}, err
	}
	d.RegisteredAt, d.LastSeenAt = fromMS(reg), fromMS(seen)
	return d, nil
}

// DeleteDevice implements store.Writer.
func (w *txWriter) DeleteDevice(ctx context.Context, ownerDID, deviceID string) (int, error) {
	res, err := w.tx.ExecContext(ctx, `DELETE FROM devices WHERE owner_did = ? AND device_id = ?`, ownerDID, deviceID)
	if err != nil {
		return 0, fmt.Errorf("delete device: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return 0, fmt.Errorf("delete device: %w", store.ErrNotFound)
	}
	if _, err := w.tx.ExecContext(ctx, `DELETE FROM pending_device_additions WHERE user_did = ? AND device_id = ?`, ownerDID, deviceID); err != nil {
		return 0, fmt.Errorf("delete device pending additions: %w", err)
	}
	res, err = w.tx.ExecContext(ctx, `DELETE FROM key_packages WHERE owner_did = ? AND device_id = ?`, ownerDID, deviceID)
	if err != nil {
		return 0, fmt.Errorf("delete device key packages: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// TouchDevice implements store.Writer.
func (w *txWriter) TouchDevice(ctx context.Context, ownerDID, deviceID string) error {
	res, err := w.tx.ExecContext(ctx, `UPDATE devices SET last_seen_at = ? WHERE owner_did = ? AND device_id = ?`,
		w.bucket(), ownerDID, deviceID)
	if err != nil {
		return fmt.Errorf("touch device: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("touch device: %w", store.ErrNotFound)
	}
	return nil
}
