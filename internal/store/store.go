// Package store defines the storage the MLS delivery service runs on: the
// Store interface, its record types and the sentinel errors callers branch
// on. Implementations live in store/sqlite (the embedded default) and
// store/postgres; store/storetest is the conformance suite both must pass.
//
// Store is composed of small interfaces, as certmagic composes Storage and
// Locker, and each consumer takes only the slice it uses: Reader, Writer,
// Idempotency (internal/delivery), EventLog (internal/realtime, with four
// reads), Maintenance = Locker + Purger (internal/retention), the
// device and recovery state PendingDevices, Rejoins and WelcomeKeys and
// the chat requests ChatRequests (internal/delivery), and StockReader (the key-package stock metric,
// internal/metrics). AuditLog
// (internal/audit) and Bans (internal/ban) are implemented by both
// backends beside Store, not part of it: their consumers assert them. A
// backend states its properties as Traits rather than letting consumers
// infer them from its configuration.
//
// Failures are classified by the backend that sees them: a database that
// cannot take a call now is ErrUnavailable, and a write whose COMMIT was
// cut off is ErrOutcomeUnknown, which every write's idempotency key
// resolves on retry.
//
// The store holds routing state and ciphertext only. It keeps no sender for
// messages or commits, truncates every time it records (receipt, activity,
// joins, claims, confirmations) to BucketInterval, keys idempotency records
// by a hash rather than the caller's DID, and its event rows reference
// messages instead of copying them.
//
// Domain rules (who may send, which epoch a message may carry, MLS parsing)
// belong to the delivery layer. The store offers the atomic primitives those
// rules need: gapless per-conversation sequence numbers, epoch
// compare-and-swap, one-time key package hand-out and idempotent writes.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Implementations wrap them with context; test with
// errors.Is.
var (
	// ErrNotFound means the addressed record (usually the conversation) does
	// not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrNotMember means the conversation exists but the DID is not an active
	// member of it.
	ErrNotMember = errors.New("store: not a member")
	// ErrAlreadyMember means an active member row already exists.
	ErrAlreadyMember = errors.New("store: already a member")
	// ErrStaleEpoch means the conversation is no longer at the epoch the
	// write was made for: another commit won the compare-and-swap.
	ErrStaleEpoch = errors.New("store: stale epoch")
	// ErrFutureEpoch means a message declares an epoch the conversation has
	// not reached.
	ErrFutureEpoch = errors.New("store: future epoch")
	// ErrConflict means a unique identifier is already taken by a different
	// record (conversation id, message id, key package ref, idempotency key
	// reused with a different request).
	ErrConflict = errors.New("store: conflict")
	// ErrKeyPackageNotFound means a key package ref named by a new member is
	// unknown for that member.
	ErrKeyPackageNotFound = errors.New("store: key package not found")
	// ErrTooManyKeyPackages means the device already holds the maximum number
	// of available key packages.
	ErrTooManyKeyPackages = errors.New("store: too many key packages")
	// ErrTooManyDevices means the owner already has the maximum number of
	// devices.
	ErrTooManyDevices = errors.New("store: too many devices")
	// ErrDeviceExists means a device with the same UUID is already
	// registered; RegisterDevice returns the existing device with it.
	ErrDeviceExists = errors.New("store: device already registered")
	// ErrInvalidCursor means a pagination cursor could not be decoded.
	ErrInvalidCursor = errors.New("store: invalid cursor")
	// ErrUnavailable means the database could not take the request now:
	// the connection was lost or refused, the database was locked past the
	// busy timeout, out of connections, or shutting down. A retry later
	// may succeed. Unless the error is also ErrOutcomeUnknown, nothing was
	// written.
	ErrUnavailable = errors.New("store: unavailable")
	// ErrOutcomeUnknown means the connection was lost after a write's
	// commit was sent: the write may or may not have been applied. It
	// matches ErrUnavailable too. Every write is idempotent by its key (a
	// message's msgId, an idempotency key), so repeating the same write
	// once the database is back resolves it: it either finds the first
	// attempt's result or applies the write now, never twice.
	ErrOutcomeUnknown = fmt.Errorf("store: outcome unknown: %w", ErrUnavailable)
)

// Role is a member's role in a conversation.
type Role string

// Roles. Admin status is per user: SetRole applies it to every device.
const (
	RoleMember    Role = "member"
	RoleModerator Role = "moderator"
	RoleAdmin     Role = "admin"
)

// EventKind says what an event row points at.
type EventKind string

