package delivery

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cairn-chat/cairn-caddy/internal/push"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// PushSealer seals a device's push token before it is stored
// (*push.Sealer).
type PushSealer interface {
	Seal(ownerDID, deviceID, provider string, token []byte) ([]byte, error)
}

// pushRoutes registers registerDeviceToken and unregisterDeviceToken when
// push is configured; otherwise they stay unserved (501
// MethodNotImplemented, like every method the service does not serve).
func (s *Service) pushRoutes(m map[string]method, small int64) {
	if s.cfg.PushSealer == nil {
		return
	}
	m[Namespace+"registerDeviceToken"] = method{typ: xrpc.Procedure, bodyLimit: small, handle: s.registerDeviceToken}
	m[Namespace+"unregisterDeviceToken"] = method{typ: xrpc.Procedure, bodyLimit: small, handle: s.unregisterDeviceToken}
}

type registerDeviceTokenInput struct {
	DeviceID   string `json:"deviceId"`
	PushToken  string `json:"pushToken"`
	DeviceName string `json:"deviceName"`
	Platform   string `json:"platform"`
}

type successOutput struct {
	Success bool `json:"success"`
}

// registerDeviceToken serves blue.catbird.mls.registerDeviceToken: it
// seals the token for one of the caller's registered devices and stores
// it, replacing the device's previous token. deviceName is not stored
// (the device has its name from registerDevice). Registering is an
// upsert, so a retry is harmless without an idempotency key.
func (s *Service) registerDeviceToken(ctx context.Context, c call) (any, error) {
	var in registerDeviceTokenInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := required("deviceId", in.DeviceID); err != nil {
		return nil, err
	}
	if err := maxLen("deviceId", in.DeviceID, 128); err != nil {
		return nil, err
	}
	if err := required("pushToken", in.PushToken); err != nil {
		return nil, err
	}
	reg, err := push.ParseRegistration(in.Platform, in.PushToken, s.cfg.PushInsecureHosts)
	if err != nil {
		return nil, badRequest("pushToken: %s", strings.TrimPrefix(err.Error(), push.ErrBadToken.Error()+": "))
	}
	sealed, err := s.cfg.PushSealer.Seal(c.id.DID, in.DeviceID, reg.Provider, reg.Token)
	if err != nil {
		return nil, fmt.Errorf("seal push token: %w", err)
	}
	err = s.cfg.Store.PutPushToken(ctx, store.PushToken{OwnerDID: c.id.DID, DeviceID: in.DeviceID, Provider: reg.Provider, Sealed: sealed})
	if err != nil {
		return nil, fmt.Errorf("register device token: %w", err)
	}
	return successOutput{Success: true}, nil
}

type unregisterDeviceTokenInput struct {
	DeviceID string `json:"deviceId"`
}

// unregisterDeviceToken serves blue.catbird.mls.unregisterDeviceToken. It
// succeeds whether or not the device had a token, so a retry after a lost
// answer succeeds too.
func (s *Service) unregisterDeviceToken(ctx context.Context, c call) (any, error) {
	var in unregisterDeviceTokenInput
	if err := decodeBody(c.body, &in); err != nil {
		return nil, err
	}
	if err := required("deviceId", in.DeviceID); err != nil {
		return nil, err
	}
	if err := maxLen("deviceId", in.DeviceID, 128); err != nil {
		return nil, err
	}
	if _, err := s.cfg.Store.DeletePushToken(ctx, c.id.DID, in.DeviceID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("unregister device token: %w", err)
	}
	return successOutput{Success: true}, nil
}
