package observe

import (
	"context"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// CreateChatRequest implements store.ChatRequests.
func (s *Store) CreateChatRequest(ctx context.Context, r store.ChatRequest, held []store.HeldMessage, blockHash []byte) (store.ChatRequest, error) {
	return call(ctx, s.o, "create_chat_request", func(ctx context.Context) (store.ChatRequest, error) {
		return s.b.CreateChatRequest(ctx, r, held, blockHash)
	})
}

// ChatRequest implements store.ChatRequests.
func (s *Store) ChatRequest(ctx context.Context, id string) (store.ChatRequest, error) {
	return call(ctx, s.o, "chat_request", func(ctx context.Context) (store.ChatRequest, error) { return s.b.ChatRequest(ctx, id) })
}

// ChatRequestsFor implements store.ChatRequests.
func (s *Store) ChatRequestsFor(ctx context.Context, recipientDID, status, before string, limit int) ([]store.ChatRequest, error) {
	return call(ctx, s.o, "chat_requests_for", func(ctx context.Context) ([]store.ChatRequest, error) {
		return s.b.ChatRequestsFor(ctx, recipientDID, status, before, limit)
	})
}

// pendingCount is PendingChatRequests' two results as one value.
type pendingCount struct {
	n      int
	latest time.Time
}

// PendingChatRequests implements store.ChatRequests.
func (s *Store) PendingChatRequests(ctx context.Context, recipientDID string) (int, time.Time, error) {
	p, err := call(ctx, s.o, "pending_chat_requests", func(ctx context.Context) (pendingCount, error) {
		n, latest, err := s.b.PendingChatRequests(ctx, recipientDID)
		return pendingCount{n, latest}, err
	})
	return p.n, p.latest, err
}

// closed is CloseChatRequest's two results as one value.
type closed struct {
	r    store.ChatRequest
	held []store.HeldMessage
}

// CloseChatRequest implements store.ChatRequests.
func (s *Store) CloseChatRequest(ctx context.Context, id, status string) (store.ChatRequest, []store.HeldMessage, error) {
	c, err := call(ctx, s.o, "close_chat_request", func(ctx context.Context) (closed, error) {
		r, held, err := s.b.CloseChatRequest(ctx, id, status)
		return closed{r, held}, err
	})
	return c.r, c.held, err
}

// BlockChatSender implements store.ChatRequests.
func (s *Store) BlockChatSender(ctx context.Context, recipientDID, senderDID string, blockHash []byte) (int, error) {
	return call(ctx, s.o, "block_chat_sender", func(ctx context.Context) (int, error) {
		return s.b.BlockChatSender(ctx, recipientDID, senderDID, blockHash)
	})
}

// ChatRequestSettings implements store.ChatRequests.
func (s *Store) ChatRequestSettings(ctx context.Context, did string) (store.ChatRequestSettings, error) {
	return call(ctx, s.o, "chat_request_settings", func(ctx context.Context) (store.ChatRequestSettings, error) {
		return s.b.ChatRequestSettings(ctx, did)
	})
}

// PutChatRequestSettings implements store.ChatRequests.
func (s *Store) PutChatRequestSettings(ctx context.Context, st store.ChatRequestSettings) (store.ChatRequestSettings, error) {
	return call(ctx, s.o, "put_chat_request_settings", func(ctx context.Context) (store.ChatRequestSettings, error) {
		return s.b.PutChatRequestSettings(ctx, st)
	})
}