// Event kinds.
const (
	// EventMessage references an application message by MessageID.
	EventMessage EventKind = "message"
	// EventCommit references a commit message by MessageID; Epoch is the
	// epoch the commit advanced the conversation to.
	EventCommit EventKind = "commit"
	// EventMembership says the member list changed; Epoch is the
	// conversation epoch after the change.
	EventMembership EventKind = "membership"
)

// BucketInterval is the granularity of every activity time the store
// records (message receipt, last activity, event creation).
const BucketInterval = 2 * time.Second

// Bucket truncates t to BucketInterval, in UTC.
func Bucket(t time.Time) time.Time { return t.UTC().Truncate(BucketInterval) }

// Convo is a conversation's routing state.
type Convo struct {
	// ID is the hex MLS group id.
	ID          string
	CreatorDID  string
	CipherSuite string
	Name        string
	Description string
	// Epoch is the current MLS epoch, advanced only by commits.
	Epoch int64
	// LastSeq is the highest sequence number assigned so far (the counter,
	// not a scan; messages may since have been purged).
	LastSeq        int64
	CreatedAt      time.Time
	LastActivityAt time.Time
}

// Member is one device (or, for device-less clients, one user) in a
// conversation.
type Member struct {
	ConvoID string
	// MemberDID is the MLS credential identity: did:plc:user#device, or the
	// bare user DID for device-less members.
	MemberDID string
	// UserDID is the account DID without device suffix.
	UserDID  string
	DeviceID string
	Role     Role
	JoinedAt time.Time
	// LeftAt is zero for active members.
	LeftAt time.Time
	// Removed is true on the rows of an account another member removed
	// from the conversation (Departure Removed) until it is added back.
	Removed bool
}

// NewMember describes a member to add.
type NewMember struct {
	MemberDID string
	UserDID   string
	DeviceID  string
	// Role defaults to RoleMember.
	Role Role
	// KeyPackageRef, when set, is the ref of the key package used to add the
	// member. The package is marked consumed in this conversation in the same
	// transaction; ErrKeyPackageNotFound if the owner has no such package.
	KeyPackageRef string
}

// WithDefaults returns m with its defaults filled in: RoleMember for an
// empty Role, and MemberDID for an empty UserDID (a member without a
// device is its own user).
func (m NewMember) WithDefaults() NewMember {
	if m.Role == "" {
		m.Role = RoleMember
	}
	if m.UserDID == "" {
		m.UserDID = m.MemberDID
	}
	return m
}

// NewWelcome is a Welcome message to hold for its recipients.
type NewWelcome struct {
	Data []byte
	// Recipients are the member DIDs (device or user) the Welcome is for.
	Recipients []string
}

// Welcome is a held Welcome message.
type Welcome struct {
	ID        int64
	ConvoID   string
	Epoch     int64
	Data      []byte
	CreatedAt time.Time
}

// NewConvo describes a conversation to create.
type NewConvo struct {
	ID          string
	CreatorDID  string
	CipherSuite string
	Name        string
	Description string
	// Epoch is the starting epoch (the client's epoch after creating the
	// group and adding the initial members).
	Epoch int64
	// Members includes the creator's own device(s); the caller decides roles.
	Members   []NewMember
	Welcome   *NewWelcome
	GroupInfo []byte
}

// NewMessage is an application message to append.
type NewMessage struct {
	ConvoID string
	// MsgID is the client's message id, unique within the conversation.
	MsgID      string
	Epoch      int64
	Ciphertext []byte
	PaddedSize int64
	// ExpiresAt is when the message may be purged regardless of retention;
	// zero for none.
	ExpiresAt time.Time
	// Member, when set, makes the append conditional on an active
	// membership, checked with the append itself (ErrNotMember when there
	// is none). It is never stored.
	Member *MemberCheck
}

// MemberCheck names the memberships that allow a write: an active member
// row whose member DID is one of MemberDIDs, or, when AnyRowOf is set, any
// active row of that user DID.
type MemberCheck struct {
	MemberDIDs []string
	AnyRowOf   string
}

// Message is a stored message. It has no sender, by design.
type Message struct {
	ConvoID    string
	Seq        int64
	Epoch      int64
	MsgID      string
	Ciphertext []byte
	PaddedSize int64
	// ReceivedAt is the receive time truncated to BucketInterval.
	ReceivedAt time.Time
	ExpiresAt  time.Time
	// IsCommit reports whether the message is a commit (messageType
	// "commit") rather than an application message.
	IsCommit bool
	// Cursor is the cursor of the message's event. Only AppendMessage sets
	// it, for publishing the event live; reads leave it zero.
	Cursor int64
}

