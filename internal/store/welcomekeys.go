package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors of Welcome key use.
var (
	// ErrWelcomeKeyUsed means a key package already brought its device
	// into a group through a Welcome.
	ErrWelcomeKeyUsed = errors.New("store: key package already used by a welcome")
	// ErrWelcomeKeyReserved means another Welcome holds an unexpired
	// reservation of the key package.
	ErrWelcomeKeyReserved = errors.New("store: key package reserved by another welcome")
)

// WelcomeKeys enforces that a Welcome is processed once per device: each
// Welcome names its recipients by KeyPackageRef, and a key package can
// bring its device into a group once. A device reserves the package for
// the Welcome it is about to process (validateWelcome) and uses it when
// it confirms the join (confirmWelcome).
type WelcomeKeys interface {
	// ReserveWelcomeKey reserves ownerDID's package ref for the Welcome
	// with digest for ttl. Reserving again for the same Welcome
	// extends it. ErrKeyPackageNotFound when ownerDID has no such
	// package, ErrWelcomeKeyUsed when it was used, ErrWelcomeKeyReserved
	// when another Welcome holds an unexpired reservation.
	ReserveWelcomeKey(ctx context.Context, ownerDID, ref string, digest []byte, ttl time.Duration) (until time.Time, err error)
	// UseWelcomeKey records that ownerDID's package ref brought its device
	// into a group. ErrKeyPackageNotFound when there is no such package,
	// ErrWelcomeKeyUsed when it was already used.
	UseWelcomeKey(ctx context.Context, ownerDID, ref string) error
}
