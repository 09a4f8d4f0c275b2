package push

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// Outcomes of one wake-up, the values of the outcome metric label.
const (
	OutcomeSent         = "sent"
	OutcomeFailed       = "failed"
	OutcomeUnregistered = "unregistered"
	OutcomeUnreadable   = "unreadable"
	OutcomeNoProvider   = "no_provider"
)

// Observer is told each wake-up's outcome, by provider name and one of
// the Outcome constants: bounded labels, no identity.
type Observer interface {
	PushOutcome(provider, outcome string)
}

// Targets is the slice of the store the sender uses.
type Targets interface {
	PushTargets(ctx context.Context, convoIDs []string) ([]store.PushToken, error)
	DeletePushToken(ctx context.Context, ownerDID, deviceID string) (bool, error)
}

// Sender is the worker that drains the Queue and wakes devices.
type Sender struct {
	// Queue is where changed conversations wait.
	Queue *Queue
	// Store resolves conversations to device tokens.
	Store Targets
	// Sealer opens stored tokens.
	Sealer *Sealer
	// Providers send by provider name (ProviderAPNs, ProviderUnifiedPush);
	// a token whose provider is not configured is not sent.
	Providers map[string]Provider
	// Interval is the coalescing window: after a change the sender waits
	// this long, so that every change within it costs each device one
	// wake-up. Zero is 2 s.
	Interval time.Duration
	// Batch bounds the conversations resolved per store query; zero is 256.
	Batch int
	// Concurrency bounds the sends in flight; zero is 8.
	Concurrency int
	// Observer, if set, is told each outcome.
	Observer Observer
	// Logger logs failures, never an identity or token.
	Logger *zap.Logger
}

// Name implements worker.Worker.
func (s *Sender) Name() string { return "push" }

// Run implements worker.Worker: it sends rounds until ctx ends.
func (s *Sender) Run(ctx context.Context) {
	interval := s.Interval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.Queue.Ready():
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s.Flush(ctx)
	}
}

// Flush sends one round: every queued conversation's devices, each device
// once.
func (s *Sender) Flush(ctx context.Context) {
	batch := s.Batch
	if batch <= 0 {
		batch = 256
	}
	seen := make(map[[2]string]bool)
	for s.Queue.Len() > 0 && ctx.Err() == nil {
		targets, err := s.Store.PushTargets(ctx, s.Queue.Take(batch))
		if err != nil {
			s.logger().Warn("push: resolving devices failed; this round's wake-ups are skipped", zap.Error(err))
			continue
		}
		fresh := targets[:0]
		for _, t := range targets {
			k := [2]string{t.OwnerDID, t.DeviceID}
			if !seen[k] {
				seen[k] = true
				fresh = append(fresh, t)
			}
		}
		s.send(ctx, fresh)
	}
}

func (s *Sender) send(ctx context.Context, targets []store.PushToken) {
	n := s.Concurrency
	if n <= 0 {
		n = 8
	}
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, t := range targets {
		p := s.Providers[t.Provider]
		if p == nil {
			s.observe(t.Provider, OutcomeNoProvider)
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			s.observe(t.Provider, s.wake(ctx, p, t))
		}()
	}
	wg.Wait()
}

func (s *Sender) wake(ctx context.Context, p Provider, t store.PushToken) string {
	tok, err := s.Sealer.Open(t.OwnerDID, t.DeviceID, t.Provider, t.Sealed)
	if err != nil {
		// Sealed under another key: it will never open, so it goes.
		s.remove(ctx, t)
		return OutcomeUnreadable
	}
	err = p.Send(ctx, tok)
	switch {
	case err == nil:
		return OutcomeSent
	case errors.Is(err, ErrUnregistered):
		s.remove(ctx, t)
		return OutcomeUnregistered
	default:
		// Not logged: a provider's error names its URL, which holds the
		// token (APNs) or is the token (UnifiedPush). The metric counts it.
		return OutcomeFailed
	}
}

func (s *Sender) remove(ctx context.Context, t store.PushToken) {
	if _, err := s.Store.DeletePushToken(ctx, t.OwnerDID, t.DeviceID); err != nil {
		s.logger().Warn("push: removing a dead token failed", zap.Error(err))
	}
}

func (s *Sender) observe(provider, outcome string) {
	if s.Observer != nil {
		s.Observer.PushOutcome(provider, outcome)
	}
}

func (s *Sender) logger() *zap.Logger {
	if s.Logger == nil {
		return zap.NewNop()
	}
	return s.Logger
}
