package delivery

import (
	"context"
	"fmt"
	"net/http"

	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

type optInInput struct {
	// DeviceID is accepted and not stored: opt-in is per account.
	DeviceID string `json:"deviceId"`
}

type optInOutput struct {
	OptedIn   bool   `json:"optedIn"`
	OptedInAt string `json:"optedInAt"`
}

// optIn serves blue.catbird.mls.optIn: the caller's account opts in to
// MLS chat. It is naturally idempotent (a second opt-in keeps the first
// time) and takes no key.
func (s *Service) optIn(ctx context.Context, c call) (any, error) {
	var in optInInput
	if len(c.body) > 0 {
		if err := decodeBody(c.body, &in); err != nil {
			return nil, err
		}
	}
	if err := maxLen("deviceId", in.DeviceID, 128); err != nil {
		return nil, err
	}
	at, err := s.cfg.Store.OptIn(ctx, c.id.DID)
	if err != nil {
		return nil, fmt.Errorf("opt in: %w", err)
	}
	return optInOutput{OptedIn: true, OptedInAt: datetime(at)}, nil
}

type optOutOutput struct {
	Success bool `json:"success"`
}

// optOut serves blue.catbird.mls.optOut: the caller's opt-in record is
// deleted. Naturally idempotent: opting out twice succeeds twice.
func (s *Service) optOut(ctx context.Context, c call) (any, error) {
	if _, err := s.cfg.Store.OptOut(ctx, c.id.DID); err != nil {
		return nil, fmt.Errorf("opt out: %w", err)
	}
	return optOutOutput{Success: true}, nil
}

type optInStatus struct {
	DID       string `json:"did"`
	OptedIn   bool   `json:"optedIn"`
	OptedInAt string `json:"optedInAt,omitempty"`
}

type getOptInStatusOutput struct {
	Statuses []optInStatus `json:"statuses"`
}

// getOptInStatus serves blue.catbird.mls.getOptInStatus: whether each of
// at most 100 DIDs opted in. When opted in is all another account learns:
// optedInAt is given for the caller's own DID only.
func (s *Service) getOptInStatus(ctx context.Context, c call) (any, error) {
	dids, err := c.params.list("dids", 100, 2048)
	if err != nil {
		return nil, err
	}
	if len(dids) == 0 {
		return nil, badRequest("parameter dids is required")
	}
	for _, d := range dids {
		if !validDID(d, false) {
			return nil, xrpc.Errorf(http.StatusBadRequest, "InvalidDid", "dids holds an invalid DID")
		}
	}
	in, err := s.cfg.Store.OptedIn(ctx, dids)
	if err != nil {
		return nil, fmt.Errorf("read opt-ins: %w", err)
	}
	out := getOptInStatusOutput{Statuses: make([]optInStatus, 0, len(dids))}
	for _, d := range dids {
		at, ok := in[d]
		st := optInStatus{DID: d, OptedIn: ok}
		if ok && d == c.id.DID {
			st.OptedInAt = datetime(at)
		}
		out.Statuses = append(out.Statuses, st)
	}
	return out, nil
}
