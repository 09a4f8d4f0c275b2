package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// errClosed refuses writes after Close: the store is shutting down.
var errClosed = fmt.Errorf("sqlite store: closed: %w", store.ErrUnavailable)

// maxGroup bounds the writes one group commit carries, so one transaction
// never grows without limit under a flood of writers.
const maxGroup = 128

// writeTx is the transaction a write runs in.
//
// Its statements ignore the caller's cancellation once they start: on
// cancellation the driver calls sqlite3_interrupt, and an interrupted
// INSERT, UPDATE or DELETE rolls back the whole transaction, which in a
// group commit holds other callers' writes too. A cancelled caller is
// refused before its write starts instead; the writes are in-process and
// short.
//
// Its statements are prepared once: parsing and planning is about a third
// of a small write's CPU in SQLite.
type writeTx struct {
	tx    *sql.Tx
	stmts *stmtCache
}

// ExecContext runs a statement that returns no rows.
func (t writeTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = context.WithoutCancel(ctx)
	if st := t.stmts.get(ctx, t.tx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, query, args...)
}

// QueryContext runs a statement that returns rows.
func (t writeTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx = context.WithoutCancel(ctx)
	if st := t.stmts.get(ctx, t.tx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, query, args...)
}

// QueryRowContext runs a statement that returns at most one row.
func (t writeTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	ctx = context.WithoutCancel(ctx)
	if st := t.stmts.get(ctx, t.tx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, query, args...)
}

// execScript runs SQL text of several statements, unprepared: a prepared
// statement would run only the first.
func (t writeTx) execScript(ctx context.Context, script string) error {
	_, err := t.tx.ExecContext(context.WithoutCancel(ctx), script)
	return err
}

// maxCachedStmts bounds the statement cache; the store's statements are
// all constant text, far fewer than this.
const maxCachedStmts = 256

// stmtCache holds the writer's prepared statements by their text. Only
// the committer's goroutine uses it. A statement is prepared between
// groups, when the single writer connection is free (preparing on the
// database during a transaction would wait for that connection forever);
// until then it runs unprepared.
type stmtCache struct {
	db       *sql.DB
	prepared map[string]*sql.Stmt
	wanted   map[string]bool
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, prepared: map[string]*sql.Stmt{}, wanted: map[string]bool{}}
}

// get returns query's statement bound to tx, or nil to run it unprepared.
func (c *stmtCache) get(ctx context.Context, tx *sql.Tx, query string) *sql.Stmt {
	if c == nil {
		return nil
	}
	st, ok := c.prepared[query]
	if st == nil {
		if ok {
			return nil // failed to prepare once; runs unprepared
		}
		if len(c.prepared)+len(c.wanted) < maxCachedStmts {
			c.wanted[query] = true
		}
		return nil
	}
	return tx.StmtContext(ctx, st)
}

// prepareWanted prepares the statements met since the last call. It runs
// with no transaction open. A statement that fails to prepare is not
// wanted again; it runs unprepared.
func (c *stmtCache) prepareWanted() {
	for q := range c.wanted {
		delete(c.wanted, q)
		st, err := c.db.Prepare(q)
		if err != nil {
			c.prepared[q] = nil
			continue
		}
		c.prepared[q] = st
	}
}

// close closes the prepared statements.
func (c *stmtCache) close() {
	for _, st := range c.prepared {
		if st != nil {
			st.Close()
		}
	}
}

// pendingWrite is one caller's write waiting for a group commit.
type pendingWrite struct {
	ctx  context.Context
	fn   func(tx writeTx) error
	done chan error
}

// committer is the single writer's group commit. SQLite has one writer
// and, at synchronous=FULL, every commit waits for a sync of the WAL; the
// committer runs the writes that queue up while a commit is syncing in the
// next transaction, each in a savepoint of its own, so one sync covers them
// all and one write's failure undoes only that write. A caller hears back
// only after the transaction carrying its write has committed (or failed),
// so no write is acknowledged before it is durable.
type committer struct {
	db     *sql.DB
	stmts  *stmtCache
	writes chan *pendingWrite
	quit   chan struct{}
	exited chan struct{}
	once   sync.Once
	// waiting counts the writes waiting to join a group.
	waiting atomic.Int64
	// groups and grouped count the groups committed and the writes they
	// carried, for metrics.
	groups, grouped atomic.Int64
	// committed is called after each group's commit; it must not block.
	committed func()
}

