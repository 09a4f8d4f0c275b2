package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

const kpColumns = `ref, owner_did, device_id, cipher_suite, data, created_at, expires_at, last_resort, consumed_at, used_in_convo`

func scanKeyPackage(sc interface{ Scan(...any) error }) (store.KeyPackage, error) {
	var kp store.KeyPackage
	var consumed *time.Time
	var used *string
	if err := sc.Scan(&kp.Ref, &kp.OwnerDID, &kp.DeviceID, &kp.CipherSuite, &kp.Data, &kp.CreatedAt, &kp.ExpiresAt, &kp.LastResort, &consumed, &used); err != nil {
		return store.KeyPackage{}, err
	}
	kp.CreatedAt, kp.ExpiresAt, kp.ConsumedAt = utc(kp.CreatedAt), utc(kp.ExpiresAt), fromNull(consumed)
	if used != nil {
		kp.UsedInConvo = *used
	}
	return kp, nil
}

// PutKeyPackage implements store.Writer. A transaction-scoped advisory lock
// per device makes the cap check and the insert atomic across nodes.
func (w *writer) PutKeyPackage(ctx context.Context, kp store.KeyPackage, maxPerDevice int) error {
	now := w.now()
	if _, err := w.q.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey("kp:"+kp.OwnerDID+"\x00"+kp.DeviceID)); err != nil {
		return fmt.Errorf("put key package: lock device: %w", err)
	}
	var owner string
	err := w.q.QueryRow(ctx, `SELECT owner_did FROM key_packages WHERE ref = $1`, kp.Ref).Scan(&owner)
	switch {
	case err == nil && owner == kp.OwnerDID:
		return nil
	case err == nil:
		return fmt.Errorf("put key package: ref owned by another DID: %w", store.ErrConflict)
	case !errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("put key package: %w", err)
	}
	if kp.LastResort {
		if _, err := w.q.Exec(ctx, `DELETE FROM key_packages
			WHERE owner_did = $1 AND device_id = $2 AND cipher_suite = $3 AND last_resort`,
			kp.OwnerDID, kp.DeviceID, kp.CipherSuite); err != nil {
			return fmt.Errorf("put key package: replace last resort: %w", err)
		}
	} else if maxPerDevice > 0 {
		var n int
		if err := w.q.QueryRow(ctx, `SELECT COUNT(*) FROM key_packages
			WHERE owner_did = $1 AND device_id = $2 AND consumed_at IS NULL AND NOT last_resort AND expires_at > $3`,
			kp.OwnerDID, kp.DeviceID, now).Scan(&n); err != nil {
			return fmt.Errorf("put key package: count: %w", err)
		}
		if n >= maxPerDevice {
			return fmt.Errorf("put key package: device holds %d: %w", n, store.ErrTooManyKeyPackages)
		}
	}
	tag, err := w.q.Exec(ctx, `INSERT INTO key_packages (ref, owner_did, device_id, cipher_suite, data, created_at, expires_at, last_resort, data_sha256)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (ref) DO NOTHING`,
		kp.Ref, kp.OwnerDID, kp.DeviceID, kp.CipherSuite, kp.Data, w.bucket(), kp.ExpiresAt, kp.LastResort, store.KeyPackageSHA256(kp.Data))
	if err != nil {
		return fmt.Errorf("put key package: %w", err)
	}
	if tag.RowsAffected() == 0 {
		// Another device's publisher inserted the same ref meanwhile.
		if err := w.q.QueryRow(ctx, `SELECT owner_did FROM key_packages WHERE ref = $1`, kp.Ref).Scan(&owner); err != nil {
			return fmt.Errorf("put key package: %w", err)
		}
		if owner != kp.OwnerDID {
			return fmt.Errorf("put key package: ref owned by another DID: %w", store.ErrConflict)
		}
	}
	return nil
}

