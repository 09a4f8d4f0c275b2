package sqlite

import (
	"context"
	"database/sql"
	"sync"
	"time"
)

// checkpointGap is the least time between two checkpoints: the WAL grows
// by at most what is written in it (plus the checkpoint's own time) before
// its pages are moved into the database file.
const checkpointGap = 250 * time.Millisecond

// checkpointer moves the WAL's pages into the database file on a
// connection of its own, so that no commit waits for it.
//
// Left to itself, SQLite checkpoints inside the commit that takes the WAL
// past 1,000 pages (wal_autocheckpoint): that one commit copies about 4 MB
// into the database file and, at synchronous=FULL, syncs it, which took
// 50–220 ms here while the commits around it took a third of a
// millisecond (BenchmarkAppendTail). The writer connection therefore runs
// with wal_autocheckpoint(0), and this goroutine runs a PASSIVE
// checkpoint after commits, at most every checkpointGap. A PASSIVE
// checkpoint takes no lock the writer needs: commits go on appending to
// the WAL while it copies, and the writer starts the WAL over from its
// beginning once everything in it has been copied. Durability is
// unchanged: a commit is durable once its WAL frames are synced, before
// and after this change.
type checkpointer struct {
	db     *sql.DB
	kick   chan struct{}
	quit   chan struct{}
	exited chan struct{}
	once   sync.Once
}

func newCheckpointer(db *sql.DB) *checkpointer {
	c := &checkpointer{db: db, kick: make(chan struct{}, 1), quit: make(chan struct{}), exited: make(chan struct{})}
	go c.run()
	return c
}

// committed tells the checkpointer that the WAL has new pages. It never
// blocks.
func (c *checkpointer) committed() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// close stops the checkpointer once the checkpoint in progress is done.
// Closing the last connection to the database checkpoints what is left.
func (c *checkpointer) close() {
	c.once.Do(func() { close(c.quit) })
	<-c.exited
}

func (c *checkpointer) run() {
	defer close(c.exited)
	gap := time.NewTimer(0)
	defer gap.Stop()
	for {
		select {
		case <-c.kick:
		case <-c.quit:
			return
		}
		// A failed checkpoint (the database busy with a migration, say)
		// is only retried at the next commit: nothing depends on it but
		// the WAL's size.
		_, _ = c.db.ExecContext(context.Background(), `PRAGMA wal_checkpoint(PASSIVE)`)
		gap.Reset(checkpointGap)
		select {
		case <-gap.C:
		case <-c.quit:
			return
		}
	}
}
