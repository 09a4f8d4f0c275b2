package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// maxAppendBatch bounds the appends one batch transaction carries.
const maxAppendBatch = 64

// appendBatcher commits concurrent appends together. Every commit waits for
// a WAL flush; appends that arrive while others are committing queue, and a
// worker runs the queue as one transaction whose statements go in one
// pipelined round trip, so one flush covers them all. A lone append runs
// alone, autocommitted, with no added wait. No caller hears back before the
// transaction carrying its append has committed.
//
// Statements of a batch lock their conversations in conversation-id order,
// so two batches never deadlock. A statement that fails (a concurrent append
// of the same msg_id, say) aborts its batch, which is then run again one
// append at a time; nothing of an aborted batch was committed.
type appendBatcher struct {
	pool    *pgxpool.Pool
	writer  func() *writer // a writer on the pool
	queue   chan *pendingAppend
	quit    chan struct{}
	workers sync.WaitGroup
	once    sync.Once
	// grouped counts the appends committed in transactions of more than
	// one append; rerun, the batches run again one append at a time.
	grouped, rerun atomic.Int64
}

// pendingAppend is one caller's append waiting for a batch.
type pendingAppend struct {
	ctx  context.Context
	m    store.NewMessage
	out  store.Message
	err  error
	done chan struct{}
}

// newAppendBatcher starts workers goroutines; each takes the queue's first
// append and whatever else is queued at that moment.
func newAppendBatcher(pool *pgxpool.Pool, writerOn func() *writer, workers int) *appendBatcher {
	b := &appendBatcher{pool: pool, writer: writerOn, queue: make(chan *pendingAppend), quit: make(chan struct{})}
	for range max(1, workers) {
		b.workers.Go(b.work)
	}
	return b
}

// append stores m through the next batch.
func (b *appendBatcher) append(ctx context.Context, m store.NewMessage) (store.Message, error) {
	p := &pendingAppend{ctx: ctx, m: m, done: make(chan struct{})}
	select {
	case b.queue <- p:
	case <-ctx.Done():
		return store.Message{}, fmt.Errorf("append message: %w", ctx.Err())
	case <-b.quit:
		return store.Message{}, fmt.Errorf("append message: %w", errClosed)
	}
	<-p.done // the append may be committing: wait for its outcome
	return p.out, p.err
}

func (b *appendBatcher) close() {
	b.once.Do(func() { close(b.quit) })
	b.workers.Wait()
}

func (b *appendBatcher) work() {
	batch := make([]*pendingAppend, 0, maxAppendBatch)
	for {
		select {
		case p := <-b.queue:
			batch = append(batch[:0], p)
		gather:
			for len(batch) < maxAppendBatch {
				select {
				case p := <-b.queue:
					batch = append(batch, p)
				default:
					break gather
				}
			}
			b.run(batch)
			clear(batch)
		case <-b.quit:
			return
		}
	}
}

// run commits a batch and reports to each caller.
func (b *appendBatcher) run(batch []*pendingAppend) {
	live := batch[:0:0]
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			p.err = fmt.Errorf("append message: not started: %w", err)
			close(p.done)
			continue
		}
		live = append(live, p)
	}
	if len(live) > 1 && b.together(live) == nil {
		b.grouped.Add(int64(len(live)))
		for _, p := range live {
			close(p.done)
		}
		return
	}
	// One append, or a batch that could not commit as one: each alone.
	if len(live) > 1 {
		b.rerun.Add(1)
	}
	for _, p := range live {
		// Alone, the statement commits by itself.
		p.out, p.err = b.writer().AppendMessage(context.WithoutCancel(p.ctx), p.m)
		p.err = classifyCommit(p.err)
		close(p.done)
	}
}

// together runs the batch in one transaction. On success it has set each
// append's outcome; on failure nothing was committed and it has set none.
func (b *appendBatcher) together(batch []*pendingAppend) error {
	slices.SortStableFunc(batch, func(x, y *pendingAppend) int { return strings.Compare(x.m.ConvoID, y.m.ConvoID) })
	ctx := context.Background()
	bucket := b.writer().bucket()
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	q := &pgx.Batch{}
	for _, p := range batch {
		q.Queue(appendMessageSQL, appendArgs(p.m, bucket)...)
	}
	results := tx.SendBatch(ctx, q)
	type row struct {
		seq, cursor int64
		none        bool
	}
	rows := make([]row, len(batch))
	for i := range batch {
		err := results.QueryRow().Scan(&rows[i].seq, &rows[i].cursor)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			rows[i].none = true
		case err != nil:
			results.Close()
			return err
		}
	}
	if err := results.Close(); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		// Not a statement's failure, so running the appends again alone
		// would not help: every caller hears the commit's error. When the
		// connection was lost with the COMMIT in flight that is
		// store.ErrOutcomeUnknown, which a retry with the same msgId
		// resolves (it finds the message if it was stored).
		err = classifyCommit(err)
		for _, p := range batch {
			p.err = fmt.Errorf("append message: commit: %w", err)
		}
		return nil
	}
	for i, p := range batch {
		if rows[i].none {
			p.err = fmt.Errorf("append message: %w", classify(b.writer().whyNotAppended(context.WithoutCancel(p.ctx), p.m)))
			continue
		}
		p.out = appended(p.m, rows[i].seq, rows[i].cursor, bucket)
	}
	return nil
}