func newCommitter(db *sql.DB, committed func()) *committer {
	c := &committer{db: db, stmts: newStmtCache(db), writes: make(chan *pendingWrite), quit: make(chan struct{}), exited: make(chan struct{}), committed: committed}
	go c.run()
	return c
}

// write runs fn in a transaction of the single writer and returns once
// that transaction has committed, or fn's error (its savepoint rolled
// back), or the commit's error.
func (c *committer) write(ctx context.Context, fn func(tx writeTx) error) error {
	p := &pendingWrite{ctx: ctx, fn: fn, done: make(chan error, 1)}
	c.waiting.Add(1)
	select {
	case c.writes <- p:
		c.waiting.Add(-1)
	case <-ctx.Done():
		c.waiting.Add(-1)
		return fmt.Errorf("wait for the writer: %w", ctx.Err())
	case <-c.quit:
		c.waiting.Add(-1)
		return errClosed
	}
	// The write may be running: wait for its outcome, whatever ctx does.
	return <-p.done
}

// close stops the committer once the group in progress has committed.
func (c *committer) close() {
	c.once.Do(func() { close(c.quit) })
	<-c.exited
}

func (c *committer) run() {
	defer close(c.exited)
	defer c.stmts.close()
	group := make([]*pendingWrite, 0, maxGroup)
	for {
		select {
		case p := <-c.writes:
			group = append(group[:0], p)
		gather:
			for len(group) < maxGroup {
				select {
				case p := <-c.writes:
					group = append(group, p)
				default:
					break gather
				}
			}
			c.commit(group)
			clear(group)
			c.committed()
			c.stmts.prepareWanted()
		case <-c.quit:
			return
		}
	}
}

// commit runs a group in one transaction and reports to each writer.
func (c *committer) commit(group []*pendingWrite) {
	c.groups.Add(1)
	c.grouped.Add(int64(len(group)))
	errs := make([]error, len(group))
	if err := c.runGroup(group, errs); err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	for i, p := range group {
		p.done <- errs[i]
	}
}

// runGroup runs the group's writes, recording each one's own failure in
// errs, and returns an error that fails every write not already failed:
// the transaction could not begin, continue or commit.
func (c *committer) runGroup(group []*pendingWrite, errs []error) error {
	tx, err := c.db.BeginTx(context.Background(), nil)
	if err != nil {
		return classify(fmt.Errorf("begin: %w", err))
	}
	wtx := writeTx{tx: tx, stmts: c.stmts}
	alone := len(group) == 1
	for i, p := range group {
		if err := p.ctx.Err(); err != nil {
			errs[i] = fmt.Errorf("write not started: %w", err)
			continue
		}
		if alone {
			errs[i] = runWrite(p.fn, wtx)
			break
		}
		if _, err := tx.Exec(`SAVEPOINT write`); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("savepoint: %w", err)
		}
		if errs[i] = runWrite(p.fn, wtx); errs[i] != nil {
			if _, err := tx.Exec(`ROLLBACK TO write`); err != nil {
				// The transaction is gone (an I/O error, say): the
				// writes before this one went with it.
				_ = tx.Rollback()
				return fmt.Errorf("roll back a failed write: %w", err)
			}
		}
		if _, err := tx.Exec(`RELEASE write`); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("release savepoint: %w", err)
		}
	}
	if allFailed(errs) {
		_ = tx.Rollback()
		return nil
	}
	if err := tx.Commit(); err != nil {
		return classify(fmt.Errorf("commit: %w", err))
	}
	return nil
}

// runWrite runs one write, turning a panic into its error so that it
// fails that write alone rather than the process.
func runWrite(fn func(tx writeTx) error, tx writeTx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("write panicked: %v", r)
		}
	}()
	return fn(tx)
}

func allFailed(errs []error) bool {
	for _, err := range errs {
		if err == nil {
			return false
		}
	}
	return true
}
