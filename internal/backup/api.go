package backup

import (
	"encoding/json"
	"errors"
	"net/http"
)

// Handler serves the operator API's backup routes under its prefix:
//
//	GET  backups          the target's archives, newest first, and the runner's state
//	POST backups          start a backup (202; 409 BackupRunning when one runs)
//	GET  backups/running  the runner's state: progress of a running backup, the last outcome
//
// Authentication and the audit record of the call are the operator API's
// (cairn_operator_auth in front of it); the backup itself is audited by
// the Runner. Errors use the XRPC error shape.
type Handler struct {
	Runner *Runner
	// Actor returns who is calling, for the audit log; nil means "".
	Actor func(r *http.Request) string
}

// Routes returns the routes to mount, by net/http ServeMux pattern
// relative to the operator API's prefix.
func (h *Handler) Routes() map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{
		"GET backups":         h.list,
		"POST backups":        h.start,
		"GET backups/running": h.running,
	}
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	as, err := h.Runner.Target.List(r.Context())
	if err != nil {
		writeError(w, http.StatusBadGateway, "TargetUnavailable", "the backup target cannot be listed")
		return
	}
	if as == nil {
		as = []Archive{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"target": h.Runner.Target.String(), "archives": as, "state": h.Runner.State()})
}

func (h *Handler) start(w http.ResponseWriter, r *http.Request) {
	actor := ""
	if h.Actor != nil {
		actor = h.Actor(r)
	}
	if err := h.Runner.Start(r.Context(), actor); err != nil {
		if errors.Is(err, ErrRunning) {
			writeError(w, http.StatusConflict, "BackupRunning", "a backup is already running on this node")
			return
		}
		writeError(w, http.StatusInternalServerError, "InternalServerError", "the backup could not start")
		return
	}
	writeJSON(w, http.StatusAccepted, h.Runner.State())
}

func (h *Handler) running(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, h.Runner.State())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, name, msg string) {
	writeJSON(w, status, map[string]string{"error": name, "message": msg})
}
