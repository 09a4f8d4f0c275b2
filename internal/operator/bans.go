package operator

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/audit"
	"github.com/cairn-chat/cairn-caddy/internal/ban"
	"github.com/cairn-chat/cairn-caddy/internal/operatorauth"
	"github.com/cairn-chat/cairn-caddy/internal/redact"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// BanEntry is one ban as the API returns it: never a DID.
type BanEntry struct {
	Hash      string    `json:"hash"`
	CreatedAt time.Time `json:"created_at"`
}

// BanList is the response of GET /operator/v1/bans.
type BanList struct {
	Bans []BanEntry `json:"bans"`
}

// BanRequest is the body of POST /operator/v1/bans and
// POST /operator/v1/bans/remove. Add takes a DID; remove takes a DID or
// the hash a listing shows.
type BanRequest struct {
	DID  string `json:"did,omitempty"`
	Hash string `json:"hash,omitempty"`
	// DryRun reports what would change and changes nothing.
	DryRun bool `json:"dry_run,omitempty"`
}

// BanResult is the response of both: the hash the ban is stored under,
// and whether the call changed it (or, for a dry run, would).
type BanResult struct {
	Hash    string `json:"hash"`
	Changed bool   `json:"changed"`
	DryRun  bool   `json:"dry_run,omitempty"`
}

func listBansRoute(bans *ban.List) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, _ *operatorauth.Operator) error {
		list, err := bans.Bans(r.Context())
		if err != nil {
			return fmt.Errorf("list bans: %w", err)
		}
		out := BanList{Bans: make([]BanEntry, 0, len(list))}
		for _, b := range list {
			out.Bans = append(out.Bans, BanEntry{Hash: b.Hash, CreatedAt: b.CreatedAt})
		}
		xrpc.WriteJSON(w, http.StatusOK, out)
		return nil
	}
}

// banned reports whether the hash is on the list, reading the store.
func banned(r *http.Request, bans *ban.List, hash string) (bool, error) {
	list, err := bans.Bans(r.Context())
	if err != nil {
		return false, fmt.Errorf("list bans: %w", err)
	}
	for _, b := range list {
		if b.Hash == hash {
			return true, nil
		}
	}
	return false, nil
}

func addBanRoute(bans *ban.List, rec audit.Recorder) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, op *operatorauth.Operator) error {
		var req BanRequest
		if err := decodeBody(r, &req); err != nil {
			return err
		}
		if req.Hash != "" {
			return badRequest("ban by did, not by hash")
		}
		if err := ban.CheckDID(req.DID); err != nil {
			return badRequest("did: %v", err)
		}
		if req.DryRun {
			hash := bans.Hash(req.DID)
			is, err := banned(r, bans, hash)
			if err != nil {
				return err
			}
			xrpc.WriteJSON(w, http.StatusOK, BanResult{Hash: hash, Changed: !is, DryRun: true})
			return nil
		}
		hash, added, err := bans.Add(r.Context(), req.DID)
		if err != nil {
			return fmt.Errorf("add ban: %w", err)
		}
		if added {
			if err := rec.Record(r.Context(), audit.Event{Type: audit.TypeBanAdd, Actor: op.Subject, Target: hash}); err != nil {
				return fmt.Errorf("audit ban: %w", err)
			}
		}
		xrpc.WriteJSON(w, http.StatusOK, BanResult{Hash: hash, Changed: added})
		return nil
	}
}

func removeBanRoute(bans *ban.List, rec audit.Recorder) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, op *operatorauth.Operator) error {
		var req BanRequest
		if err := decodeBody(r, &req); err != nil {
			return err
		}
		var hash string
		switch {
		case req.DID != "" && req.Hash != "":
			return badRequest("give did or hash, not both")
		case req.DID != "":
			if err := ban.CheckDID(req.DID); err != nil {
				return badRequest("did: %v", err)
			}
			hash = bans.Hash(req.DID)
		case req.Hash != "":
			if err := checkHash(req.Hash); err != nil {
				return err
			}
			hash = req.Hash
		default:
			return badRequest("did or hash is required")
		}
		if req.DryRun {
			is, err := banned(r, bans, hash)
			if err != nil {
				return err
			}
			xrpc.WriteJSON(w, http.StatusOK, BanResult{Hash: hash, Changed: is, DryRun: true})
			return nil
		}
		removed, err := bans.Remove(r.Context(), hash)
		if err != nil {
			return fmt.Errorf("remove ban: %w", err)
		}
		if removed {
			if err := rec.Record(r.Context(), audit.Event{Type: audit.TypeBanRemove, Actor: op.Subject, Target: hash}); err != nil {
				return fmt.Errorf("audit unban: %w", err)
			}
		}
		xrpc.WriteJSON(w, http.StatusOK, BanResult{Hash: hash, Changed: removed})
		return nil
	}
}

// checkHash accepts a rendered keyed hash: "h:" and 16 lower-case hex
// digits.
func checkHash(h string) error {
	hex, ok := strings.CutPrefix(h, redact.Prefix)
	if !ok || len(h) != redact.HashLen {
		return badRequest("hash %q: want %s and 16 hex digits, as `cairn-caddy ban list` shows", h, redact.Prefix)
	}
	for _, c := range hex {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return badRequest("hash %q: want %s and 16 hex digits", h, redact.Prefix)
		}
	}
	return nil
}
