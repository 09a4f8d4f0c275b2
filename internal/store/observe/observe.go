// Package observe wraps a store so that every call is measured and traced:
// its latency and failures go to a Recorder (cairn's Prometheus
// collectors) under a fixed operation name, and, inside a traced request,
// each call is a span named by its operation. Operation names come from
// the store's method names, never from statements or arguments, so they
// form a bounded, identity-free set.
//
// It is not a cache or a retry layer: each call reaches the backend once,
// with its arguments and results untouched.
package observe

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"time"
	"unicode"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/tracing"
)

// Failure classes of a store call, as Classify returns them.
const (
	// Unavailable is a database that could not take the call
	// (store.ErrUnavailable, store.ErrOutcomeUnknown included).
	Unavailable = "unavailable"
	// Internal is any other failure that is not a domain outcome: a bug, a
	// constraint the store did not map, a corrupt row.
	Internal = "internal"
)

// Classify returns the failure class of a store call's error: "" for
// success, for the domain outcomes callers branch on (not found, stale
// epoch, conflict, …) and for a caller that went away; otherwise
// Unavailable or Internal.
func Classify(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, store.ErrUnavailable):
		return Unavailable
	case errors.Is(err, context.Canceled):
		return ""
	}
	for _, outcome := range domainOutcomes {
		if errors.Is(err, outcome) {
			return ""
		}
	}
	return Internal
}

// domainOutcomes are the sentinel errors that answer a request rather than
// report a failure of the store.
// TestEveryStoreSentinelIsClassified requires every sentinel the store
// package exports to be here or a failure Classify names.
var domainOutcomes = []error{
	store.ErrNotFound, store.ErrNotMember, store.ErrAlreadyMember, store.ErrStaleEpoch,
	store.ErrFutureEpoch, store.ErrConflict, store.ErrKeyPackageNotFound, store.ErrTooManyKeyPackages,
	store.ErrTooManyDevices, store.ErrDeviceExists, store.ErrInvalidCursor,
	// Social (roles, reports, invites).
	store.ErrLastAdmin, store.ErrRoleRequired, store.ErrNotPending, store.ErrInviteUnusable, store.ErrRemovedMember,
	store.ErrMemberLimit,
	// Pending device additions.
	store.ErrClaimedByOther, store.ErrNotClaimed,
	// Welcome key reservations.
	store.ErrWelcomeKeyUsed, store.ErrWelcomeKeyReserved,
	// Chat requests.
	store.ErrDuplicateRequest, store.ErrChatBlocked, store.ErrExpired,
}

// Recorder is told of every store call: op is one of Operations, took its
// latency, and failure its Classify class ("" when it did not fail).
type Recorder interface {
	StoreCall(op string, took time.Duration, failure string)
}

// Backend is what the wrapper needs of a store: the union and the
// interfaces consumers assert beside it, which both backends implement
// (the operator's status reads MigrationStatus).
type Backend interface {
	store.Store
	store.AuditLog
	store.Bans
	store.PoolStatser
	store.Migrator
}

// observer measures and traces calls.
type observer struct {
	rec    Recorder
	system attribute.KeyValue
}

// dbSystems maps store.Traits.Backend to OpenTelemetry's db.system.name.
var dbSystems = map[string]string{"sqlite": "sqlite", "postgres": "postgresql"}

// start begins one call of op; the returned function ends it with its
// error and returns that error.
func (o *observer) start(ctx context.Context, op string) (context.Context, func(error) error) {
	began := time.Now()
	ctx, span := tracing.Start(ctx, "cairn.store."+op, attribute.String(tracing.StoreOperationKey, op), o.system)
	return ctx, func(err error) error {
		failure := Classify(err)
		o.rec.StoreCall(op, time.Since(began), failure)
		if failure != "" {
			span.SetAttributes(attribute.String(tracing.ErrorTypeKey, failure))
			span.SetStatus(codes.Error, failure)
		}
		span.End()
		return err
	}
}

// call runs f as one call of op.
func call[T any](ctx context.Context, o *observer, op string, f func(context.Context) (T, error)) (T, error) {
	ctx, end := o.start(ctx, op)
	v, err := f(ctx)
	return v, end(err)
}

// exec runs f, which returns only an error, as one call of op.
func exec(ctx context.Context, o *observer, op string, f func(context.Context) error) error {
	ctx, end := o.start(ctx, op)
	return end(f(ctx))
}

// Store is a Backend whose calls are measured and traced. It defines
// every method of Backend itself rather than embedding the backend, so
// that a method added to a store interface does not compile until it is
// wrapped here; the few left unmeasured are in unmeasured.go.
type Store struct {
	writer
	b Backend
}

// New wraps b, recording every call in rec.
func New(b Backend, rec Recorder) *Store {
	o := &observer{rec: rec, system: attribute.String(tracing.DBSystemKey, dbSystems[b.Traits().Backend])}
	return &Store{writer: writer{w: b, o: o}, b: b}
}

var (
	_ store.Store       = (*Store)(nil)
	_ store.AuditLog    = (*Store)(nil)
	_ store.Bans        = (*Store)(nil)
	_ store.PoolStatser = (*Store)(nil)
	_ store.Migrator    = (*Store)(nil)
)

// Operations returns every operation name the wrapper records: the
// snake_case names of the methods of the measured interfaces. Metrics use
// it to create their series at zero.
func Operations() []string {
	var ops []string
	for _, t := range measured {
		for i := range t.NumMethod() {
			ops = append(ops, OperationName(t.Method(i).Name))
		}
	}
	return ops
}

// measured are the interfaces whose every method the wrapper measures:
// all of Backend but the methods in unmeasured.go.
// TestEveryBackendMethodIsMeasured holds the two lists to Backend, and
// TestConformanceThroughTheWrapper requires each operation to be recorded.
var measured = []reflect.Type{
	reflect.TypeFor[store.Reader](), reflect.TypeFor[store.Writer](), reflect.TypeFor[store.Idempotency](),
	reflect.TypeFor[store.EventLog](), reflect.TypeFor[store.Maintenance](), reflect.TypeFor[store.StockReader](),
	reflect.TypeFor[store.Social](), reflect.TypeFor[store.PendingDevices](), reflect.TypeFor[store.Rejoins](),
	reflect.TypeFor[store.WelcomeKeys](), reflect.TypeFor[store.PushTokens](),
	reflect.TypeFor[store.AuditLog](), reflect.TypeFor[store.Bans](), reflect.TypeFor[store.ChatRequests](),
}

// OperationName is the operation name of a store method: its name in
// snake_case ("AppendMessage" is "append_message", "MessagesByID"
// "messages_by_id").
func OperationName(method string) string {
	rs := []rune(method)
	var b strings.Builder
	for i, r := range rs {
		// A word begins at an upper-case letter after a lower-case one, or
		// at the last capital of an acronym ("ByID" is "by_id").
		if i > 0 && unicode.IsUpper(r) && (unicode.IsLower(rs[i-1]) || i+1 < len(rs) && unicode.IsLower(rs[i+1])) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}
