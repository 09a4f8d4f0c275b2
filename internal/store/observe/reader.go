package observe

import (
	"context"
	"errors"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// Convo implements store.Reader.
func (s *Store) Convo(ctx context.Context, id string) (store.Convo, error) {
	return call(ctx, s.o, "convo", func(ctx context.Context) (store.Convo, error) { return s.b.Convo(ctx, id) })
}

// ConvosForUser implements store.Reader.
func (s *Store) ConvosForUser(ctx context.Context, userDID, after string, limit int) (convos []store.Convo, next string, err error) {
	ctx, end := s.o.start(ctx, "convos_for_user")
	convos, next, err = s.b.ConvosForUser(ctx, userDID, after, limit)
	return convos, next, end(err)
}

// Members implements store.Reader.
func (s *Store) Members(ctx context.Context, convoIDs []string, includeLeft bool) (map[string][]store.Member, error) {
	return call(ctx, s.o, "members", func(ctx context.Context) (map[string][]store.Member, error) {
		return s.b.Members(ctx, convoIDs, includeLeft)
	})
}

// ActiveMemberCount implements store.Reader.
func (s *Store) ActiveMemberCount(ctx context.Context, convoID string) (int, error) {
	return call(ctx, s.o, "active_member_count", func(ctx context.Context) (int, error) {
		return s.b.ActiveMemberCount(ctx, convoID)
	})
}

// ActiveMember implements store.Reader.
func (s *Store) ActiveMember(ctx context.Context, convoID, memberDID string) (store.Member, error) {
	return call(ctx, s.o, "active_member", func(ctx context.Context) (store.Member, error) {
		return s.b.ActiveMember(ctx, convoID, memberDID)
	})
}

// UserConvos implements store.Reader.
func (s *Store) UserConvos(ctx context.Context, userDID string) ([]store.UserConvo, error) {
	return call(ctx, s.o, "user_convos", func(ctx context.Context) ([]store.UserConvo, error) { return s.b.UserConvos(ctx, userDID) })
}

// Messages implements store.Reader.
func (s *Store) Messages(ctx context.Context, convoID string, sinceSeq int64, limit int) (store.MessagePage, error) {
	return call(ctx, s.o, "messages", func(ctx context.Context) (store.MessagePage, error) {
		return s.b.Messages(ctx, convoID, sinceSeq, limit)
	})
}

// Message implements store.Reader.
func (s *Store) Message(ctx context.Context, convoID, msgID string) (store.Message, error) {
	return call(ctx, s.o, "message", func(ctx context.Context) (store.Message, error) { return s.b.Message(ctx, convoID, msgID) })
}

// MessagesByID implements store.Reader.
func (s *Store) MessagesByID(ctx context.Context, convoID string, msgIDs []string) ([]store.Message, error) {
	return call(ctx, s.o, "messages_by_id", func(ctx context.Context) ([]store.Message, error) {
		return s.b.MessagesByID(ctx, convoID, msgIDs)
	})
}

// Commits implements store.Reader.
func (s *Store) Commits(ctx context.Context, convoID string, fromEpoch, toEpoch int64) ([]store.Commit, error) {
	return call(ctx, s.o, "commits", func(ctx context.Context) ([]store.Commit, error) {
		return s.b.Commits(ctx, convoID, fromEpoch, toEpoch)
	})
}

// GroupInfo implements store.Reader.
func (s *Store) GroupInfo(ctx context.Context, convoID string) (store.GroupInfo, error) {
	return call(ctx, s.o, "group_info", func(ctx context.Context) (store.GroupInfo, error) { return s.b.GroupInfo(ctx, convoID) })
}

// Welcome implements store.Reader.
func (s *Store) Welcome(ctx context.Context, convoID string, recipients []string) (store.Welcome, error) {
	return call(ctx, s.o, "welcome", func(ctx context.Context) (store.Welcome, error) { return s.b.Welcome(ctx, convoID, recipients) })
}

// KeyPackageStats implements store.Reader.
func (s *Store) KeyPackageStats(ctx context.Context, ownerDID, cipherSuite string) (store.KeyPackageStats, error) {
	return call(ctx, s.o, "key_package_stats", func(ctx context.Context) (store.KeyPackageStats, error) {
		return s.b.KeyPackageStats(ctx, ownerDID, cipherSuite)
	})
}

// ConsumedKeyPackages implements store.Reader.
func (s *Store) ConsumedKeyPackages(ctx context.Context, ownerDID, after string, limit int) (pkgs []store.KeyPackage, next string, err error) {
	ctx, end := s.o.start(ctx, "consumed_key_packages")
	pkgs, next, err = s.b.ConsumedKeyPackages(ctx, ownerDID, after, limit)
	return pkgs, next, end(err)
}

// AvailableKeyPackageRefs implements store.Reader.
func (s *Store) AvailableKeyPackageRefs(ctx context.Context, ownerDID, deviceID string) ([]string, error) {
	return call(ctx, s.o, "available_key_package_refs", func(ctx context.Context) ([]string, error) {
		return s.b.AvailableKeyPackageRefs(ctx, ownerDID, deviceID)
	})
}

// KeyPackageByHash implements store.Reader.
func (s *Store) KeyPackageByHash(ctx context.Context, ownerDID, hash string) (store.KeyPackage, error) {
	return call(ctx, s.o, "key_package_by_hash", func(ctx context.Context) (store.KeyPackage, error) {
		return s.b.KeyPackageByHash(ctx, ownerDID, hash)
	})
}

// Devices implements store.Reader.
func (s *Store) Devices(ctx context.Context, ownerDID string) ([]store.Device, error) {
	return call(ctx, s.o, "devices", func(ctx context.Context) ([]store.Device, error) { return s.b.Devices(ctx, ownerDID) })
}

// KeyPackageStock implements store.StockReader.
func (s *Store) KeyPackageStock(ctx context.Context, low int) (store.KeyPackageStock, error) {
	return call(ctx, s.o, "key_package_stock", func(ctx context.Context) (store.KeyPackageStock, error) {
		return s.b.KeyPackageStock(ctx, low)
	})
}

// Idempotent implements store.Idempotency, measured as one operation. fn
// gets the backend's own transaction: consumers assert more of it than
// store.Writer (store.Social), so its writes are not measured one by one.
// An error of fn's own (a request the caller refuses mid-transaction) is
// the caller's outcome, not a failure of the store.
func (s *Store) Idempotent(ctx context.Context, key store.IdempotencyKey, requestHash []byte,
	fn func(ctx context.Context, tx store.Writer) ([]byte, error)) (response []byte, replayed bool, err error) {
	ctx, end := s.o.start(ctx, "idempotent")
	var fnErr error
	response, replayed, err = s.b.Idempotent(ctx, key, requestHash, func(ctx context.Context, tx store.Writer) ([]byte, error) {
		r, err := fn(ctx, tx)
		fnErr = err
		return r, err
	})
	outcome := err
	if fnErr != nil && errors.Is(err, fnErr) && Classify(fnErr) == Internal {
		outcome = nil
	}
	end(outcome)
	return response, replayed, err
}

// EventsAfter implements store.EventLog.
func (s *Store) EventsAfter(ctx context.Context, convoIDs []string, after int64, limit int) ([]store.Event, error) {
	return call(ctx, s.o, "events_after", func(ctx context.Context) ([]store.Event, error) {
		return s.b.EventsAfter(ctx, convoIDs, after, limit)
	})
}

// EventHorizon implements store.EventLog.
func (s *Store) EventHorizon(ctx context.Context) (store.EventHorizon, error) {
	return call(ctx, s.o, "event_horizon", s.b.EventHorizon)
}

// TryLock implements store.Locker. It measures taking the lock, not
// holding it.
func (s *Store) TryLock(ctx context.Context, name string) (unlock func(), ok bool, err error) {
	ctx, end := s.o.start(ctx, "try_lock")
	unlock, ok, err = s.b.TryLock(ctx, name)
	return unlock, ok, end(err)
}

// purge measures one purge.
func (s *Store) purge(ctx context.Context, op string, f func(context.Context) (int64, error)) (int64, error) {
	return call(ctx, s.o, op, f)
}

// PurgeMessages implements store.Purger.
func (s *Store) PurgeMessages(ctx context.Context, olderThan time.Duration) (int64, error) {
	return s.purge(ctx, "purge_messages", func(ctx context.Context) (int64, error) { return s.b.PurgeMessages(ctx, olderThan) })
}

// PurgeEvents implements store.Purger.
func (s *Store) PurgeEvents(ctx context.Context, olderThan time.Duration) (int64, error) {
	return s.purge(ctx, "purge_events", func(ctx context.Context) (int64, error) { return s.b.PurgeEvents(ctx, olderThan) })
}

// PurgeWelcomes implements store.Purger.
func (s *Store) PurgeWelcomes(ctx context.Context, consumedFor, unconsumedFor time.Duration) (int64, error) {
	return s.purge(ctx, "purge_welcomes", func(ctx context.Context) (int64, error) {
		return s.b.PurgeWelcomes(ctx, consumedFor, unconsumedFor)
	})
}

// PurgeKeyPackages implements store.Purger.
func (s *Store) PurgeKeyPackages(ctx context.Context, consumedFor time.Duration, maxPerDevice int) (int64, error) {
	return s.purge(ctx, "purge_key_packages", func(ctx context.Context) (int64, error) {
		return s.b.PurgeKeyPackages(ctx, consumedFor, maxPerDevice)
	})
}

// PurgeIdempotency implements store.Purger.
func (s *Store) PurgeIdempotency(ctx context.Context, olderThan time.Duration) (int64, error) {
	return s.purge(ctx, "purge_idempotency", func(ctx context.Context) (int64, error) { return s.b.PurgeIdempotency(ctx, olderThan) })
}

// PurgePendingAdditions implements store.Purger.
func (s *Store) PurgePendingAdditions(ctx context.Context) (int64, error) {
	return s.purge(ctx, "purge_pending_additions", s.b.PurgePendingAdditions)
}

// PurgeChatRequests implements store.Purger.
func (s *Store) PurgeChatRequests(ctx context.Context, closedFor time.Duration) (int64, error) {
	return s.purge(ctx, "purge_chat_requests", func(ctx context.Context) (int64, error) { return s.b.PurgeChatRequests(ctx, closedFor) })
}
