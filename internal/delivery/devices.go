package delivery

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"unicode/utf8"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

type registerDeviceInput struct {
	DeviceName         string           `json:"deviceName"`
	DeviceUUID         string           `json:"deviceUUID"`
	KeyPackages        []keyPackageItem `json:"keyPackages"`
	SignaturePublicKey lexBytes         `json:"signaturePublicKey"`
}

type registerDeviceOutput struct {
	DeviceID         string   `json:"deviceId"`
	MLSDID           string   `json:"mlsDid"`
	AutoJoinedConvos []string `json:"autoJoinedConvos"`
}

// newUUID returns a random (version 4) UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random device id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]), nil
}

// registerDevice registers a device of the caller and publishes its key
// packages, and queues the device for addition to its account's
// conversations (getPendingDeviceAdditions). The device id is the deviceUUID when given (so key packages
// made before registration can already name did#deviceUUID), otherwise a
// new UUID. Registering a known deviceUUID again returns the existing
// device and publishes the packages to it, which makes the method
// naturally idempotent for clients that send deviceUUID.
func (s *Service) registerDevice(ctx context.Context, c call) (any, error) {
	var in registerDeviceInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if in.DeviceName == "" || utf8.RuneCountInString(in.DeviceName) > 100 {
		return nil, xrpc.Errorf(http.StatusBadRequest, "InvalidDeviceName", "deviceName must be 1 to 100 characters")
	}
	if len(in.KeyPackages) == 0 || len(in.KeyPackages) > 200 {
		return nil, xrpc.Errorf(http.StatusBadRequest, "InvalidKeyPackages", "keyPackages takes 1 to 200 key packages")
	}
	if len(in.SignaturePublicKey) != 32 {
		return nil, xrpc.Errorf(http.StatusBadRequest, "InvalidSignatureKey", "signaturePublicKey must be a 32-byte Ed25519 key")
	}
	if err := maxLen("deviceUUID", in.DeviceUUID, 64); err != nil {
		return nil, err
	}
	deviceID := in.DeviceUUID
	if deviceID == "" {
		id, err := newUUID()
		if err != nil {
			return nil, err
		}
		deviceID = id
	}
	for i, item := range in.KeyPackages {
		if item.Expires == "" {
			return nil, xrpc.Errorf(http.StatusBadRequest, "InvalidKeyPackages", "key package %d: expires is required", i)
		}
		if _, err := s.keyPackage(c.id, deviceID, item.KeyPackage, item.CipherSuite, item.Expires); err != nil {
			xe := s.mapError(c.nsid, err)
			if xe.Status >= 500 {
				return nil, err
			}
			return nil, xrpc.Errorf(http.StatusBadRequest, "InvalidKeyPackages", "key package %d: %s", i, xe.Message)
		}
	}
	d, err := s.cfg.Store.RegisterDevice(ctx, store.Device{
		OwnerDID: c.id.DID, DeviceID: deviceID, Name: in.DeviceName, UUID: in.DeviceUUID, SignatureKey: in.SignaturePublicKey,
	}, s.cfg.MaxDevices)
	switch {
	case errors.Is(err, store.ErrDeviceExists):
	case errors.Is(err, store.ErrConflict):
		return nil, xrpc.Errorf(http.StatusConflict, "DeviceAlreadyRegistered", "a device with this id is already registered")
	case err != nil:
		return nil, fmt.Errorf("register device: %w", err)
	}
	for _, item := range in.KeyPackages {
		if err := s.putItem(ctx, c.id, d.DeviceID, item); err != nil {
			return nil, err
		}
	}
	if err := s.queueNewDevice(ctx, c.id.DID, d.DeviceID); err != nil {
		return nil, err
	}
	return registerDeviceOutput{DeviceID: d.DeviceID, MLSDID: c.id.DID + "#" + d.DeviceID, AutoJoinedConvos: []string{}}, nil
}

type deviceInfo struct {
	DeviceID        string `json:"deviceId"`
	DeviceName      string `json:"deviceName"`
	DeviceUUID      string `json:"deviceUUID,omitempty"`
	CredentialDID   string `json:"credentialDid"`
	LastSeenAt      string `json:"lastSeenAt"`
	RegisteredAt    string `json:"registeredAt"`
	KeyPackageCount int    `json:"keyPackageCount"`
}