// MessagePage is one page of getMessages.
type MessagePage struct {
	Messages []Message
	// ConvoLastSeq is the conversation's sequence counter, read from the
	// counter row (no scan), for gap information.
	ConvoLastSeq int64
	// ConvoEpoch is the conversation's current epoch.
	ConvoEpoch int64
}

// NewCommit is an MLS commit for a conversation at Epoch.
type NewCommit struct {
	// Epoch is the epoch the commit was created in. The write succeeds only
	// while the conversation is still at Epoch, and moves it to Epoch+1.
	Epoch int64
	// MsgID identifies the commit in the message stream; defaults to
	// "commit-<Epoch>" (unique, as only one commit wins per epoch).
	MsgID      string
	Data       []byte
	PaddedSize int64
	ExpiresAt  time.Time
	// GroupInfo, if set, is stored as the group info of Epoch+1.
	GroupInfo []byte
	// Welcome, if set, is held for the members the commit adds.
	Welcome *NewWelcome
}

// Commit is a stored commit.
type Commit struct {
	ConvoID string
	// Epoch is the epoch the commit was created in (it advanced the
	// conversation to Epoch+1).
	Epoch     int64
	Seq       int64
	MsgID     string
	Data      []byte
	CreatedAt time.Time
}

// Change is the outcome of a membership change or commit.
type Change struct {
	// Epoch is the conversation epoch after the change.
	Epoch int64
	// Seq is the commit's sequence number, or 0 without a commit.
	Seq int64
	// ReceivedAt is the commit message's receive time truncated to
	// BucketInterval, as stored; zero without a commit.
	ReceivedAt time.Time
	// Cursors are the event cursors written, in order.
	Cursors []int64
}

// GroupInfo is the cached GroupInfo of a conversation.
type GroupInfo struct {
	ConvoID   string
	Epoch     int64
	Data      []byte
	UpdatedAt time.Time
}

