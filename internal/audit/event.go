package audit

import (
	"context"
	"errors"
	"fmt"
)

// Event types. Actor, Target and Metadata are as each comment says; an
// empty Actor means the service itself.
const (
	// TypeOperatorAuthOK: operators authenticated, aggregated per operator
	// per window. Actor is the operator; Metadata {"method","count",
	// "window_start","window_end"}.
	TypeOperatorAuthOK = "operator.auth.ok"
	// TypeOperatorAuthFailed: refused operator credentials, aggregated per
	// source per window so a flood writes one row per source. Target is the
	// source (a keyed hash of the client address); Metadata {"count",
	// "reasons", "window_start", "window_end"}.
	TypeOperatorAuthFailed = "operator.auth.failed"
	// TypeOperatorAction: one operator API call, recorded before it runs.
	// Actor is the operator; Metadata {"method","route"}.
	TypeOperatorAction = "operator.action"
	// TypeConfigLoad: a configuration was loaded (start or reload) by this
	// node. Metadata {"node_start": bool}.
	TypeConfigLoad = "config.load"
	// TypeBanAdd and TypeBanRemove: an account ban changed. Actor is the
	// operator; Target the keyed hash of the DID.
	TypeBanAdd    = "ban.add"
	TypeBanRemove = "ban.remove"
	// TypeRetentionPurge: a retention pass deleted rows. Metadata holds
	// counts per kind only.
	TypeRetentionPurge = "retention.purge"
	// TypeAuditPrune: the audit log's own prefix was pruned. Metadata
	// {"rows","through"}: through is the new anchor's seq.
	TypeAuditPrune = "audit.prune"

	// Hooks for work that lands later; record them with these names.

	// TypeKeyRotate: a service key was rotated. Actor is the operator;
	// Metadata {"key_id","grace"}.
	TypeKeyRotate = "key.rotate"
	// TypeBackupCreate and TypeBackupRestore: an archive was written or
	// restored. Metadata {"archive","bytes","tables"}.
	TypeBackupCreate  = "backup.create"
	TypeBackupRestore = "backup.restore"
	// TypeRoleChange: an admin or moderator role changed inside a
	// conversation. Actor and Target are keyed hashes of the DIDs;
	// Metadata {"convo": keyed hash, "role"}.
	TypeRoleChange = "role.change"
	// TypeReportResolve: an admin resolved or dismissed a member report.
	// Actor and Target are keyed hashes of the admin's and the reported
	// member's DIDs; Metadata {"convo": keyed hash, "action"}.
	TypeReportResolve = "report.resolve"
	// TypeMemberWarn: an admin or moderator warned a member (the warning's
	// text is end-to-end encrypted and not seen). Actor and Target are
	// keyed hashes; Metadata {"convo": keyed hash, "expires" when given}.
	TypeMemberWarn = "member.warn"
)

// Event is something to audit.
type Event struct {
	// Type is one of the Type constants.
	Type string
	// Actor is who acted: an operator's OIDC subject or static token name,
	// or a keyed hash for a user-side identity; "" for the service.
	Actor string
	// Target is what the event concerns; a keyed hash for an account.
	Target string
	// Metadata is encoded as a JSON object (keys sorted). Counts and names
	// only.
	Metadata map[string]any
	// IP is the client address as the request gave it. The Log stores it
	// only as its IP policy says (by default not at all).
	IP string
}

// Recorder records audit events. Everything that has something to audit
// takes a Recorder; *Log is the real one.
type Recorder interface {
	Record(ctx context.Context, e Event) error
}

// RecorderFunc adapts a function to Recorder.
type RecorderFunc func(ctx context.Context, e Event) error

// Record calls f.
func (f RecorderFunc) Record(ctx context.Context, e Event) error { return f(ctx, e) }

// ErrInvalidEvent means an event was refused before it was written.
var ErrInvalidEvent = errors.New("audit: invalid event")

// maxField bounds Actor, Target and IP.
const maxField = 512

func (e Event) validate() error {
	if e.Type == "" || len(e.Type) > 64 {
		return fmt.Errorf("%w: type %q", ErrInvalidEvent, e.Type)
	}
	for _, c := range e.Type {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_') {
			return fmt.Errorf("%w: type %q: want lower-case letters, digits, '.' and '_'", ErrInvalidEvent, e.Type)
		}
	}
	if len(e.Actor) > maxField || len(e.Target) > maxField || len(e.IP) > maxField {
		return fmt.Errorf("%w: actor, target or IP longer than %d bytes", ErrInvalidEvent, maxField)
	}
	return nil
}