type listDevicesOutput struct {
	Devices []deviceInfo `json:"devices"`
}

// listDevices lists the caller's devices, most recently seen first.
func (s *Service) listDevices(ctx context.Context, c call) (any, error) {
	ds, err := s.cfg.Store.Devices(ctx, c.id.DID)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].LastSeenAt.After(ds[j].LastSeenAt) })
	out := listDevicesOutput{Devices: make([]deviceInfo, 0, len(ds))}
	for _, d := range ds {
		out.Devices = append(out.Devices, deviceInfo{
			DeviceID: d.DeviceID, DeviceName: d.Name, DeviceUUID: d.UUID, CredentialDID: c.id.DID + "#" + d.DeviceID,
			LastSeenAt: datetime(d.LastSeenAt), RegisteredAt: datetime(d.RegisteredAt), KeyPackageCount: d.KeyPackages,
		})
	}
	return out, nil
}

type deleteDeviceInput struct {
	DeviceID string `json:"deviceId"`
}

type deleteDeviceOutput struct {
	Deleted            bool `json:"deleted"`
	KeyPackagesDeleted int  `json:"keyPackagesDeleted"`
}

// deleteDevice deletes one of the caller's devices and its key packages.
// Another account's device is indistinguishable from an unknown one
// (DeviceNotFound).
func (s *Service) deleteDevice(ctx context.Context, c call) (any, error) {
	var in deleteDeviceInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := required("deviceId", in.DeviceID); err != nil {
		return nil, err
	}
	if err := maxLen("deviceId", in.DeviceID, 128); err != nil {
		return nil, err
	}
	n, err := s.cfg.Store.DeleteDevice(ctx, c.id.DID, in.DeviceID)
	if err != nil {
		return nil, fmt.Errorf("delete device: %w", err)
	}
	return deleteDeviceOutput{Deleted: true, KeyPackagesDeleted: n}, nil
}

type expectedConversation struct {
	ConvoID         string `json:"convoId"`
	Name            string `json:"name"`
	MemberCount     int    `json:"memberCount"`
	ShouldBeInGroup bool   `json:"shouldBeInGroup"`
	LastActivity    string `json:"lastActivity,omitempty"`
	NeedsRejoin     bool   `json:"needsRejoin"`
	DeviceInGroup   bool   `json:"deviceInGroup"`
}

type getExpectedConversationsOutput struct {
	Conversations []expectedConversation `json:"conversations"`
}

// getExpectedConversations lists the caller's conversations, whether the
// device (the deviceId parameter, else the caller's) is in each, and
// whether it must rejoin it (needs_rejoin).
func (s *Service) getExpectedConversations(ctx context.Context, c call) (any, error) {
	device, err := c.params.str("deviceId", 128)
	if err != nil {
		return nil, err
	}
	if device == "" {
		device = c.id.DeviceID
	}
	convos, err := s.cfg.Store.UserConvos(ctx, c.id.DID)
	if err != nil {
		return nil, fmt.Errorf("list user convos: %w", err)
	}
	me := c.id.DID
	if device != "" {
		me += "#" + device
	}
	flagged, err := s.cfg.Store.NeedsRejoin(ctx, c.id.DID, me)
	if err != nil {
		return nil, fmt.Errorf("read needs_rejoin: %w", err)
	}
	needs := map[string]bool{}
	for _, f := range flagged {
		needs[f.ConvoID] = true
	}
	out := getExpectedConversationsOutput{Conversations: make([]expectedConversation, 0, len(convos))}
	for _, uc := range convos {
		in := false
		for _, m := range uc.MemberDIDs {
			if m == c.id.DID || (device != "" && m == c.id.DID+"#"+device) {
				in = true
			}
		}
		out.Conversations = append(out.Conversations, expectedConversation{
			ConvoID: uc.ConvoID, Name: uc.Name, MemberCount: uc.MemberCount, ShouldBeInGroup: true,
			LastActivity: optDatetime(uc.LastActivityAt), DeviceInGroup: in, NeedsRejoin: needs[uc.ConvoID],
		})
	}
	return out, nil
}
