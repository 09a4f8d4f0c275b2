package delivery

import (
	"context"
	"fmt"
)

type keyPackageInventory struct {
	Available          int  `json:"available"`
	Target             int  `json:"target"`
	NeedsReplenishment bool `json:"needsReplenishment"`
	PerDeviceCount     int  `json:"perDeviceCount"`
}

type validateDeviceStateOutput struct {
	IsValid               bool                `json:"isValid"`
	Issues                []string            `json:"issues"`
	Recommendations       []string            `json:"recommendations"`
	ExpectedConvos        int                 `json:"expectedConvos"`
	ActualConvos          int                 `json:"actualConvos"`
	KeyPackageInventory   keyPackageInventory `json:"keyPackageInventory"`
	PendingRejoinRequests []string            `json:"pendingRejoinRequests"`
}

// validateDeviceState tells a device (the deviceId parameter, else the
// caller's) where it stands: the conversations its account is in and how
// many of them it is in with a usable state (an active row not flagged
// needs_rejoin), the rejoin requests it has pending, and its key package
// inventory, with what to do about each gap.
func (s *Service) validateDeviceState(ctx context.Context, c call) (any, error) {
	device, err := c.params.str("deviceId", 128)
	if err != nil {
		return nil, err
	}
	if device == "" {
		device = c.id.DeviceID
	}
	me := c.id.DID
	if device != "" {
		me = c.id.DID + "#" + device
	}
	convos, err := s.cfg.Store.UserConvos(ctx, c.id.DID)
	if err != nil {
		return nil, fmt.Errorf("list user convos: %w", err)
	}
	flagged, err := s.cfg.Store.NeedsRejoin(ctx, c.id.DID, me)
	if err != nil {
		return nil, fmt.Errorf("read needs_rejoin: %w", err)
	}
	needs := map[string]bool{}
	out := validateDeviceStateOutput{Issues: []string{}, Recommendations: []string{}, PendingRejoinRequests: []string{}, ExpectedConvos: len(convos)}
	for _, f := range flagged {
		needs[f.ConvoID] = true
		if f.Pending {
			out.PendingRejoinRequests = append(out.PendingRejoinRequests, f.ConvoID)
		}
	}
	for _, uc := range convos {
		for _, m := range uc.MemberDIDs {
			if m == me && !needs[uc.ConvoID] {
				out.ActualConvos++
			}
		}
	}
	devices, err := s.cfg.Store.Devices(ctx, c.id.DID)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	registered := device == ""
	for _, d := range devices {
		if d.DeviceID == device {
			registered = true
			out.KeyPackageInventory.Available = d.KeyPackages
		}
	}
	if device == "" {
		st, err := s.cfg.Store.KeyPackageStats(ctx, c.id.DID, "")
		if err != nil {
			return nil, fmt.Errorf("key package stats: %w", err)
		}
		out.KeyPackageInventory.Available = st.Available
	}
	inv := &out.KeyPackageInventory
	inv.Target, inv.PerDeviceCount = s.cfg.KeyPackageThreshold, inv.Available
	inv.NeedsReplenishment = inv.Available < inv.Target
	issue := func(problem, fix string) {
		out.Issues = append(out.Issues, problem)
		out.Recommendations = append(out.Recommendations, fix)
	}
	if !registered {
		issue("the device is not registered to this account", "register it with registerDevice")
	}
	if n := len(needs); n > 0 {
		issue(fmt.Sprintf("the device needs to rejoin %d conversation(s)", n),
			"rejoin each by external commit (getGroupInfo, then processExternalCommit); if that fails, call readdition")
	}
	if missing := out.ExpectedConvos - out.ActualConvos - len(needs); missing > 0 {
		issue(fmt.Sprintf("the device is not in %d of its account's conversation(s)", missing),
			"join them by external commit, or wait for a member to add it (getPendingDeviceAdditions)")
	}
	if inv.NeedsReplenishment {
		issue(fmt.Sprintf("%d key package(s) available, below the target of %d", inv.Available, inv.Target),
			"publish key packages with publishKeyPackages")
	}
	out.IsValid = len(out.Issues) == 0
	return out, nil
}

type keyPackageHistoryEntry struct {
	PackageID        string `json:"packageId"`
	CreatedAt        string `json:"createdAt"`
	ConsumedAt       string `json:"consumedAt,omitempty"`
	ConsumedForConvo string `json:"consumedForConvo,omitempty"`
	DeviceID         string `json:"deviceId,omitempty"`
	CipherSuite      string `json:"cipherSuite"`
}

type getKeyPackageHistoryOutput struct {
	History []keyPackageHistoryEntry `json:"history"`
	Cursor  string                   `json:"cursor,omitempty"`
}

// getKeyPackageHistory pages through the caller's consumed key packages,
// most recent first. consumedByDevice is never known (the server records
// no sender) and consumedForConvoName is omitted (the name is the
// conversation's, readable through getConvos by its members).
func (s *Service) getKeyPackageHistory(ctx context.Context, c call) (any, error) {
	limit, _, err := c.params.integer("limit", 1, 100, 20)
	if err != nil {
		return nil, err
	}
	cursor, err := c.params.str("cursor", 512)
	if err != nil {
		return nil, err
	}
	pkgs, next, err := s.cfg.Store.ConsumedKeyPackages(ctx, c.id.DID, cursor, int(limit))
	if err != nil {
		return nil, fmt.Errorf("key package history: %w", err)
	}
	out := getKeyPackageHistoryOutput{History: make([]keyPackageHistoryEntry, 0, len(pkgs)), Cursor: next}
	for _, kp := range pkgs {
		out.History = append(out.History, keyPackageHistoryEntry{
			PackageID: kp.Ref, CreatedAt: datetime(kp.CreatedAt), ConsumedAt: optDatetime(kp.ConsumedAt),
			ConsumedForConvo: kp.UsedInConvo, DeviceID: kp.DeviceID, CipherSuite: kp.CipherSuite,
		})
	}
	return out, nil
}
