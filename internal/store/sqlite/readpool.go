package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// readPool is the read-only connection pool with its statements prepared
// once: SQLite parses and plans a statement on every unprepared query,
// which is a good part of a small read's CPU. A statement is prepared on
// first use and then on each connection as database/sql hands it out.
type readPool struct {
	db    *sql.DB
	mu    sync.RWMutex
	stmts map[string]*sql.Stmt
}

func newReadPool(db *sql.DB) *readPool {
	return &readPool{db: db, stmts: map[string]*sql.Stmt{}}
}

// stmt returns query's prepared statement, or nil if it cannot be
// prepared (the query then runs unprepared and reports its own error).
func (p *readPool) stmt(ctx context.Context, query string) *sql.Stmt {
	p.mu.RLock()
	if p.stmts == nil { // closed: the query fails on the closed pool
		p.mu.RUnlock()
		return nil
	}
	st, ok := p.stmts[query]
	p.mu.RUnlock()
	if ok {
		return st
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.stmts[query]; ok || p.stmts == nil {
		return st
	}
	if len(p.stmts) >= maxCachedStmts {
		return nil
	}
	st, err := p.db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	p.stmts[query] = st
	return st
}

// QueryContext runs a query that returns rows.
func (p *readPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return p.db.QueryContext(ctx, query, args...)
}

// QueryRowContext runs a query that returns at most one row.
func (p *readPool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return p.db.QueryRowContext(ctx, query, args...)
}

// Close closes the statements and the pool.
func (p *readPool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, st := range p.stmts {
		st.Close()
	}
	p.stmts = nil
	return p.db.Close()
}
