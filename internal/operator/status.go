package operator

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/operatorauth"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// Status is the node's status, as GET /operator/v1/status returns it.
type Status struct {
	// Version is the binary's version.
	Version string `json:"version"`
	// Schema is the database schema's version and the newest this binary
	// knows.
	Schema SchemaStatus `json:"schema"`
	// Store is the database's backend and health.
	Store Health `json:"store"`
	// Redis is Redis's health; null when no Redis is configured.
	Redis *Health `json:"redis"`
	// OpenStreams counts this node's open event streams.
	OpenStreams int `json:"open_streams"`
	// LastBackup is when the newest backup was taken, and
	// LastBackupAgeSeconds its age; both null until backups exist.
	LastBackup           *time.Time `json:"last_backup"`
	LastBackupAgeSeconds *int64     `json:"last_backup_age_seconds"`
	// Retention reports this node's retention worker.
	Retention RetentionStatus `json:"retention"`
}

// SchemaStatus is the schema part of Status.
type SchemaStatus struct {
	Current int `json:"current"`
	Latest  int `json:"latest"`
}

// Health is one backend's state.
type Health struct {
	// Backend names it: "sqlite", "postgres" or "redis".
	Backend string `json:"backend"`
	Healthy bool   `json:"healthy"`
	// Error is a short description when unhealthy, without addresses or
	// credentials.
	Error string `json:"error,omitempty"`
}

// RetentionStatus counts this node's retention passes since it started.
type RetentionStatus struct {
	// Runs counts passes that ran (not those another node's lock skipped).
	Runs int64 `json:"runs"`
	// Failures counts passes that failed.
	Failures int64 `json:"failures"`
	// LastRun is when the last pass ended; null before the first.
	LastRun *time.Time `json:"last_run"`
}

// statusTimeout bounds the health checks of one status call.
const statusTimeout = 5 * time.Second

func statusRoute(status func(context.Context) (Status, error)) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, _ *operatorauth.Operator) error {
		ctx, cancel := context.WithTimeout(r.Context(), statusTimeout)
		defer cancel()
		st, err := status(ctx)
		if err != nil {
			return fmt.Errorf("status: %w", err)
		}
		xrpc.WriteJSON(w, http.StatusOK, st)
		return nil
	}
}
