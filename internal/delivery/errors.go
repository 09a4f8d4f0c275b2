package delivery

import (
	"context"
	"errors"
	"net/http"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// Sentinel errors for the outcomes the service's rules produce. mapError
// turns them (and the store's sentinels) into lexicon error names.
var (
	// ErrNotAdmin means the caller is a member but not an admin.
	ErrNotAdmin = errors.New("delivery: caller is not an admin")
	// ErrCannotRemoveSelf means removeMember named the caller.
	ErrCannotRemoveSelf = errors.New("delivery: cannot remove self")
	// ErrLastMember means the caller is the conversation's last member.
	ErrLastMember = errors.New("delivery: last member")
	// ErrTargetNotMember means the member to remove is not in the
	// conversation.
	ErrTargetNotMember = errors.New("delivery: target is not a member")
	// ErrTooManyMembers means a change would exceed Config.MaxMembers.
	ErrTooManyMembers = errors.New("delivery: too many members")
	// ErrInvalidMessage means MLS bytes did not parse, were of the wrong
	// kind, or named another group.
	ErrInvalidMessage = errors.New("delivery: invalid MLS message")
	// ErrEpochMismatch means a declared epoch differs from the one in the
	// MLS framing.
	ErrEpochMismatch = errors.New("delivery: epoch does not match the MLS framing")
	// ErrFutureEpoch means an application message was sent for an epoch the
	// conversation has not reached.
	ErrFutureEpoch = errors.New("delivery: message for a future epoch")
	// ErrInvalidKeyPackage means a key package did not parse or verify, or
	// was already expired.
	ErrInvalidKeyPackage = errors.New("delivery: invalid key package")
	// ErrIdentityMismatch means a key package's credential is not the
	// caller's DID or one of the caller's devices.
	ErrIdentityMismatch = errors.New("delivery: key package identity is not the caller")
	// ErrInvalidCipherSuite means an unknown or mismatched cipher suite.
	ErrInvalidCipherSuite = errors.New("delivery: invalid cipher suite")
	// ErrExpirationTooFar means a declared key package expiry lies beyond
	// Config.MaxKeyPackageLifetime.
	ErrExpirationTooFar = errors.New("delivery: expiration too far in the future")
	// ErrWelcomeNotFound means no Welcome is held for the caller.
	ErrWelcomeNotFound = errors.New("delivery: no welcome for caller")
	// ErrGroupInfoUnavailable means no GroupInfo is stored yet.
	ErrGroupInfoUnavailable = errors.New("delivery: group info unavailable")
	// ErrInvalidGroupInfo means GroupInfo bytes did not parse or named
	// another group or epoch.
	ErrInvalidGroupInfo = errors.New("delivery: invalid group info")
	// ErrInvalidCursor means a sinceSeq beyond the conversation's last seq.
	ErrInvalidCursor = errors.New("delivery: invalid cursor")
	// ErrForbidden means the caller may not read another account's data.
	ErrForbidden = errors.New("delivery: forbidden")
)

// fnError marks an error returned by the function run inside
// Store.Idempotent, so mapError can tell a reused key (the store's
// ErrConflict) from a conflict the write itself hit.
type fnError struct{ err error }

func (e *fnError) Error() string { return e.err.Error() }
func (e *fnError) Unwrap() error { return e.err }

// mapError is the one place domain and store errors become XRPC errors.
// Some lexicons name an outcome differently; nsid selects those names.
func (s *Service) mapError(nsid string, err error) *xrpc.Error {
	var xe *xrpc.Error
	if errors.As(err, &xe) {
		return xe
	}
	e := func(status int, name, msg string) *xrpc.Error {
		return &xrpc.Error{Status: status, Name: name, Message: msg, Err: err}
	}
	var inner *fnError
	inFn := errors.As(err, &inner)
	groupInfo := nsid == Namespace+"getGroupInfo" || nsid == Namespace+"updateGroupInfo"
	if xe, ok := chatRequestError(nsid, err); ok {
		return xe
	}
	if status, name, msg, ok := socialError(nsid, err); ok {
		return e(status, name, msg)
	}
	if status, name, msg, ok := blockError(nsid, err); ok {
		xe := e(status, name, msg)
		if status == http.StatusServiceUnavailable {
			xe.Header = http.Header{"Retry-After": {"5"}}
		}
		return xe
	}
	if xe := recoveryError(nsid, err, e); xe != nil && !unavailable(err) {
		return xe
	}
	switch {
	case errors.Is(err, store.ErrOutcomeUnknown):
		return unavailableError(err, "the database connection was lost while the write was committing: it may or may not have been applied; retry the same request (same msgId or idempotencyKey) to learn which, it is never applied twice")
	case unavailable(err):
		return unavailableError(err, "service temporarily unavailable; nothing was written")
	case errors.Is(err, store.ErrConflict) && !inFn:
		return e(http.StatusUnprocessableEntity, "IdempotencyKeyReused", "idempotency key already used for a different request")
	case errors.Is(err, store.ErrNotFound) && groupInfo:
		return e(http.StatusNotFound, "NotFound", "conversation not found")
	case errors.Is(err, store.ErrNotMember) && groupInfo:
		return e(http.StatusForbidden, "Unauthorized", "caller is not a member of the conversation")
	case errors.Is(err, store.ErrNotFound) && (nsid == Namespace+"deleteDevice" || nsid == Namespace+"registerDeviceToken"):
		return e(http.StatusNotFound, "DeviceNotFound", "device not found")
	case errors.Is(err, store.ErrNotFound):
		return e(http.StatusNotFound, "ConvoNotFound", "conversation not found")
	case errors.Is(err, store.ErrNotMember):
		return e(http.StatusForbidden, "NotMember", "caller is not a member of the conversation")
	case errors.Is(err, ErrTargetNotMember):
		return e(http.StatusNotFound, "NotMember", "target is not a member of the conversation")
	case errors.Is(err, ErrNotAdmin):
		return e(http.StatusForbidden, "NotAdmin", "caller is not an admin of the conversation")
	case errors.Is(err, ErrCannotRemoveSelf):
		return e(http.StatusBadRequest, "CannotRemoveSelf", "use leaveConvo to remove yourself")
	case errors.Is(err, ErrLastMember):
		return e(http.StatusBadRequest, "LastMember", "cannot leave as the last member")
	case errors.Is(err, store.ErrAlreadyMember):
		return e(http.StatusConflict, "AlreadyMember", "one or more DIDs are already members")
	case errors.Is(err, ErrTooManyMembers):
		return e(http.StatusBadRequest, "TooManyMembers", "the conversation would exceed its member limit")
	case errors.Is(err, store.ErrKeyPackageNotFound):
		return e(http.StatusBadRequest, "KeyPackageNotFound", "key package not found for one or more members")
	case errors.Is(err, store.ErrStaleEpoch):
		return e(http.StatusConflict, "StaleEpoch", "the conversation is no longer at this epoch: another commit won")
	case errors.Is(err, store.ErrFutureEpoch), errors.Is(err, ErrFutureEpoch):
		return e(http.StatusConflict, "EpochMismatch", "message epoch is ahead of the conversation's epoch")
	case errors.Is(err, ErrEpochMismatch):
		return e(http.StatusBadRequest, "EpochMismatch", "declared epoch does not match the MLS message")
	case errors.Is(err, ErrInvalidGroupInfo):
		return e(http.StatusBadRequest, "InvalidGroupInfo", "GroupInfo is malformed or names another group or epoch")
	case errors.Is(err, ErrInvalidMessage):
		return e(http.StatusBadRequest, "InvalidMessage", "MLS message is malformed, of the wrong kind, or for another group")
	case errors.Is(err, ErrInvalidCipherSuite):
		return e(http.StatusBadRequest, "InvalidCipherSuite", "cipher suite is not supported or does not match")
	case errors.Is(err, ErrIdentityMismatch):
		return e(http.StatusForbidden, "InvalidKeyPackage", "key package credential identity is not the caller's DID or device")
	case errors.Is(err, ErrInvalidKeyPackage):
		return e(http.StatusBadRequest, "InvalidKeyPackage", "key package is malformed, unverifiable or expired")
	case errors.Is(err, ErrExpirationTooFar):
		return e(http.StatusBadRequest, "ExpirationTooFar", "expiration is too far in the future")
	case errors.Is(err, store.ErrTooManyKeyPackages):
		return e(http.StatusBadRequest, "TooManyKeyPackages", "the device holds the maximum number of key packages")
	case errors.Is(err, store.ErrTooManyDevices):
		return e(http.StatusBadRequest, "TooManyDevices", "the account has the maximum number of devices")
	case errors.Is(err, ErrWelcomeNotFound):
		return e(http.StatusNotFound, "WelcomeNotFound", "no Welcome message available for this caller")
	case errors.Is(err, ErrGroupInfoUnavailable):
		return e(http.StatusNotFound, "GroupInfoUnavailable", "GroupInfo not yet stored for this conversation")
	case errors.Is(err, ErrInvalidCursor), errors.Is(err, store.ErrInvalidCursor):
		return e(http.StatusBadRequest, "InvalidCursor", "the pagination cursor is invalid")
	case errors.Is(err, ErrForbidden):
		return e(http.StatusForbidden, "Unauthorized", "callers may read only their own key package data")
	case errors.Is(err, store.ErrConflict) && nsid == Namespace+"createConvo":
		return e(http.StatusConflict, "ConvoAlreadyExists", "a conversation with this groupId exists")
	case errors.Is(err, store.ErrConflict):
		return e(http.StatusConflict, "Conflict", "the request conflicts with existing data")
	}
	return e(http.StatusInternalServerError, "InternalServerError", "internal error")
}

// unavailableError is the 503 ServiceUnavailable, with Retry-After, of a
// store that cannot take the request now.
func unavailableError(err error, msg string) *xrpc.Error {
	return &xrpc.Error{Status: http.StatusServiceUnavailable, Name: "ServiceUnavailable", Message: msg,
		Header: http.Header{"Retry-After": {"1"}}, Err: err}
}

// unavailable reports errors that are nobody's fault and worth retrying:
// the store's ErrUnavailable (each backend classifies its own failures:
// lost or refused connections, busy databases, shutdowns) and a deadline or
// cancellation of the request itself.
func unavailable(err error) bool {
	return errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
