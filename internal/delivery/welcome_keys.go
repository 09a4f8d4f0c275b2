package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// welcomeKeys returns the caller's key packages a Welcome names as its
// recipients: those of the caller's device, or of no device. found is
// false when the Welcome names none of the account's packages at all;
// a Welcome for another device of the account gives found true and no
// packages.
func (s *Service) welcomeKeys(ctx context.Context, id caller.Identity, data []byte) (mine []store.KeyPackage, found bool, err error) {
	w, err := parseWelcome(data)
	if err != nil {
		return nil, false, err
	}
	for _, ref := range w.NewMembers() {
		kp, err := s.cfg.Store.KeyPackageByHash(ctx, id.DID, hex.EncodeToString(ref))
		if errors.Is(err, store.ErrKeyPackageNotFound) {
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("find key package: %w", err)
		}
		found = true
		if id.DeviceID == "" || kp.DeviceID == "" || kp.DeviceID == id.DeviceID {
			mine = append(mine, kp)
		}
	}
	return mine, found, nil
}

type validateWelcomeInput struct {
	WelcomeMessage lexBytes `json:"welcomeMessage"`
}

type validateWelcomeOutput struct {
	Valid          bool   `json:"valid"`
	KeyPackageHash string `json:"keyPackageHash"`
	RecipientDID   string `json:"recipientDid"`
	Reserved       bool   `json:"reserved"`
	ReservedUntil  string `json:"reservedUntil,omitempty"`
}

// validateWelcome checks a Welcome before the caller's device processes
// it and reserves the key package it names for WelcomeReservationTTL: a
// key package brings its device into a group once (confirmWelcome uses
// it), so a second Welcome for the same package is refused
// (KeyPackageAlreadyConsumed, or KeyPackageReserved while another
// Welcome's reservation holds). A last-resort package may be in several
// Welcomes by design and is not reserved. groupId is not returned: it is
// inside the Welcome's encrypted GroupInfo.
func (s *Service) validateWelcome(ctx context.Context, c call) (any, error) {
	var in validateWelcomeInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if len(in.WelcomeMessage) == 0 {
		return nil, badRequest("welcomeMessage is required")
	}
	if len(in.WelcomeMessage) > s.cfg.MaxMessageBytes {
		return nil, badRequest("welcomeMessage exceeds %d bytes", s.cfg.MaxMessageBytes)
	}
	mine, found, err := s.welcomeKeys(ctx, c.id, in.WelcomeMessage)
	if err != nil {
		return nil, err
	}
	switch {
	case !found:
		return nil, fmt.Errorf("welcome: %w", store.ErrKeyPackageNotFound)
	case len(mine) == 0:
		return nil, ErrRecipientMismatch
	}
	kp := mine[0]
	out := validateWelcomeOutput{Valid: true, KeyPackageHash: store.KeyPackageSHA256(kp.Data), RecipientDID: c.id.DID}
	if kp.LastResort {
		return out, nil
	}
	digest := sha256.Sum256(in.WelcomeMessage)
	until, err := s.cfg.Store.ReserveWelcomeKey(ctx, c.id.DID, kp.Ref, digest[:], WelcomeReservationTTL)
	if err != nil {
		return nil, err
	}
	out.Reserved, out.ReservedUntil = true, datetime(until)
	return out, nil
}

// useWelcomeKeys records that the Welcome brought the caller's device in
// through its key package (for confirmWelcome): a package is used once.
func (s *Service) useWelcomeKeys(ctx context.Context, id caller.Identity, data []byte) error {
	mine, _, err := s.welcomeKeys(ctx, id, data)
	if err != nil {
		return err
	}
	for _, kp := range mine {
		if kp.LastResort {
			continue
		}
		if err := s.cfg.Store.UseWelcomeKey(ctx, id.DID, kp.Ref); err != nil {
			return err
		}
	}
	return nil
}

type invalidateWelcomeInput struct {
	ConvoID string `json:"convoId"`
	Reason  string `json:"reason"`
}

type invalidateWelcomeOutput struct {
	Invalidated bool   `json:"invalidated"`
	WelcomeID   string `json:"welcomeId,omitempty"`
}

// invalidateWelcome retires the caller's Welcome that its device cannot
// process (it is marked consumed, so it is not served again) and flags
// the device needs_rejoin: it falls back to an external commit or
// readdition. Only a recipient may invalidate its Welcome.
func (s *Service) invalidateWelcome(ctx context.Context, c call) (any, error) {
	var in invalidateWelcomeInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := convoField(in.ConvoID); err != nil {
		return nil, err
	}
	if err := required("reason", in.Reason); err != nil {
		return nil, err
	}
	if err := maxLen("reason", in.Reason, 256); err != nil {
		return nil, err
	}
	convoID := normConvoID(in.ConvoID)
	w, rows, err := s.callerWelcome(ctx, convoID, c.id)
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Store.ConfirmWelcome(ctx, convoID, rows); err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("retire welcome: %w", err)
	}
	if _, err := s.cfg.Store.MarkNeedsRejoin(ctx, nil, convoID, memberDID(c.id)); err != nil {
		return nil, fmt.Errorf("flag needs_rejoin: %w", err)
	}
	return invalidateWelcomeOutput{Invalidated: true, WelcomeID: strconv.FormatInt(w.ID, 10)}, nil
}
