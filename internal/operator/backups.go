package operator

import (
	"net/http"
	"strings"

	"github.com/cairn-chat/cairn-caddy/internal/backup"
	"github.com/cairn-chat/cairn-caddy/internal/operatorauth"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// MountBackups mounts the backup routes of internal/backup's Handler
// (GET backups, POST backups, GET backups/running) under the API's
// prefix, authenticated and audited like every route; the backup itself
// is recorded by the Runner (backup.create). With a nil runner (no backup
// block configured) the same routes answer 404 BackupNotConfigured.
func (a *API) MountBackups(r *backup.Runner) {
	h := &backup.Handler{Runner: r, Actor: func(r *http.Request) string {
		if op, ok := operatorauth.FromContext(r.Context()); ok {
			return op.Subject
		}
		return ""
	}}
	for pattern, route := range h.Routes() {
		method, path, _ := strings.Cut(pattern, " ")
		a.Handle(method+" "+Prefix+path, func(w http.ResponseWriter, req *http.Request, _ *operatorauth.Operator) error {
			if r == nil {
				return xrpc.Errorf(http.StatusNotFound, "BackupNotConfigured",
					"this node has no scheduled backup: add a `backup { target … }` block to the cairn global option, or run `cairn-caddy backup`")
			}
			route(w, req)
			return nil
		})
	}
}
