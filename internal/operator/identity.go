package operator

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/cairn-chat/cairn-caddy/internal/audit"
	"github.com/cairn-chat/cairn-caddy/internal/operatorauth"
	"github.com/cairn-chat/cairn-caddy/internal/servicekey"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// Identity is the response of GET /operator/v1/identity: the published
// signing keys (public halves only), current first.
type Identity struct {
	Keys         []servicekey.PublicKey `json:"keys"`
	GraceSeconds int64                  `json:"grace_seconds"`
}

// RotateRequest is the body of POST /operator/v1/identity/rotate.
type RotateRequest struct {
	// DryRun reports the keys and the grace period and changes nothing.
	DryRun bool `json:"dry_run,omitempty"`
}

// RotateResult is its response: the rotation, or for a dry run the
// current key that would be retired.
type RotateResult struct {
	DryRun   bool                 `json:"dry_run,omitempty"`
	Rotation *servicekey.Rotation `json:"rotation,omitempty"`
	Current  servicekey.PublicKey `json:"current"`
	// GraceSeconds is how long the retired key stays published.
	GraceSeconds int64 `json:"grace_seconds"`
}

// MountIdentity mounts GET identity and POST identity/rotate over the
// keyring keys returns (ok false while it is not open: 503). A rotation is
// recorded as audit.TypeKeyRotate with the operator, the key ids and the
// grace period.
func (a *API) MountIdentity(keys func() (*servicekey.Keyring, bool), rec audit.Recorder) {
	get := func() (*servicekey.Keyring, error) {
		k, ok := keys()
		if !ok {
			return nil, &xrpc.Error{Status: http.StatusServiceUnavailable, Name: "ServiceUnavailable",
				Message: "the service identity is not open yet", Header: http.Header{"Retry-After": {"1"}}}
		}
		return k, nil
	}
	a.Handle("GET "+Prefix+"identity", func(w http.ResponseWriter, r *http.Request, _ *operatorauth.Operator) error {
		k, err := get()
		if err != nil {
			return err
		}
		xrpc.WriteJSON(w, http.StatusOK, Identity{Keys: k.Published(), GraceSeconds: int64(k.Grace().Seconds())})
		return nil
	})
	a.Handle("POST "+Prefix+"identity/rotate", func(w http.ResponseWriter, r *http.Request, op *operatorauth.Operator) error {
		var req RotateRequest
		if err := decodeBody(r, &req); err != nil {
			return err
		}
		k, err := get()
		if err != nil {
			return err
		}
		grace := int64(k.Grace().Seconds())
		if req.DryRun {
			pub := k.Published()
			if len(pub) == 0 {
				return errors.New("the keyring publishes no key")
			}
			xrpc.WriteJSON(w, http.StatusOK, RotateResult{DryRun: true, Current: pub[0], GraceSeconds: grace})
			return nil
		}
		rot, err := k.Rotate()
		if err != nil {
			return fmt.Errorf("rotate the service key: %w", err)
		}
		if err := rec.Record(r.Context(), audit.Event{Type: audit.TypeKeyRotate, Actor: op.Subject, Metadata: map[string]any{
			"key_id": rot.New.ID, "retired_key_id": rot.Retired.ID, "grace": grace, "retired_until": rot.Retired.ExpiresAt,
		}}); err != nil {
			// The key is rotated: say so, and that the record is missing.
			return &xrpc.Error{Status: http.StatusServiceUnavailable, Name: "AuditUnavailable",
				Message: "the key was rotated, but the rotation could not be written to the audit log", Err: err}
		}
		xrpc.WriteJSON(w, http.StatusOK, RotateResult{Rotation: &rot, Current: rot.New, GraceSeconds: grace})
		return nil
	})
}
