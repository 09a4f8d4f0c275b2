package certstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// A lease is a lock this Storage holds: the owner token written into the
// lock row, and the renewal that keeps the row alive.
type lease struct {
	owner string
	stop  chan struct{}
	done  chan struct{}
}

func (l *lease) stopRenewal() {
	close(l.stop)
	<-l.done
}

// tryAcquire is one statement: insert the lock row, or take over a row
// whose lease has run out. The database's clock decides expiry, so nodes'
// clocks need not agree.
const tryAcquire = `INSERT INTO cairn_certstore_locks (name, owner, expires)
	VALUES ($1, $2, now() + make_interval(secs => $3))
	ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires
	WHERE cairn_certstore_locks.expires <= now()
	RETURNING owner`

// extendLease moves a held lock's expiry to at least $3 seconds from now;
// it never shortens a longer lease. No row means the lock was lost.
const extendLease = `UPDATE cairn_certstore_locks
	SET expires = greatest(expires, now() + make_interval(secs => $3))
	WHERE name = $1 AND owner = $2`

// Lock takes the named lock, waiting while another holder's lease is live.
// It honours ctx. Once taken, the lease is renewed every third of LockTTL
// until Unlock.
func (s *Storage) Lock(ctx context.Context, name string) error {
	for {
		ok, err := s.TryLock(ctx, name)
		if err != nil || ok {
			return err
		}
		// Jitter spreads nodes that wait for the same lock.
		wait := s.cfg.LockPoll + mathrand.N(s.cfg.LockPoll/4+1)
		select {
		case <-ctx.Done():
			return fmt.Errorf("certstore: waiting for lock %s: %w", name, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// TryLock takes the named lock if it is free and reports whether it did.
func (s *Storage) TryLock(ctx context.Context, name string) (bool, error) {
	pool, _, err := s.ready(ctx)
	if err != nil {
		return false, err
	}
	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		return false, fmt.Errorf("certstore: lock token: %w", err)
	}
	owner := hex.EncodeToString(token)
	octx, cancel := s.op(ctx)
	defer cancel()
	var got string
	err = pool.QueryRow(octx, tryAcquire, name, owner, s.cfg.LockTTL.Seconds()).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("certstore: lock %s: %w", name, err)
	}
	l := &lease{owner: owner, stop: make(chan struct{}), done: make(chan struct{})}
	s.locksMu.Lock()
	s.leases[name] = l
	s.locksMu.Unlock()
	go s.renew(name, l)
	return true, nil
}

// renew extends the lease every third of LockTTL while the lock is held,
// never shortening a longer lease that RenewLockLease granted.
func (s *Storage) renew(name string, l *lease) {
	defer close(l.done)
	t := time.NewTicker(s.cfg.LockTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.OpTimeout)
		tag, err := s.pool.Exec(ctx, extendLease, name, l.owner, s.cfg.LockTTL.Seconds())
		cancel()
		switch {
		case err != nil:
			s.cfg.Logger.Warn("renewing a certificate storage lock failed; retrying", zap.String("lock", name), zap.Error(err))
		case tag.RowsAffected() == 0:
			s.cfg.Logger.Error("a certificate storage lock was lost: its lease ran out and another node may hold it", zap.String("lock", name))
			return
		}
	}
}

// RenewLockLease extends the lease of a lock this Storage holds to at
// least leaseDuration from now; certmagic calls it before long retries of
// an ACME order. It is part of certmagic.LockLeaseRenewer.
func (s *Storage) RenewLockLease(ctx context.Context, name string, leaseDuration time.Duration) error {
	s.locksMu.Lock()
	l := s.leases[name]
	s.locksMu.Unlock()
	if l == nil {
		return fmt.Errorf("certstore: renew lock %s: not held by this node", name)
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, extendLease, name, l.owner, leaseDuration.Seconds())
	if err != nil {
		return fmt.Errorf("certstore: renew lock %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("certstore: renew lock %s: the lease ran out and the lock is lost", name)
	}
	return nil
}

// Unlock releases a lock this Storage holds. It fails if the lock was not
// held, or if its lease had run out (another node may have taken it).
func (s *Storage) Unlock(ctx context.Context, name string) error {
	s.locksMu.Lock()
	l := s.leases[name]
	delete(s.leases, name)
	s.locksMu.Unlock()
	if l == nil {
		return fmt.Errorf("certstore: unlock %s: not held by this node", name)
	}
	l.stopRenewal()
	ctx, cancel := s.op(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `DELETE FROM cairn_certstore_locks WHERE name = $1 AND owner = $2`, name, l.owner)
	if err != nil {
		return fmt.Errorf("certstore: unlock %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("certstore: unlock %s: the lease had run out before the unlock", name)
	}
	return nil
}