// ClaimKeyPackages implements store.Writer. Each device's package is taken
// with FOR UPDATE SKIP LOCKED, so concurrent claimers never get the same
// one and never wait on each other.
func (w *writer) ClaimKeyPackages(ctx context.Context, ownerDIDs []string, cipherSuite string) ([]store.KeyPackage, error) {
	now, at := w.now(), w.bucket()
	var out []store.KeyPackage
	seen := map[string]bool{}
	for _, owner := range ownerDIDs {
		if seen[owner] {
			continue
		}
		seen[owner] = true
		rows, err := w.q.Query(ctx, `SELECT DISTINCT device_id FROM key_packages
			WHERE owner_did = $1 AND consumed_at IS NULL AND expires_at > $2 AND ($3 = '' OR cipher_suite = $3)
			ORDER BY device_id`, owner, now, cipherSuite)
		if err != nil {
			return nil, fmt.Errorf("list key package devices: %w", err)
		}
		devices, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("list key package devices: %w", err)
		}
		for _, dev := range devices {
			kp, err := scanKeyPackage(w.q.QueryRow(ctx, `UPDATE key_packages SET consumed_at = $5
				WHERE ref = (SELECT ref FROM key_packages
					WHERE owner_did = $2 AND device_id = $3 AND consumed_at IS NULL AND NOT last_resort AND expires_at > $1
					AND ($4 = '' OR cipher_suite = $4)
					ORDER BY created_at, ref LIMIT 1 FOR UPDATE SKIP LOCKED)
				RETURNING `+kpColumns, now, owner, dev, cipherSuite, at))
			if errors.Is(err, pgx.ErrNoRows) {
				kp, err = scanKeyPackage(w.q.QueryRow(ctx, `SELECT `+kpColumns+` FROM key_packages
					WHERE owner_did = $1 AND device_id = $2 AND consumed_at IS NULL AND last_resort AND expires_at > $3
					AND ($4 = '' OR cipher_suite = $4)
					ORDER BY created_at DESC, ref LIMIT 1`, owner, dev, now, cipherSuite))
				if errors.Is(err, pgx.ErrNoRows) {
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

// SyncKeyPackages implements store.Writer.
func (w *writer) SyncKeyPackages(ctx context.Context, ownerDID, deviceID string, keep []string) (store.KeyPackageSync, error) {
	var out store.KeyPackageSync
	if keep == nil {
		keep = []string{}
	}
	rows, err := w.q.Query(ctx, `DELETE FROM key_packages
		WHERE owner_did = $1 AND device_id = $2 AND consumed_at IS NULL AND NOT (ref = ANY($3) OR data_sha256 = ANY($3))
		RETURNING ref`, ownerDID, deviceID, keep)
	if err != nil {
		return out, fmt.Errorf("sync key packages: %w", err)
	}
	if out.Deleted, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return out, fmt.Errorf("sync key packages: %w", err)
	}
	rows, err = w.q.Query(ctx, `SELECT ref FROM key_packages
		WHERE owner_did = $1 AND device_id = $2 AND consumed_at IS NULL AND expires_at > $3 ORDER BY ref`, ownerDID, deviceID, w.now())
	if err != nil {
		return out, fmt.Errorf("sync key packages: %w", err)
	}
	if out.Remaining, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return out, fmt.Errorf("sync key packages: %w", err)
	}
	return out, nil
}

const deviceColumns = `d.owner_did, d.device_id, d.name, d.uuid, d.signature_key, d.registered_at, d.last_seen_at`

func scanDevice(sc interface{ Scan(...any) error }, extra ...any) (store.Device, error) {
	var d store.Device
	if err := sc.Scan(append([]any{&d.OwnerDID, &d.DeviceID, &d.Name, &d.UUID, &d.SignatureKey, &d.RegisteredAt, &d.LastSeenAt}, extra...)...); err != nil {
		return store.Device{}, err
	}
	d.RegisteredAt, d.LastSeenAt = utc(d.RegisteredAt), utc(d.LastSeenAt)
	return d, nil
}

// RegisterDevice implements store.Writer.
func (w *writer) RegisterDevice(ctx context.Context, d store.Device, maxDevices int) (store.Device, error) {
	if _, err := w.q.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey("devices:"+d.OwnerDID)); err != nil {
		return store.Device{}, fmt.Errorf("register device: lock owner: %w", err)
	}
	if d.UUID != "" {
		existing, err := scanDevice(w.q.QueryRow(ctx, `SELECT `+deviceColumns+` FROM devices d WHERE owner_did = $1 AND uuid = $2`, d.OwnerDID, d.UUID))
		if err == nil {
			return existing, fmt.Errorf("register device: %w", store.ErrDeviceExists)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return store.Device{}, fmt.Errorf("register device: %w", err)
		}
	}
	if maxDevices > 0 {
		var n int
		if err := w.q.QueryRow(ctx, `SELECT COUNT(*) FROM devices WHERE owner_did = $1`, d.OwnerDID).Scan(&n); err != nil {
			return store.Device{}, fmt.Errorf("register device: %w", err)
		}
		if n >= maxDevices {
			return store.Device{}, fmt.Errorf("register device: %w", store.ErrTooManyDevices)
		}
	}
	now := w.bucket()
	d.RegisteredAt, d.LastSeenAt = now, now
	_, err := w.q.Exec(ctx, `INSERT INTO devices (owner_did, device_id, name, uuid, signature_key, registered_at, last_seen_at)
		VALUES ($1, $2, $3, $4, $5, $6, $6)`, d.OwnerDID, d.DeviceID, d.Name, d.UUID, d.SignatureKey, now)
	if isUnique(err) {
		return store.Device{}, fmt.Errorf("register device: device id taken: %w", store.ErrConflict)
	}
	if err != nil {
		return store.Device{}, fmt.Errorf("register device: %w", err)
	}
	return d, nil
}

// DeleteDevice implements store.Writer.
func (w *writer) DeleteDevice(ctx context.Context, ownerDID, deviceID string) (int, error) {
	tag, err := w.q.Exec(ctx, `DELETE FROM devices WHERE owner_did = $1 AND device_id = $2`, ownerDID, deviceID)
	if err != nil {
		return 0, fmt.Errorf("delete device: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return 0, fmt.Errorf("delete device: %w", store.ErrNotFound)
	}
	if _, err := w.q.Exec(ctx, `DELETE FROM pending_device_additions WHERE user_did = $1 AND device_id = $2`, ownerDID, deviceID); err != nil {
		return 0, fmt.Errorf("delete device pending additions: %w", err)
	}
	tag, err = w.q.Exec(ctx, `DELETE FROM key_packages WHERE owner_did = $1 AND device_id = $2`, ownerDID, deviceID)
	if err != nil {
		return 0, fmt.Errorf("delete device key packages: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// TouchDevice implements store.Writer.
func (w *writer) TouchDevice(ctx context.Context, ownerDID, deviceID string) error {
	tag, err := w.q.Exec(ctx, `UPDATE devices SET last_seen_at = $1 WHERE owner_did = $2 AND device_id = $3`,
		w.bucket(), ownerDID, deviceID)
	if err != nil {
		return fmt.Errorf("touch device: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("touch device: %w", store.ErrNotFound)
	}
	return nil
}