// KeyPackageSHA256 is the lexicon's keyPackageHash of a key package: the
// SHA-256 of its bytes, lower-case hex. Stores keep it beside the ref
// (RFC 9420's KeyPackageRef) so that a package can be named by either.
func KeyPackageSHA256(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// KeyPackage is a published MLS key package.
type KeyPackage struct {
	// Ref is the KeyPackageRef (hex), unique across the store.
	Ref         string
	OwnerDID    string
	DeviceID    string
	CipherSuite string
	Data        []byte
	CreatedAt   time.Time
	ExpiresAt   time.Time
	// LastResort packages are handed out without being consumed, and only
	// when the device has no normal package left. A device keeps at most one
	// per cipher suite; publishing another replaces it.
	LastResort bool
	ConsumedAt time.Time
	// UsedInConvo is set when a conversation names the package as the one
	// that added its owner.
	UsedInConvo string
}

// KeyPackageStats summarises an owner's key packages.
type KeyPackageStats struct {
	// Available counts unconsumed, unexpired, non-last-resort packages.
	Available   int
	LastResort  int
	Total       int
	Consumed    int
	Consumed24h int
	Consumed7d  int
	// OldestExpiry is the earliest expiry among available packages.
	OldestExpiry  time.Time
	ByCipherSuite []CipherSuiteStats
}

// CipherSuiteStats is the per-suite part of KeyPackageStats.
type CipherSuiteStats struct {
	CipherSuite string
	Available   int
	Consumed    int
}

// KeyPackageSync is the outcome of SyncKeyPackages.
type KeyPackageSync struct {
	Deleted   []string
	Remaining []string
}

// Device is a registered device of an account.
type Device struct {
	OwnerDID     string
	DeviceID     string
	Name         string
	UUID         string
	SignatureKey []byte
	RegisteredAt time.Time
	LastSeenAt   time.Time
	// KeyPackages counts the device's available key packages (listings only).
	KeyPackages int
}

// UserConvo is one conversation of a user, for getExpectedConversations.
type UserConvo struct {
	ConvoID        string
	Name           string
	MemberCount    int
	LastActivityAt time.Time
	// MemberDIDs are the user's active member rows in the conversation.
	MemberDIDs []string
}

// Event is a minimal event row: which conversation, what kind, and a
// reference. It never carries ciphertext or a sender.
type Event struct {
	// Cursor increases with commit order within a conversation and is valid
	// across nodes and restarts; a purged cursor is never reused.
	//
	// Across conversations it is one sequence, but on PostgreSQL it is drawn
	// before commit: an event of conversation B may become visible after an
	// event of A with a higher cursor. A reader following several
	// conversations must therefore keep a position per conversation (or
	// re-read with overlap and drop what it has seen per conversation). On
	// SQLite cursor order is global commit order.
	Cursor    int64
	ConvoID   string
	Kind      EventKind
	MessageID string
	Epoch     int64
	CreatedAt time.Time
}

// EventHorizon bounds the retained event stream.
type EventHorizon struct {
	// Oldest is the smallest cursor that may still be retained: every event
	// with a cursor below it has been purged. A resume cursor c is complete
	// iff c+1 >= Oldest.
	Oldest int64
	// Latest is the highest cursor written so far (0 if none).
	Latest int64
}

// IdempotencyKey scopes an idempotency key to its caller and endpoint.
type IdempotencyKey struct {
	CallerDID string
	NSID      string
	Key       string
}

// Writer is the set of writes that can run alone (each in its own
// transaction) or inside Store.Idempotent.
type Writer interface {
	// CreateConvo creates the conversation with its members, Welcome, group
	// info and a membership event, in one transaction. ErrConflict if the id
	// exists.
	CreateConvo(ctx context.Context, c NewConvo) (Convo, error)
	// AppendMessage assigns the next seq and stores the message and its
	// event. ErrNotFound for an unknown conversation, then ErrNotMember if
	// m.Member is set and matches no active membership, ErrFutureEpoch if
	// m.Epoch exceeds the conversation's epoch, ErrConflict if MsgID is
	// taken in the conversation.
	AppendMessage(ctx context.Context, m NewMessage) (Message, error)
	// AppendCommit advances the epoch by compare-and-swap and stores the
	// commit, its group info and Welcome. ErrStaleEpoch for the loser.
	AppendCommit(ctx context.Context, convoID string, c NewCommit) (Change, error)
	// AddMembers adds members, optionally with the commit that adds them,
	// atomically. ErrAlreadyMember if any is an active member.
	AddMembers(ctx context.Context, convoID string, members []NewMember, c *NewCommit) (Change, error)
	// RemoveMembers marks as left every active member whose member DID or
	// user DID is in dids, optionally with the commit that removes them;
	// how says whether they left or were removed (see Departure).
	// ErrNotMember if none matched.
	RemoveMembers(ctx context.Context, convoID string, dids []string, how Departure, c *NewCommit) (Change, error)
	// SetRole sets the role of every device of userDID in the conversation.
	SetRole(ctx context.Context, convoID, userDID string, role Role) error
	// PutGroupInfo stores group info for the conversation's current epoch;
	// ErrStaleEpoch if epoch is not the current one.
	PutGroupInfo(ctx context.Context, convoID string, epoch int64, data []byte) error
	// ConfirmWelcome marks the conversation's Welcomes for these recipients
	// consumed. ErrNotFound if there was none.
	ConfirmWelcome(ctx context.Context, convoID string, recipients []string) error
	// PutKeyPackage stores a key package. A device holds at most
	// maxPerDevice available normal packages (ErrTooManyKeyPackages).
	// Re-publishing a ref the owner already has is a no-op; a ref owned by
	// someone else is ErrConflict.
	PutKeyPackage(ctx context.Context, kp KeyPackage, maxPerDevice int) error
	// ClaimKeyPackages hands out, for every device of every owner, one key
	// package of the suite (empty: any suite), consuming it. A device with
	// no normal package left gets its last-resort package, unconsumed.
	// Never two packages for one device; owners with none are absent.
	// Devices are those named by the owner's key packages, registered or
	// not (packages published without a device share the device "").
	ClaimKeyPackages(ctx context.Context, ownerDIDs []string, cipherSuite string) ([]KeyPackage, error)
	// SyncKeyPackages deletes the device's available packages whose refs are
	// not in keep, and reports what was deleted and what remains.
	SyncKeyPackages(ctx context.Context, ownerDID, deviceID string, keep []string) (KeyPackageSync, error)
	// RegisterDevice registers a device. ErrTooManyDevices past maxDevices;
	// a known UUID returns the existing device with ErrDeviceExists.
	RegisterDevice(ctx context.Context, d Device, maxDevices int) (Device, error)
	// DeleteDevice deletes a device and its key packages, returning how many
	// packages went. ErrNotFound if the owner has no such device.
	DeleteDevice(ctx context.Context, ownerDID, deviceID string) (int, error)
	// TouchDevice records (bucketed) that the device was seen.
	TouchDevice(ctx context.Context, ownerDID, deviceID string) error
}

// Reader is the reads of conversations, members, messages, Welcomes,
// group info, key packages and devices: everything a request handler looks
// up outside the event stream.
type Reader interface {
	// Convo returns a conversation; ErrNotFound if unknown.
	Convo(ctx context.Context, id string) (Convo, error)
	// ConvosForUser returns the conversations where userDID has an active
	// member row, newest activity first. after is the previous page's
	// cursor ("" for the first page; ErrInvalidCursor if malformed); next is
	// "" after the last page. The keyset (bucketed activity, id) is stable:
	// only a conversation whose activity changes mid-walk can move between
	// pages.
	ConvosForUser(ctx context.Context, userDID, after string, limit int) (convos []Convo, next string, err error)
	// Members returns the members of the conversations, active only unless
	// includeLeft, keyed by conversation id.
	Members(ctx context.Context, convoIDs []string, includeLeft bool) (map[string][]Member, error)
	// ActiveMemberCount counts the conversation's active member rows, one
	// per device (an account with two devices counts twice): the length of
	// Members(ctx, []string{convoID}, false)[convoID], without reading the
	// rows. 0 for an unknown conversation.
	ActiveMemberCount(ctx context.Context, convoID string) (int, error)
	// ActiveMember returns the active member row of memberDID. ErrNotFound
	// if the conversation is unknown, ErrNotMember if the DID is not an
	// active member.
	ActiveMember(ctx context.Context, convoID, memberDID string) (Member, error)
	// UserConvos lists every conversation userDID is an active member of.
	UserConvos(ctx context.Context, userDID string) ([]UserConvo, error)
	// Messages returns up to limit messages with seq > sinceSeq, ascending.
	Messages(ctx context.Context, convoID string, sinceSeq int64, limit int) (MessagePage, error)
	// Message returns one message by its id; ErrNotFound if absent.
	Message(ctx context.Context, convoID, msgID string) (Message, error)
	// MessagesByID returns the conversation's messages with these ids, in
	// seq order, skipping ids that are absent (purged): one query for an
	// event replay.
	MessagesByID(ctx context.Context, convoID string, msgIDs []string) ([]Message, error)
	// Commits returns the commits created in epochs fromEpoch..toEpoch
	// inclusive (toEpoch < 0: up to the current epoch), ascending.
	Commits(ctx context.Context, convoID string, fromEpoch, toEpoch int64) ([]Commit, error)
	// GroupInfo returns the stored group info; ErrNotFound if none.
	GroupInfo(ctx context.Context, convoID string) (GroupInfo, error)
	// Welcome returns the newest unconsumed Welcome of the conversation for
	// any of recipients; ErrNotFound if none.
	Welcome(ctx context.Context, convoID string, recipients []string) (Welcome, error)
	// KeyPackageStats counts ownerDID's key packages (cipherSuite "" for
	// all suites).
	KeyPackageStats(ctx context.Context, ownerDID, cipherSuite string) (KeyPackageStats, error)
	// ConsumedKeyPackages pages through ownerDID's consumed packages, most
	// recent first.
	ConsumedKeyPackages(ctx context.Context, ownerDID, after string, limit int) (pkgs []KeyPackage, next string, err error)
	// AvailableKeyPackageRefs lists the refs of a device's available
	// packages (normal and last-resort).
	AvailableKeyPackageRefs(ctx context.Context, ownerDID, deviceID string) ([]string, error)
	// KeyPackageByHash returns ownerDID's package named by hash (lower-case
	// hex): its KeyPackageRef, or the SHA-256 of its bytes (the lexicon's
	// keyPackageHash; see KeyPackageSHA256). Consumed and expired packages
	// are found too. ErrKeyPackageNotFound if ownerDID has none.
	KeyPackageByHash(ctx context.Context, ownerDID, hash string) (KeyPackage, error)
	// Devices lists ownerDID's devices with their available package counts.
	Devices(ctx context.Context, ownerDID string) ([]Device, error)
}

// Idempotency runs writes under an idempotency key.
type Idempotency interface {
	// Idempotent runs fn and records its response under key in one
	// transaction. If key already holds a response, fn does not run and the
	// recorded response is returned with replayed true. A request hash that
	// differs from the recorded one is ErrConflict. If fn fails, nothing is
	// recorded and nothing fn wrote persists. fn must write only through tx
	// (using the Store itself from fn can deadlock), and must return any
	// error a tx method gives it: after one, the transaction is unusable.
	//
	// An ErrOutcomeUnknown from Idempotent is resolved by calling it again
	// with the same key and request: it then either replays the recorded
	// response or, if nothing was committed, runs fn.
	Idempotent(ctx context.Context, key IdempotencyKey, requestHash []byte, fn func(ctx context.Context, tx Writer) ([]byte, error)) (response []byte, replayed bool, err error)
}

// EventLog is the stream of event rows that realtime subscriptions read.
type EventLog interface {
	// EventsAfter returns up to limit events of the conversations with
	// cursor > after, in cursor order. See Event.Cursor before resuming
	// several conversations from one cursor.
	EventsAfter(ctx context.Context, convoIDs []string, after int64, limit int) ([]Event, error)
	// EventHorizon reports the oldest retained and the latest cursor.
	EventHorizon(ctx context.Context) (EventHorizon, error)
}

// Locker takes named locks held across every node sharing the store.
type Locker interface {
	// TryLock takes a named lock held across all nodes sharing the store,
	// without waiting. ok is false if someone else holds it. unlock must be
	// called once when ok.
	TryLock(ctx context.Context, name string) (unlock func(), ok bool, err error)
}

// Purger deletes rows past their retention. Each call deletes in bounded
// transactions and may be interrupted between them.
type Purger interface {
	// PurgeMessages deletes messages received more than olderThan ago, or
	// past their expiry, with their commit rows.
	PurgeMessages(ctx context.Context, olderThan time.Duration) (int64, error)
	// PurgeEvents deletes the prefix of the event stream older than
	// olderThan and advances the horizon.
	PurgeEvents(ctx context.Context, olderThan time.Duration) (int64, error)
	// PurgeWelcomes deletes Welcomes consumed more than consumedFor ago, and
	// unconsumed ones older than unconsumedFor.
	PurgeWelcomes(ctx context.Context, consumedFor, unconsumedFor time.Duration) (int64, error)
	// PurgeKeyPackages deletes expired packages, packages consumed more than
	// consumedFor ago, and each device's oldest available normal packages
	// beyond maxPerDevice.
	PurgeKeyPackages(ctx context.Context, consumedFor time.Duration, maxPerDevice int) (int64, error)
	// PurgeIdempotency deletes idempotency records older than olderThan.
	PurgeIdempotency(ctx context.Context, olderThan time.Duration) (int64, error)
	// PurgePendingAdditions deletes pending device additions (and so
	// rejoin requests) past their expiry.
	PurgePendingAdditions(ctx context.Context) (int64, error)
	// PurgeChatRequests closes as expired the pending chat requests past
	// their expiry, deleting their held messages and sealed previews, and
	// deletes requests closed more than closedFor ago.
	PurgeChatRequests(ctx context.Context, closedFor time.Duration) (int64, error)
}

// Maintenance is what a background worker needs: the purges and the lock
// that keeps one node purging at a time.
type Maintenance interface {
	Locker
	Purger
}

// Traits are a backend's properties that consumers plan around. They are
// stated by the backend, never inferred from its configuration.
type Traits struct {
	// Backend names the implementation ("sqlite", "postgres"): a bounded
	// value, fit for a metric label or an operator message.
	Backend string
	// OrderedCursors is true when event cursors become visible in cursor
	// order (one writer commits them in the order it draws them), so a
	// reader that has seen cursor c has seen every event below c. On a
	// backend without it a lower cursor may become visible later (see
	// Event.Cursor).
	OrderedCursors bool
	// MultiNode is true when several gateway processes may share the
	// store: their locks exclude each other and their wake-ups must cross
	// processes.
	MultiNode bool
}

// Store is the union the backends implement; each consumer takes only the
// slice it uses (Reader, Writer, Idempotency, EventLog, Maintenance,
// PendingDevices, Rejoins, WelcomeKeys, PushTokens, ChatRequests).
// Implementations are safe for concurrent use, from several processes on
// PostgreSQL.
//
// Every method reports a database that cannot take the call now (lost or
// refused connection, locked past the busy timeout, shutting down) as
// ErrUnavailable, and a write whose commit may or may not have been
// applied as ErrOutcomeUnknown.
type Store interface {
	Reader
	Writer
	Idempotency
	EventLog
	Maintenance
	Social
	PendingDevices
	Rejoins
	WelcomeKeys
	StockReader
	PushTokens
	ChatRequests

	// Traits states the backend's properties.
	Traits() Traits
	// Close releases the store's connections.
	Close() error
}
